"""Structured pruning stage: score channels, remove the weakest for real, fine-tune in between."""

import dataclasses
import os
from typing import Dict, List, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from pipeline import data as data_lib
from pipeline.models import heads
from pipeline.models import macs as macs_lib
from pipeline.models import sparsity
from pipeline.structured import rounding
from pipeline.structured import surgery
from pipeline.models import train as train_lib
from pipeline import config as config_lib
from pipeline.config import Config, FlagError

import tf_keras as keras  # pylint: disable=g-bad-import-order

CRITERIA = config_lib.STRUCTURED_CRITERIA
SCOPES = config_lib.STRUCTURED_SCOPES
EQUIVALENCE_TOLERANCE = 1e-5
_NONLINEAR = ("ReLU", "Activation", "LeakyReLU", "ELU")
_ACTIVATION_CRITERIA = ("apoz", "mean_activation", "taylor")  # Read from activations.


def choose_fold(model: keras.Model, cfg: Config):
  """(fold, why): `cfg.structured_fold`, or for "auto" approximate when exact folding would
  leave more groups whole than it can prune (as on trained MobileNets), else exact."""
  if cfg.structured_fold != "auto":
    return cfg.structured_fold, "--structured_fold"
  # One analysis: the groups it folds approximately are exactly those exact folding blocks.
  loose = surgery.analyze(model, cfg.structured_skip_layers, "approximate")
  n_loose, n_inexact = len(loose.prunable()), len(loose.approximate)
  if n_inexact > n_loose - n_inexact:
    return "approximate", (f"auto: exact folding would leave {n_inexact} of {n_loose} "
                           "prunable groups whole")
  return "exact", f"auto: exact folding leaves {n_inexact} of {n_loose} groups whole"


@dataclasses.dataclass(frozen=True)
class StructuredResult:
  model: keras.Model
  steps: List[dict]  # Per step: channels before/after per group, equivalence difference.
  skipped: Dict[str, str]  # Producer layer -> why it was left whole.
  params_before: int
  params_after: int
  macs_before: int
  macs_after: int
  fold: str = "exact"
  fold_reason: str = ""


def _producer_kernel(layer) -> np.ndarray:
  """Output channels on the last axis: Conv2D/Dense kernel, SeparableConv2D pointwise kernel."""
  w = layer.get_weights()
  return w[1] if type(layer).__name__ == "SeparableConv2D" else w[0]


def _follow(a: surgery.Analysis, producer: str, classes) -> str:
  """The first layer of `classes` on the producer's channels, following pass-through layers;
  the producer itself if none."""
  consumers = {}
  for lc in a.order:
    for n in (lc["inbound_nodes"][0] if lc["inbound_nodes"] else []):
      consumers.setdefault(n[0], []).append(lc)
  name = producer
  while True:
    nxt = [lc for lc in consumers.get(name, []) if lc["class_name"] in surgery.PASS_THROUGH]
    if len(nxt) != 1 or len(consumers.get(name, [])) != 1:
      return producer
    name = nxt[0]["name"]
    if nxt[0]["class_name"] in classes:
      return name


def _activation_point(a: surgery.Analysis, producer: str) -> str:
  """Where a producer's channels are read after their nonlinearity (for activation criteria)."""
  layer = a.model.get_layer(producer)
  if layer.get_config().get("activation", "linear") != "linear":
    return producer
  return _follow(a, producer, _NONLINEAR)


