"""Run directory.

Defined here, read by pipeline/flags/__init__.py (`config_from_flags`) only.
"""

from absl import flags

TITLE = 'Run directory'

WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for models, exports, logs and "
                              "the report (default: runs/<dataset>-<date>-<time>).")
OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a previous run in --workdir.")
