"""Tests for pipeline/models/heads.py: reading a head off tf_keras and Keras 3 models, and the
loss, accuracy and logits each head trains and distils with."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from export.head import Head
from pipeline.models import heads
from pipeline.models import safe_load
from pipeline.models import train

KINDS = {"softmax": ("softmax", 3), "logits": (None, 3), "sigmoid": ("sigmoid", 1),
         "logit": (None, 1)}


def _model(k, activation, units, name="out", last=()):
  return k.Sequential([k.Input((6, 6, 1)), k.layers.Flatten(), k.layers.Dense(8),
                       k.layers.Dense(units, activation=activation, name=name), *last])


@pytest.mark.parametrize("k", [tf_keras, keras], ids=["tf_keras", "keras3"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_each_head_is_read_off_either_keras(k, kind):
  activation, units = KINDS[kind]
  head = heads.read(_model(k, activation, units))
  assert (head.kind, head.units, head.layer) == (kind, units, "out")
  looked_through = _model(k, activation, units, last=[k.layers.Dropout(0.2, name="drop")])
  assert heads.read(looked_through).kind == kind  # Dropout passes values on.


def test_a_softmax_after_the_last_dense_and_a_pruned_head_read_the_same():
  m = _model(tf_keras, None, 3, last=[tf_keras.layers.Activation("softmax", name="act")])
  assert (heads.read(m).kind, heads.read(m).layer) == ("softmax", "act")
  m = _model(tf_keras, None, 3, last=[tf_keras.layers.Softmax(name="sm")])
  assert heads.read(m).how == "Softmax layer 'sm'"
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  pruned = tfmot.sparsity.keras.prune_low_magnitude(_model(tf_keras, None, 1))
  assert heads.read(pruned) == Head("logit", 1, "out", "Dense 'out' has no activation")


def test_what_is_no_single_label_classifier_is_named_in_one_line():
  inp = tf_keras.Input((4,))
  cases = {
      "the model has 2 outputs": tf_keras.Model(inp, [tf_keras.layers.Dense(2)(inp),
                                                      tf_keras.layers.Dense(3)(inp)]),
      "layer 'out' ends in relu: not a classifier head": _model(tf_keras, "relu", 3),
      "layer 'out' is a sigmoid over 3 units: a multi-label head": _model(tf_keras, "sigmoid", 3),
      "layer 'out' is a softmax over one unit": _model(tf_keras, "softmax", 1),
      "layer 'conv' outputs (4, 4, 2) per image": tf_keras.Sequential(
          [tf_keras.Input((6, 6, 1)), tf_keras.layers.Conv2D(2, 3, name="conv")]),
  }
  for want, model in cases.items():
    with pytest.raises(heads.HeadError) as e:
      heads.read(model)
    assert str(e.value).startswith(want) and "\n" not in str(e.value), str(e.value)


def test_the_data_must_have_the_heads_classes(tmp_path):
  assert heads.check_fits(Head("logit", 1), 2) is None
  assert heads.check_fits(Head("logit", 1, "out"), 3) == (
      "the model outputs one unit (a two-class head, layer 'out'), the data has 3 classes")
  model = _model(keras, "sigmoid", 1)
  model.save(tmp_path / "binary.keras")
  with pytest.raises(ValueError, match=r"^--baseline_path=.*binary.keras: the model outputs one "
                                       r"unit \(a two-class head, layer 'out'\), the data has 5"):
    safe_load.load(str(tmp_path / "binary.keras"), (6, 6, 1), 5)
  assert safe_load.load(str(tmp_path / "binary.keras"), (6, 6, 1), 2).model is not None


def test_outputs_that_contradict_the_layers_are_said():
  probs = np.array([[0.2, 0.8], [0.5, 0.5]])
  assert heads.check_outputs(Head("softmax", 2), probs) is None
  assert "not probabilities" in heads.check_outputs(Head("softmax", 2), probs * 3)
  assert "every output row is a probability" in heads.check_outputs(Head("logits", 2), probs)
  assert "outputs range" in heads.check_outputs(Head("sigmoid", 1), np.array([[1.5]]))


def test_losses_are_the_tutorials_losses():
  y = np.array([0, 1, 1, 2])
  z = np.array([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-1.0, 2.0, 0.0], [0.0, 0.0, 3.0]],
               np.float32)
  p = tf.nn.softmax(z).numpy()
  want = -np.log(p[np.arange(4), y])
  np.testing.assert_allclose(heads.per_example_loss(Head("logits", 3), y, z), want, rtol=1e-5)
  np.testing.assert_allclose(heads.per_example_loss(Head("softmax", 3), y, p), want, rtol=1e-4)
  yb, zb = np.array([0, 1, 1]), np.array([[-2.0], [0.5], [3.0]], np.float32)
  sig = 1 / (1 + np.exp(-zb[:, 0]))
  want_b = -np.where(yb == 1, np.log(sig), np.log(1 - sig))
  np.testing.assert_allclose(heads.per_example_loss(Head("logit", 1), yb, zb), want_b, rtol=1e-5)
  np.testing.assert_allclose(heads.per_example_loss(Head("sigmoid", 1), yb, sig[:, None]),
                             want_b, rtol=1e-4)


def test_logits_give_each_heads_class_probabilities():
  z = np.array([[-2.0], [0.5], [3.0]], np.float32)
  two = heads.logits(Head("logit", 1), z).numpy()
  np.testing.assert_allclose(two, np.concatenate([np.zeros_like(z), z], axis=1))
  sig = 1 / (1 + np.exp(-z))
  np.testing.assert_allclose(tf.nn.softmax(heads.logits(Head("sigmoid", 1), sig)).numpy()[:, 1],
                             sig[:, 0], rtol=1e-5)
  p = np.array([[0.1, 0.2, 0.7]], np.float32)
  np.testing.assert_allclose(tf.nn.softmax(heads.logits(Head("softmax", 3), p)).numpy(), p,
                             rtol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_fits_compile_the_heads_loss_and_accuracy(kind):
  activation, units = KINDS[kind]
  model = _model(tf_keras, activation, units)
  train.compile_model(model, 1e-3)
  binary = units == 1
  assert type(model.loss).__name__ == ("BinaryCrossentropy" if binary else
                                       "SparseCategoricalCrossentropy")
  assert model.loss.get_config()["from_logits"] == (activation is None)
  x = np.random.default_rng(0).uniform(0, 1, (8, 6, 6, 1)).astype(np.float32)
  y = np.array([0, 1] * 4)
  out = model.predict(x, verbose=0)
  loss, acc = model.evaluate(x, y, verbose=0)
  head = heads.read(model)
  assert acc == pytest.approx(head.accuracy(out, y))
  assert loss == pytest.approx(heads.cross_entropy(head, out, y), rel=1e-4)
