"""Unstructured criteria and schedules: one-shot, iterative, global, gradient, OBD, OBS, random."""

import numpy as np
import pytest

from conftest import assert_message, small_config
from pipeline.unstructured import criteria
from pipeline import job
from pipeline.unstructured import obs
from pipeline.planning import layer_rates
from pipeline.unstructured import prune
from pipeline.models import sparsity

import tf_keras as keras  # pylint: disable=g-bad-import-order

RATES = {"conv2": 0.8, "dense1": 0.8}


def _copy(model):
  twin = keras.models.clone_model(model)
  twin.set_weights(model.get_weights())
  return twin


def test_sparsegpt_reconstruction_lowers_the_layer_output_error_for_the_same_mask():
  rng = np.random.default_rng(0)
  # Inputs that lie near a 24-dimensional subspace, as a layer's activations do: the kept
  # weights can carry what the removed ones did.
  x = rng.normal(size=(2000, 24)) @ rng.normal(size=(24, 96)) + 0.1 * rng.normal(size=(2000, 96))
  w = rng.normal(size=(32, 96))
  pruned, keep = obs.sparsegpt(w, x.T @ x, 0.8)
  assert abs((1 - keep.mean()) - 0.8) < 0.01 and np.all(pruned[~keep] == 0)
  def error(v):
    return np.linalg.norm(x @ v.T - x @ w.T)
  assert error(pruned) < 0.9 * error(np.where(keep, w, 0))


def test_obs_on_a_trained_model_beats_its_own_mask_without_reconstruction(trained_cnn,
                                                                         mnist_small):
  x, _ = criteria_data(mnist_small)
  model = _copy(trained_cnn)
  left = criteria.apply(model, {"dense1": 0.9}, "obs", x, None)
  assert abs(left["dense1"] - 0.9) < 0.01
  keep = model.get_layer("dense1").kernel.numpy() != 0
  masked = _copy(trained_cnn)
  masked.get_layer("dense1").kernel.assign(np.where(keep, trained_cnn.get_layer(
      "dense1").kernel.numpy(), 0))
  def probe(m):
    return keras.Model(m.inputs, m.get_layer("dense1").output)
  dense_out = probe(trained_cnn).predict(x, verbose=0)
  err_obs = np.linalg.norm(probe(model).predict(x, verbose=0) - dense_out)
  err_mask = np.linalg.norm(probe(masked).predict(x, verbose=0) - dense_out)
  assert err_obs < 0.8 * err_mask, (err_obs, err_mask)


def criteria_data(data, n=256):
  from pipeline import data as data_lib  # pylint: disable=g-import-not-at-top
  return data_lib.sample(data.train, n, 0)


def test_global_magnitude_gives_layers_different_rates_than_magnitude():
  # Two layers of equal size: one with small weights, one with large. Per layer, both lose
  # 50%; with one threshold, the small-weight layer loses far more.
  inp = keras.Input((8,))
  h = keras.layers.Dense(16, name="small")(inp)
  out = keras.layers.Dense(8, name="large")(h)
  model = keras.Model(inp, out)
  model.get_layer("small").kernel.assign(np.full((8, 16), 0.001) * np.arange(1, 129).reshape(8, 16))
  model.get_layer("large").kernel.assign(np.full((16, 8), 1.0) * np.arange(1, 129).reshape(16, 8))
  per_layer = criteria.masks(model, {"small": 0.5, "large": 0.5}, "magnitude", None, None)
  assert [1 - m.mean() for m in per_layer.values()] == [0.5, 0.5]
  global_ = criteria.masks(model, {"small": 0.5, "large": 0.5}, "global_magnitude", None, None)
  assert 1 - global_["small"].mean() == 1.0 and 1 - global_["large"].mean() == 0.0


@pytest.mark.parametrize("criterion", ["gradient", "obd", "random"])
def test_each_criterion_prunes_to_the_rate_and_chooses_its_own_weights(criterion, trained_cnn,
                                                                     mnist_small):
  x, y = criteria_data(mnist_small)
  chosen = criteria.masks(trained_cnn, RATES, criterion, x, y)
  magnitude = criteria.masks(trained_cnn, RATES, "magnitude", x, y)
  for n, keep in chosen.items():
    assert abs((1 - keep.mean()) - RATES[n]) < 1e-3
    overlap = np.mean(keep == magnitude[n])
    assert overlap < 0.999, (criterion, n)  # Not magnitude under another name.
  if criterion != "random":  # Informed criteria agree with magnitude far more than chance.
    assert np.mean(chosen["dense1"] & magnitude["dense1"]) > 0.2 * 0.2 + 0.02


