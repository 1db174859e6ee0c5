"""Layer-wise Optimal Brain Surgeon: prune a layer and update the weights it keeps to make up.

For a Dense or Conv2D layer with inputs X (rows = calibration examples, or image patches for
a convolution: im2col), the layer's output error for a change of its weights is governed by
H = X^T X. OBS removes the weight whose removal raises that error least, w_q^2 / [H^-1]_qq,
and moves the remaining weights of its output by -w_q / [H^-1]_qq * H^-1[:, q] to compensate.
Done exactly, one weight at a time, it costs far too much; SparseGPT (Frantar & Alistarh,
2023; after Optimal Brain Compression, 2022) processes the input dimension in order with the
Cholesky factor of H^-1, choosing the mask block by block (128 inputs at a time) by that
saliency, and spreading each pruned weight's error over the inputs not yet visited. That is
what `sparsegpt` does, in numpy, float64.

The inputs come from the dense model (every layer sees the original activations), which is
the layer-wise problem OBS solves; the tests check that the reconstruction lowers the layer's
output error against the same mask without it.
"""

from typing import Dict

import numpy as np
import tensorflow as tf

from pipeline.models import flatten
from pipeline.config import FlagError

import tf_keras as keras  # pylint: disable=g-bad-import-order

BLOCK = 128
DAMPING = 0.01  # Of the mean diagonal of H, added to it (SparseGPT's default).


def sparsegpt(w: np.ndarray, h: np.ndarray, rate: float, block: int = BLOCK,
              damping: float = DAMPING):
  """Prunes `rate` of `w` (rows = outputs, columns = inputs) for inputs with Gram matrix `h`.

  Returns:
    (the pruned and reconstructed weights, the boolean keep-mask).
  """
  w = np.array(w, np.float64)
  h = np.array(h, np.float64)
  rows, cols = w.shape
  dead = np.diag(h) == 0  # Inputs that are always zero: their weights do nothing.
  h[dead, dead] = 1.0
  w[:, dead] = 0.0
  h[np.diag_indices(cols)] += damping * np.mean(np.diag(h))
  prior = w != 0  # An earlier round's zeros stay zero, whatever the updates do to them.
  # Upper Cholesky factor U of H^-1 (H^-1 = U^T U): row i holds what pruning input i needs.
  u = np.linalg.cholesky(np.linalg.inv(h)).T
  keep = np.ones_like(w, bool)
  for i1 in range(0, cols, block):
    i2 = min(i1 + block, cols)
    w1, u1 = w[:, i1:i2].copy(), u[i1:i2, i1:i2]
    err = np.zeros_like(w1)
    saliency = w1 ** 2 / np.diag(u1)[None, :] ** 2
    drop = int(round(rate * saliency.size))
    mask = np.ones(saliency.size, bool)
    mask[np.argsort(saliency, axis=None, kind="stable")[:drop]] = False
    mask = mask.reshape(saliency.shape) & prior[:, i1:i2]
    for i in range(i2 - i1):
      q = np.where(mask[:, i], w1[:, i], 0.0)
      e = (w1[:, i] - q) / u1[i, i]
      w1[:, i:] -= np.outer(e, u1[i, i:])
      w1[:, i] = q
      err[:, i] = e
    w[:, i1:i2] = w1
    w[:, i2:] -= err @ u[i1:i2, i2:]
    keep[:, i1:i2] = mask
  return np.where(keep, w, 0.0), keep


def _rows(layer, x: np.ndarray) -> np.ndarray:
  """The layer's input as rows its kernel multiplies: patches (im2col) for a Conv2D."""
  if isinstance(layer, keras.layers.Dense):
    return x.reshape(-1, x.shape[-1])
  kh, kw = layer.kernel_size
  sh, sw = layer.strides
  dh, dw = layer.dilation_rate
  patches = tf.image.extract_patches(x, sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1],
                                     rates=[1, dh, dw, 1], padding=layer.padding.upper())
  return patches.numpy().reshape(-1, patches.shape[-1])


def supported(layer) -> bool:
  return isinstance(layer, keras.layers.Dense) or (
      type(layer).__name__ == "Conv2D" and layer.groups == 1)


def gram(model, names, x: np.ndarray, batch: int = 64) -> Dict[str, np.ndarray]:
  """{layer: X^T X of its inputs over the images `x`}, accumulated batch by batch."""
  # A Sequential model's layers are called again on a new input (as surgery does), and each
  # layer's last call is the one that graph reaches.
  graph = flatten.as_functional(model)
  probe = keras.Model(graph.inputs, [graph.get_layer(n).get_input_at(-1) for n in names])
  out = {}
  for start in range(0, len(x), batch):
    inputs = probe(x[start:start + batch], training=False)
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    for n, t in zip(names, inputs):
      r = _rows(model.get_layer(n), t.numpy()).astype(np.float64)
      out[n] = out.get(n, 0.0) + r.T @ r
  return out


def prune_layers(model, rates: Dict[str, float], x: np.ndarray) -> Dict[str, float]:
  """Prunes each layer of `rates` in place with `sparsegpt`; returns {layer: sparsity left}.

  Raises:
    ValueError: a layer OBS cannot reconstruct (only Dense and Conv2D kernels are handled).
  """
  bad = [n for n in rates if not supported(model.get_layer(n))]
  if bad:
    raise FlagError("pruning_criterion", "obs", f"handles Dense and Conv2D layers, not "
                    f"{', '.join(f'{n} ({type(model.get_layer(n)).__name__})' for n in bad)}; "
                    "leave them out with --layer_rates=NAME:0 or use another criterion")
  grams = gram(model, list(rates), x)
  out = {}
  for n, rate in rates.items():
    layer = model.get_layer(n)
    k = layer.kernel.numpy()
    w, keep = sparsegpt(k.reshape(-1, k.shape[-1]).T, grams[n], rate)
    layer.kernel.assign(w.T.reshape(k.shape).astype(k.dtype))
    out[n] = 1.0 - float(keep.mean())
  return out
