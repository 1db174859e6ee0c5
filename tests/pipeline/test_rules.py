"""Tests for pipeline/rules.py: flags that do not go together fail with the flag and value at
fault, before TensorFlow loads."""

import os
import subprocess
import sys

import pytest

from conftest import REPO, small_config
from pipeline import rules
from pipeline.config import FlagError


@pytest.mark.parametrize("overrides, flag, value", [
    (dict(schedule="one_shot"), "schedule", "one_shot"),
    (dict(layer_rates="conv2:0.8"), "layer_rates", "conv2:0.8"),
    (dict(max_accuracy_drop=1.0), "max_accuracy_drop", "1"),
    (dict(target_speedup=2.0, structured_rate=0.3), "target_speedup", "2"),
    (dict(latency_table="t.json"), "latency_table", "t.json"),
    (dict(prune=True, pruning_criterion="obd"), "pruning_criterion", "obd"),
    (dict(prune=True, schedule="iterative", iterative_rounds=9, fine_tune_epochs=2),
     "iterative_rounds", 9),
    (dict(prune=True, sparsity_m_by_n="4,2"), "sparsity_m_by_n", "4,2"),
    (dict(prune=True, sparsity_m_by_n="2,4", block_size="1,4"), "sparsity_m_by_n", "2,4"),
    (dict(prune=True, layer_rates="auto", structured_rate=0.5), "layer_rates", "auto"),
    (dict(prune=True, layer_rates="auto", pruning_rate=0.99), "layer_rates", "auto"),
    (dict(prune=True, teacher_path="t.keras"), "teacher_path", "t.keras"),
    (dict(distill=True), "distill", True),
    (dict(prune=True, distill_alpha=0.9), "distill_alpha", "0.9"),
    (dict(distill=True, prune=True, schedule="one_shot", fine_tune_epochs=0), "distill", True),
    (dict(prune=True, quantize_aware=True, export_formats=("float32",)), "quantize_aware", True),
    (dict(quantize_aware=True), "quantize_aware", True),
    (dict(prune=True, cluster=8, schedule="one_shot", fine_tune_epochs=0), "cluster", 8),
    (dict(prune=True, cluster_per_channel=True), "cluster_per_channel", True),
    (dict(prune=True, qat_epochs=3), "qat_epochs", 3),
])
def test_a_bad_combination_names_its_flag_and_value(overrides, flag, value):
  with pytest.raises(FlagError) as e:
    rules.check(small_config(**overrides))
  assert (e.value.flag, e.value.value) == (flag, value)
  assert str(e.value).startswith(f"--{flag}={value}: ")


def test_good_combinations_pass():
  for cfg in (small_config(), small_config(prune=True, schedule="one_shot", pruning_criterion="obd"),
              small_config(prune=True, layer_rates="auto", pruning_rate=0.9),
              small_config(prune=True, sparsity_m_by_n="2,4"),
              small_config(structured_rate=0.5, distill=True, teacher_path="t.keras")):
    rules.check(cfg)


def test_paths_are_checked_without_touching_anything(tmp_path):
  blocker = tmp_path / "blocker"
  blocker.write_text("")
  for overrides, flag in ((dict(data_dir=str(tmp_path / "typo")), "data_dir"),
                          (dict(baseline_path=str(tmp_path / "m.keras")), "baseline_path"),
                          (dict(workdir=str(blocker / "run")), "workdir")):
    with pytest.raises(ValueError, match=f"^--{flag}={tmp_path}"):
      rules.check_paths(small_config(**overrides))
  assert sorted(os.listdir(tmp_path)) == ["blocker"]


def test_the_rules_and_flags_load_without_tensorflow():
  code = ("import sys; from pipeline import flags, rules; "
          "print(sorted(m for m in ('tensorflow', 'tf_keras', 'numpy') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=REPO), check=True).stdout
  assert out.strip() == "[]"


@pytest.mark.parametrize("overrides, text", [
    (dict(cluster=256), "--cluster=256: must be 0 (off) or 2..255"),
    (dict(cluster=1), "--cluster=1: must be 0 (off) or 2..255"),
    (dict(pruning_rate=1.0), "--pruning_rate=1.0: must be in [0, 1)"),
    (dict(schedule="cosine"), "--schedule=cosine: must be one of: polynomial, constant"),
    (dict(export_formats=("float32", "int4")), "--export_formats=float32,int4: must be a "
     "comma-separated list"),
])
def test_each_flags_value_rule_is_one_table_the_cli_and_the_api_share(overrides, text):
  with pytest.raises(FlagError) as e:
    rules.check_values(small_config(**overrides))
  assert str(e.value).startswith(text), str(e.value)
  rules.check_values(small_config())  # The defaults pass.
