"""Re-runs lose nothing: a real run killed with SIGKILL during fine-tuning and during export
leaves the previous complete run untouched, and the next run says what it found."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

ARGS = ["--flagfile=configs/smoke.flags", "--max_train_examples=300",
        "--export_formats=float32", "--benchmark_runs=5"]


def _start(wd, *extra):
  env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
  return subprocess.Popen([sys.executable, "-m", "pipeline.run", *ARGS, f"--workdir={wd}",
                           *extra], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _kill_when(proc, path, timeout=240):
  """SIGKILLs `proc` as soon as `path` exists (the stage it marks has begun)."""
  t0 = time.monotonic()
  while not os.path.exists(path):
    assert proc.poll() is None, f"finished before {path} appeared: {proc.stderr.read()[-2000:]}"
    assert time.monotonic() - t0 < timeout, f"{path} never appeared"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  _, err = proc.communicate()
  assert proc.returncode == -signal.SIGKILL
  return err


def _assert_old_run_intact(wd, report):
  assert (wd / "report.json").read_text() == report
  assert not (wd / "INCOMPLETE").exists() and (wd / "flags.txt").is_file()
  staging = wd.parent / f"{wd.name}.incomplete"
  assert (staging / "INCOMPLETE").is_file()  # The new run is marked, never mixed in.
  assert not (staging / "report.json").exists()


@pytest.mark.e2e
def test_kill_9_during_fine_tuning_and_export_then_rerun(tmp_path):
  wd = tmp_path / "run"
  first = _start(wd)
  out, err = first.communicate(timeout=300)
  assert first.returncode == 0, err[-3000:]
  report = (wd / "report.json").read_text()
  staging = tmp_path / "run.incomplete"

  # Killed while the .tflite files are written, after TF-MOT fine-tuned (its TensorBoard
  # directory is there): the previous complete run stays as it was.
  _kill_when(_start(wd, "--overwrite"), staging / "tflite")
  assert (staging / "logs" / "prune").is_dir()
  _assert_old_run_intact(wd, report)

  # A run that finishes replaces the old one in one step and leaves nothing beside it.
  last = _start(wd, "--overwrite", "--seed=1")
  _, err = last.communicate(timeout=300)
  assert last.returncode == 0, err[-3000:]
  line = next(l for l in err.splitlines() if "was interrupted" in l)  # The killed run, found.
  assert f"A previous run into {wd} was interrupted" in line and str(staging) in line
  assert json.loads((wd / "report.json").read_text())["config"]["seed"] == 1
  assert sorted(os.listdir(tmp_path)) == ["run"]
