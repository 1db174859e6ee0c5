"""Tests for export/graph.py: stored sparsity read back from .tflite files, MACs, sparse kernels."""

import numpy as np
import pytest

from conftest import first
from export import graph, tflite, verify
from pipeline import data
from pipeline.models import sparsity


@pytest.fixture(scope="module")
def pruned(pruned_cnn):
  return pruned_cnn


def test_macs_of_small_cnn(trained_cnn):
  g = graph.read(tflite.convert(trained_cnn, "float32"), ["conv1", "conv2", "dense1", "classifier"])
  assert [(l.name, l.op, l.macs) for l in g.layers] == [
      ("conv1", "CONV_2D", 26 * 26 * 32 * 9),
      ("conv2", "CONV_2D", 11 * 11 * 64 * 9 * 32),
      ("dense1", "FULLY_CONNECTED", 1600 * 128),
      ("classifier", "FULLY_CONNECTED", 128 * 10)]
  assert g.effective_macs == pytest.approx(g.macs, rel=1e-3)


@pytest.mark.parametrize("fmt", ["float32", "float16", "dynamic_int8", "int8"])
@pytest.mark.parametrize("sparse", [False, True])
def test_stored_sparsity_matches_keras_for_every_encoding(pruned, mnist_small, fmt, sparse,
                                                          tmp_path):
  rep = first(mnist_small.train, 50)
  path = tmp_path / "m.tflite"
  path.write_bytes(tflite.convert(pruned, fmt, sparse, rep))
  export = tflite.Export("m", str(path), "pruned", fmt, sparse)
  kernels = sparsity.kernels(pruned)
  g, reason = verify.stored_sparsity(export, kernels)
  assert reason is None
  by_name = {l.name: l for l in g.layers}
  for name in ("conv2", "dense1"):  # Read from the file, against the Keras kernel's own zeros.
    assert by_name[name].sparsity == pytest.approx(verify.expected_zeros(kernels[name],
                                                                         by_name[name]), abs=0.01)
    assert by_name[name].sparsity >= 0.74
  # Random sparsity is encoded sparsely in the file only for the layers that were pruned.
  assert by_name["dense1"].sparse_encoded == sparse
  assert not by_name["conv1"].sparse_encoded
  assert g.effective_macs < 0.4 * g.macs


def test_stored_sparsity_mismatch_is_an_error(pruned, trained_cnn, mnist_small, tmp_path):
  path = tmp_path / "dense.tflite"
  path.write_bytes(tflite.convert(trained_cnn, "float32"))
  export = tflite.Export("dense", str(path), "pruned", "float32", False)
  g, reason = verify.stored_sparsity(export, sparsity.kernels(pruned))
  assert reason.startswith("layer conv2 stores 0.00% zeros, its Keras kernel implies 80")
  assert [l.name for l in g.layers] == ["conv1", "conv2", "dense1", "classifier"]
  same = tflite.Export("pruned", str(tmp_path / "p.tflite"), "pruned", "float32", False)
  (tmp_path / "p.tflite").write_bytes(tflite.convert(pruned, "float32"))
  assert verify.stored_sparsity(same, sparsity.kernels(pruned))[1] is None
  # Quantized: the pruned zeros must all be there (rounding may add more, never fewer).
  (tmp_path / "d8.tflite").write_bytes(tflite.convert(trained_cnn, "int8",
                                                      representative=first(mnist_small.train, 50)))
  dense8 = tflite.Export("d8", str(tmp_path / "d8.tflite"), "pruned", "int8", False)
  reason = verify.stored_sparsity(dense8, sparsity.kernels(pruned))[1]
  assert reason.startswith("layer conv2 stores ") and ", fewer than the 80" in reason


def test_int8_zeros_from_rounding_are_expected_not_errors():
  layer = graph.Layer("CONV_2D", "c", 4, 2, False, "int8", 0, (1, 1, 1, 4), scales=(0.1,))
  kernel = np.array([0.0, 0.04, 0.06, 1.0], np.float32)  # 0.04 rounds to 0 at scale 0.1.
  assert verify.expected_zeros(kernel, layer) == 0.5
  float_layer = graph.Layer("CONV_2D", "c", 4, 1, False, "float32", 0, (1, 1, 1, 4))
  assert verify.expected_zeros(kernel, float_layer) == 0.25


def test_sparse_inference_blockers_on_this_kind_of_model(pruned):
  g = graph.read(tflite.convert(pruned, "float32", sparse=True))
  reasons = graph.sparse_inference_blockers(g, has_avx=True)
  assert reasons == ["this CPU has AVX", "no 1x1 convolutions",
                     "graph does not start with a 3x3 conv on 3 channels and end in a mean"]
  assert "weights are not float32/float16" not in reasons


def test_the_first_conv_must_be_padded_as_xnnpacks_sparse_path_wants():
  import tf_keras as keras  # pylint: disable=g-import-not-at-top

  def model(pad):
    inp = keras.Input((32, 32, 3))
    x = keras.layers.ZeroPadding2D(1)(inp) if pad else inp
    x = keras.layers.Conv2D(8, 3, strides=2, padding="valid" if pad else "same")(x)
    x = keras.layers.Conv2D(16, 1)(x)
    return keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))

  why = ("the first 3x3 conv is not stride 2 with explicit padding (ZeroPadding2D(1) then "
         "padding='valid')")
  same = graph.read(tflite.convert(model(False), "float32"))
  assert same.layers[0].strides == (2, 2) and same.layers[0].padding == "SAME"
  assert why in graph.sparse_inference_blockers(same, has_avx=False)
  padded = graph.sparse_inference_blockers(graph.read(tflite.convert(model(True), "float32")),
                                           has_avx=False)
  assert why not in padded and padded == ["under 2/3 of the 1x1-conv weights are zero"]



def test_a_sparse_last_layer_without_activation_is_named():
  """A logit head's sparse-encoded kernel is named after the model's output in the file
  ('StatefulPartitionedCall:01'); its layer is found from its bias tensor, or, with no bias
  left (all zero), from its position among the weighted layers."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6, name="hidden"),
                            keras.layers.Dense(4, name="logits")])
  kernel, _ = model.get_layer("logits").get_weights()
  kernel[np.arange(kernel.size).reshape(kernel.shape) % 10 != 0] = 0.0  # 90% zeros.
  for bias in (np.full(4, 0.5, np.float32), np.zeros(4, np.float32)):
    model.get_layer("logits").set_weights([kernel, bias])
    g = graph.read(tflite.convert(model, "float32", sparse=True), ["hidden", "logits"])
    assert [(l.name, l.sparsity) for l in g.layers] == [("hidden", 0.0), ("logits", 0.875)]
