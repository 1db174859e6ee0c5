"""Tests for pipeline/models.py: architectures and loading a trained baseline."""

import numpy as np
import pytest

from conftest import small_config
from pipeline import models


@pytest.mark.parametrize("name,params", [("small_cnn", 225_034), ("lenet5", 61_706)])
def test_builders_shapes_and_sizes(name, params):
  m = models.build_model(small_config(model=name), (28, 28, 1), 10)
  assert m.output_shape == (None, 10)
  assert m.count_params() == params
  probs = m.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)  # Softmax outputs.


def test_unknown_model_lists_valid_names():
  with pytest.raises(ValueError, match=r"^--model=vgg: unknown; valid: small_cnn, lenet5$"):
    models.build_model(small_config(model="vgg"), (28, 28, 1), 10)


def test_load_baseline_round_trip(tmp_path, trained_cnn):
  path = str(tmp_path / "m.keras")
  trained_cnn.save(path)
  loaded = models.load_baseline(path, (28, 28, 1), 10)
  x = np.random.default_rng(0).random((4, 28, 28, 1), np.float32)
  np.testing.assert_allclose(loaded.predict(x, verbose=0), trained_cnn.predict(x, verbose=0),
                             atol=1e-6)


def test_load_baseline_errors(tmp_path, trained_cnn):
  missing = str(tmp_path / "nope.keras")
  with pytest.raises(ValueError, match=f"^--baseline_path={missing}: no such file or directory$"):
    models.load_baseline(missing)
  junk = tmp_path / "junk.keras"
  junk.write_text("not a model")
  with pytest.raises(ValueError, match=f"^--baseline_path={junk}: not a Keras model"):
    models.load_baseline(str(junk))
  path = str(tmp_path / "m.keras")
  trained_cnn.save(path)
  with pytest.raises(ValueError, match=r"model input \(28, 28, 1\) does not match the data's"):
    models.load_baseline(path, (32, 32, 3), 10)
