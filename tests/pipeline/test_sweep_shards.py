"""Sweeps across machines (--shard=I/N) and a sweep point that resumes after a kill: real
processes, slow (`make test-multiworker`)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

ARGS = ["--flagfile=configs/smoke.flags", "--max_train_examples=300", "--rates=0.5,0.8",
        "--export_formats=float32", "--benchmark_runs=50"]


def _sweep(wd, *extra):
  env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
  return subprocess.Popen([sys.executable, "-m", "pipeline.sweep", *ARGS, f"--workdir={wd}",
                           *extra], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_shards_split_the_points_and_the_table_is_written_once_all_finished(tmp_path):
  wd = tmp_path / "sweep"
  second = _sweep(wd, "--shard=2/2")  # Started first: it waits for shard 1's baseline.
  first = _sweep(wd, "--shard=1/2")
  (_, err2), (_, err1) = second.communicate(timeout=600), first.communicate(timeout=600)
  assert first.returncode == second.returncode == 0, err1[-2000:] + err2[-2000:]
  assert "== point 1/2: unstructured 50% ->" in err1 and "== point 2/2" not in err1
  assert "== point 2/2: unstructured 80% ->" in err2 and "== point 1/2" not in err2
  assert "== shard 2/2: waiting for the baseline" in err2
  again = _sweep(wd, "--shard=1/2")  # Any shard again: all finished, so the table.
  _, err = again.communicate(timeout=600)
  assert again.returncode == 0, err[-2000:]
  rows = json.loads((wd / "sweep.json").read_text())["rows"]
  assert {r["point"] for r in rows} == {"baseline", "s0_u0.5", "s0_u0.8"}


@pytest.mark.slow
def test_a_sweep_point_killed_mid_fine_tuning_resumes(tmp_path):
  wd = tmp_path / "sweep"
  proc = _sweep(wd)
  backup = wd / "s0_u0.5.incomplete" / "logs" / "prune" / "backup" / "restore" / "chief"
  t0 = time.monotonic()
  while not (backup / "checkpoint").exists():
    assert proc.poll() is None and time.monotonic() - t0 < 300, proc.stderr.read()[-2000:]
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  again = _sweep(wd)
  _, err = again.communicate(timeout=600)
  assert again.returncode == 0, err[-2000:]
  assert "== baseline: finished before" in err
  assert "resuming: 1 stage done (baseline), prune from epoch 2" in err
  report = json.loads((wd / "s0_u0.5" / "report.json").read_text())
  assert abs(report["pruned"]["sparsity"] - 0.5) < 0.005
