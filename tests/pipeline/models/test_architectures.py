"""Tests for pipeline/models/architectures.py: architectures and loading a trained baseline."""

import numpy as np
import pytest
import tf_keras as keras

from conftest import assert_message, small_config
from pipeline.models import architectures as models


@pytest.mark.parametrize("name,params", [("small_cnn", 225_034), ("lenet5", 61_706)])
def test_builders_shapes_and_sizes(name, params):
  m = models.build_model(small_config(model=name), (28, 28, 1), 10)
  assert m.output_shape == (None, 10)
  assert m.count_params() == params
  probs = m.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)  # Softmax outputs.


def test_unknown_model_lists_valid_names():
  with pytest.raises(ValueError, match=r"^--model=vgg: unknown; valid: small_cnn, lenet5, "
                     r"mobilenet_v2, mobilenet_v3_small, sparse_mobilenet$"):
    models.build_model(small_config(model="vgg"), (28, 28, 1), 10)


def test_models_take_raw_pixels_and_scale_them_inside():
  m = models.build_model(small_config(), (28, 28, 1), 10)
  assert type(m.layers[0]).__name__ == "Rescaling"
  x = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1)).astype(np.float32)
  inner = keras.Sequential(m.layers[1:])  # The same layers without the Rescaling.
  np.testing.assert_allclose(m.predict(x, verbose=0), inner.predict(x / 255, verbose=0),
                             atol=1e-6)


@pytest.mark.parametrize("name,alpha,params", [("mobilenet_v2", 0.35, 416_613),
                                               ("mobilenet_v3_small", 0.75, None)])
def test_mobilenets_are_one_flat_graph_with_a_new_head(name, alpha, params):
  m = models.build_model(small_config(model=name, alpha=alpha), (64, 64, 3), 5)
  assert m.output_shape == (None, 5) and isinstance(m.get_layer("rescale"), keras.layers.Rescaling)
  assert not any(isinstance(l, keras.Model) for l in m.layers)  # No nested backbone.
  if params:
    assert m.count_params() == params
  probs = m.predict(np.full((2, 64, 64, 3), 128, np.float32), verbose=0)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_mobilenet_backbone_weights_from_a_file(tmp_path):
  donor = models.mobilenet_v2((64, 64, 3), 7, alpha=0.35)
  backbone = keras.Model(donor.input, donor.get_layer("out_relu").output)
  backbone.save_weights(str(tmp_path / "no_top.h5"))
  cfg = small_config(model="mobilenet_v2", alpha=0.35, weights=str(tmp_path / "no_top.h5"))
  m = models.build_model(cfg, (64, 64, 3), 3)
  for layer in ("Conv1", "block_16_project", "Conv_1"):
    for a, b in zip(m.get_layer(layer).get_weights(), donor.get_layer(layer).get_weights()):
      np.testing.assert_array_equal(a, b)
  assert m.output_shape == (None, 3)  # A new head for the user's classes.


@pytest.mark.parametrize("overrides,shape,message", [
    (dict(model="mobilenet_v2"), (28, 28, 1),
     ("--model=mobilenet_v2:", "32x32", "28x28x1", "--image_size")),
    (dict(model="mobilenet_v2", weights="/nope.h5"), (64, 64, 3),
     ("--weights=/nope.h5:", "no such file")),
    (dict(weights="/nope.h5"), (28, 28, 1),
     ("--weights=/nope.h5:", "MobileNet", "--baseline_path")),
])
def test_model_errors_name_the_flag(overrides, shape, message):
  with pytest.raises(ValueError) as e:
    models.build_model(small_config(**overrides), shape, 10)
  assert_message(str(e.value), *message)


def test_weights_that_do_not_fit_are_one_line(tmp_path):
  other = models.mobilenet_v2((64, 64, 3), 7, alpha=1.0)
  other.save_weights(str(tmp_path / "w.h5"))
  with pytest.raises(ValueError) as e:
    models.build_model(small_config(model="mobilenet_v2", alpha=0.35,
                                    weights=str(tmp_path / "w.h5")), (64, 64, 3), 3)
  assert str(e.value).startswith(f"--weights={tmp_path}/w.h5: does not fit mobilenet_v2 with "
                                 "--alpha=0.35 and no top (")
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["mobilenet_v2", "sparse_mobilenet"])
def test_batchnorm_statistics_follow_a_small_data_set(name):
  # At Keras' default momentum (0.99) 72 steps leave the moving averages near their initial
  # values: sparse_mobilenet on 720 images stayed at chance on validation (20% of 5 classes).
  model = models.build_model(small_config(model=name), (32, 32, 3), 5)
  bns = [l for l in model.submodules if type(l).__name__ == "BatchNormalization"]
  assert bns and {l.momentum for l in bns} == {models.BATCHNORM_MOMENTUM}