def _activation_stats(a: surgery.Analysis, criterion: str, names, x: np.ndarray,
                      y: np.ndarray) -> Dict[str, np.ndarray]:
  """{layer: per-channel statistic over `x`} for apoz, mean_activation or taylor, summed batch
  by batch: never the activation maps themselves (on a MobileNet those are hundreds of MB per
  layer for 512 images)."""
  # get_output_at(-1): a Sequential model's layers were called again by
  # flatten.as_functional; their first output belongs to the Sequential's own graph, which
  # a.model's input does not reach ("Graph disconnected").
  probe = keras.Model(a.model.inputs, [a.model.get_layer(n).get_output_at(-1) for n in names]
                      + [a.model.output])
  head = heads.read(a.model)  # Taylor's gradient: of the head's own loss.
  stats = {}
  for start in range(0, len(x), 128):
    with tf.GradientTape() as tape:
      outs = probe(x[start:start + 128], training=False)
      loss = heads.mean_loss(head, y[start:start + 128], outs[-1])
    g = tape.gradient(loss, outs[:-1]) if criterion == "taylor" else [None] * len(names)
    for n, o, gr in zip(names, outs[:-1], g):
      o = o.numpy().reshape(o.shape[0], -1, o.shape[-1])
      if criterion == "apoz":  # Hu et al.: channels that are mostly zero carry little.
        batch = np.mean(o > 0, axis=1).sum(0)
      elif criterion == "mean_activation":
        batch = o.mean(axis=1).sum(0)
      else:  # Molchanov et al. 2017: |mean over positions of activation x gradient|.
        batch = np.abs((o * gr.numpy().reshape(o.shape)).mean(axis=1)).sum(0)
      stats[n] = stats.get(n, 0.0) + batch
  return {n: v / len(x) for n, v in stats.items()}


def scores(a: surgery.Analysis, criterion: str, x: np.ndarray,
           y: np.ndarray) -> Dict[int, np.ndarray]:
  """Per-channel importance of every prunable group (higher = keep); coupled producers add up.

  Args:
    a: the analysis.
    criterion: one of CRITERIA.
    x: float32 calibration images (activation-based criteria and taylor).
    y: their labels (taylor).

  Raises:
    ValueError: unknown criterion.
  """
  if criterion not in CRITERIA:
    raise FlagError("structured_criterion", criterion, f"unknown; valid: {', '.join(CRITERIA)}")
  groups = a.prunable()
  points, stats = _read_points(a, criterion, groups, x, y)
  if criterion == "bn_gamma":
    groups = _groups_with_bn(a, groups)  # The others are not scored, so they stay whole.
  return {g.id: _group_score(a, criterion, g, points, stats) for g in groups}


def _read_points(a: surgery.Analysis, criterion: str, groups, x: np.ndarray, y: np.ndarray):
  """(points, stats): where each producer of `groups` is read (producer -> layer), and the
  activation statistics at those layers (empty for weight-based criteria)."""
  points = {p: (_activation_point(a, p) if criterion in _ACTIVATION_CRITERIA
                else p) for g in groups for p in g.producers}
  stats = (_activation_stats(a, criterion, sorted(set(points.values())), x, y)
           if criterion in _ACTIVATION_CRITERIA else {})
  return points, stats


def _groups_with_bn(a: surgery.Analysis, groups) -> list:
  """The groups whose every producer is followed by a BatchNormalization (for bn_gamma).

  Raises:
    ValueError: there are none.
  """
  with_bn = [g for g in groups if all(_follow(a, p, ("BatchNormalization",)) != p
                                      for p in g.producers)]
  if not with_bn:
    raise ValueError("--structured_criterion=bn_gamma: no BatchNormalization follows any "
                     "prunable layer; use l1 or an activation criterion for this model")
  return with_bn


def _group_score(a: surgery.Analysis, criterion: str, g: surgery.Group, points: dict,
                 stats: dict) -> np.ndarray:
  """Per-channel importance of one group: its producers' scores added up."""
  total = np.zeros(g.size)
  for p in g.producers:
    if criterion in ("l1", "l2"):
      k = _producer_kernel(a.model.get_layer(p)).reshape(-1, g.size)
      total += np.abs(k).sum(0) if criterion == "l1" else np.sqrt((k ** 2).sum(0))
    elif criterion == "bn_gamma":
      total += np.abs(a.model.get_layer(_follow(a, p, ("BatchNormalization",))).gamma.numpy())
    elif criterion == "mean_activation":
      total += np.abs(stats[points[p]])
    else:  # apoz (as 1 - the average proportion of zeros) and taylor.
      total += stats[points[p]]
  return total


def check_criterion(model: keras.Model, criterion: str) -> None:
  """Raises the ValueError `scores` would, for criteria that need something of the model
  (bn_gamma: a BatchNormalization after a prunable layer), before any training is spent."""
  if criterion == "bn_gamma":
    scores(surgery.analyze(model), criterion, None, None)


