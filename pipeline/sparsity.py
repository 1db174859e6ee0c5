"""Sparsity of Keras models: zeros per layer kernel, over pruned layers, and over all weights."""

from typing import Iterable

import numpy as np


def kernel_of(layer):
  """The layer's main weight tensor, the one pruning removes weights from (a SeparableConv2D's
  pointwise kernel, else the kernel or depthwise kernel), or None."""
  for attr in ("pointwise_kernel", "kernel", "depthwise_kernel"):
    w = getattr(layer, attr, None)
    if w is not None:
      return np.asarray(w)
  return None


def kernels(model) -> dict:
  """{layer name: kernel} for every layer that has one."""
  return {l.name: k for l in model.layers if (k := kernel_of(l)) is not None}


def layer_sparsity(model) -> dict:
  """{layer name: fraction of zeros in its kernel} for every layer that has a kernel."""
  return {name: float(np.mean(k == 0)) for name, k in kernels(model).items()}


def summarize(model, pruned_layers: Iterable[str]) -> dict:
  """Sparsity over the kernels of `pruned_layers`, over all weights, and per layer."""
  pruned_layers = list(pruned_layers)
  by_name = {layer.name: layer for layer in model.layers}
  kernels = [kernel_of(by_name[n]) for n in pruned_layers]
  zeros = sum(int(np.sum(k == 0)) for k in kernels)
  size = sum(k.size for k in kernels)
  weights = model.get_weights()
  all_zeros = sum(int(np.sum(w == 0)) for w in weights)
  all_size = sum(w.size for w in weights)
  return {
      "sparsity": zeros / size if size else 0.0,
      "model_sparsity": all_zeros / all_size if all_size else 0.0,
      "layer_sparsity": layer_sparsity(model),
      "pruned_layers": pruned_layers,
  }
