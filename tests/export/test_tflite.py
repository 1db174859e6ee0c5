"""Tests for export/tflite.py and export/verify.py: each format converts, runs and matches Keras."""

import numpy as np
import pytest

from conftest import first
from export import gates, head, litert, tflite, verify
from pipeline import data
from pipeline.stages import measure


@pytest.fixture(scope="module")
def x_test(mnist_small):
  return first(mnist_small.test, 200)


@pytest.mark.parametrize("fmt,tolerance", [("float32", 1e-4), ("float16", 5e-3),
                                           ("dynamic_int8", 0.05), ("int8", 0.1)])
def test_each_format_runs_close_to_keras(trained_cnn, mnist_small, x_test, fmt, tolerance):
  rep = first(mnist_small.train, 50)
  content = tflite.convert(trained_cnn, fmt, representative=rep)
  probs = litert.predict(litert.open_model(content), x_test)
  ref = trained_cnn.predict(x_test, verbose=0)
  assert np.max(np.abs(probs - ref)) < tolerance
  assert np.mean(np.argmax(probs, -1) == np.argmax(ref, -1)) > 0.95


def test_int8_io_takes_raw_uint8_pixels(trained_cnn, mnist_small, x_test):
  rep = measure.representative(mnist_small)
  float_io = litert.open_model(tflite.convert(trained_cnn, "int8", representative=rep))
  int_io = litert.open_model(tflite.convert(trained_cnn, "int8", representative=rep,
                                            int8_io=True))
  assert float_io.interpreter.get_input_details()[0]["dtype"] == np.float32
  inp = int_io.interpreter.get_input_details()[0]
  assert inp["dtype"] == np.uint8
  assert int_io.interpreter.get_output_details()[0]["dtype"] == np.uint8
  # The pipeline's calibration spans 0..255 (measure.representative), so a uint8 input is
  # the pixel itself: scale 1, zero point 0.
  assert inp["quantization"] == pytest.approx((1.0, 0))
  assert litert.input_spec(int_io) == "1x28x28x1 uint8, real value = 1 x (q - 0): 0..255"
  a, b = litert.predict(float_io, x_test), litert.predict(int_io, x_test)
  assert np.mean(np.argmax(a, -1) == np.argmax(b, -1)) > 0.95


def test_int8_needs_representative_data(trained_cnn):
  with pytest.raises(ValueError, match="needs representative data"):
    tflite.convert(trained_cnn, "int8")
  with pytest.raises(ValueError, match=r"^export format=int4: unknown; valid: float32, float16"):
    tflite.convert(trained_cnn, "int4")


def test_sparse_encoding_shrinks_pruned_file_and_keeps_outputs(pruned_cnn, x_test):
  dense = tflite.convert(pruned_cnn, "float32")
  sparse = tflite.convert(pruned_cnn, "float32", sparse=True)
  assert len(sparse) < 0.5 * len(dense)
  a = litert.predict(litert.open_model(dense), x_test)
  b = litert.predict(litert.open_model(sparse), x_test)
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_export_tflite_names_and_verification(trained_cnn, pruned_cnn, mnist_small, tmp_path):
  rep = first(mnist_small.train, 50)
  exports = tflite.export_tflite({"baseline": trained_cnn, "pruned": pruned_cnn},
                                 {"baseline": (["float32"], False),
                                  "pruned": (["float32", "int8"], True)}, str(tmp_path), rep)
  assert [e.name for e in exports] == ["baseline_float32", "pruned_float32",
                                       "pruned_float32_sparse", "pruned_int8",
                                       "pruned_int8_sparse"]
  x = first(mnist_small.test)
  outs = {"baseline": trained_cnn.predict(x, verbose=0), "pruned": pruned_cnn.predict(x, verbose=0)}
  checks = verify.verify(exports, outs, lambda: [x], mnist_small.test.labels, head.SOFTMAX)
  for e, v in zip(exports, checks):
    keras_acc = np.mean(np.argmax(outs[e.model], -1) == mnist_small.test.labels)
    assert abs(v.test_accuracy - keras_acc) < 0.02, e.name
    if e.format == "float32":
      assert v.max_abs_diff < gates.Bounds().float32_max_abs_diff and v.top1_agreement == 1.0


def test_gate_rejects_a_float32_file_that_does_not_match(trained_cnn, pruned_cnn, mnist_small,
                                                         tmp_path):
  path = str(tmp_path / "pruned_float32.tflite")
  with open(path, "wb") as f:
    f.write(tflite.convert(pruned_cnn, "float32"))
  export = tflite.Export("pruned_float32", path, "pruned", "float32", False)
  x = first(mnist_small.test, 100)
  wrong = {"pruned": trained_cnn.predict(x, verbose=0)}  # Another model's outputs.
  v, = verify.verify([export], wrong, lambda: [x], mnist_small.test.labels[:100],
                       head.SOFTMAX)
  reason = gates.check("float32", v.test_accuracy, v.test_accuracy, v.top1_agreement,
                       v.max_abs_diff)
  assert reason is not None and "outputs differ from Keras by up to " in reason
  assert v.max_abs_diff > 1e-3
