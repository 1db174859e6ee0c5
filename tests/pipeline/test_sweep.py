"""Tests for the sweep (pipeline/sweep.py, sweep_job.py) and its Pareto frontier."""

import json
import os

import pytest

from conftest import REPO, assert_message, run_cli
from pipeline.planning import pareto


def test_frontier_keeps_the_points_nothing_beats():
  # (size, accuracy): 3 is beaten by 1 (smaller and more accurate); 4 ties 2 on size, less acc.
  sizes = [10.0, 4.0, 6.0, 5.0, 6.0]
  accs = [0.99, 0.90, 0.97, 0.85, 0.95]
  assert pareto.frontier(sizes, accs) == [1, 2, 0]


@pytest.mark.e2e
def test_sweep_runs_each_rate_once_times_all_files_together_and_resumes(tmp_path):
  wd = tmp_path / "sweep"
  args = ["--flagfile=configs/smoke.flags", "--max_train_examples=300", "--rates=0.5,0.8",
          "--export_formats=float32", "--distill",
          "--benchmark_runs=200", f"--workdir={wd}"]
  proc = run_cli(args, cwd=REPO, module="pipeline.sweep")
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((wd / "sweep.json").read_text())
  rows = {(r["point"], r["name"]): r for r in result["rows"]}
  assert set(rows) == {("baseline", "baseline_float32")} | {
      (p, f) for p in ("s0_u0.5", "s0_u0.8") for f in ("pruned_float32", "pruned_float32_sparse")}
  assert abs(rows["s0_u0.5", "pruned_float32"]["sparsity"] - 0.5) < 0.01
  assert abs(rows["s0_u0.8", "pruned_float32"]["sparsity"] - 0.8) < 0.01
  # One baseline: every point loaded the same file.
  for point in ("s0_u0.5", "s0_u0.8"):
    config = json.loads((wd / point / "config.json").read_text())
    assert config["baseline_path"] == str(wd / "baseline" / "baseline.keras")
    # Every point's fine-tuning learned from the sweep's baseline (--distill).
    report = json.loads((wd / point / "report.json").read_text())
    assert report["pruned"]["distill"]["teacher"] == "baseline"
    assert report["pruned"]["distill"]["teacher_outputs"].startswith("computed once")
    # Its flags.txt is a pipeline.run flagfile for that point alone.
    text = (wd / point / "flags.txt").read_text()
    assert "--rates=" not in text
    assert text.endswith(f"--workdir={wd / point}\n--benchmark_runs=100\n")
  for r in result["rows"]:  # Paired ratios from one timing: the median lies in its spread.
    assert r["speedup_p10"] <= r["speedup"] <= r["speedup_p90"]
  marked = [i for i, r in enumerate(result["rows"]) if r["pareto_size"]]
  assert marked == sorted(pareto.frontier([r["gzip_bytes"] for r in result["rows"]],
                                          [r["test_accuracy"] for r in result["rows"]]))
  md = (wd / "sweep.md").read_text()
  assert "| s0_u0.8 | pruned_float32 | 80.0% |" in md
  assert "Which file to ship, on this CPU" in md
  for png in ("accuracy_vs_gzip.png", "accuracy_vs_latency.png"):
    assert (wd / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  again = run_cli(args, cwd=REPO, module="pipeline.sweep")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "== point 2/2: unstructured 80%: finished before" in again.stderr
  assert "== baseline: finished before" in again.stderr

  other = run_cli(args + ["--epochs=2"], cwd=REPO, module="pipeline.sweep")
  assert other.returncode == 2
  assert_message(other.stderr.strip().splitlines()[-1], f"error: --workdir={wd}:", "epochs",
                 "--overwrite")


@pytest.mark.e2e
def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
  proc = run_cli(["--flagfile=configs/smoke.flags", "--rates=0.5,1.2",
                  f"--workdir={tmp_path}/s"], cwd=REPO, module="pipeline.sweep")
  assert proc.returncode == 2
  assert_message(proc.stderr.strip().splitlines()[-1], "error: --rates=0.5,1.2:", "'1.2'",
                 "[0, 1)")
  assert not (tmp_path / "s").exists()
  # A folder of other things is never taken over, not even with --overwrite.
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("keep me")
  proc = run_cli(["--flagfile=configs/smoke.flags", "--rates=0.5", "--overwrite",
                  f"--workdir={tmp_path}/mine"], cwd=REPO, module="pipeline.sweep")
  assert proc.returncode == 2
  assert_message(proc.stderr.strip().splitlines()[-1], f"error: --workdir={tmp_path}/mine:",
                 "not a sweep", "sweep_config.json")
  assert os.listdir(tmp_path / "mine") == ["notes.txt"]
  proc = run_cli(["--flagfile=configs/smoke.flags", "--rates=0.5", "--target_speedup=3",
                  f"--workdir={tmp_path}/t"], cwd=REPO, module="pipeline.sweep")
  assert proc.returncode == 2
  assert_message(proc.stderr.strip().splitlines()[-1], "error: --target_speedup=3:",
                 "python -m pipeline.run")
  assert not (tmp_path / "t").exists()
