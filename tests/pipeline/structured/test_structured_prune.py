"""Tests for pipeline/structured/prune.py: each criterion ranks channels as it should; scopes;
steps."""

import numpy as np
import pytest
import tf_keras as keras

from conftest import assert_message, small_config, first
from pipeline.models import architectures as models
from pipeline.structured import surgery
from pipeline.structured import prune as structured


def _model_with_dead_and_weak_channels():
  """conv (4 filters): filter 0 is dead (never positive), filter 1 tiny, 2 and 3 strong."""
  keras.utils.set_random_seed(0)
  inp = keras.Input((8, 8, 1))
  x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
  x = keras.layers.BatchNormalization(name="bn")(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(6, activation="relu", name="dense")(x)
  out = keras.layers.Dense(3, activation="softmax", name="out")(x)
  model = keras.Model(inp, out)
  k, b = model.get_layer("conv").get_weights()
  k[..., 0], b[0] = -np.abs(k[..., 0]) - 0.1, -1.0  # Inputs are >= 0: always zero after ReLU.
  k[..., 1] *= 0.01
  k[..., 2:] = np.abs(k[..., 2:]) + 0.5
  model.get_layer("conv").set_weights([k, b])
  bn = model.get_layer("bn").get_weights()
  bn[0] = np.array([0.1, 0.2, 2.0, 1.5], np.float32)  # gamma
  model.get_layer("bn").set_weights(bn)
  return model


@pytest.fixture(scope="module")
def calibration():
  rng = np.random.default_rng(0)
  return rng.random((64, 8, 8, 1), np.float32), rng.integers(0, 3, 64)


@pytest.mark.parametrize("criterion", structured.CRITERIA)
def test_each_criterion_drops_the_dead_or_weak_filters(criterion, calibration):
  model = _model_with_dead_and_weak_channels()
  a = surgery.analyze(model)
  s = structured.scores(a, criterion, *calibration)
  conv = next(g for g in a.prunable() if g.producers == ["conv"])
  assert s[conv.id].shape == (4,)
  assert len(s) == (1 if criterion == "bn_gamma" else 2)  # "dense" has no BatchNorm after it.
  keep = structured.select(a, s, 0.5, "per_layer", min_channels=1)
  assert keep[conv.id].tolist() == [2, 3], (criterion, s[conv.id])


def test_bn_gamma_needs_a_batchnorm():
  inp = keras.Input((8, 8, 1))
  x = keras.layers.Conv2D(4, 3, name="conv")(inp)
  out = keras.layers.Dense(2, name="out")(keras.layers.Flatten()(x))
  a = surgery.analyze(keras.Model(inp, out))
  with pytest.raises(ValueError) as e:
    structured.scores(a, "bn_gamma", None, None)
  assert_message(str(e.value), "--structured_criterion=bn_gamma:", "BatchNormalization", "l1")


def test_global_scope_takes_more_from_groups_with_weak_channels():
  a = surgery.analyze(_model_with_dead_and_weak_channels())
  ids = [g.id for g in a.prunable()]
  scores = {ids[0]: np.array([1.0, 1.0, 1.0, 1.0]),  # Uniform: nothing stands out as weak.
            ids[1]: np.array([0.01, 0.01, 0.02, 3.0, 3.0, 3.0])}  # Half of it is weak.
  keep = structured.select(a, scores, 0.3, "global", min_channels=1)
  removed = {gid: len(s) - len(keep[gid]) for gid, s in scores.items()}
  assert sum(removed.values()) == 3 and removed[ids[1]] == 3 and removed[ids[0]] == 0
  keep = structured.select(a, scores, 0.9, "global", min_channels=2)
  assert all(len(k) >= 2 for k in keep.values())
  keep = structured.select(a, scores, 0.5, "per_layer", min_channels=1)
  assert [len(keep[i]) for i in ids] == [2, 3]


def test_prune_structures_in_steps_with_fine_tuning(mnist_small, trained_cnn, tmp_path):
  cfg = small_config(structured_rate=0.5, structured_steps=2, fine_tune_epochs=2,
                     calibration_examples=128)
  result = structured.prune_structures(trained_cnn, mnist_small, cfg, str(tmp_path))
  assert len(result.steps) == 2
  assert all(s["max_abs_diff_vs_masked"] < 1e-5 for s in result.steps)
  m = result.model
  # 1 - 0.5 ** (1/2) = 29% a step, each kept count rounded to the nearest multiple of 8
  # (--channel_multiple): 32 -> 23 = 24 -> 17 = 16, 64 -> 46 = 48 -> 34 = 32,
  # 128 -> 91 = 88 -> 63 = 64.
  assert [m.get_layer(n).get_weights()[0].shape[-1] for n in ("conv1", "conv2", "dense1")] == [
      16, 32, 64]
  assert result.params_after < 0.3 * result.params_before
  assert result.macs_after < 0.3 * result.macs_before
  assert result.skipped == {
      "classifier": "it is the model's output (the classifier is never pruned)"}
  assert (tmp_path / "logs" / "structured_2").is_dir()


@pytest.mark.parametrize("name", ["small_cnn", "lenet5", "small_cnn_reloaded"])
def test_every_criterion_scores_the_built_in_sequential_models(name, mnist_small, tmp_path):
  """Sequential models are rebuilt as functional ones by the analysis; the activation probe
  must read that graph, not the Sequential's own (which raised 'Graph disconnected')."""
  from pipeline import data  # pylint: disable=g-import-not-at-top
  from pipeline.models import architectures as models
  model = models.build_model(small_config(model=name.split("_reloaded")[0]), (28, 28, 1), 10)
  if name.endswith("_reloaded"):
    model.save(tmp_path / "m.keras")
    model = keras.models.load_model(tmp_path / "m.keras")
  a = surgery.analyze(model)
  x, y = first(mnist_small.train, 64), mnist_small.train.labels[:64]
  for criterion in structured.CRITERIA:
    if criterion == "bn_gamma":
      with pytest.raises(ValueError, match="^--structured_criterion=bn_gamma: no BatchNorm"):
        structured.scores(a, criterion, x, y)
      continue
    s = structured.scores(a, criterion, x, y)
    assert {g.id: g.size for g in a.prunable()} == {gid: len(v) for gid, v in s.items()}
    assert all(np.all(np.isfinite(v)) for v in s.values()), criterion


def _trained_looking_mobilenet():
  """MobileNetV2 with BatchNorm statistics as training leaves them (nonzero shifts)."""
  model = models.mobilenet_v2((32, 32, 3), 4, alpha=0.35)
  rng = np.random.default_rng(0)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      gamma, beta, mean, var = layer.get_weights()
      layer.set_weights([gamma, rng.normal(0, 0.5, beta.shape).astype(np.float32),
                         rng.normal(0, 0.5, mean.shape).astype(np.float32), var])
  return model


def test_auto_fold_prunes_a_trained_mobilenets_expansion_layers():
  model = _trained_looking_mobilenet()
  exact = surgery.analyze(model, fold="exact")
  assert "meets the zero padding" in exact.skipped()["block_1_expand"]
  fold, why = structured.choose_fold(model, small_config(structured_rate=0.4))
  assert fold == "approximate" and why.startswith("auto: exact folding would leave ")
  assert structured.choose_fold(model, small_config(structured_fold="exact"))[0] == "exact"
  a = surgery.analyze(model, fold=fold)
  expand = [g for g in a.prunable() if any(p.endswith("_expand") for p in g.producers)]
  assert len(expand) == 16 and all(g.id in a.approximate for g in expand)
  keep = structured.select(a, structured.scores(a, "l1", None, None), 0.4, "per_layer", 4)
  small = surgery.shrink(a, keep)
  assert small.get_layer("block_1_expand").filters < model.get_layer("block_1_expand").filters
  x = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
  assert small.predict(x, verbose=0).shape == (4, 4)
