"""Train (or load) an image classifier, prune it, export .tflite files and report what changed.

  python -m pipeline.run --flagfile=configs/mnist.flags
  python -m pipeline.run --flagfile=configs/camera_folder.flags --data_dir=PHOTOS
  (also: python train.py ..., prune-pipeline ...; --helpfull lists absl's own flags too)
"""
# Flags are defined in pipeline/flags/ (one module per topic) and read only by entry points.
# main() turns them into one frozen Config and checks which go together (pipeline/rules.py),
# then runs the stages in pipeline/job.py. Stage modules are imported inside main(), so that a
# malformed flag or combination is reported in a fraction of a second, before TensorFlow loads;
# checks that need the data or a model (paths, dataset names) come after TensorFlow has loaded.

import hashlib
import os

from absl import flags
from absl import logging

from export import cli
from export.cli import fail
from export import workdir as workdir_lib
from pipeline import config as config_lib
from pipeline import distribute
from pipeline import flags as pipeline_flags
from pipeline import rules
from pipeline.flags import config_from_flags


def _run_text(cfg: config_lib.Config) -> str:
  """What makes a command the same command, for resuming it: its flags, and the contents of
  the model files they name (a --baseline_path trained again in place is another run)."""
  lines = [flags.FLAGS.flags_into_string()]
  for flag in ("baseline_path", "teacher_path"):
    path = getattr(cfg, flag)
    if path and os.path.isfile(path):
      with open(path, "rb") as f:
        # Written as a flag, so that export/workdir.py compares it as one.
        lines.append(f"--{flag}_sha256={hashlib.sha256(f.read()).hexdigest()}\n")
  return "".join(lines)


def main(argv):
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])} (flags take the form --name=value)")
  try:
    cfg = config_from_flags()
    cluster = distribute.cluster(cfg.strategy)  # TF_CONFIG, read before TensorFlow loads.
    rules.check_paths(cfg, workdir=cluster.is_chief)  # Only the chief writes the run.
    run_text = _run_text(cfg)
    if cluster.is_chief:  # Another command over an interrupted run: refused before any work.
      workdir_lib.resumable(cfg.workdir, run_text, cfg.restart, config_lib.RESUME_MAY_DIFFER)
  except ValueError as e:  # config.FlagError: flags that do not go together, a missing path.
    fail(str(e))
  from export import console  # pylint: disable=g-import-not-at-top
  console.quiet(detail=flags.FLAGS["verbosity"].present)
  logging.info("Config: %s", cfg)
  con = console.Console()

  with console.native_output_to_log("TensorFlow's import"):
    from pipeline import job  # pylint: disable=g-import-not-at-top  (TensorFlow loads here)
    strategy = distribute.make(cluster)  # Before TensorFlow runs anything else.

  try:
    with con.stage("data") as info:
      with strategy.scope():  # The fresh model's variables belong to the strategy.
        prep = job.preflight(cfg, check_workdir=cluster.is_chief)
      info["summary"] = job.describe_data(prep.data)
    report = job.run_job(cfg, prep, run_text, con, cluster, strategy)
  except ValueError as e:
    fail(str(e))
  except job.StageError as e:
    fail(str(e), status=1)
  except KeyboardInterrupt:
    fail(f"interrupted; {cfg.workdir} was not changed (the same command starts it again)",
         status=130)

  if report is None:  # A worker other than the chief: the chief writes the run.
    print(f"worker {cluster.task_index}: trained with the chief; the chief writes "
          f"{cfg.workdir}")
    return
  from pipeline import report as report_lib  # pylint: disable=g-import-not-at-top
  print(report_lib.to_markdown(report))
  print(f"Report: {cfg.workdir}/report.md and report.json; log: {cfg.workdir}/log.txt; "
        f"TensorBoard: tensorboard --logdir {cfg.workdir}/logs")
  failed = [e for e in report["exports"] if e["gate"] != "ok"]
  if failed:
    fail(f"{len(failed)} exported file(s) outside their bounds: " + "; ".join(
        f"{e['name']}: {e['gate_reason']}" for e in failed), status=1)


def run():
  """Console-script entry point."""
  cli.run(main, __name__, topics=pipeline_flags.TOPICS)


if __name__ == "__main__":
  run()
