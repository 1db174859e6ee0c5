"""tf.distribute.MultiWorkerMirroredStrategy through `python -m pipeline.launch`: two local
worker processes train in lockstep, the chief alone writes the run, and a killed worker makes
the launcher start the job again, which resumes from its last backup. Slow (real processes,
two TensorFlows on two cores): `make test-multiworker`."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

ARGS = ["--flagfile=configs/smoke.flags", "--export_formats=float32", "--benchmark_runs=5"]


def _launch(wd, *extra, launcher=()):
  env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
  return subprocess.Popen([sys.executable, "-m", "pipeline.launch", "--workers=2", *launcher,
                           "--", *ARGS, f"--workdir={wd}", *extra], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _digest(text):
  return re.findall(r"final weights sha256 ([0-9a-f]{64})", text)


@pytest.mark.slow
def test_two_workers_train_in_lockstep_and_only_the_chief_writes(tmp_path):
  wd = tmp_path / "run"
  proc = _launch(wd, "--distill")  # The pruning's fine-tuning learns from the baseline.
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  report = json.loads((wd / "report.json").read_text())
  assert report["pruned"]["distill"]["teacher"] == "baseline"
  training = report["baseline"]["training"]
  assert (training["workers"], training["replicas"], training["per_replica_batch"]) == (2, 2, 64)
  assert training["sharding"] == "by data"
  assert abs(report["pruned"]["sparsity"] - 0.5) < 0.005
  assert all(e["gate"] == "ok" for e in report["exports"])
  worker_log = (tmp_path / "run.workers" / "worker-1.log").read_text()
  assert _digest(worker_log) == [training["final_weights_sha256"]]  # Equal weights.
  assert "worker 1: trained with the chief" in worker_log
  assert sorted(os.listdir(tmp_path)) == ["run", "run.workers"]  # One run directory.
  assert "Training: --strategy=multi_worker, 2 workers" in (wd / "report.md").read_text()


@pytest.mark.slow
def test_a_killed_worker_restarts_the_job_which_resumes(tmp_path):
  wd = tmp_path / "run"
  proc = _launch(wd, "--fine_tune_epochs=3", launcher=("--max_restarts=1",))
  backup = tmp_path / "run.incomplete" / "logs" / "prune" / "backup" / "restore" / "chief"
  t0 = time.monotonic()
  while not (backup / "checkpoint").exists():
    assert proc.poll() is None and time.monotonic() - t0 < 400, proc.stderr.read()[-3000:]
    time.sleep(0.05)
  pids = [int(p) for p in re.findall(r"\d+", subprocess.run(
      ["pgrep", "-f", f"workdir={wd}"], capture_output=True, text=True).stdout)]
  worker = [p for p in pids if "index\": 1" in open(f"/proc/{p}/environ").read()
            .replace("\0", "\n")]
  os.kill(worker[0], signal.SIGKILL)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert "a worker was lost; starting the job again (restart 1 of 1)" in err
  assert "resuming: 1 stage done (baseline), prune from epoch" in err
  report = json.loads((wd / "report.json").read_text())
  assert abs(report["pruned"]["sparsity"] - 0.5) < 0.005


@pytest.mark.parametrize("tf_config,why", [
    ("not json", "TF_CONFIG is not JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     'TF_CONFIG task index 3 is out of range: the cluster has 1 "worker" task(s), indices 0..0'),
    ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}',
     'TF_CONFIG names no chief: its "cluster" has no "chief" or "worker" tasks'),
])
def test_a_bad_tf_config_is_one_line_before_anything_loads(tmp_path, tf_config, why):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CONFIG=tf_config)
  t0 = time.monotonic()
  proc = subprocess.run([sys.executable, "-m", "pipeline.run", *ARGS, "--strategy=multi_worker",
                         f"--workdir={tmp_path / 'run'}"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: --strategy=multi_worker: {why}")
  assert time.monotonic() - t0 < 20 and not (tmp_path / "run").exists()
