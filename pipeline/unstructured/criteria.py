"""Which weights to remove: unstructured pruning criteria beyond TF-MOT's per-layer magnitude.

Each criterion scores every weight of the pruned kernels (higher = keep) and the lowest go:

- magnitude: |w| per layer (what TF-MOT does).
- global_magnitude: |w| with one threshold over all pruned layers, so a layer with many small
  weights loses more than the asked rate and one with large weights less.
- gradient: |w * dL/dw| summed over calibration batches (SNIP, Lee et al. 2019).
- obd: Optimal Brain Damage's saliency 1/2 * H_ii * w^2 (LeCun et al. 1990), the Hessian's
  diagonal approximated by the empirical Fisher, the mean squared gradient over small batches.
- obs: layer-wise Optimal Brain Surgeon with reconstruction (pipeline/unstructured/obs.py).
- random: a control.

TF-MOT stays the engine for training with masks: the chosen weights are zeroed and the layer
is wrapped with prune_low_magnitude at that sparsity, updating its mask once, on the first
step, when the zeros are exactly the smallest magnitudes; so TF-MOT keeps exactly the
criterion's mask through fine-tuning (tests/test_criteria.py checks it after fine-tuning).
"""

from typing import Dict, List

import numpy as np
import tensorflow as tf

from pipeline import config as config_lib
from pipeline.models import heads
from pipeline.models import sparsity
from pipeline.unstructured import obs as obs_lib
from pipeline.config import FlagError


CRITERIA = config_lib.PRUNING_CRITERIA  # --pruning_criterion's choices.
FISHER_BATCH = 16  # Small batches: the mean of squared batch gradients nears the per-example one.


def kept_count(size: int, rate: float) -> int:
  """Weights TF-MOT keeps in a kernel of `size` at `rate` sparsity (its own rounding)."""
  return int(max(1, np.round(np.float32(size) * np.float32(1 - rate))))


def _gradients(model, names: List[str], x: np.ndarray, y: np.ndarray, batch: int,
               square: bool) -> Dict[str, np.ndarray]:
  """Per layer: the sum over batches of dL/dw (squared, with `square`), as numpy; L is the
  mean cross-entropy of the model's own head (softmax, logits or one unit)."""
  head = heads.read(model)
  weights = [sparsity.pruned_weight(model.get_layer(n)) for n in names]
  out = {n: np.zeros(w.shape, np.float64) for n, w in zip(names, weights)}
  for start in range(0, len(x), batch):
    with tf.GradientTape() as tape:
      loss = heads.mean_loss(head, y[start:start + batch],
                             model(x[start:start + batch], training=False))
    for n, g in zip(names, tape.gradient(loss, weights)):
      g = g.numpy().astype(np.float64)
      out[n] += g ** 2 if square else g
  return out


def scores(model, names: List[str], criterion: str, x: np.ndarray, y: np.ndarray,
           seed: int = 0) -> Dict[str, np.ndarray]:
  """{layer: score per weight of its pruned kernel}, higher = keep (not for obs); weights that
  are zero already score lowest, so a later round of pruning never brings one back.

  Raises:
    ValueError: unknown criterion.
  """
  w = {n: sparsity.pruned_weight(model.get_layer(n)).numpy().astype(np.float64) for n in names}
  return {n: np.where(w[n] == 0, -1.0, v)
          for n, v in _scores(model, names, criterion, x, y, seed, w).items()}


def _scores(model, names, criterion, x, y, seed, w):
  if criterion not in CRITERIA or criterion == "obs":
    raise FlagError("pruning_criterion", criterion, f"no per-weight score; valid: "
                    f"{', '.join(c for c in CRITERIA if c != 'obs')}")
  if criterion in ("magnitude", "global_magnitude"):
    return {n: np.abs(v) for n, v in w.items()}
  if criterion == "random":
    rng = np.random.default_rng(seed)
    return {n: rng.random(v.shape) for n, v in w.items()}
  if criterion == "gradient":
    # |w * g| per batch, summed: a weight whose removal moves the loss either way scores high.
    total = {n: np.zeros_like(v) for n, v in w.items()}
    for start in range(0, len(x), 128):
      g = _gradients(model, names, x[start:start + 128], y[start:start + 128], 128, False)
      for n in names:
        total[n] += np.abs(w[n] * g[n])
    return total
  fisher = _gradients(model, names, x, y, FISHER_BATCH, True)
  batches = -(-len(x) // FISHER_BATCH)
  return {n: 0.5 * (fisher[n] / batches) * w[n] ** 2 for n in names}


def masks(model, rates: Dict[str, float], criterion: str, x: np.ndarray, y: np.ndarray,
          seed: int = 0) -> Dict[str, np.ndarray]:
  """{layer: boolean keep-mask of its pruned kernel} at each layer's rate (global_magnitude:
  at the rates' weighted mean, one threshold over every layer)."""
  names = list(rates)
  s = scores(model, names, criterion, x, y, seed)
  if criterion == "global_magnitude":
    flat = np.concatenate([s[n].ravel() for n in names])
    total = sum(rates[n] * s[n].size for n in names) / flat.size
    keep = kept_count(flat.size, total)
    order = np.argsort(-flat, kind="stable")
    chosen = np.zeros(flat.size, bool)
    chosen[order[:keep]] = True
    out, at = {}, 0
    for n in names:
      out[n] = chosen[at:at + s[n].size].reshape(s[n].shape)
      at += s[n].size
    return out
  out = {}
  for n in names:
    flat = s[n].ravel()
    chosen = np.zeros(flat.size, bool)
    chosen[np.argsort(-flat, kind="stable")[:kept_count(flat.size, rates[n])]] = True
    out[n] = chosen.reshape(s[n].shape)
  return out


def apply(model, rates: Dict[str, float], criterion: str, x: np.ndarray, y: np.ndarray,
          seed: int = 0) -> Dict[str, float]:
  """Zeroes, in place, the weights `criterion` removes at `rates` (obs also updates the
  weights it keeps); returns {layer: the fraction of its pruned kernel now zero} (which
  global_magnitude chooses per layer)."""
  if criterion == "obs":
    obs_lib.prune_layers(model, rates, x)
  else:
    for n, keep in masks(model, rates, criterion, x, y, seed).items():
      v = sparsity.pruned_weight(model.get_layer(n))
      v.assign(np.where(keep, v.numpy(), 0).astype(v.dtype.as_numpy_dtype))
  return {n: float(np.mean(sparsity.pruned_weight(model.get_layer(n)).numpy() == 0)) for n in rates}
