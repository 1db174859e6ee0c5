"""Tests for pipeline/report/: relative paths, changes against the baseline, a readable table."""

import json

from conftest import sample_report
from pipeline import report


def test_build_makes_paths_relative_and_changes_signed(tmp_path):
  r = sample_report(tmp_path)
  e = r["exports"][0]
  assert e["path"] == "tflite/p.tflite"
  assert abs(e["accuracy_change"] - (0.95 - 0.968)) < 1e-12
  assert abs(r["pruned"]["accuracy_change"] - 0.003) < 1e-12
  json.dumps(r)  # Serialisable as is.


def test_markdown_rows_and_fallback_note(tmp_path):
  md = report.to_markdown(sample_report(tmp_path))
  assert ("| pruned_int8_sparse | ok | 95.00% | -1.80 | 90.00% | 82,176 | 56,905 | 14.67x "
          "| 0.1657 | 0.58x (0.51-0.63) | 0.1502 | 3/50 | 0.44M of 2.63M | builtin (fallback) |"
          ) in md
  assert "CPU: AMD EPYC (x86_64, 2 cores; AVX, AVX2, FMA; no AVX-512F). Latency" in md
  r = sample_report(tmp_path)
  r["exports"].insert(0, dict(r["exports"][0], name="baseline_float32", macs=5_262_080))
  assert "| 0.44M of 2.63M (0.50x) |" in report.to_markdown(r)
  assert "| pruned (Keras) | | 97.10% | +0.30 | 90.00% |" in md
  assert "FAILED" not in md
  assert "- pruned_int8_sparse: XNNPACK failed to prepare: node #8" in md
  assert "(conv2, dense1); over all weights: 89.00%" in md
  assert ("Parameters: baseline 225,034, pruned 56,714 (0.25x); MACs per inference: baseline "
          "2.63M, pruned 0.70M (0.27x).") in md


def test_write_is_atomic_and_complete(tmp_path):
  paths = report.write(sample_report(tmp_path), str(tmp_path))
  assert json.loads(open(paths[0]).read())["dataset"]["test_examples"] == 1000
  assert open(paths[1]).read().startswith("# Pruning report: small_cnn on mnist")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


def test_markdown_says_which_kernels_could_skip_zeros(tmp_path):
  r = sample_report(tmp_path)
  common = ["this CPU has AVX", "no 1x1 convolutions"]
  r["exports"][0]["sparse_kernel_blockers"] = common + ["weights are not float32/float16"]
  r["exports"].append(dict(r["exports"][0], name="pruned_float32_sparse",
                           sparse_kernel_blockers=list(common)))
  md = report.to_markdown(r)
  assert "Can any kernel skip the zero weights on this machine? No:" in md
  assert ("XNNPACK's sparse inference is ruled out here because: this CPU has AVX; no 1x1 "
          "convolutions.") in md
  assert "- pruned_int8_sparse, also: weights are not float32/float16." in md
  r["exports"][1]["sparse_kernel_blockers"] = []
  assert "XNNPACK's sparse kernels can, for pruned_float32_sparse." in report.to_markdown(r)


def test_a_failed_gate_is_marked_with_its_reason(tmp_path):
  r = sample_report(tmp_path)
  r["exports"][0].update(gate="FAILED", gate_reason="test accuracy 12.00% is -84.80 points "
                         "from Keras' 96.80% (bound 1)")
  md = report.to_markdown(r)
  assert "| pruned_int8_sparse | FAILED | 95.00% |" in md
  assert ("- FAILED pruned_int8_sparse: test accuracy 12.00% is -84.80 points from Keras' "
          "96.80% (bound 1)") in md


def _structured(scope, groups):
  return {"rate": 0.5, "criterion": "taylor", "scope": scope,
          "steps": [{"max_abs_diff_vs_masked": 3e-9, "groups": groups}],
          "skipped": {"classifier": "it is the model's output (the classifier is never pruned)"}}


def test_structured_pruning_reports_what_was_removed_per_group(tmp_path):
  r = sample_report(tmp_path)
  r["pruned"]["structured"] = _structured("per_layer", {"conv1": [32, 16], "conv2": [64, 32]})
  md = report.to_markdown(r)
  assert ("Structured pruning (taylor, per_layer: the same fraction of every prunable group; 1 "
          "step(s)) removed 48 of 96 channels (50%; asked 50%); 2 group(s) pruned, 1 producer(s) "
          "left whole; before fine-tuning, the smaller model matched the masked original to "
          "3.0e-09. Channels kept per group: conv1 16/32, conv2 32/64.") in md
  assert "- left whole: classifier: it is the model's output (the classifier is never pruned)" in md
  r["pruned"]["structured"].update(channel_multiple=8, test_accuracy=0.9512)
  assert ("the same fraction of every prunable group; kept counts rounded to the nearest multiple "
          "of 8, the channel tile of XNNPACK's float kernels; 1 step(s))") in report.to_markdown(r)
  assert ("After structured pruning and its fine-tuning, before anything else: test accuracy "
          "95.12%.") in report.to_markdown(r)