def select(a: surgery.Analysis, group_scores: Dict[int, np.ndarray], rate: float, scope: str,
           min_channels: int) -> Dict[int, np.ndarray]:
  """{group id: sorted channels kept} removing `rate` of the prunable channels.

  per_layer removes the same fraction from every group; global ranks every channel by its
  score divided by its group's mean score, so robust groups give up more.
  """
  keep = {}
  if scope == "per_layer":
    for gid, s in group_scores.items():
      n_keep = max(min(min_channels, len(s)), len(s) - int(rate * len(s)))
      keep[gid] = np.sort(np.argsort(-s, kind="stable")[:n_keep])
    return keep
  if scope != "global":
    raise FlagError("structured_scope", scope, f"unknown; valid: {', '.join(SCOPES)}")
  entries = sorted((s[c] / (s.mean() + 1e-12), gid, c)
                   for gid, s in group_scores.items() for c in range(len(s)))
  to_remove = int(rate * len(entries))
  removed = {gid: set() for gid in group_scores}
  for _, gid, c in entries:
    if to_remove == 0:
      break
    if len(group_scores[gid]) - len(removed[gid]) > min(min_channels, len(group_scores[gid])):
      removed[gid].add(c)
      to_remove -= 1
  return {gid: np.array(sorted(set(range(len(s))) - removed[gid]), int)
          for gid, s in group_scores.items()}


def toward(a: surgery.Analysis, group_scores: Dict[int, np.ndarray], counts: Dict[str, int],
           start: Dict[str, int], fraction: float) -> Dict[int, np.ndarray]:
  """{group id: best-scored channels kept} on the way to `counts` (group name -> kept count,
  from `start` channels): at `fraction` of the steps, start * (counts / start) ** fraction
  channels, so every step keeps the same fraction; exactly `counts` at 1."""
  keep = {}
  scored = {",".join(g.producers) for g in a.prunable() if g.id in group_scores}
  missing = [n for n in counts if n not in scored]
  if missing:  # The plan was made for this model: a group it names must be here.
    raise RuntimeError(f"--target_speedup planned cuts for {', '.join(missing)}, which this "
                       "model's analysis cannot score")
  for g in a.prunable():
    name = ",".join(g.producers)
    if name in counts:
      n = int(round(start[name] * (counts[name] / start[name]) ** fraction))
      n = min(g.size, max(counts[name], n))
      keep[g.id] = np.sort(np.argsort(-group_scores[g.id], kind="stable")[:n])
  return keep


def _shrink_checked(a: surgery.Analysis, keep, x: np.ndarray, step: int):
  """The model with only `keep`'s channels, checked against the masked original on `x`: exactly
  for the groups that fold exactly. Returns (model, the step's report fields).

  Raises:
    RuntimeError: the shrunken model differs from the masked original (a surgery bug).
  """
  small = surgery.shrink(a, keep)
  diff = surgery.max_output_difference(a, keep, small, x)
  approximate = [",".join(a.groups[g].producers) for g in a.approximate
                 if g in keep and len(keep[g]) < a.groups[g].size]
  if approximate:  # The exact groups alone must still give the masked model exactly.
    exact_keep = {g: k for g, k in keep.items() if g not in a.approximate}
    exact_diff = surgery.max_output_difference(a, exact_keep, surgery.shrink(a, exact_keep), x)
  else:
    exact_diff = diff
  if exact_diff > EQUIVALENCE_TOLERANCE:
    raise RuntimeError(f"structured step {step + 1}: shrunken model differs from the masked "
                       f"original by {exact_diff:.2e} (> {EQUIVALENCE_TOLERANCE:g})")
  return small, {"max_abs_diff_vs_masked": diff, "approximate_groups": approximate}


