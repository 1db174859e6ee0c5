"""Tests for pipeline/unstructured/prune.py: schedule derivation, layer choice, sparsity reached,
strip."""

import dataclasses
import pathlib

import numpy as np
import pytest
import tf_keras as keras

from conftest import REPO, assert_message, small_config
from pipeline import data
from pipeline.planning import layer_rates
from pipeline.unstructured import prune
from pipeline.models import sparsity


def test_schedule_reaches_target_with_epochs_left_to_recover():
  cfg = small_config(fine_tune_epochs=6, batch_size=128)
  s = prune.schedule_steps(cfg, train_examples=3600)  # 29 steps an epoch, steps 1..174.
  assert s.steps_per_epoch == 29 and s.total_steps == 174
  assert (s.begin_step, s.frequency, s.end_step) == (0, 7, 112)  # A mask update at 112.
  assert s.target_epoch == 3  # Epochs 5 and 6 recover at full sparsity.


def test_schedule_single_epoch_and_given_steps():
  s = prune.schedule_steps(small_config(fine_tune_epochs=1), train_examples=1000)
  assert s.end_step == s.total_steps == 8 and s.target_epoch == 0
  s = prune.schedule_steps(small_config(pruning_begin_step=3, pruning_end_step=11,
                                        pruning_frequency=2), 1000)
  assert (s.begin_step, s.end_step, s.frequency) == (3, 11, 2)


@pytest.mark.parametrize("overrides,message", [
    (dict(pruning_end_step=500), ("--pruning_end_step=500:", "--batch_size=128", "1..20")),
    (dict(pruning_end_step=0), ("--pruning_end_step=0:", "--batch_size=128", "1..20")),
    (dict(pruning_begin_step=3, pruning_end_step=10, pruning_frequency=2),
     ("--pruning_end_step=10:", "--pruning_begin_step=3", "--pruning_frequency=2", "use 9")),
    (dict(pruning_begin_step=25, pruning_frequency=4),
     ("--pruning_begin_step=25 and --pruning_frequency=4:", "1..20", "--fine_tune_epochs")),
    (dict(pruning_frequency=40),
     ("--pruning_begin_step=0 and --pruning_frequency=40:", "1..20", "--fine_tune_epochs")),
])
def test_schedules_that_cannot_reach_the_target_are_refused(overrides, message):
  with pytest.raises(ValueError) as e:
    prune.schedule_steps(small_config(fine_tune_epochs=2, **overrides), train_examples=1280)
  assert_message(str(e.value), *message)


def test_one_step_an_epoch_still_reaches_the_target(trained_cnn, mnist_small, tmp_path):
  """45 training images in batches of 128 (--max_train_examples=50): 2 steps in all. The old
  0-based derivation ended on step 0, which never runs, and left the model dense."""
  tiny = dataclasses.replace(mnist_small, train=data.subset(mnist_small.train, np.arange(45)))
  cfg = small_config(prune=True, pruning_rate=0.5, fine_tune_epochs=2, batch_size=128)
  s = prune.schedule_steps(cfg, 45)
  assert (s.total_steps, s.end_step, s.frequency) == (2, 1, 1)
  rates = layer_rates.for_model(trained_cnn, cfg)
  result = prune.prune(trained_cnn, tiny, cfg, str(tmp_path), rates, s)
  assert sparsity.summarize(result.model, result.pruned_layers)["sparsity"] == pytest.approx(
      0.5, abs=0.01)


def test_prunable_layers_scopes(trained_cnn):
  assert prune.prunable_layers(trained_cnn, "all") == ["conv1", "conv2", "dense1", "classifier"]
  assert prune.prunable_layers(trained_cnn, "inner") == ["conv2", "dense1"]


@pytest.mark.parametrize("rate,scope", [(0.5, "all"), (0.9, "inner")])
def test_prune_reaches_target_and_leaves_baseline_alone(trained_cnn, mnist_small, tmp_path,
                                                        rate, scope):
  before = [w.copy() for w in trained_cnn.get_weights()]
  cfg = small_config(prune=True, pruning_rate=rate, pruning_scope=scope, fine_tune_epochs=2)
  rates = layer_rates.for_model(trained_cnn, cfg)
  result = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path), rates)
  stats = sparsity.summarize(result.model, result.pruned_layers)
  assert abs(stats["sparsity"] - rate) < 0.01
  for name in result.pruned_layers:
    assert abs(stats["layer_sparsity"][name] - rate) < 0.01
  unpruned = set(stats["layer_sparsity"]) - set(result.pruned_layers)
  assert all(stats["layer_sparsity"][n] < 0.01 for n in unpruned)
  assert stats["model_sparsity"] < stats["sparsity"]
  # Stripped: plain Keras layers only.
  assert {type(l).__name__ for l in result.model.layers} <= {
      "Rescaling", "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense"}
  for b, a in zip(before, trained_cnn.get_weights()):
    np.testing.assert_array_equal(a, b)  # Fine-tuning a copy, never the baseline.
  assert (tmp_path / "logs" / "prune").is_dir()


class _Scaled(keras.layers.Layer):
  """A custom layer with a kernel that TF-MOT's registry does not know."""

  def build(self, input_shape):
    self.kernel = self.add_weight("kernel", (input_shape[-1],))

  def call(self, x):
    return x * self.kernel


def test_prunable_layers_leave_out_what_prune_low_magnitude_refuses():
  inputs = keras.Input((8,))
  x = _Scaled(name="custom")(inputs)
  x = keras.layers.Dense(4, name="dense")(x)
  model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
  assert prune.prunable_layers(model, "all") == ["dense", "out"]


def test_only_tfmot_public_api_is_used():
  # A private import breaks silently on a TF-MOT upgrade; the public API does all we need.
  for root in ("pipeline", "export", "benchmarks"):
    for path in pathlib.Path(REPO, root).glob("*.py"):
      assert "tensorflow_model_optimization.python" not in path.read_text(), path
