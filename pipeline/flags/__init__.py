"""The flags of `python -m pipeline.run` (and of the commands that share them: pipeline.sweep,
benchmarks.compare), one module per topic, and `config_from_flags`, which turns them into one
frozen Config after the flag-combination rules (pipeline/rules.py) pass. Imported by entry
points only; library code reads the Config, never flags.

Each flag is named as the Config field it sets. `TOPICS` is the order --help shows them in.
"""

import dataclasses
import datetime
import os

from absl import flags

from pipeline import config as config_lib
from pipeline import rules
from pipeline.flags import data as data_flags
from pipeline.flags import model as model_flags
from pipeline.flags import unstructured as unstructured_flags
from pipeline.flags import structured as structured_flags
from pipeline.flags import rates as rates_flags
from pipeline.flags import export as export_flags
from pipeline.flags import output as output_flags
from pipeline.flags import distribute as distribute_flags
from pipeline.flags import distill as distill_flags
from pipeline.flags import collab as collab_flags

TOPICS = (data_flags, model_flags, unstructured_flags, structured_flags, rates_flags,
          distill_flags, collab_flags, export_flags, output_flags, distribute_flags)
# Each flag's own value rule (rules.VALUES, which the Python API checks too): at parse time.
for _name, (_test, _words) in rules.VALUES.items():
  flags.register_validator(_name, lambda v, test=_test: v is None or test(v), _words)

_PATHS = ("data_dir", "baseline_path", "teacher_path", "weights", "latency_table", "workdir")


def _path(value):
  """~ expanded: a shell leaves `--data_dir=~/x` as it is."""
  return os.path.expanduser(value) if value else value


def config_from_flags(now: datetime.datetime = None, check: bool = True) -> config_lib.Config:
  """The parsed flags as one frozen Config; derives the default workdir.

  Args:
    now: the time the default workdir is named for.
    check: apply rules.check (a sweep checks each point's Config instead).

  Raises:
    config.FlagError: flags that do not go together (rules.check).
  """
  now = now or datetime.datetime.now()
  values = {f.name: flags.FLAGS[f.name].value for f in dataclasses.fields(config_lib.Config)
            if f.name in flags.FLAGS}
  values.update({name: _path(values[name]) for name in _PATHS})
  values.update(
      color_mode=values["color_mode"] or "",
      export_formats=tuple(dict.fromkeys(values["export_formats"])),
      workdir=values["workdir"] or f"runs/{values['dataset']}-{now:%Y%m%d-%H%M%S}",
      verbose=2 if flags.FLAGS["verbosity"].present else 0)
  cfg = config_lib.Config(**values)
  if check:
    rules.check(cfg)
  return cfg
