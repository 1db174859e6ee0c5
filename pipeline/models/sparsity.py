"""Sparsity of Keras models: zeros per layer kernel, over pruned layers, and over all weights."""

from typing import Iterable

import numpy as np


def after_steps(rate: float, step: int, steps: int) -> float:
  """The fraction removed after `step` of `steps` geometric steps toward `rate`: each step
  removes the same fraction of what is left (one step: 1 - (1 - rate) ** (1 / steps))."""
  return 1.0 - (1.0 - rate) ** (step / steps)


def pruned_weight(layer):
  """The weight variable pruning acts on, as TF-MOT chooses it: a SeparableConv2D's pointwise
  kernel, else the kernel, else a DepthwiseConv2D's depthwise kernel; None for a layer with
  none of them. Every module that needs "the layer's kernel" asks here."""
  for attr in ("pointwise_kernel", "kernel", "depthwise_kernel"):
    w = getattr(layer, attr, None)
    if w is not None:  # A variable has no truth value.
      return w
  if getattr(layer, "layer", None) is None:
    return None
  # A quantize wrapper (quantization-aware training): its layer's kernel attribute is a
  # fake-quantized tensor while it is wrapped; the variable itself is among the wrapper's.
  by_name = {w.name.split("/")[-1].split(":")[0]: w for w in layer.weights}
  return next((by_name[a] for a in ("pointwise_kernel", "kernel", "depthwise_kernel")
               if a in by_name), None)


def kernel_of(layer):
  """pruned_weight as a numpy array, or None."""
  w = pruned_weight(layer)
  return None if w is None else np.asarray(w)


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
