"""Train (or load) an image classifier, prune it, export .tflite files and report what changed.

  python -m pipeline.run --flagfile=configs/mnist.flags
  python -m pipeline.run --flagfile=configs/camera_folder.flags --data_dir=PHOTOS
  (also: python train.py ..., prune-pipeline ...; --helpfull lists absl's own flags too)
"""
# Flags are defined in pipeline/run_flags.py and read only by entry points. main() turns them
# into one frozen Config, checks everything a bad flag could break before writing anything,
# then runs the stages in pipeline/job.py. Stage modules are imported inside main(), so that a
# malformed flag is reported in a fraction of a second, before TensorFlow loads; checks that
# need the data or a model (paths, dataset names) come after TensorFlow has loaded.

from absl import flags
from absl import logging

from pipeline import cli
from pipeline.cli import fail
from pipeline import run_flags
from pipeline.run_flags import config_from_flags

flags.adopt_module_key_flags(run_flags)  # --help lists them as this command's own.


def main(argv):
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])} (flags take the form --name=value)")
  cfg = config_from_flags()
  from pipeline import console  # pylint: disable=g-import-not-at-top
  console.quiet(detail=flags.FLAGS["verbosity"].present)
  logging.info("Config: %s", cfg)
  con = console.Console()

  with console.native_output_to_log("TensorFlow's import"):
    from pipeline import job  # pylint: disable=g-import-not-at-top  (TensorFlow loads here)

  try:
    with con.stage("data") as info:
      prep = job.preflight(cfg)
      d = prep.data.summary()
      info["summary"] = (f"{d['name']} from {d['source']}: {d['train_examples']:,} train, "
                         f"{d['validation_examples']:,} validation, {d['test_examples']:,} test, "
                         f"{'x'.join(map(str, d['image_shape']))}, {len(d['classes'])} classes")
    report = job.run_job(cfg, prep, flags.FLAGS.flags_into_string(), con)
  except ValueError as e:
    fail(str(e))
  except job.StageError as e:
    fail(str(e), status=1)
  except KeyboardInterrupt:
    fail(f"interrupted; {cfg.workdir} was not changed (the same command starts it again)",
         status=130)

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
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