def test_a_one_shot_mask_is_exactly_what_tf_mot_holds_after_fine_tuning(trained_cnn,
                                                                       mnist_small, tmp_path):
  cfg = small_config(prune=True, pruning_rate=0.8, schedule="one_shot",
                     pruning_criterion="gradient", fine_tune_epochs=2)
  x, y = criteria_data(mnist_small, cfg.calibration_examples)
  expected = criteria.masks(trained_cnn, {"conv2": 0.8, "dense1": 0.8}, "gradient", x, y)
  rates = layer_rates.for_model(trained_cnn, cfg)
  result = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path), rates)
  assert result.fit.best_epoch >= 1  # It did fine-tune.
  for n, keep in expected.items():
    got = sparsity.pruned_weight(result.model.get_layer(n)).numpy() != 0
    assert np.array_equal(got, keep), n
  # The weights it kept moved: fine-tuning ran with the mask held.
  before = sparsity.pruned_weight(trained_cnn.get_layer("dense1")).numpy()
  after = sparsity.pruned_weight(result.model.get_layer("dense1")).numpy()
  assert not np.allclose(before[expected["dense1"]], after[expected["dense1"]])


def test_one_shot_without_fine_tuning_and_iterative_reach_the_rate(trained_cnn, mnist_small,
                                                                   tmp_path):
  cfg = small_config(prune=True, pruning_rate=0.8, schedule="one_shot", fine_tune_epochs=0,
                     pruning_criterion="obd")
  rates = layer_rates.for_model(trained_cnn, cfg)
  result = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path / "a"), rates)
  assert result.fit.best_epoch == 0
  assert abs(sparsity.summarize(result.model, ["conv2", "dense1"])["sparsity"] - 0.8) < 0.01
  cfg = small_config(prune=True, pruning_rate=0.9, schedule="iterative", iterative_rounds=3,
                     fine_tune_epochs=3, pruning_criterion="random")
  rates = layer_rates.for_model(trained_cnn, cfg)
  result = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path / "b"), rates)
  got = sparsity.layer_sparsity(result.model)
  assert abs(got["conv2"] - 0.9) < 0.01 and abs(got["dense1"] - 0.9) < 0.01
  assert (tmp_path / "b" / "logs" / "prune_round_3").is_dir()


def test_constant_schedule_is_tf_mots_constant_sparsity(trained_cnn, mnist_small, tmp_path):
  cfg = small_config(prune=True, pruning_rate=0.7, schedule="constant", fine_tune_epochs=2)
  rates = layer_rates.for_model(trained_cnn, cfg)
  result = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path), rates)
  assert abs(sparsity.summarize(result.model, result.pruned_layers)["sparsity"] - 0.7) < 0.01


@pytest.mark.parametrize("overrides,message", [
    (dict(pruning_criterion="obs"),
     ("--pruning_criterion=obs:", "--schedule=one_shot", "--schedule=iterative")),
    (dict(schedule="iterative", fine_tune_epochs=0),
     ("--fine_tune_epochs=0:", "--schedule=one_shot", "--schedule=iterative")),
    (dict(schedule="iterative", iterative_rounds=4, fine_tune_epochs=3),
     ("--iterative_rounds=4:", "--fine_tune_epochs=3")),
    (dict(schedule="one_shot", pruning_criterion="global_magnitude", layer_rates="conv2:0.5"),
     ("--pruning_criterion=global_magnitude:", "--layer_rates=conv2:0.5")),
])
def test_bad_combinations_are_one_line_before_training(overrides, message):
  with pytest.raises(ValueError) as e:
    job.preflight(small_config(prune=True, **overrides))
  assert_message(str(e.value), *message)


@pytest.mark.parametrize("overrides,flag", [
    (dict(schedule="one_shot"), "--schedule=one_shot"),
    (dict(sparsity_m_by_n="2,4"), "--sparsity_m_by_n=2,4"),
    (dict(pruning_policy="xnnpack"), "--pruning_policy=xnnpack"),
])
def test_weight_pruning_flags_without_prune_are_refused(overrides, flag):
  with pytest.raises(ValueError) as e:
    job.preflight(small_config(**overrides))
  assert_message(str(e.value), f"{flag}:", "--prune")


def test_sparsegpt_never_brings_back_an_earlier_zero():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(500, 24)) @ rng.normal(size=(24, 300))
  w = rng.normal(size=(16, 300))
  w[:, 200:][rng.random((16, 100)) < 0.6] = 0  # An earlier round's zeros, in a later block.
  pruned, keep = obs.sparsegpt(w, x.T @ x, 0.5)
  assert np.all(pruned[w == 0] == 0) and not np.any(keep[w == 0])