def prune_structures(model: keras.Model, data: data_lib.Dataset, cfg: Config,
                     workdir: str, callbacks=(),
                     counts: Optional[Dict[str, int]] = None) -> StructuredResult:
  """Removes `cfg.structured_rate` of the channels (or, given `counts`, keeps that many
  channels of each named group: --target_speedup) in `cfg.structured_steps` steps.

  Each step scores the channels, rebuilds a smaller model, checks that it equals the masked
  original before any fine-tuning, then fine-tunes it (fine_tune_epochs split over the steps,
  with `callbacks`, e.g. a progress bar).

  Raises:
    RuntimeError: the shrunken model differs from the masked original (a surgery bug).
  """
  x_cal, y_cal = data_lib.sample(data.train, cfg.calibration_examples, cfg.seed)
  # Every step keeps the same fraction, so that k steps keep 1 - structured_rate in all.
  per_step = sparsity.after_steps(cfg.structured_rate, 1, cfg.structured_steps)
  current, steps, skipped = model, [], {}
  params0, macs0 = model.count_params(), macs_lib.count(model)
  fold, fold_reason = choose_fold(model, cfg)
  start = _start_counts(model, cfg, fold, counts)
  logging.info("Structured fold: %s (%s).", fold, fold_reason)
  for step in range(cfg.structured_steps):
    a = surgery.analyze(current, cfg.structured_skip_layers, fold)
    skipped.update(a.skipped())
    s = scores(a, cfg.structured_criterion, x_cal, y_cal)
    skipped.update({p: f"{cfg.structured_criterion} cannot score it (no BatchNormalization follows)"
                    for g in a.prunable() if g.id not in s for p in g.producers})
    keep, whole = _step_keep(a, s, cfg, step, per_step, counts, start)
    skipped.update(whole)
    small, checked = _shrink_checked(a, keep, x_cal[:64], step)
    steps.append(_step_report(a, keep, step, checked))
    logging.info("Structured step %d/%d (%s, %s): %d -> %d parameters; equals the masked "
                 "original to %.1e.", step + 1, cfg.structured_steps, cfg.structured_criterion,
                 cfg.structured_scope, current.count_params(), small.count_params(),
                 checked["max_abs_diff_vs_masked"])
    _fine_tune_step(small, data, cfg, workdir, step, callbacks)
    current = small
  for producer, reason in sorted(skipped.items()):
    logging.info("Structured: left %s whole: %s.", producer, reason)
  return StructuredResult(current, steps, skipped, params0, current.count_params(), macs0,
                          macs_lib.count(current), fold, fold_reason)


def _start_counts(model: keras.Model, cfg: Config, fold: str,
                  counts: Optional[Dict[str, int]]) -> Optional[Dict[str, int]]:
  """With `counts` (--target_speedup), every prunable group's size in `model`, where its
  steps start; else `counts` itself (None or empty)."""
  return counts and {",".join(g.producers): g.size
                     for g in surgery.analyze(model, cfg.structured_skip_layers, fold).prunable()}


def _step_keep(a: surgery.Analysis, s: Dict[int, np.ndarray], cfg: Config, step: int,
               per_step: float, counts: Optional[Dict[str, int]],
               start: Optional[Dict[str, int]]):
  """(keep, whole) of one step: {group id: channels kept}, and {producer: why} for groups the
  rounding to --channel_multiple left whole (none toward `counts`)."""
  if counts:  # From the latency table (pipeline/planning/speed_target.py).
    return toward(a, s, counts, start, (step + 1) / cfg.structured_steps), {}
  keep = select(a, s, per_step, cfg.structured_scope, cfg.min_channels)
  keep, whole = rounding.round_kept(keep, s, {g: a.groups[g].size for g in keep},
                                    cfg.channel_multiple, cfg.min_channels)
  return keep, {p: why for g, why in whole.items() for p in a.groups[g].producers}


def _step_report(a: surgery.Analysis, keep, step: int, checked: dict) -> dict:
  """One step's entry of StructuredResult.steps: channels before/after per group, and the
  equivalence check's fields."""
  return {"step": step + 1, **checked,
          "groups": {",".join(g.producers): [g.size, len(keep.get(g.id, range(g.size)))]
                     for g in a.prunable()}}


def _fine_tune_step(small: keras.Model, data: data_lib.Dataset, cfg: Config, workdir: str,
                    step: int, callbacks) -> None:
  """Fine-tunes `small` after `step` for its share of fine_tune_epochs (none if that is 0)."""
  # --fine_tune_epochs=0 (allowed for one-shot pruning) fine-tunes nothing here either.
  if cfg.fine_tune_epochs:
    train_lib.fine_tune(small, data, cfg,
                        os.path.join(workdir, "logs", f"structured_{step + 1}"),
                        epochs=max(1, cfg.fine_tune_epochs // cfg.structured_steps),
                        seed=cfg.seed + step, callbacks=callbacks)
