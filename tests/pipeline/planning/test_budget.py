"""The accuracy budget (--max_accuracy_drop): sparsity raised step by step, within the budget."""

import pytest

from conftest import assert_message, small_config
from pipeline.planning import budget
from pipeline import job
from pipeline.planning import layer_rates
from pipeline.unstructured import prune
from pipeline.report import sections as report_sections
from pipeline.models import sparsity


def test_each_step_halves_the_weights_left():
  assert [budget.next_rate(r) for r in (0.5, 0.9, 0.95)] == [0.75, 0.95, 0.975]


def test_search_raises_sparsity_while_validation_allows_and_keeps_the_last_within(
    trained_cnn, mnist_small, tmp_path):
  cfg = small_config(prune=True, pruning_rate=0.5, fine_tune_epochs=2, max_accuracy_drop=100.0,
                     budget_epochs=1)
  rates = layer_rates.for_model(trained_cnn, cfg)
  start = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path / "p"), rates)
  found = budget.search(trained_cnn, start, mnist_small, cfg, str(tmp_path / "b"), max_steps=2)
  assert [p["rate"] for p in found.path] == [0.5, 0.75, 0.875]
  assert all(p["within"] for p in found.path) and found.rate == 0.875
  reached = sparsity.summarize(found.model, start.pruned_layers)["sparsity"]
  assert abs(reached - 0.875) < 0.01  # The kept model is the last step's, really that sparse.
  assert found.stopped == "stopped after 2 steps"
  assert (tmp_path / "b" / "step_2" / "logs" / "prune").is_dir()



def test_search_stops_at_the_first_step_over_the_budget_and_keeps_the_one_before(
    trained_cnn, mnist_small, tmp_path):
  # From 90%, steps go to 95, 97.5, 98.75, 99.4% ... with one epoch each: with a budget of the
  # start's own drop + 3 points, one of them must cross it (99% of the weights gone).
  cfg = small_config(prune=True, pruning_rate=0.9, fine_tune_epochs=2, budget_epochs=1)
  rates = layer_rates.for_model(trained_cnn, cfg)
  start = prune.prune(trained_cnn, mnist_small, cfg, str(tmp_path / "p"), rates)
  probe = budget.search(trained_cnn, start, mnist_small,
                        small_config(**{**cfg.__dict__, "max_accuracy_drop": 100.0}),
                        str(tmp_path / "probe"), max_steps=0)
  limit = probe.path[0]["drop_points"] + 3.0
  found = budget.search(trained_cnn, start, mnist_small,
                        small_config(**{**cfg.__dict__, "max_accuracy_drop": limit}),
                        str(tmp_path / "b"), max_steps=5, refine=0)
  over = found.path[-1]
  assert not over["within"] and over["drop_points"] > limit, found.path
  assert all(p["within"] for p in found.path[:-1])
  assert found.rate == found.path[-2]["rate"]  # The last step within, not the one over.
  reached = sparsity.summarize(found.model, start.pruned_layers)["sparsity"]
  assert abs(reached - found.rate) < 0.01
  assert found.stopped == (f"{100 * over['rate']:.2f}% cost {over['drop_points']:.2f} points on "
                           f"validation, more than --max_accuracy_drop={limit:g}")
  # One finer step halfway back from the crossing: kept if within, else the same as before.
  again = budget.search(trained_cnn, start, mnist_small,
                        small_config(**{**cfg.__dict__, "max_accuracy_drop": limit}),
                        str(tmp_path / "c"), max_steps=5, refine=1)
  first_over = next(i for i, p in enumerate(again.path) if not p["within"])
  assert len(again.path) == first_over + 2
  before, crossed, mid = again.path[first_over - 1:]
  assert mid["rate"] == (before["rate"] + crossed["rate"]) / 2
  assert again.rate == (mid["rate"] if mid["within"] else before["rate"])
  assert again.stopped.endswith(f"; 1 finer step(s) between: kept {100 * again.rate:.2f}%")


@pytest.mark.parametrize("overrides", [dict(prune=False),
                                       dict(prune=True, layer_rates="conv2:0.8")])
def test_budget_needs_prune_and_uniform_rates(overrides):
  with pytest.raises(ValueError) as e:
    job.preflight(small_config(max_accuracy_drop=0.5, **overrides))
  assert_message(str(e.value), "--max_accuracy_drop=0.5:", "--prune", "--layer_rates")


def test_report_shows_the_path():
  row = {"max_drop": 0.5, "rate": 0.95, "baseline_val_accuracy": 0.9, "stopped": "97.50% cost "
         "0.75 points on validation, more than --max_accuracy_drop=0.5",
         "path": [{"rate": 0.9, "val_accuracy": 0.899, "drop_points": 0.1, "within": True},
                  {"rate": 0.95, "val_accuracy": 0.897, "drop_points": 0.3, "within": True},
                  {"rate": 0.975, "val_accuracy": 0.8925, "drop_points": 0.75, "within": False}]}
  assert report_sections.budget_lines(row) == [  # pylint: disable=protected-access
      "Accuracy budget (--max_accuracy_drop=0.5 points on validation, baseline 90.00%): kept "
      "95.00% sparsity; 97.50% cost 0.75 points on validation, more than "
      "--max_accuracy_drop=0.5. Path (sparsity: validation accuracy, change in points): 90.00%: "
      "89.90% (-0.10); 95.00%: 89.70% (-0.30); 97.50%: 89.25% (-0.75, over)."]
