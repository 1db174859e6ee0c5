"""Tests for pipeline/models/safe_load.py: a user's model loads, code-carrying files are refused."""

import numpy as np
import pytest
import tf_keras as keras

from conftest import assert_message, users_mobilenet
from pipeline.models import safe_load


@pytest.fixture(autouse=True)
def _safe_mode_restored():
  """load_baseline(trust=True) turns tf_keras' safe mode off for the process (a run trusts its
  one model); tests share a process, so each starts as a fresh run would."""
  from tf_keras.src.saving import serialization_lib  # pylint: disable=g-import-not-at-top
  before = serialization_lib.in_safe_mode()
  yield
  serialization_lib.SAFE_MODE.safe_mode = before


def _lambda_model():
  inp = keras.Input((28, 28, 1))
  x = keras.layers.Lambda(lambda t: t / 255.0, name="scale_by_lambda")(inp)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(32, activation="relu", name="hidden")(x)
  return keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x))


def test_keras_file_round_trip(tmp_path, trained_cnn):
  path = str(tmp_path / "m.keras")
  trained_cnn.save(path)
  loaded = safe_load.load_baseline(path, (28, 28, 1), 10)
  x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype(np.float32)
  np.testing.assert_allclose(loaded.predict(x, verbose=0), trained_cnn.predict(x, verbose=0),
                             atol=1e-6)


def test_h5_with_a_lambda_is_refused_naming_it_unless_trusted(tmp_path):
  path = str(tmp_path / "m.h5")
  _lambda_model().save(path)
  with pytest.raises(ValueError) as e:
    safe_load.load_baseline(path, (28, 28, 1), 10)
  assert_message(str(e.value), f"--baseline_path={path}:", "scale_by_lambda", ".keras",
                 "--trust_model")
  model = safe_load.load_baseline(path, (28, 28, 1), 10, trust=True)
  assert type(model.get_layer("scale_by_lambda")).__name__ == "Lambda"
  # Trusted, it can be pruned: the surgery rebuilds it from its config, Lambda and all.
  from pipeline.structured import prune as structured  # pylint: disable=g-import-not-at-top
  from pipeline.structured import surgery
  a = surgery.analyze(model)
  keep = structured.select(a, structured.scores(a, "l1", None, None), 0.5, "per_layer", 1)
  small = surgery.shrink(a, keep)
  assert type(small.get_layer("scale_by_lambda")).__name__ == "Lambda"
  assert small.get_layer("hidden").units == 16


def test_keras_file_with_a_lambda_is_refused_by_safe_mode(tmp_path):
  path = str(tmp_path / "m.keras")
  _lambda_model().save(path)
  with pytest.raises(ValueError) as e:
    safe_load.load_baseline(path)
  assert_message(str(e.value), f"--baseline_path={path}:", "scale_by_lambda", "--trust_model")


def test_savedmodel_directory_is_refused_without_trust(tmp_path, trained_cnn):
  path = str(tmp_path / "saved")
  trained_cnn.save(path, save_format="tf")
  with pytest.raises(ValueError, match=r"a SavedModel directory can run code from the file"):
    safe_load.load_baseline(path)


class Doubler(keras.layers.Layer):

  def call(self, x):
    return 2 * x


def test_custom_layer_is_a_clear_error(tmp_path):
  inp = keras.Input((4,))
  model = keras.Model(inp, keras.layers.Dense(3)(Doubler(name="doubler")(inp)))
  path = str(tmp_path / "custom.keras")
  model.save(path)
  with pytest.raises(ValueError) as e:
    safe_load.load_baseline(path)
  assert_message(str(e.value), f"--baseline_path={path}:", "Doubler", "test_safe_load",
                 "built-in Keras layers")


@pytest.mark.parametrize("shape,classes,facts", [
    ((32, 32, 3), 10, ("(28, 28, 1)", "(32, 32, 3)", "--image_size")),
    ((28, 28, 1), 5, ("10 classes", "has 5")),
])
def test_model_that_does_not_fit_the_data_says_both(tmp_path, trained_cnn, shape, classes,
                                                    facts):
  path = str(tmp_path / "m.keras")
  trained_cnn.save(path)
  with pytest.raises(ValueError) as e:
    safe_load.load_baseline(path, shape, classes)
  assert_message(str(e.value), f"--baseline_path={path}:", *facts)


def test_missing_junk_and_other_files(tmp_path):
  with pytest.raises(ValueError, match=r": no such file or directory$"):
    safe_load.load_baseline(str(tmp_path / "nope.keras"))
  junk = tmp_path / "junk.keras"
  junk.write_text("not a model")
  with pytest.raises(ValueError, match=f"^--baseline_path={junk}: not a readable .keras file"):
    safe_load.load_baseline(str(junk))
  other = tmp_path / "model.onnx"
  other.write_text("x")
  with pytest.raises(ValueError, match=r"not a \.keras file, an \.h5 file or a SavedModel"):
    safe_load.load_baseline(str(other))


def test_a_nested_backbone_is_inlined_into_one_graph(tmp_path):
  user, backbone = users_mobilenet()
  path = str(tmp_path / "user.keras")
  user.save(path)
  loaded = safe_load.load_baseline(path, (32, 32, 3), 3)
  assert not any(isinstance(l, keras.Model) for l in loaded.layers)
  assert type(loaded.get_layer("block_1_expand")).__name__ == "Conv2D"  # The backbone's own.
  x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
  np.testing.assert_allclose(loaded.predict(x, verbose=0), user.predict(x, verbose=0),
                             atol=1e-5)


def test_inlining_keeps_how_the_backbone_was_called(tmp_path):
  """The Keras transfer-learning guide calls the backbone with training=False, so that its
  BatchNorm stays in inference mode while the head is fine-tuned; inlining must keep that."""
  backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                            include_top=False, weights=None)
  inp = keras.Input((32, 32, 3))
  x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
  x = backbone(x, training=False)
  out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
  user = keras.Model(inp, out)
  path = str(tmp_path / "guide.keras")
  user.save(path)
  loaded = safe_load.load_baseline(path, (32, 32, 3), 3)
  x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
  # Called in training mode, the user's model still runs its backbone in inference mode;
  # so must the inlined one (batch statistics would give other outputs).
  np.testing.assert_allclose(loaded(x, training=True).numpy(), user(x, training=True).numpy(),
                             atol=1e-5)
  bn = loaded.get_layer("bn_Conv1")
  before = bn.moving_mean.numpy().copy()
  loaded.compile("adam", "sparse_categorical_crossentropy")
  loaded.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
  np.testing.assert_array_equal(bn.moving_mean.numpy(), before)  # Not updated: inference mode.
