"""An accuracy budget: raise the sparsity step by step while validation accuracy allows it.

`--max_accuracy_drop=0.5` (points): from the model pruned to --pruning_rate, each step halves
the weights still left in the pruned layers (90% -> 95% -> 97.5% ...) with a short TF-MOT
fine-tune (--budget_epochs) from the current sparsity, and is scored on the validation split
against the baseline's validation accuracy. The last model within the budget is kept, as
NNCF's adaptive compression level does; after the first step over the budget, REFINE steps
halfway back from it (bisection) look for a rate in between. The test split is read only at
the end, as always.
"""

import dataclasses
import os
from typing import List

from absl import logging

from pipeline import data as data_lib
from pipeline.unstructured import prune as prune_lib
from pipeline.models import train as train_lib
from pipeline.config import Config

MAX_STEPS = 6
REFINE = 2  # After the first step over the budget, steps halfway back (92.5%, then 91.25% ...).


@dataclasses.dataclass(frozen=True)
class BudgetResult:
  model: object  # The last model within the budget (the start if none was).
  rate: float  # Its sparsity over the pruned layers, as asked.
  baseline_val_accuracy: float
  path: List[dict]  # Per step: rate, validation accuracy, drop in points, within budget.
  stopped: str  # Why the search ended.


def next_rate(rate: float) -> float:
  """Half the weights left: 0.9 -> 0.95 -> 0.975."""
  return 1.0 - (1.0 - rate) / 2.0


def search(baseline, start: prune_lib.PruneResult, data: data_lib.Dataset, cfg: Config,
           workdir: str, callbacks=(), max_steps: int = MAX_STEPS,
           refine: int = REFINE) -> BudgetResult:
  """Raises the sparsity of `start` (pruned to cfg.pruning_rate) while the validation accuracy
  stays within cfg.max_accuracy_drop points of the baseline's."""
  base_val = train_lib.evaluate(baseline, data.validation)
  budget = cfg.max_accuracy_drop

  def entry(rate, model):
    val = train_lib.evaluate(model, data.validation)
    drop = 100 * (base_val - val)
    # 1e-9: a drop of exactly the budget (2 of 400 images for 0.5) is within it.
    return {"rate": rate, "val_accuracy": val, "drop_points": drop,
            "within": drop <= budget + 1e-9}

  path = [entry(cfg.pruning_rate, start.model)]
  kept, rate = start.model, cfg.pruning_rate
  if not path[0]["within"]:
    return BudgetResult(kept, rate, base_val, path, (
        f"--pruning_rate={cfg.pruning_rate} already costs {path[0]['drop_points']:.2f} points "
        f"on validation, more than --max_accuracy_drop={budget:g}; kept it (lower the rate)"))
  stopped = f"stopped after {max_steps} steps"
  current = start.model

  def step_to(target, model, n):
    step_cfg = dataclasses.replace(cfg, pruning_rate=target, initial_sparsity=rate,
                                   fine_tune_epochs=cfg.budget_epochs, layer_rates="",
                                   pruning_begin_step=None, pruning_end_step=None,
                                   pruning_frequency=None)
    logging.info("Budget step %d: %.2f%% -> %.2f%% sparsity.", n, 100 * rate, 100 * target)
    rates = dict.fromkeys(prune_lib.layers_in_scope(model, step_cfg), target)
    result = prune_lib.prune(model, data, step_cfg, os.path.join(workdir, f"step_{n}"), rates,
                             callbacks=callbacks)
    path.append(entry(target, result.model))
    return result.model

  for step in range(1, max_steps + 1):
    target = next_rate(rate)
    model = step_to(target, current, step)
    if not path[-1]["within"]:
      stopped = (f"{100 * target:.2f}% cost {path[-1]['drop_points']:.2f} points on validation, "
                 f"more than --max_accuracy_drop={budget:g}")
      # Halving what is left is a coarse step: try halfway back, REFINE times.
      over = target
      for extra in range(1, refine + 1):
        mid = (rate + over) / 2
        model = step_to(mid, current, step + extra)
        if path[-1]["within"]:
          kept, rate, current = model, mid, model
        else:
          over = mid
      if refine:
        stopped += f"; {refine} finer step(s) between: kept {100 * rate:.2f}%"
      break
    kept, rate, current = model, target, model
  return BudgetResult(kept, rate, base_val, path, stopped)
