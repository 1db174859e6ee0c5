"""Pruning stage: wrap with prune_low_magnitude under PolynomialDecay (or ConstantSparsity),
fine-tune, then strip; one-shot, iterative and other criteria are in schedules.py."""

import dataclasses
import math
import os
from typing import Dict, List, Optional

from absl import logging
import numpy as np
import tensorflow_model_optimization as tfmot  # Public API only (tfmot.sparsity.keras).

from pipeline import data as data_lib
from pipeline.unstructured import patterns
from pipeline.unstructured import schedules as schedules_lib
from pipeline.models import sparsity as sparsity_lib
from pipeline.models import flatten
from pipeline.models import train as train_lib
from pipeline.config import Config, FlagError

import tf_keras as keras  # pylint: disable=g-bad-import-order

# Variables prune_low_magnitude adds to a layer; strip_pruning removes them with the wrapper.
_WRAPPER_VARIABLES = ("/mask:", "/threshold:", "/pruning_step:")


@dataclasses.dataclass(frozen=True)
class Schedule:
  begin_step: int
  end_step: int
  frequency: int
  steps_per_epoch: int
  total_steps: int

  @property
  def target_epoch(self) -> int:
    """0-based epoch in which the final sparsity is reached (steps count from 1)."""
    return (self.end_step - 1) // self.steps_per_epoch


@dataclasses.dataclass(frozen=True)
class PruneResult:
  model: keras.Model  # Stripped: plain layers, zeros in the pruned kernels.
  pruned_layers: List[str]
  schedule: Schedule
  fit: train_lib.FitResult
  layer_rates: Dict[str, float] = dataclasses.field(default_factory=dict)  # Asked, per layer.


