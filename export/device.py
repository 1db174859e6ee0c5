"""`python -m export.device FILE... --benchmark_binary=PATH`: time .tflite files on a phone.

Runs each file on an Android phone over adb with your LiteRT `benchmark_model` built for it
(e.g. the android_aarch64 benchmark_model LiteRT publishes), from a fresh folder under
/data/local/tmp that is removed afterwards. Prints the phone (model, ABI) and a table: size,
average, first-inference and init time on the device, and the speed-up against the first
file. benchmark_model runs the files one after another, not interleaved, so a speed-up is a
ratio of averages, not paired. Exit status 1 if any file did not run. Default: --warmup_runs=5.
"""

import dataclasses
import json
import os

from absl import flags

from export import android
from export import cli
from export import formats
from export import recommend
from export import shared_flags
from export import workdir
from export.cli import fail

_BINARY = flags.DEFINE_string("benchmark_binary", None, "Path of your benchmark_model built for "
                              "the phone (LiteRT's Android benchmark tool); pushed with the files.")
_ADB = flags.DEFINE_string("adb", "adb", "The adb program: a name on PATH or a path.")
_SERIAL = flags.DEFINE_string("adb_serial", None, "Serial of the device to use (adb -s SERIAL); "
                              "needed when several are connected (see `adb devices`).")
_THREADS = flags.DEFINE_integer("num_threads", 1, "Threads per file (benchmark_model's "
                                "--num_threads).", lower_bound=1)
_DELEGATE = flags.DEFINE_enum("delegate", "xnnpack", android.DELEGATES, "Kernels: xnnpack "
                              "(--use_xnnpack=true), gpu (--use_gpu=true), none "
                              "(--use_xnnpack=false: the builtin kernels).")
_NUM_RUNS = flags.DEFINE_integer("num_runs", 50, "Timed runs per file (benchmark_model runs at "
                                 "least this many, and for at least 1 s).", lower_bound=1)
_RUN_DIR = flags.DEFINE_string("run_dir", None, "A pipeline run directory: time its exported "
                               "files (when no FILE is given; baseline_float32 first) and add the "
                               "on-device table to its report.md and report.json.")


def _check_binary(path):
  if path is None:
    raise flags.ValidationError("required: the path of benchmark_model built for the phone")
  if not os.path.isfile(path):
    raise flags.ValidationError("no such file")
  return True


flags.register_validator("benchmark_binary", _check_binary)


def _report():
  path = os.path.join(_RUN_DIR.value, "report.json")
  try:
    with open(path) as f:
      report = json.load(f)
  except (OSError, ValueError) as e:
    fail(f"--run_dir={_RUN_DIR.value}: no readable report.json ({type(e).__name__}: {e})")
  if not isinstance(report, dict) or not isinstance(report.get("exports"), list):
    fail(f"--run_dir={_RUN_DIR.value}: its report.json is not a run report (no exports)")
  return report


def _add_to_report(report: dict, run_dir: str) -> None:
  """Writes the phone table into the run's report.json and report.md (its own section)."""
  md_path = os.path.join(run_dir, "report.md")
  try:
    with open(md_path) as f:
      md = f.read()
  except OSError:
    md = ""
  workdir.atomic_write(os.path.join(run_dir, "report.json"), json.dumps(report, indent=2) + "\n")
  workdir.atomic_write(md_path, android.add_to_report(md, report["device"]["markdown"]))


def _ship(report: dict, result: android.OnDevice):
  """Which of the run's files to ship on this phone (export/recommend.py): its accuracy and
  size from the run's report, its speed from the phone."""
  by = {os.path.basename(e["path"]): e for e in report["exports"]}
  base = report["baseline"]["test_accuracy"]
  cands = [recommend.Candidate(e["name"], e["test_accuracy"] - base, r.speedup, e["gzip_ratio"],
                               r.error is None and e["gate"] == "ok")
           for r in result.rows for e in [by.get(os.path.basename(r.path))] if e]
  return recommend.lines(cands, f"on {result.model} ({result.abi}; ratio of averages)",
                         formats.REFERENCE, report["config"].get("max_accuracy_drop"))


def main(argv):
  paths = argv[1:]
  if _RUN_DIR.value and paths:
    fail(f"--run_dir={_RUN_DIR.value}: times the run's own files; give no FILE with it")
  report = _report() if _RUN_DIR.value else None
  if report is not None:
    exports = sorted(report["exports"], key=lambda e: e["name"] != formats.REFERENCE)
    paths = [os.path.join(_RUN_DIR.value, e["path"]) for e in exports]
  if not paths:
    fail("no .tflite file given; usage: python -m export.device FILE... "
         "--benchmark_binary=PATH")
  for p in paths:
    if not os.path.isfile(p):
      fail(f"{p}: no such file")
  try:
    result = android.measure(paths, _BINARY.value, threads=_THREADS.value,
                             delegate=_DELEGATE.value, num_runs=_NUM_RUNS.value,
                             warmup_runs=shared_flags.value(shared_flags.WARMUP_RUNS, 5),
                             adb=_ADB.value, adb_serial=_SERIAL.value)
  except android.SetupError as e:
    fail(str(e))
  except android.TransferError as e:
    fail(str(e), status=1)
  markdown = android.to_markdown(result)
  if report is not None:
    markdown += "\n\n" + "\n".join(_ship(report, result))
  print(markdown)
  if shared_flags.JSON.value:
    workdir.atomic_write(shared_flags.JSON.value,
                         json.dumps(dataclasses.asdict(result), indent=2) + "\n")
  if report is not None and any(r.error is None for r in result.rows):  # Not all failures.
    report["device"] = dict(dataclasses.asdict(result), markdown=markdown)
    _add_to_report(report, _RUN_DIR.value)
    print(f"\nAdded to {os.path.join(_RUN_DIR.value, 'report.md')} and report.json.")
  failed = [r.name for r in result.rows if r.error]
  if failed:
    fail(f"{len(failed)} of {len(result.rows)} files did not run on the phone: "
         f"{', '.join(failed)} (see the table)", status=1)


def run():
  cli.run(main, __name__, shared=("warmup_runs", "json"))


if __name__ == "__main__":
  run()
