"""Pruning schedules (`--schedule`) and criteria other than TF-MOT's gradual magnitude.

- polynomial: TF-MOT's PolynomialDecay, sparsity rising to the target over two thirds of the
  fine-tuning (the default; pipeline/unstructured/prune.py).
- constant: TF-MOT's ConstantSparsity, the target from the first step, masks re-chosen by
  magnitude every --pruning_frequency steps.
- one_shot: the criterion (criteria.py) removes the target at once, then the mask is
  held while fine-tuning (--fine_tune_epochs=0 allowed: no recovery, to compare criteria).
- iterative: --iterative_rounds rounds of "remove a step more, fine-tune" (Han et al. 2015),
  each round keeping the same fraction of what is left, the fine-tuning epochs split over them.

one_shot and iterative run any criterion; polynomial and constant are TF-MOT's magnitude.
"""

import os
from typing import Dict, Tuple

from absl import logging
import numpy as np
import tensorflow_model_optimization as tfmot

from pipeline.models import sparsity
from pipeline.unstructured import criteria
from pipeline import data as data_lib
from pipeline.models import flatten
from pipeline.models import train as train_lib
from pipeline.config import Config

import tf_keras as keras  # pylint: disable=g-bad-import-order



def held(model, sparsity: Dict[str, float]):
  """A copy of `model` with the layers of `sparsity` wrapped by prune_low_magnitude under a
  ConstantSparsity that updates the mask once, on the first training step, and never again:
  the zeros already in the kernel are then exactly what it masks."""
  return flatten.clone_with_weights(model, clone_function=lambda layer: (
      tfmot.sparsity.keras.prune_low_magnitude(
          layer, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
              sparsity[layer.name], begin_step=1, end_step=1, frequency=1))
      if layer.name in sparsity else layer))


def prune(model, data: data_lib.Dataset, cfg: Config, workdir: str, rates: Dict[str, float],
          strip, callbacks=()) -> Tuple[object, train_lib.FitResult, Dict[str, float]]:
  """one_shot or iterative pruning of a copy of `model` by cfg.pruning_criterion.

  Args:
    strip: prune.strip (stripped model, check images) -> model.

  Returns:
    (the stripped model, the last fit (or an empty one without fine-tuning), {layer: the
    sparsity the criterion left}).
  """
  x, y = data_lib.sample(data.train, cfg.calibration_examples, cfg.seed)
  rounds = cfg.iterative_rounds if cfg.schedule == "iterative" else 1
  current = flatten.clone_with_weights(model)
  fit = train_lib.FitResult(best_epoch=0, best_val_accuracy=float("nan"), history={})
  left = {}
  for r in range(1, rounds + 1):
    step = {n: sparsity.after_steps(rate, r, rounds) for n, rate in rates.items()}
    left = criteria.apply(current, step, cfg.pruning_criterion, x, y, cfg.seed)
    logging.info("%s round %d/%d (%s): %s.", cfg.schedule, r, rounds, cfg.pruning_criterion,
                 ", ".join(f"{n} {s:.1%}" for n, s in left.items()))
    # Spare epochs go to the last, deepest rounds.
    epochs = cfg.fine_tune_epochs // rounds + (
        1 if r > rounds - cfg.fine_tune_epochs % rounds else 0)
    if epochs == 0:
      continue
    wrapped = held(current, left)
    log_dir = os.path.join(workdir, "logs", "prune" if rounds == 1 else f"prune_round_{r}")
    keras.utils.set_random_seed(cfg.seed + r)
    fit = train_lib.fine_tune(
        wrapped, data, cfg, log_dir, epochs=epochs, seed=cfg.seed + r,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep(),
                   tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir), *callbacks])
    current = strip(wrapped, x[:256])
  for n, s in left.items():  # TF-MOT kept exactly the criterion's zeros.
    got = float(np.mean(sparsity.pruned_weight(current.get_layer(n)).numpy() == 0))
    if got + 1e-9 < s:
      raise RuntimeError(f"{n}: {100 * got:.2f}% zeros after fine-tuning, the criterion left "
                         f"{100 * s:.2f}%: the mask was not held")
  return current, fit, left
