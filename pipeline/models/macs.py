"""Multiply-accumulates per inference (batch 1) of a tf_keras model, counted from its layers."""

import numpy as np


def layer_macs(layer) -> int:
  """MACs of one Conv2D, DepthwiseConv2D, SeparableConv2D or Dense layer (0 for others)."""
  cls = type(layer).__name__
  try:
    out = [int(d) for d in layer.output.shape[1:]]
    cin = int(layer.input.shape[-1])
  except (AttributeError, TypeError, ValueError):  # Not built or used more than once.
    return 0
  positions = int(np.prod(out[:-1])) if len(out) > 1 else 1
  if cls == "Conv2D":
    kh, kw = layer.kernel_size
    return positions * out[-1] * kh * kw * cin // layer.groups
  if cls == "DepthwiseConv2D":
    kh, kw = layer.kernel_size
    return positions * out[-1] * kh * kw
  if cls == "SeparableConv2D":
    kh, kw = layer.kernel_size
    return positions * (cin * layer.depth_multiplier * (kh * kw + out[-1]))
  if cls == "Dense":
    return positions * cin * out[-1]
  return 0


def count(model) -> int:
  """Total MACs of `model` for one input."""
  return sum(layer_macs(l) for l in model.layers)
