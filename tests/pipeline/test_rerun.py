"""Runs that survive a crash: a real run killed with SIGKILL (mid fine-tuning, during export)
and started again with the same command continues where it stopped, finishes as an
uninterrupted run would, and never touches the previous complete run until it has finished."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

ARGS = ["--flagfile=configs/smoke.flags", "--max_train_examples=300",
        "--export_formats=float32", "--benchmark_runs=5", "--fine_tune_epochs=3"]


def _start(wd, *extra):
  env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
  return subprocess.Popen([sys.executable, "-m", "pipeline.run", *ARGS, f"--workdir={wd}",
                           *extra], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _finish(proc):
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  return out, err


def _kill_when(proc, path, timeout=240):
  """SIGKILLs `proc` as soon as `path` exists."""
  t0 = time.monotonic()
  while not os.path.exists(path):
    assert proc.poll() is None, f"finished before {path} appeared: {proc.stderr.read()[-2000:]}"
    assert time.monotonic() - t0 < timeout, f"{path} never appeared"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  _, err = proc.communicate()
  assert proc.returncode == -signal.SIGKILL
  return err


def _stages(wd):
  return {n: e["attempt"] for n, e in json.loads((wd / "stages.json").read_text())["stages"]
          .items()}


@pytest.mark.e2e
def test_killed_mid_fine_tuning_the_same_command_resumes_to_the_same_result(tmp_path):
  extra = ("--structured_rate=0.25",)  # Structured + unstructured: two training stages.
  whole = _start(tmp_path / "whole", *extra)
  _finish(whole)
  wd = tmp_path / "run"
  # Killed once the first epoch of TF-MOT's fine-tuning is backed up.
  backup = tmp_path / "run.incomplete" / "logs" / "prune" / "backup" / "restore" / "chief"
  _kill_when(_start(wd, *extra), backup / "checkpoint")
  out, err = _finish(_start(wd, *extra))
  assert "resuming: 2 stages done (baseline, structured), prune from epoch 2" in err
  assert _stages(wd)["baseline"] == _stages(wd)["structured"] == 1  # Not redone.
  assert _stages(wd)["prune"] == 2
  resumed = json.loads((wd / "report.json").read_text())["pruned"]
  ref = json.loads((tmp_path / "whole" / "report.json").read_text())["pruned"]
  assert resumed["layer_rates"] == ref["layer_rates"]
  assert resumed["sparsity"] == ref["sparsity"] and abs(resumed["sparsity"] - 0.5) < 0.005
  assert all(abs(resumed["layer_sparsity"][n] - 0.5) < 0.01 for n in resumed["layer_rates"])
  assert abs(resumed["test_accuracy"] - ref["test_accuracy"]) <= 0.005
  assert not list(wd.rglob("backup")), "backups are removed when the run finishes"
  assert sorted(os.listdir(tmp_path)) == ["run", "whole"]


@pytest.mark.e2e
def test_killed_during_export_the_rerun_redoes_export_only(tmp_path):
  wd = tmp_path / "run"
  staging = tmp_path / "run.incomplete"
  _kill_when(_start(wd), staging / "tflite")  # Killed while the .tflite files are written.
  assert (staging / "INCOMPLETE").is_file() and not wd.exists()  # Nothing half-written there.

  # Another command over the interrupted run: one line naming the flags that differ
  # (--restart would start over: tests/export/test_workdir.py).
  other = _start(wd, "--seed=1", "--epochs=2")
  _, err = other.communicate(timeout=120)
  assert other.returncode == 2
  assert err.strip().splitlines()[-1] == (
      f"error: --workdir={wd}: holds an interrupted run of another command (it differs in "
      "--epochs, --seed); run that command again to resume it, or pass --restart to start over")

  _, err = _finish(_start(wd))
  assert "resuming: 2 stages done (baseline, prune), export from the start" in err
  assert set(_stages(wd).values()) == {1}  # Nothing trained again.
  assert "\nbaseline " not in err and "\nprune " not in err  # No training stage line.
  report = json.loads((wd / "report.json").read_text())
  assert [e["name"] for e in report["exports"]] == [
      "baseline_float32", "pruned_float32", "pruned_float32_sparse"]
  assert sorted(os.listdir(tmp_path)) == ["run"]


def test_a_baseline_file_changed_in_place_is_another_command(tmp_path):
  """The same flags over an interrupted run whose --baseline_path file has been trained again
  since: refused (its contents are part of the command), before TensorFlow loads."""
  from conftest import assert_message, run_cli  # pylint: disable=g-import-not-at-top
  model = tmp_path / "mine.keras"
  model.write_bytes(b"trained again since")
  staging = tmp_path / "run.incomplete"
  staging.mkdir()
  (staging / "flags.txt").write_text(f"--baseline_path={model}\n--baseline_path_sha256=0123\n")
  proc = run_cli([f"--baseline_path={model}", f"--workdir={tmp_path}/run"], cwd=REPO)
  assert proc.returncode == 2
  assert_message(proc.stderr.strip().splitlines()[-1], f"error: --workdir={tmp_path}/run:",
                 "interrupted run of another command", "--baseline_path_sha256", "--restart")
