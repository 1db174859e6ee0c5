"""Flags that several entry points share, each defined once here (absl refuses a name twice).

Entry points (export.benchmark, benchmarks.compare, benchmarks.crosscheck) import the holders
they use and read them in main(); library code takes plain arguments. A default of None means
"the command's own default", which each command's --help states.
"""

from absl import flags

OUT_DIR = flags.DEFINE_string("out_dir", "bench_out", "Directory for the benchmark's tables, "
                              "JSON and charts (replaced only once the new ones are complete).")
RUNS = flags.DEFINE_integer("runs", None, "Timed invokes per file (default: the command's own).",
                            lower_bound=1)
ROUNDS = flags.DEFINE_integer("rounds", None, "Interleaved rounds the runs are split into; each "
                              "gives one paired ratio (default: the command's own).",
                              lower_bound=1)
WARMUP_RUNS = flags.DEFINE_integer("warmup_runs", None, "Untimed invokes per file before timing "
                                   "(default: the command's own).", lower_bound=0)

REFERENCE = flags.DEFINE_string("reference", None, "File (path or name) the speed-ups are "
                                "measured against (default: the first file).")
JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")


def value(holder, default):
  """The flag's value, or the entry point's own default where it was left unset."""
  return default if holder.value is None else holder.value
