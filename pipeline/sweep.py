"""Sweep pruning rates: one baseline, one run per rate, every file timed side by side.

  python -m pipeline.sweep --flagfile=configs/fashion_mnist.flags --rates=0.5,0.7,0.8,0.9,0.95
  python -m pipeline.sweep --flagfile=configs/camera_folder.flags --data_dir=photos \\
      --structured_rates=0,0.25,0.4 --rates=0,0.8

Every flag of `python -m pipeline.run` applies to each point (WORKDIR is --workdir, by default
runs/sweep-<dataset>, so the same command resumes the same sweep). The baseline is trained (or
loaded with --baseline_path) once, in WORKDIR/baseline; each point (structured rate x
unstructured rate) is a normal run in WORKDIR/s<S>_u<U> with its own report. Then all the
.tflite files are timed together, interleaved in one process, and WORKDIR gets sweep.md,
sweep.json and two charts (test accuracy against gzip size and against latency, the Pareto
frontier marked). A sweep that is stopped resumes from the points already finished.
"""

import dataclasses

from absl import flags
from absl import logging

from export import cli
from pipeline import flags as pipeline_flags

_RATES = flags.DEFINE_list("rates", None, "Unstructured (TF-MOT) pruning rates, fractions of "
                           "weights removed, e.g. 0.5,0.8,0.9; 0 = none. Default: --pruning_rate "
                           "if --prune is given, else 0.")
_S_RATES = flags.DEFINE_list("structured_rates", None, "Structured rates (fractions of channels "
                             "removed for real); every one is combined with every --rates "
                             "value. Default: --structured_rate.")


def _rates(values, flag: str, default: float):
  """Parsed, checked and de-duplicated rates."""
  if not values:
    return [default]
  out = []
  for v in values:
    try:
      r = float(v)
    except ValueError:
      r = -1.0
    if not 0.0 <= r < 1.0:
      raise ValueError(f"--{flag}={','.join(values)}: {v!r} is not a rate in [0, 1)")
    out.append(r)
  return sorted(set(out))


_SHARD = flags.DEFINE_string("shard", "", "I/N: run only points I, I+N, I+2N, ... (1-based), so N "
                              "machines sharing --workdir split the sweep; the last shard to "
                              "finish (or any re-run) writes the combined table. Shards other "
                              "than 1 wait for shard 1's baseline.")


def _shard(text: str):
  """'2/3' -> (2, 3); '' -> (1, 1)."""
  if not text:
    return 1, 1
  i, _, n = text.partition("/")
  try:
    i, n = int(i), int(n)
  except ValueError:
    i = n = 0
  if not 1 <= i <= n:
    raise ValueError(f"--shard={text}: expected I/N with 1 <= I <= N, e.g. 1/2 and 2/2")
  return i, n


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (flags take the form --name=value)")
  cfg = pipeline_flags.config_from_flags(check=False)  # Each point's flags are checked.
  try:
    unstructured = _rates(_RATES.value, "rates", cfg.pruning_rate if cfg.prune else 0.0)
    structured = _rates(_S_RATES.value, "structured_rates", cfg.structured_rate)
    shard = _shard(_SHARD.value)
  except ValueError as e:
    cli.fail(str(e))
  if cfg.max_accuracy_drop is not None:
    cli.fail("--max_accuracy_drop: a sweep times the rates it is given; run the budget search "
             "with python -m pipeline.run")
  if cfg.target_speedup:
    cli.fail(f"--target_speedup={cfg.target_speedup:g}: a sweep times the rates it is given; "
             "run the latency target with python -m pipeline.run")
  points = [(s, u) for s in structured for u in unstructured if s or u]
  if not points:
    cli.fail("--rates and --structured_rates: nothing to prune (every rate is 0)")
  if not flags.FLAGS["workdir"].present:  # The same command resumes the same sweep.
    cfg = dataclasses.replace(cfg, workdir=f"runs/sweep-{flags.FLAGS.dataset}")
  from export import console  # pylint: disable=g-import-not-at-top
  console.quiet(detail=flags.FLAGS["verbosity"].present)
  con = console.Console()
  with console.native_output_to_log("TensorFlow's import"):
    from pipeline import sweep_job  # pylint: disable=g-import-not-at-top
  try:
    # Every shard runs the same sweep: its flags.txt files must not differ by --shard.
    text = "".join(l for l in flags.FLAGS.flags_into_string().splitlines(keepends=True)
                   if not l.startswith("--shard="))
    result = sweep_job.run_sweep(cfg, points, text, con, shard)
  except ValueError as e:
    cli.fail(str(e))
  except sweep_job.job.StageError as e:
    cli.fail(str(e), status=1)
  except KeyboardInterrupt:
    cli.fail(f"interrupted; the points finished so far stay in {cfg.workdir}, and the same "
             "command resumes from them", status=130)
  if result["markdown"] is None:  # Other shards' points are still to come.
    print(f"shard {shard[0]}/{shard[1]}: {result['finished']} of {len(points)} points "
          f"finished in {cfg.workdir}; the table is written once all are (run the other "
          "shards, then any shard again or the sweep without --shard)")
    return
  print(result["markdown"])
  print(f"Sweep: {cfg.workdir}/sweep.md, sweep.json and charts; each point's report in "
        f"{cfg.workdir}/<point>/report.md; TensorBoard: tensorboard --logdir {cfg.workdir}")
  logging.info("Sweep finished: %d points.", len(points))
  failed = [r for r in result["rows"] if r["gate"] != "ok"]
  if failed:
    cli.fail(f"{len(failed)} exported file(s) outside their bounds: "
             + ", ".join(f"{r['point']}/{r['name']}" for r in failed), status=1)


def run():
  """Console-script entry point."""
  cli.run(main, __name__, topics=pipeline_flags.TOPICS)


if __name__ == "__main__":
  run()
