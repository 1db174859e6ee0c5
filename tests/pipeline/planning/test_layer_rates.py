"""Per-layer rates by hand (--layer_rates): parsing, matching, and TF-MOT reaching each rate."""

import pytest

from conftest import assert_message, small_config
from pipeline.planning import layer_rates
from pipeline.unstructured import prune
from pipeline.models import sparsity

LAYERS = ["conv2", "dense1", "dense2"]


def test_names_and_regexes_first_match_wins_others_keep_the_default():
  spec = layer_rates.parse("conv2:0.8, dense.*:0.95,dense1:0.1")
  assert spec == [("conv2", 0.8), ("dense.*", 0.95), ("dense1", 0.1)]
  with pytest.raises(ValueError) as e:  # dense1 is taken by dense.* first.
    layer_rates.resolve(spec, LAYERS, 0.5, "x")
  assert_message(str(e.value), "--layer_rates=x:", "'dense1'", "conv2, dense1, dense2")
  assert layer_rates.resolve(spec[:2], LAYERS + ["conv3"], 0.5) == {
      "conv2": 0.8, "dense1": 0.95, "dense2": 0.95, "conv3": 0.5}
  # A regex matches whole names: "conv" alone names no layer.
  with pytest.raises(ValueError, match="'conv' matches no pruned layer"):
    layer_rates.resolve(layer_rates.parse("conv:0.5"), LAYERS, 0.5)


@pytest.mark.parametrize("text,message", [
    ("conv2=0.8", ("--layer_rates=conv2=0.8:", "'conv2=0.8'", "LAYER:RATE")),
    ("conv2:1.0", ("--layer_rates=conv2:1.0:", "'conv2:1.0'", "[0, 1)")),
    (":0.5", ("--layer_rates=:0.5:", "':0.5'", "LAYER:RATE")),
    ("conv[:0.5", ("--layer_rates=conv[:0.5:", "'conv['", "regex")),
])
def test_bad_entries_are_one_line_naming_the_flag(text, message):
  with pytest.raises(ValueError) as e:
    layer_rates.parse(text)
  assert_message(str(e.value), *message)


def test_tf_mot_reaches_each_layers_own_rate(trained_cnn, mnist_small, tmp_path):
  # pruning_scope=all: conv1 and classifier are pruned too, at --pruning_rate (no entry).
  cfg = small_config(prune=True, pruning_rate=0.5, pruning_scope="all",
                     layer_rates="conv2:0.8,dense1:0", fine_tune_epochs=2)
  rates = layer_rates.for_model(trained_cnn, cfg)
  result = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path), rates)
  assert result.layer_rates == {"conv1": 0.5, "conv2": 0.8, "classifier": 0.5}  # dense1: dense.
  got = sparsity.layer_sparsity(result.model)
  assert abs(got["conv2"] - 0.8) < 0.01 and got["dense1"] == 0.0
  assert abs(got["conv1"] - 0.5) < 0.01 and abs(got["classifier"] - 0.5) < 0.01


def test_rates_that_prune_nothing_or_without_prune_are_refused(trained_cnn):
  from pipeline import job  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError) as e:
    layer_rates.for_model(trained_cnn, small_config(prune=True, layer_rates="conv2:0,dense1:0"))
  assert_message(str(e.value), "--layer_rates=conv2:0,dense1:0:", "no layer", "--prune")
  with pytest.raises(ValueError) as e:
    job.preflight(small_config(layer_rates="conv2:0.8"))
  assert_message(str(e.value), "--layer_rates=conv2:0.8:", "--prune")


def _curves(rates, baseline, accuracy):
  from pipeline.planning import sensitivity  # pylint: disable=g-import-not-at-top
  return sensitivity.Curves("unstructured", list(rates), baseline, accuracy)


def test_auto_takes_more_from_the_robust_layer_and_meets_the_target_exactly():
  rates = (0.5, 0.9, 0.98)
  curves = _curves(rates, 0.90, {"robust": [0.90, 0.90, 0.89], "fragile": [0.90, 0.70, 0.30],
                                 "noisy": [0.88, 0.89, 0.50]})
  sizes = {"robust": 1000, "fragile": 1000, "noisy": 500}
  chosen = layer_rates.allocate(curves, sizes, 0.9)
  assert chosen["robust"] == 0.98 and chosen["robust"] > chosen["fragile"]
  total = sum(chosen[n] * sizes[n] for n in sizes) / sum(sizes.values())
  assert abs(total - 0.9) < 1e-9
  # Flat curves tie at zero cost: the layers rise together instead of one to the top.
  flat = _curves(rates, 0.9, {"a": [0.9] * 3, "b": [0.9] * 3})
  assert layer_rates.allocate(flat, {"a": 10, "b": 10}, 0.5) == {"a": 0.5, "b": 0.5}
  # Rounding never leaves it short of a layer to raise (it used to raise TypeError).
  many = {f"l{i}": 1000 + 37 * i for i in range(22)}
  top = _curves(rates, 0.9, {n: [0.9] * 3 for n in many})
  assert all(abs(r - 0.98) < 1e-9 for r in layer_rates.allocate(top, many, 0.98).values())


def test_auto_refuses_targets_it_has_no_curve_for():
  curves = _curves((0.5, 0.9), 0.9, {"a": [0.9, 0.8]})
  with pytest.raises(ValueError) as e:
    layer_rates.allocate(curves, {"a": 10}, 0.95)
  assert_message(str(e.value), "--layer_rates=auto:", "--pruning_rate=0.95", "(0.9)")
  with pytest.raises(ValueError, match="no sensitivity curve for b"):
    layer_rates.allocate(curves, {"a": 10, "b": 5}, 0.5)
