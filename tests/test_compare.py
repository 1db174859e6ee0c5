"""Tests for benchmarks/compare.py (make bench) on the smoke config, and the slow cross-check."""

import json

import pytest

from conftest import REPO, run_cli


def test_compare_runs_every_recipe_and_writes_table_json_charts(tmp_path):
  out = tmp_path / "bench"
  proc = run_cli(["--flagfile=configs/smoke.flags", "--pruning_rate=0.9", f"--out_dir={out}"],
                 cwd=REPO, module="benchmarks.compare")
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((out / "compare.json").read_text())
  names = [r["name"] for r in result["rows"]]
  assert names[:2] == ["baseline_float32", "tfmot_tutorial_float32"]
  assert {f"pruned_{f}{s}" for f in ("float32", "float16", "dynamic_int8", "int8")
          for s in ("", "_sparse")} <= set(names)
  by = {r["name"]: r for r in result["rows"]}
  # The tutorial recipe prunes every layer towards 80%, ours the inner layers to 90%.
  assert 0.6 < by["tfmot_tutorial_float32"]["sparsity"] <= 0.81
  assert by["tfmot_tutorial_float32"]["layer_sparsity"]["conv1"] > 0.5
  assert abs(by["pruned_float32"]["sparsity"] - 0.9) < 0.01
  # Row 3: half the channels removed for real, then 80% of what remains pruned.
  assert by["edge_float32"]["macs"] < 0.3 * by["baseline_float32"]["macs"]
  assert abs(by["edge_float32"]["sparsity"] - 0.8) < 0.01
  assert {"edge_float32", "edge_dynamic_int8", "edge_int8"} <= set(by)
  mb = result["mobilenet_v2"]
  assert mb["macs_ratio"] <= 0.55 and mb["max_abs_diff_vs_masked"] < 1e-5
  assert mb["coupled_groups"] >= 1 and mb["p50_after_ms"] > 0
  assert result["recipes"]["tfmot_tutorial"]["initial_sparsity"] == 0.5
  assert result["verdicts"] and result["verdicts"][0].startswith("Row 2 (pruned_float32)")
  md = (out / "compare.md").read_text()
  assert "| 1. TF-MOT tutorial recipe | tfmot_tutorial_float32 |" in md
  assert "| 3. this pipeline, structured 50% + unstructured 80% | edge_int8 |" in md
  assert "MobileNetV2 (alpha 0.35, 96x96x3, 10 classes, random weights)" in md
  for png in ("accuracy_vs_gzip.png", "accuracy_vs_latency.png"):
    assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_harness_agrees_with_litert_benchmark(tmp_path):
  proc = run_cli([f"--out_dir={tmp_path}", "--runs=100"], cwd=REPO,
                 module="benchmarks.crosscheck", timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
  result = json.loads((tmp_path / "crosscheck.json").read_text())
  assert result["litert_benchmark_median_ms"] >= 1.0  # Well above its 0.01 ms rounding.
  assert abs(result["ratio"] - 1) <= 0.25