def schedule_steps(cfg: Config, train_examples: int) -> Schedule:
  """Derives the PolynomialDecay steps from the data size, batch size and fine-tune epochs.

  TF-MOT 0.8.1 counts training batches from 1 (UpdatePruningStep sets the step to 0, and each
  batch increments it before the mask update), updates masks on steps begin <= step <= end
  with (step - begin) % frequency == 0, and reaches the final sparsity only on an update at
  exactly `end`. So `end` must be a step that runs (1..total) and lie a multiple of the
  frequency past `begin`. Unless given, pruning starts at step 0 and reaches its target after
  the first two thirds of fine-tuning (at least one epoch), leaving the rest to recover.

  Raises:
    ValueError: the schedule cannot reach its target within the fine-tuning steps; the
      message names the flags and what would work.
  """
  steps_per_epoch = math.ceil(train_examples / cfg.batch_size)
  total = steps_per_epoch * cfg.fine_tune_epochs
  if cfg.schedule in ("one_shot", "iterative"):  # The mask is set once, on step 1 of a fit.
    return Schedule(1, 1, 1, steps_per_epoch, total)
  begin = 0 if cfg.pruning_begin_step is None else cfg.pruning_begin_step
  freq = cfg.pruning_frequency or max(1, min(100, steps_per_epoch // 4))
  run = (f"{train_examples} training examples with --batch_size={cfg.batch_size} and "
         f"--fine_tune_epochs={cfg.fine_tune_epochs} give {total} fine-tuning steps (1..{total})")
  if cfg.pruning_end_step is None:
    recovery_epochs = min(cfg.fine_tune_epochs - 1, max(1, cfg.fine_tune_epochs // 3))
    last = steps_per_epoch * (cfg.fine_tune_epochs - recovery_epochs)
    end = begin + max(0, (last - begin) // freq * freq)
    if end < 1 or end > total:
      raise ValueError(
          f"--pruning_begin_step={begin} and --pruning_frequency={freq}: {run}, and no mask "
          f"update (step {begin} plus a multiple of {freq}, from step 1 on) falls in them; "
          "lower --pruning_begin_step or --pruning_frequency, or raise --fine_tune_epochs")
  else:
    end = cfg.pruning_end_step
    if not 1 <= end <= total:
      raise FlagError("pruning_end_step", end, f"{run}; the target is reached only on a "
                      f"step that runs, so it must be in 1..{total}")
    if end < begin or (end - begin) % freq:
      raise ValueError(
          f"--pruning_end_step={end}: masks update on steps --pruning_begin_step={begin} plus "
          f"multiples of --pruning_frequency={freq}, so the last update before it falls short "
          f"of the target; use {begin + max(0, end - begin) // freq * freq or begin + freq}")
  return Schedule(begin, end, freq, steps_per_epoch, total)


def prunable_layers(model: keras.Model, scope: str) -> List[str]:
  """Names of the layers to prune: every TF-MOT-prunable layer with a kernel, in model order.

  scope "inner" leaves out the first and the last of them (the input conv, which has few
  weights and sees raw pixels, and the classifier); "all" prunes every one, as the TF-MOT
  tutorial does.
  """
  names = [l.name for l in model.layers if sparsity_lib.kernel_of(l) is not None and _prunable(l)]
  if scope == "inner" and len(names) > 2:
    names = names[1:-1]
  elif scope not in ("inner", "all"):
    raise ValueError(f"pruning scope={scope}: unknown; valid: inner, all")
  return names


def _prunable(layer: keras.layers.Layer) -> bool:
  """Whether TF-MOT prunes some weight of the layer. prune_low_magnitude raises ValueError for
  layers outside its registry, and accepts some (DepthwiseConv2D, BatchNormalization) while
  pruning none of their weights; so an unbuilt copy is wrapped, built, and asked."""
  try:
    wrapper = tfmot.sparsity.keras.prune_low_magnitude(
        layer.__class__.from_config(layer.get_config()))
    wrapper.build(layer.input_shape)
  except Exception:  # pylint: disable=broad-except  (refused or not rebuildable: not pruned)
    return False
  return bool(wrapper.prunable_weights)


def layers_in_scope(model: keras.Model, cfg: Config) -> List[str]:
  """The layers pruning counts sparsity over: --pruning_policy's, else --pruning_scope's."""
  return (patterns.policy_layers(model) if cfg.pruning_policy else
          prunable_layers(model, cfg.pruning_scope))


def _wrap(model: keras.Model, rates: Dict[str, float], schedule: Schedule,
          cfg: Config) -> keras.Model:
  """A copy of `model` with the layers of `rates` wrapped for pruning, each under its own
  PolynomialDecay to its rate; `model` itself is left untouched."""
  if cfg.schedule == "constant":  # The target from the first step, masks re-chosen as it goes.
    decays = {n: tfmot.sparsity.keras.ConstantSparsity(
        r, begin_step=schedule.begin_step, frequency=schedule.frequency) for n, r in rates.items()}
  else:
    decays = {n: tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=min(cfg.initial_sparsity, r), final_sparsity=r,
        begin_step=schedule.begin_step, end_step=schedule.end_step, frequency=schedule.frequency)
              for n, r in rates.items()}

  # Wrap the layers of a throwaway copy, as the TF-MOT guide does with clone_model: the
  # wrappers share the copy's weights, never the baseline's.
  copy = flatten.clone_with_weights(model)
  if cfg.pruning_policy:  # TF-MOT wraps the whole model and chooses the 1x1 convolutions.
    return tfmot.sparsity.keras.prune_low_magnitude(
        copy, pruning_schedule=next(iter(decays.values())),
        pruning_policy=tfmot.sparsity.keras.PruneForLatencyOnXNNPack())
  return keras.models.clone_model(
      copy, clone_function=lambda layer: (
          tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=decays[layer.name],
                                                   **patterns.wrap_kwargs(cfg))
          if layer.name in decays else layer))


def strip(pruned: keras.Model, check_images: np.ndarray) -> keras.Model:
  """strip_pruning, then checks no wrapper is left and predictions are unchanged.

  Raises:
    RuntimeError: a wrapper survived or the stripped model predicts differently.
  """
  stripped = tfmot.sparsity.keras.strip_pruning(pruned)
  left = [v.name for v in stripped.variables if any(w in v.name for w in _WRAPPER_VARIABLES)]
  if left:
    raise RuntimeError(f"strip_pruning left pruning variables: {left}")
  x = check_images
  diff = float(np.max(np.abs(pruned.predict(x, verbose=0) - stripped.predict(x, verbose=0))))
  if diff > 1e-6:
    raise RuntimeError(f"stripped model's predictions differ from the pruned model's by {diff}")
  return stripped


def _check_reached(model: keras.Model, rates: Dict[str, float], how: str) -> None:
  """Never report a sparsity that was not reached: each layer within a point of its rate."""
  for name, rate in rates.items():
    reached = sparsity_lib.summarize(model, [name])["sparsity"]
    if abs(reached - rate) > 0.01:
      raise RuntimeError(f"{name} reached {100 * reached:.1f}% sparsity, not the "
                         f"{100 * rate:.1f}% asked for ({how})")


def prune(model: keras.Model, data: data_lib.Dataset, cfg: Config, workdir: str,
          rates: Dict[str, float], schedule: Optional[Schedule] = None,
          callbacks=()) -> PruneResult:
  """Prunes a trained model to the final sparsity of `rates` and fine-tunes it.

  Args:
    model: the trained baseline; it is not modified.
    data: the dataset; fine-tuning uses its training split and keeps the best epoch, by
      validation accuracy, among those at the final sparsity.
    cfg: uses the pruning_* and fine_tune_* fields, batch_size, seed and verbose.
    workdir: TensorBoard logs (with per-layer sparsity) go to workdir/logs/prune.
    rates: {layer: final sparsity}, from planning/layer_rates.rates_for.
    schedule: overrides the derived schedule_steps(cfg, ...).
    callbacks: more tf_keras callbacks for fine-tuning (a progress bar).

  Returns:
    A PruneResult whose model is stripped of pruning wrappers.
  """
  schedule = schedule or schedule_steps(cfg, len(data.train))
  # Sparsity is counted over every layer in scope, those a rate of 0 leaves dense included.
  names = layers_in_scope(model, cfg)
  rates = patterns.rates(cfg, model, rates)
  if cfg.block_size:  # TF-MOT prunes blocks of 2-D kernels only: the others stay dense.
    logging.info("--block_size=%s: pruning the Dense layers only (%s); left dense: %s.",
                 cfg.block_size, ", ".join(rates), ", ".join(n for n in names if n not in rates))
    names = list(rates)
  logging.info("Pruning %s: steps %d..%d every %d (%d steps/epoch, %d epochs).",
               ", ".join(f"{n} to {r:.0%}" for n, r in rates.items()), schedule.begin_step,
               schedule.end_step, schedule.frequency, schedule.steps_per_epoch,
               cfg.fine_tune_epochs)
  if cfg.schedule in ("one_shot", "iterative"):
    stripped, fit, left = schedules_lib.prune(model, data, cfg, workdir, rates, strip, callbacks)
    if cfg.pruning_criterion == "global_magnitude":
      rates = left  # One threshold: each layer's own rate is what it chose.
    _check_reached(stripped, rates, f"{cfg.schedule}, {cfg.pruning_criterion}")
    return PruneResult(model=stripped, pruned_layers=names, schedule=schedule, fit=fit,
                       layer_rates=rates)
  keras.utils.set_random_seed(cfg.seed)
  wrapped = _wrap(model, rates, schedule, cfg)
  log_dir = os.path.join(workdir, "logs", "prune")
  result = train_lib.fine_tune(
      wrapped, data, cfg, log_dir,
      first_best_epoch=0 if cfg.schedule == "constant" else schedule.target_epoch,
      callbacks=[tfmot.sparsity.keras.UpdatePruningStep(),
                 tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir), *callbacks])
  stripped = strip(wrapped, data_lib.sample(data.test, 256)[0])
  _check_reached(stripped, rates, f"schedule steps {schedule.begin_step}..{schedule.end_step} "
                 f"every {schedule.frequency} of {schedule.total_steps}")
  return PruneResult(model=stripped, pruned_layers=names, schedule=schedule, fit=result,
                     layer_rates=rates)