def test_global_scope_is_not_described_as_the_same_fraction_per_group(tmp_path):
  r = sample_report(tmp_path)
  r["pruned"]["structured"] = dict(_structured("global", {"conv1": [32, 28], "conv2": [64, 20]}),
                                   steps=[{"max_abs_diff_vs_masked": 1e-9,
                                           "groups": {"conv1": [32, 30], "conv2": [64, 40]}},
                                          {"max_abs_diff_vs_masked": 7e-9,
                                           "groups": {"conv1": [30, 28], "conv2": [40, 20]}}])
  md = report.to_markdown(r)
  assert "the same fraction" not in md and "of each prunable group" not in md
  assert ("global: one threshold over channel scores normalised by their group's mean, so "
          "groups lose different fractions; 2 step(s)) removed 48 of 96 channels (50%; asked "
          "50%)") in md
  assert "Channels kept per group: conv1 28/32, conv2 20/64." in md
  assert "matched the masked original to 7.0e-09" in md


def test_approximate_folding_is_reported_with_its_deviation(tmp_path):
  r = sample_report(tmp_path)
  st = _structured("per_layer", {"conv1": [32, 16], "conv2": [64, 32]})
  st["steps"][0].update(max_abs_diff_vs_masked=0.031, approximate_groups=["conv1"])
  st.update(fold="approximate", fold_reason="auto: exact folding would leave 16 of 17 "
            "prunable groups whole")
  r["pruned"]["structured"] = st
  md = report.to_markdown(r)
  assert ("folding was approximate (auto: exact folding would leave 16 of 17 prunable groups "
          "whole): 1 group(s) had a BatchNorm constant that meets zero padding folded as in the "
          "image's interior, so before fine-tuning the smaller model deviated from the masked "
          "original by up to 3.1e-02 (at image borders); fine-tuning absorbs it") in md


def test_per_layer_rates_are_listed_with_what_each_layer_reached(tmp_path):
  r = sample_report(tmp_path)
  r["config"]["layer_rates"] = "conv2:0.8"
  r["pruned"].update(layer_rates={"conv2": 0.8, "dense1": 0.5},
                     layer_sparsity={"conv2": 0.7996, "dense1": 0.5})
  assert ("Per-layer rates asked (--layer_rates=conv2:0.8): conv2 80% (reached 79.96%), dense1 "
          "50% (reached 50.00%).") in report.to_markdown(r)


def test_a_baseline_at_chance_is_called_out_and_a_loaded_model_is_named(tmp_path):
  r = sample_report(tmp_path)
  assert "near chance" not in report.to_markdown(r)  # 96.8% on 10 classes.
  r["baseline"]["test_accuracy"] = 0.11
  r["config"]["baseline_path"] = "/home/me/models/my_mobilenet.keras"
  md = report.to_markdown(r)
  assert md.startswith("# Pruning report: my_mobilenet.keras on mnist\n\nWARNING: the baseline's "
                       "test accuracy, 11.00%, is near chance (10%: always answering the "
                       "largest class)")
  assert md.rstrip().endswith("so this recommendation means little.)")  # The ship lines' too.


def test_keras3_lines_name_the_check_and_the_file():
  from pipeline.report import sections as report_sections  # pylint: disable=g-import-not-at-top
  assert report_sections.keras3_lines(None, None) == []
  lines = report_sections.keras3_lines(
      {"layers": 12, "max_diff": 3.6e-5, "images": 64, "tolerance": 1e-3,
       "mixed_precision": "mixed_float16"},
      {"path": "pruned_keras3.keras", "of": "pruned.keras", "max_diff": 0.0, "images": 64})
  assert lines[0].startswith("Keras 3 model translated: 12 layers, max |diff| 3.6e-05")
  assert "a mixed_float16 model against its float32 copy, so checked to 0.001" in lines[0]
  assert lines[1].startswith("Keras 3 file: pruned_keras3.keras (pruned.keras rebuilt")


def test_the_report_says_how_distillation_taught_and_which_file_to_ship(tmp_path):
  r = sample_report(tmp_path)
  md = report.to_markdown(r)
  assert "Distillation: not used" in md
  assert "Which file to ship, on this CPU (AMD EPYC" in md
  assert "- none qualifies: the most accurate, pruned_int8_sparse, is -1.80 points" in md
  r["exports"][0]["accuracy_change"] = -0.005
  md = report.to_markdown(r)
  assert ("- fastest: baseline_float32 itself: no other file within the bound is faster here "
          "(the closest, pruned_int8_sparse: 0.58x the speed of baseline_float32") in md
  r["pruned"]["distill"] = {"teacher": "baseline", "alpha": 0.7, "temperature": 4.0,
                                 "teacher_outputs": "computed once for the 540 training images"}
  md = report.to_markdown(r)
  assert ("every fine-tuning learned from the baseline, loss = 0.7 * T^2 * KL(teacher/T || "
          "student/T) + 0.3 * cross-entropy, T = 4; teacher outputs: computed once") in md
