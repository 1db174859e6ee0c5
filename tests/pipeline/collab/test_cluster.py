"""Tests for pipeline/collab/cluster.py: clustering keeps pruning's zeros and leaves at most N
distinct values per kernel (per channel with --cluster_per_channel), in Keras and in the
float32 and int8 files."""

import numpy as np
import pytest

from conftest import first, replace, small_config
from export import graph, tflite
from pipeline.collab import cluster
from pipeline.config import FlagError
from pipeline.models import sparsity

LAYERS = ["conv2", "dense1"]  # The pruning scope of small_cnn: pruned_cnn's 80% layers.


def _per_channel_distinct(values: np.ndarray, shape) -> int:
  """The most distinct values of any output channel of a file's kernel ([out, ...])."""
  return max(int(np.unique(r).size) for r in values.reshape(shape[0], -1))


@pytest.mark.parametrize("per_channel", [False, True])
def test_clustering_keeps_zeros_and_n_values_in_keras_and_in_the_files(
    pruned_cnn, mnist_small, tmp_path, per_channel):
  cfg = small_config(prune=True, cluster=8, cluster_per_channel=per_channel, cluster_epochs=1)
  before = {n: sparsity.kernel_of(pruned_cnn.get_layer(n)) for n in LAYERS}
  result = cluster.cluster(pruned_cnn, mnist_small, cfg, str(tmp_path))
  assert result.layers == LAYERS and "classifier" not in result.layers
  for name in LAYERS:
    k = sparsity.kernel_of(result.model.get_layer(name))
    assert np.all(k[before[name] == 0] == 0)  # Pruning's zeros kept (a centroid may be 0 too).
    assert cluster.distinct(k, per_channel) <= 8
  if not per_channel:  # Per channel, a kernel holds up to 8 values in each channel.
    assert cluster.describe(result.model, LAYERS, False)["conv2"]["distinct"] <= 8
  rep = first(mnist_small.train, 50)
  for fmt in ("float32", "int8"):
    g = graph.read(tflite.convert(result.model, fmt, representative=rep), LAYERS)
    for layer in (l for l in g.layers if l.name in LAYERS):
      assert layer.sparsity >= 0.8 - 1e-3, (fmt, layer.name)
      if fmt == "float32" and not per_channel:
        assert np.unique(layer.values).size <= 8, layer.name
      else:  # int8 scales each output channel: at most 8 integers in each.
        assert _per_channel_distinct(layer.values, layer.shape) <= 8, (fmt, layer.name)


def test_what_cannot_be_clustered_is_named(pruned_cnn):
  chosen, skipped = cluster.choose(pruned_cnn, small_config(prune=True, cluster=8,
                                                            pruning_scope="all"))
  assert chosen == ["conv1", "conv2", "dense1", "classifier"] and not skipped
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  depthwise = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 1, name="first"),
                                keras.layers.DepthwiseConv2D(3, name="dw"),
                                keras.layers.GlobalAveragePooling2D(),
                                keras.layers.Dense(2, name="classifier")])
  with pytest.raises(FlagError) as e:
    cluster.check(depthwise, small_config(prune=True, cluster=8))
  assert str(e.value) == ("--cluster=8: the model has nothing to cluster (dw: TF-MOT cannot "
                          "cluster a DepthwiseConv2D (TF-MOT #1132))")
  cluster.check(depthwise, replace(small_config(prune=True), cluster=0))  # Off: no check.
