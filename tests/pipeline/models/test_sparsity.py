"""Tests for pipeline/models/sparsity.py: the one weight pruning acts on, and zeros counted."""

import numpy as np
import tf_keras as keras

from pipeline.models import sparsity


def test_the_weight_pruning_acts_on_is_tf_mots_choice_for_each_kind_of_layer():
  sep = keras.layers.SeparableConv2D(8, 3)
  sep.build((None, 8, 8, 4))
  assert sparsity.pruned_weight(sep) is sep.pointwise_kernel
  dense = keras.layers.Dense(3)
  dense.build((None, 4))
  assert sparsity.pruned_weight(dense) is dense.kernel
  depthwise = keras.layers.DepthwiseConv2D(3)
  depthwise.build((None, 8, 8, 4))
  assert sparsity.pruned_weight(depthwise) is depthwise.depthwise_kernel
  assert sparsity.pruned_weight(keras.layers.ReLU()) is None


def test_zeros_are_counted_per_kernel_and_over_the_pruned_layers():
  dense = keras.layers.Dense(4, name="d")
  inp = keras.Input((4,))
  model = keras.Model(inp, keras.layers.Dense(2, name="out")(dense(inp)))
  k = np.ones((4, 4), np.float32)
  k[:3] = 0.0  # 12 of 16 zeros.
  dense.set_weights([k, np.zeros(4, np.float32)])
  assert sparsity.layer_sparsity(model)["d"] == 0.75
  summary = sparsity.summarize(model, ["d"])
  assert summary["sparsity"] == 0.75
  assert 0 < summary["model_sparsity"] < 0.75  # The other layer's weights and biases count.


def test_geometric_steps_remove_the_same_share_of_what_is_left():
  assert abs(sparsity.after_steps(0.75, 1, 2) - 0.5) < 1e-12  # Half, then half of the half.
  assert abs(sparsity.after_steps(0.75, 2, 2) - 0.75) < 1e-12
