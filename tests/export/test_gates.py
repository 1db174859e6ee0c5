"""Tests for export/gates.py: each format's bound, both ways, and a damaged int8 file failing."""

import numpy as np
import pytest

from conftest import damage_int8_scales, first
from export import gates, head, tflite, verify
from pipeline import data


@pytest.mark.parametrize("fmt,accuracy,expected", [
    ("float16", 0.9000, None),
    ("float16", 0.8985, None),  # -0.15 points: within 0.2.
    ("float16", 0.8970, "test accuracy 89.70% is -0.30 points from Keras' 90.00% (bound 0.2)"),
    ("dynamic_int8", 0.8910, None),
    ("int8", 0.95, None),  # Exactly 1.0 point below 0.96 (2 of 200 images): within the bound.
    ("int8", 0.8880, "test accuracy 88.80% is -1.20 points from Keras' 90.00% (bound 1)"),
    ("int8", 0.9120, "test accuracy 91.20% is +1.20 points from Keras' 90.00% (bound 1)"),
])
def test_accuracy_bounds_per_format(fmt, accuracy, expected):
  keras_accuracy = 0.96 if accuracy == 0.95 else 0.9
  assert gates.check(fmt, accuracy, keras_accuracy, agreement=0.97, max_abs_diff=0.1) == expected


def test_float32_needs_agreement_and_close_outputs():
  assert gates.check("float32", 0.9, 0.9, agreement=0.999, max_abs_diff=9e-5) is None
  assert gates.check("float32", 0.9, 0.9, agreement=0.998, max_abs_diff=2e-4) == (
      "agrees with Keras on 99.80% of test images (< 99.9%); outputs differ from Keras by up "
      "to 2.00e-04 (bound 0.0001)")
  # Raw logits: the bound is of the largest |logit| (verify.Verification.output_scale).
  assert gates.check("float32", 0.9, 0.9, 1.0, 2e-4, output_scale=12.0) is None
  assert gates.check("float32", 0.9, 0.9, 1.0, 2e-3, output_scale=12.0) == (
      "outputs differ from Keras by up to 2.00e-03 (bound 0.0012 = 0.0001 x 12)")


def test_bounds_are_tunable_and_unknown_formats_refused():
  loose = gates.Bounds(int8_max_points=2.0)
  assert gates.check("int8", 0.888, 0.9, 0.9, None, loose) is None
  with pytest.raises(ValueError, match=r"^export format=int4: unknown; valid: float32, "):
    gates.check("int4", 0.9, 0.9, 1.0, None)


def test_a_damaged_int8_file_fails_its_gate_and_the_intact_one_passes(trained_cnn, mnist_small,
                                                                       tmp_path):
  rep = first(mnist_small.train, 100)
  good = tflite.convert(trained_cnn, "int8", representative=rep)
  files = {"intact": good, "damaged": damage_int8_scales(good)}
  exports = []
  for name, content in files.items():
    (tmp_path / f"{name}.tflite").write_bytes(content)
    exports.append(tflite.Export(name, str(tmp_path / f"{name}.tflite"), "m", "int8", False))
  x = first(mnist_small.test)
  keras_out = trained_cnn.predict(x, verbose=0)
  keras_acc = float(np.mean(np.argmax(keras_out, -1) == mnist_small.test.labels))
  intact, damaged = verify.verify(exports, {"m": keras_out}, lambda: [x],
                                  mnist_small.test.labels, head.SOFTMAX)
  assert gates.check("int8", intact.test_accuracy, keras_acc, intact.top1_agreement, None) is None
  reason = gates.check("int8", damaged.test_accuracy, keras_acc, damaged.top1_agreement, None)
  assert reason is not None and reason.startswith("test accuracy ")
  assert damaged.test_accuracy < keras_acc - 0.01
