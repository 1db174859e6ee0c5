"""Tests for pipeline/structured/surgery.py: supported patterns shrink exactly; the rest is left
whole."""

import numpy as np
import pytest
import tf_keras as keras

from pipeline.models import macs

from pipeline.structured import surgery



def _rng(seed=0):
  """A fresh generator per use: kept channels must not depend on which tests ran before."""
  return np.random.default_rng(seed)


def _randomize_bn(model):
  """Trained-looking BatchNorm statistics, so removed channels leave nonzero constants."""
  for l in model.layers:
    if isinstance(l, keras.layers.BatchNormalization):
      gamma, beta, mean, var = l.get_weights()
      rng = _rng(len(gamma))
      l.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0.5, 0.5, beta.shape),
                     rng.normal(0, 1, mean.shape), rng.uniform(0.5, 2, var.shape)])
  return model


def _half(a):
  rng = _rng()
  return {g.id: np.sort(rng.permutation(g.size)[:g.size // 2]) for g in a.prunable()}


def _shrink_and_check(model, x):
  a = surgery.analyze(model)
  keep = _half(a)
  small = surgery.shrink(a, keep)
  assert surgery.max_output_difference(a, keep, small, x) < 1e-5
  return a, keep, small


def test_every_pattern_in_one_functional_model():
  """Conv->BN->ReLU, 1x1 convs joined by Add, Concatenate, DepthwiseConv, SeparableConv,
  Flatten->Dense, Dense->Dense, GlobalAveragePooling->Dense, Dropout and pooling."""
  inp = keras.Input((12, 12, 3))
  x = keras.layers.Conv2D(8, 3, name="c1")(inp)
  x = keras.layers.BatchNormalization(name="bn1")(x)
  x = keras.layers.ReLU(name="r1")(x)
  y1 = keras.layers.Conv2D(6, 1, name="y1")(x)
  y2 = keras.layers.Conv2D(6, 1, name="y2")(x)
  s = keras.layers.Add(name="add")([y1, y2])
  s = keras.layers.BatchNormalization(name="bn2")(s)
  cat = keras.layers.Concatenate(name="cat")([s, x])
  z = keras.layers.DepthwiseConv2D(3, name="dw")(cat)
  z = keras.layers.SeparableConv2D(10, 3, activation="relu", name="sep")(z)
  z = keras.layers.MaxPooling2D(name="pool")(z)
  g = keras.layers.GlobalAveragePooling2D(name="gap")(z)
  f = keras.layers.Dropout(0.5, name="drop")(keras.layers.Flatten(name="flat")(z))
  d = keras.layers.Dense(16, activation="relu", name="d1")(f)
  d = keras.layers.Dense(12, activation="relu", name="d2")(d)
  d2 = keras.layers.Dense(8, activation="relu", name="d3")(g)
  out = keras.layers.Dense(5, name="out")(keras.layers.Concatenate(name="cat2")([d, d2]))
  model = _randomize_bn(keras.Model(inp, out))
  a, keep, small = _shrink_and_check(model, _rng().random((4, 12, 12, 3), np.float32))
  producers = sorted(tuple(sorted(g.producers)) for g in a.prunable())
  assert producers == [("c1",), ("d1",), ("d2",), ("d3",), ("sep",), ("y1", "y2")]
  assert a.skipped() == {"out": "it is the model's output (the classifier is never pruned)"}
  assert small.get_layer("y1").filters == small.get_layer("y2").filters == 3  # Coupled.
  assert small.get_layer("dw").get_weights()[0].shape[2] == 3 + 4  # Follows cat = s + x.
  assert small.get_layer("d1").get_weights()[0].shape[0] == 9 * 5  # 3x3 positions x 5 kept.
  assert small.count_params() < 0.4 * model.count_params()


def test_sequential_small_cnn_flatten_into_dense():
  model = keras.Sequential([
      keras.layers.InputLayer(input_shape=(28, 28, 1)),
      keras.layers.Conv2D(32, 3, activation="relu", name="conv1"),
      keras.layers.MaxPooling2D(name="pool1"),
      keras.layers.Conv2D(64, 3, activation="relu", name="conv2"),
      keras.layers.MaxPooling2D(name="pool2"), keras.layers.Flatten(name="flatten"),
      keras.layers.Dense(128, activation="relu", name="dense1"),
      keras.layers.Dense(10, activation="softmax", name="classifier")])
  _, _, small = _shrink_and_check(model, _rng().random((4, 28, 28, 1), np.float32))
  assert [small.get_layer(n).get_weights()[0].shape[-1] for n in ("conv1", "conv2", "dense1")] \
      == [16, 32, 64]
  assert small.get_layer("dense1").get_weights()[0].shape[0] == 5 * 5 * 32
  assert macs.count(small) < 0.3 * macs.count(model)


def test_batchnorm_constant_is_folded_into_the_consumer_bias():
  inp = keras.Input((8, 8, 2))
  x = keras.layers.Conv2D(6, 3, use_bias=False, name="c1")(inp)
  x = keras.layers.BatchNormalization(name="bn")(x)
  x = keras.layers.Conv2D(4, 1, use_bias=False, name="c2")(x)  # 1x1: the fold is exact.
  out = keras.layers.Dense(3, name="out")(keras.layers.GlobalAveragePooling2D()(x))
  model = _randomize_bn(keras.Model(inp, out))
  x_in = _rng().random((4, 8, 8, 2), np.float32)
  a = surgery.analyze(model)
  keep = {g.id: np.arange(3) for g in a.prunable() if g.producers == ["c1"]}
  small = surgery.shrink(a, keep)
  assert surgery.max_output_difference(a, keep, small, x_in) < 1e-5
  assert small.get_layer("c2").use_bias  # Gained a bias to hold the folded constant.
  w = small.get_layer("c2").get_weights()
  small.get_layer("c2").set_weights([w[0], np.zeros_like(w[1])])  # Without the fold:
  assert surgery.max_output_difference(a, keep, small, x_in) > 1e-3


def test_constant_meeting_zero_padding_leaves_the_group_whole():
  inp = keras.Input((8, 8, 2))
  x = keras.layers.Conv2D(6, 3, name="c1")(inp)
  x = keras.layers.BatchNormalization(name="bn")(x)
  x = keras.layers.Conv2D(4, 3, padding="same", name="c2")(x)
  out = keras.layers.Dense(3, name="out")(keras.layers.Flatten()(x))
  a = surgery.analyze(_randomize_bn(keras.Model(inp, out)))
  assert a.skipped()["c1"] == ("a BatchNorm constant on its channels meets the zero padding of "
                               "c2, so it cannot be folded exactly")
  assert [g.producers for g in a.prunable()] == [["c2"]]


def test_approximate_fold_removes_it_exact_in_the_interior_off_at_the_border():
  inp = keras.Input((8, 8, 2))
  x = keras.layers.Conv2D(6, 3, name="c1")(inp)
  x = keras.layers.BatchNormalization(name="bn")(x)
  x = keras.layers.Conv2D(4, 3, padding="same", name="c2")(x)
  model = keras.Model(inp, x)  # Outputs a map, so borders and interior can be told apart.
  a = surgery.analyze(_randomize_bn(model), fold="approximate")
  group = next(g for g in a.prunable() if g.producers == ["c1"])
  assert a.approximate == {group.id: "a BatchNorm constant on its channels meets the zero "
                                     "padding of c2"}
  keep = {group.id: np.arange(3)}
  small = surgery.shrink(a, keep)
  x_in = np.random.default_rng(0).random((4, 8, 8, 2), np.float32)
  diff = np.abs(surgery.masked(a, keep).predict(x_in, verbose=0) - small.predict(x_in, verbose=0))
  assert diff[:, 1:-1, 1:-1].max() < 1e-5  # The interior: exact.
  assert diff.max() > 1e-3  # The border, where zero padding met the constant: not.
  with pytest.raises(ValueError, match=r"^--structured_fold=loose: unknown; valid: exact, "):
    surgery.analyze(model, fold="loose")


def test_unsupported_layers_and_skip_regex_leave_groups_whole():
  inp = keras.Input((8, 8, 2))
  x = keras.layers.Conv2D(6, 3, activation="relu", name="c1")(inp)
  x = keras.layers.Reshape((36, 6), name="reshape")(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(10, activation="relu", name="d1")(x)
  x = keras.layers.Dense(10, activation="relu", name="d2")(x)
  out = keras.layers.Dense(3, name="out")(x)
  model = keras.Model(inp, out)
  a = surgery.analyze(model, skip="d2")
  assert a.skipped() == {"c1": "reshape (Reshape) is not supported by the surgery",
                         "d2": "d2 matches --structured_skip_layers",
                         "out": "it is the model's output (the classifier is never pruned)"}
  keep = _half(a)
  small = surgery.shrink(a, keep)
  assert surgery.max_output_difference(a, keep, small, _rng().random((2, 8, 8, 2), np.float32)) < 1e-5
  assert small.get_layer("c1").filters == 6 and small.get_layer("d1").units == 5


def test_mobilenet_v2_half_channels():
  """A model this project did not define: residual Adds couple the projection convs."""
  model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3),
                                         classes=10)
  a, keep, small = _shrink_and_check(model, _rng().random((2, 96, 96, 3), np.float32))
  assert max(len(g.producers) for g in a.prunable()) >= 3  # A block chain joined by Adds.
  assert list(a.skipped()) == ["predictions"]
  assert macs.count(small) <= 0.55 * macs.count(model)


def test_multiply_couples_its_inputs_like_add():
  """A gated block: conv * sigmoid(conv), then a 1x1 conv; the two producers go together."""
  inp = keras.Input((10, 10, 3))
  a = keras.layers.Conv2D(8, 3, activation="relu", name="value")(inp)
  g = keras.layers.Conv2D(8, 3, activation="sigmoid", name="gate")(inp)
  x = keras.layers.Multiply(name="mul")([a, g])
  x = keras.layers.Conv2D(6, 1, activation="relu", name="mix")(x)
  out = keras.layers.Dense(3, name="out")(keras.layers.GlobalAveragePooling2D()(x))
  model = keras.Model(inp, out)
  a, keep, small = _shrink_and_check(model, _rng().random((4, 10, 10, 3), np.float32))
  assert sorted(sorted(g.producers) for g in a.prunable()) == [["gate", "value"], ["mix"]]
  assert small.get_layer("value").filters == small.get_layer("gate").filters == 4


def test_mobilenet_v3_small_hard_swish_passes_channels_through():
  """tf_keras records `x + 3.0` (hard-sigmoid, hard-swish) as TFOpLambda layers whose config
  lists their one input unwrapped; arithmetic with a number keeps each channel in place."""
  model = keras.applications.MobileNetV3Small(weights=None, input_shape=(64, 64, 3), classes=4,
                                              include_preprocessing=False)
  a = surgery.analyze(model, "", "approximate")
  prunable = {p for g in a.prunable() for p in g.producers}
  assert {"expanded_conv_1/expand", "expanded_conv_3/squeeze_excite/Conv_1"} <= prunable
  keep = _half(a)
  small = surgery.shrink(a, keep)
  x = _rng().random((2, 64, 64, 3), np.float32)
  assert surgery.max_output_difference(a, keep, small, x) < 1e-5  # Untrained BN: exact.
  assert macs.count(small) < 0.6 * macs.count(model)
