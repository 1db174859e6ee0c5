"""Tests for pipeline/prune.py: schedule derivation, layer choice, sparsity reached, strip."""

import numpy as np
import pytest

from conftest import small_config
from pipeline import prune, sparsity


def test_schedule_reaches_target_with_epochs_left_to_recover():
  cfg = small_config(fine_tune_epochs=6, batch_size=128)
  s = prune.schedule_steps(cfg, train_examples=3600)  # 29 steps an epoch.
  assert s.steps_per_epoch == 29 and s.total_steps == 174
  assert s.begin_step == 0 and s.frequency == 7
  assert (s.end_step - s.begin_step) % s.frequency == 0  # Masks update on the end step itself.
  assert s.target_epoch == 3  # Epochs 5 and 6 recover at full sparsity.
  assert s.end_step < 4 * 29


def test_schedule_single_epoch_and_given_steps():
  s = prune.schedule_steps(small_config(fine_tune_epochs=1), train_examples=1000)
  assert s.end_step < s.total_steps == 8
  s = prune.schedule_steps(small_config(pruning_begin_step=3, pruning_end_step=10,
                                        pruning_frequency=2), 1000)
  assert (s.begin_step, s.end_step, s.frequency) == (3, 10, 2)


def test_schedule_end_past_training_is_refused():
  cfg = small_config(fine_tune_epochs=2, pruning_end_step=500)
  with pytest.raises(ValueError) as e:
    prune.schedule_steps(cfg, train_examples=1280)
  assert str(e.value) == ("--pruning_begin_step=0 and --pruning_end_step=500: need 0 <= begin "
                          "<= end < 20 (the fine-tuning steps: 2 epochs x 10)")


def test_prunable_layers_scopes(trained_cnn):
  assert prune.prunable_layers(trained_cnn, "all") == ["conv1", "conv2", "dense1", "classifier"]
  assert prune.prunable_layers(trained_cnn, "inner") == ["conv2", "dense1"]


@pytest.mark.parametrize("rate,scope", [(0.5, "all"), (0.9, "inner")])
def test_prune_reaches_target_and_leaves_baseline_alone(trained_cnn, mnist_small, tmp_path,
                                                        rate, scope):
  before = [w.copy() for w in trained_cnn.get_weights()]
  cfg = small_config(prune=True, pruning_rate=rate, pruning_scope=scope, fine_tune_epochs=2)
  result = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path))
  stats = sparsity.summarize(result.model, result.pruned_layers)
  assert abs(stats["sparsity"] - rate) < 0.01
  for name in result.pruned_layers:
    assert abs(stats["layer_sparsity"][name] - rate) < 0.01
  unpruned = set(stats["layer_sparsity"]) - set(result.pruned_layers)
  assert all(stats["layer_sparsity"][n] < 0.01 for n in unpruned)
  assert stats["model_sparsity"] < stats["sparsity"]
  # Stripped: plain Keras layers only.
  assert {type(l).__name__ for l in result.model.layers} <= {
      "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense"}
  for b, a in zip(before, trained_cnn.get_weights()):
    np.testing.assert_array_equal(a, b)  # Fine-tuning a copy, never the baseline.
  assert (tmp_path / "logs" / "prune").is_dir()
