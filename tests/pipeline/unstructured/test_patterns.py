"""N:M and block sparsity through TF-MOT's parameters, verified in the exported file."""

import numpy as np
import pytest

from conftest import assert_message, small_config
from export import tflite
from pipeline import job
from pipeline.unstructured import patterns
from pipeline.planning import layer_rates
from pipeline.report.rows import ExportRow
from pipeline.stages import measure
from pipeline.unstructured import prune

import tf_keras as keras  # pylint: disable=g-bad-import-order


def _export(model, path):
  path.write_bytes(tflite.convert(model, "float32"))
  return str(path)


def test_two_of_four_is_in_the_exported_file_and_a_dense_file_breaks_it(trained_cnn, mnist_small,
                                                                       tmp_path):
  cfg = small_config(prune=True, sparsity_m_by_n="2,4", pruning_rate=0.9, fine_tune_epochs=2)
  rates = layer_rates.for_model(trained_cnn, cfg)
  result = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path), rates)
  assert result.layer_rates == {"conv2": 0.5, "dense1": 0.5}  # M/N, not --pruning_rate.
  good = _export(result.model, tmp_path / "pruned.tflite")
  assert patterns.violations(good, ["conv2", "dense1"], cfg) == {"conv2": 0, "dense1": 0}
  dense = _export(trained_cnn, tmp_path / "dense.tflite")
  bad = patterns.violations(dense, ["conv2", "dense1"], cfg)
  assert bad["conv2"] == 64 * 3 * 3 * 32 // 4 and bad["dense1"] == 128 * 1600 // 4
  rows = [ExportRow(name="pruned_float32", path=dense, model="pruned", format="float32")]
  measure.check_patterns(rows, ["conv2", "dense1"], cfg)
  assert rows[0].gate == "FAILED" and rows[0].gate_reason.startswith(
      "2:4 (at least 2 zeros in every 4 consecutive input weights) broken in conv2 (4608 "
      "groups), dense1 (51200 groups)")


def test_blocks_prune_dense_layers_in_whole_blocks(trained_cnn, mnist_small, tmp_path):
  cfg = small_config(prune=True, block_size="1,4", pruning_rate=0.8, fine_tune_epochs=2)
  rates = layer_rates.for_model(trained_cnn, cfg)
  result = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path), rates)
  assert result.pruned_layers == ["dense1"] and result.layer_rates == {"dense1": 0.8}
  kernel = result.model.get_layer("dense1").kernel.numpy()
  tiles = kernel.reshape(1600, 32, 4)
  assert np.all(np.all(tiles == 0, -1) | np.all(tiles != 0, -1))  # Whole blocks only.
  path = _export(result.model, tmp_path / "pruned.tflite")
  assert patterns.violations(path, ["dense1"], cfg) == {"dense1": 0}
  assert patterns.violations(_export(trained_cnn, tmp_path / "d.tflite"), ["dense1"], cfg) == {
      "dense1": 0}  # Nothing zero: no block is half-pruned either.
  half = keras.models.clone_model(trained_cnn)
  half.set_weights(trained_cnn.get_weights())
  k = half.get_layer("dense1").kernel.numpy()
  k[0, 0] = 0  # One weight of one block.
  half.get_layer("dense1").kernel.assign(k)
  assert patterns.violations(_export(half, tmp_path / "h.tflite"), ["dense1"], cfg) == {
      "dense1": 1}


@pytest.mark.parametrize("overrides,message", [
    (dict(sparsity_m_by_n="4,2"), ("--sparsity_m_by_n=4,2:", "0 < M < N")),
    (dict(block_size="1"), ("--block_size=1:", "rows,columns")),
    (dict(sparsity_m_by_n="2,4", block_size="1,4"),
     ("--sparsity_m_by_n=2,4:", "--block_size", "--pruning_policy")),
    (dict(sparsity_m_by_n="2,4", schedule="one_shot", pruning_criterion="obs"),
     ("--sparsity_m_by_n=2,4:", "--schedule=polynomial", "--pruning_criterion=magnitude")),
    (dict(sparsity_m_by_n="2,4", max_accuracy_drop=0.5),
     ("--sparsity_m_by_n=2,4:", "--max_accuracy_drop=0.5")),
])
def test_bad_patterns_are_one_line_before_training(overrides, message):
  with pytest.raises(ValueError) as e:
    job.preflight(small_config(prune=True, **overrides))
  assert_message(str(e.value), *message)


def test_the_xnnpack_policy_prunes_the_1x1_convs_of_a_graph_that_qualifies(tmp_path):
  from pipeline.data import shapes  # pylint: disable=g-import-not-at-top
  from pipeline import data  # pylint: disable=g-import-not-at-top
  from pipeline.models import architectures as models
  folder = shapes.write_folder(str(tmp_path / "photos"), shapes.CLASSES[:3], 20, 40)
  cfg = small_config(dataset="folder", data_dir=folder, model="sparse_mobilenet", alpha=0.25,
                     prune=True, pruning_rate=0.8, pruning_policy="xnnpack", fine_tune_epochs=2)
  ds = data.load_dataset(cfg)
  model = models.build_model(cfg, ds.input_shape, ds.num_classes)
  assert patterns.qualifies(model) == (True, "")
  result = prune.prune(model, ds, cfg, str(tmp_path / "run"), layer_rates.for_model(model, cfg))
  assert result.pruned_layers == [f"block{i}_pw" for i in range(1, 6)]
  for layer in result.model.layers:
    kernel = getattr(layer, "kernel", None)
    if kernel is None or type(layer).__name__ == "DepthwiseConv2D":
      continue
    zeros = float(np.mean(kernel.numpy() == 0))
    assert (abs(zeros - 0.8) < 0.01) == (layer.name in result.pruned_layers), layer.name
  # small_cnn does not qualify: refused before any training, with TF-MOT's reason.
  with pytest.raises(ValueError) as e:
    job.preflight(small_config(prune=True, pruning_policy="xnnpack"))
  assert str(e.value).startswith(
      "--pruning_policy=xnnpack: small_cnn does not qualify for XNNPACK's sparse inference "
      "(Could not find `Conv2D 3x3` layer with stride 2x2")
  assert str(e.value).endswith("; --model=sparse_mobilenet does")
