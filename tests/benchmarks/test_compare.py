"""Tests for benchmarks/compare.py (make bench) on the smoke config, and the slow cross-check."""

import json

import pytest

from conftest import REPO, run_cli
from export import cpu


@pytest.mark.e2e
@pytest.mark.slow  # A benchmark (2+ minutes): `make bench` runs it for real; `pytest -m slow`.
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
  assert result["verdicts"][0].startswith("Row 2 (pruned_float32)")
  assert [v.split(")")[0] for v in result["verdicts"][1:]] == [
      "Row 3 (edge_dynamic_int8", "Row 3 (edge_int8"]
  assert mb["speedup_p10"] <= mb["speedup"] <= mb["speedup_p90"]
  assert mb["speedup_best_round"] == pytest.approx(mb["best_before_ms"] / mb["best_after_ms"])
  assert result["cpu_description"] == cpu.read().describe()
  assert all(r["gate"] == "ok" for r in result["rows"])
  md = (out / "compare.md").read_text()
  assert md.startswith(f"CPU: {cpu.read().describe()}.")
  assert "| 1. TF-MOT tutorial recipe | tfmot_tutorial_float32 |" in md
  assert "| 3. this pipeline, structured 50% + unstructured 80% | edge_int8 |" in md
  assert "MobileNetV2 (alpha 0.35, 96x96x3, 10 classes, random weights)" in md
  assert "MobileNetV2 half channels: MACs" in md and "equals the masked original" in md
  for png in ("accuracy_vs_gzip.png", "accuracy_vs_latency.png"):
    assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _edge_row(name, speedup, gzip_ratio, accuracy):
  """A row whose secondary figures all clear 4x while the paired median decides."""
  return {"name": name, "model": "edge", "format": name.split("_", 1)[1], "speedup": speedup,
          "speedup_p10": speedup - 0.3, "speedup_p90": speedup + 0.3,
          "speedup_best_round": 4.5, "speedup_p50": 4.2, "gzip_ratio": gzip_ratio,
          "test_accuracy": accuracy}


def test_verdicts_hold_row_3_to_the_issue_targets():
  from benchmarks import compare  # pylint: disable=g-import-not-at-top
  rows = [_edge_row("edge_float32", 9.0, 99.0, 0.90),  # Not int8: no verdict.
          _edge_row("edge_dynamic_int8", 4.01, 34.1, 0.9070),
          _edge_row("edge_int8", 3.99, 24.9, 0.8990)]
  v = compare.verdicts(rows, baseline_accuracy=0.9100)
  assert v == [
      "Row 3 (edge_dynamic_int8): 4.01x lower latency (paired median, p10-p90 3.71-4.31x; best "
      "round 4.50x, p50 4.20x) against >= 4x: met; gzip 34.1x smaller against >= 25x: met; "
      "accuracy -0.30 points against >= -1.0: met.",
      "Row 3 (edge_int8): 3.99x lower latency (paired median, p10-p90 3.69-4.29x; best round "
      "4.50x, p50 4.20x) against >= 4x: NOT met; gzip 24.9x smaller against >= 25x: NOT met; "
      "accuracy -1.10 points against >= -1.0: NOT met."]
  mb = {"macs_ratio": 0.56, "speedup": 1.61, "max_abs_diff_vs_masked": 0.0}
  assert compare.mobilenet_verdict(mb) == (
      "MobileNetV2 half channels: MACs 0.56x against <= 0.55x: NOT met; latency 1.61x lower "
      "(paired median) against >= 1.6x: met; equals the masked original to 0.0e+00 against < 1e-05: met.")


@pytest.mark.e2e
@pytest.mark.slow
def test_harness_agrees_with_litert_benchmark(tmp_path):
  proc = run_cli([f"--out_dir={tmp_path}", "--runs=100"], cwd=REPO,
                 module="benchmarks.crosscheck", timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
  result = json.loads((tmp_path / "crosscheck.json").read_text())
  assert result["litert_benchmark_median_ms"] >= 1.0  # Well above its 0.01 ms rounding.
  assert abs(result["ratio"] - 1) <= 0.25
