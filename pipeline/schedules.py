"""Pruning schedules (`--schedule`) and criteria other than TF-MOT's gradual magnitude.

- polynomial: TF-MOT's PolynomialDecay, sparsity rising to the target over two thirds of the
  fine-tuning (the default; pipeline/prune.py).
- constant: TF-MOT's ConstantSparsity, the target from the first step, masks re-chosen by
  magnitude every --pruning_frequency steps.
- one_shot: the criterion (pipeline/criteria.py) removes the target at once, then the mask is
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

from pipeline import augment as augment_lib
from pipeline import criteria
from pipeline import data as data_lib
from pipeline import config as config_lib
from pipeline import train as train_lib
from pipeline.config import Config

import tf_keras as keras  # pylint: disable=g-bad-import-order

SCHEDULES = config_lib.SCHEDULES


def check_needs_prune(cfg: Config) -> None:
  """A one-line ValueError for flags of weight pruning given without --prune."""
  unstructured = [f"--{k}={v}" for k, v, default in (
      ("schedule", cfg.schedule, "polynomial"),
      ("pruning_criterion", cfg.pruning_criterion, "magnitude"),
      ("sparsity_m_by_n", cfg.sparsity_m_by_n, ""), ("block_size", cfg.block_size, ""),
      ("pruning_policy", cfg.pruning_policy, "")) if v != default]
  if unstructured and not cfg.prune:
    raise ValueError(f"{unstructured[0]}: sets how TF-MOT prunes weights, so it needs --prune")


def check(cfg: Config) -> None:
  """Raises a one-line ValueError for a schedule and criterion that do not go together."""
  if cfg.schedule not in SCHEDULES:
    raise ValueError(f"--schedule={cfg.schedule}: unknown; valid: {', '.join(SCHEDULES)}")
  if cfg.pruning_criterion not in criteria.CRITERIA:
    raise ValueError(f"--pruning_criterion={cfg.pruning_criterion}: unknown; valid: "
                     f"{', '.join(criteria.CRITERIA)}")
  if cfg.schedule in ("polynomial", "constant") and cfg.pruning_criterion != "magnitude":
    raise ValueError(f"--pruning_criterion={cfg.pruning_criterion}: TF-MOT's {cfg.schedule} "
                     "schedule re-chooses masks by magnitude as it goes; use "
                     "--schedule=one_shot or --schedule=iterative")
  if cfg.fine_tune_epochs == 0 and cfg.schedule != "one_shot":
    raise ValueError(f"--fine_tune_epochs=0: only --schedule=one_shot prunes without "
                     f"fine-tuning (now --schedule={cfg.schedule})")
  if cfg.schedule == "iterative" and cfg.fine_tune_epochs < cfg.iterative_rounds:
    raise ValueError(f"--iterative_rounds={cfg.iterative_rounds}: each round fine-tunes at least "
                     f"one epoch, more than --fine_tune_epochs={cfg.fine_tune_epochs}")
  if cfg.pruning_criterion == "global_magnitude" and cfg.layer_rates:
    raise ValueError("--pruning_criterion=global_magnitude: chooses each layer's rate itself "
                     f"(one threshold); drop --layer_rates={cfg.layer_rates}")


def held(model, sparsity: Dict[str, float]):
  """A copy of `model` with the layers of `sparsity` wrapped by prune_low_magnitude under a
  ConstantSparsity that updates the mask once, on the first training step, and never again:
  the zeros already in the kernel are then exactly what it masks."""
  copy = keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  return keras.models.clone_model(copy, clone_function=lambda layer: (
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
  current = keras.models.clone_model(model)
  current.set_weights(model.get_weights())
  fit = train_lib.FitResult(best_epoch=0, best_val_accuracy=float("nan"), history={})
  left = {}
  for r in range(1, rounds + 1):
    step = {n: 1 - (1 - rate) ** (r / rounds) for n, rate in rates.items()}
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
    fit = train_lib.fit(
        wrapped, data, epochs=epochs, batch_size=cfg.batch_size,
        learning_rate=cfg.fine_tune_learning_rate, seed=cfg.seed + r, log_dir=log_dir,
        verbose=cfg.verbose,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep(),
                   tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir), *callbacks],
        augment=augment_lib.augmentation(cfg))
    current = strip(wrapped, x[:256])
  for n, s in left.items():  # TF-MOT kept exactly the criterion's zeros.
    got = float(np.mean(criteria.pruned_weight(current.get_layer(n)).numpy() == 0))
    if got + 1e-9 < s:
      raise RuntimeError(f"{n}: {100 * got:.2f}% zeros after fine-tuning, the criterion left "
                         f"{100 * s:.2f}%: the mask was not held")
  return current, fit, left
