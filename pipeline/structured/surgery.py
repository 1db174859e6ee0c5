"""Structured surgery: find which channels of a tf_keras model can go, and rebuild it smaller.

A model's tensors carry channel spaces. A producer (Conv2D, Dense, SeparableConv2D) starts a
group of channels; pass-through layers (BatchNorm, activations, pooling, Dropout, padding,
DepthwiseConv2D) keep it; Add-like joins couple the groups they join, so those are removed
together; Concatenate and Flatten map channels to positions. A group is removable only if
every layer that touches it is understood; anything else leaves it whole, with a reason.
"""

import dataclasses
import re
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

import tf_keras as keras  # pylint: disable=g-bad-import-order

from pipeline import config as config_lib
from pipeline.models import flatten
from pipeline.config import FlagError

PRODUCERS = ("Conv2D", "Dense", "SeparableConv2D")
PASS_THROUGH = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout",
                "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "MaxPooling2D",
                "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
                "ZeroPadding2D", "Cropping2D", "UpSampling2D", "DepthwiseConv2D")
JOINS = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
# Arithmetic with a number (`x + 3.0` in a hard-swish), recorded by tf_keras as a TFOpLambda
# layer: each channel keeps its place, so it passes the channel space through.
SCALAR_OPS = ("__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv")


@dataclasses.dataclass
class Group:
  """A set of channels removed together: one producer, or several coupled by joins."""
  id: int
  size: int
  producers: List[str]
  blocked: Optional[str] = None  # Why this group cannot be pruned.


@dataclasses.dataclass
class Analysis:
  model: keras.Model  # Functional (a Sequential model is converted).
  groups: Dict[int, Group]  # Root ids only.
  in_space: Dict[str, object]  # layer name -> space of its (first) input
  out_space: Dict[str, object]  # layer name -> space of its output
  order: List[dict]  # The functional config's layers, in topological order.
  consts: Dict[str, np.ndarray]  # layer name -> per-channel output value when producers output 0
  # Groups whose removal is folded approximately (fold="approximate"): a BatchNorm constant
  # meets zero padding, so the smaller model differs from the masked one at image borders.
  approximate: Dict[int, str] = dataclasses.field(default_factory=dict)

  def prunable(self) -> List[Group]:
    return [g for g in self.groups.values() if g.blocked is None]

  def skipped(self) -> Dict[str, str]:
    """{producer layer: reason} for every group left whole."""
    return {p: g.blocked for g in self.groups.values() if g.blocked for p in g.producers}


class _Spaces:
  """Union-find over groups, plus the composite spaces built from them."""

  def __init__(self):
    self.parent, self.groups = {}, {}

  def new(self, size, producer):
    gid = len(self.parent)
    self.parent[gid] = gid
    self.groups[gid] = Group(gid, size, [producer])
    return ("group", gid)

  def find(self, gid):
    while self.parent[gid] != gid:
      gid = self.parent[gid]
    return gid

  def union(self, a, b):
    ra, rb = self.find(a), self.find(b)
    if ra != rb:
      self.parent[rb] = ra
      ga, gb = self.groups[ra], self.groups.pop(rb)
      ga.producers += gb.producers
      ga.blocked = ga.blocked or gb.blocked
    return ra

  def block(self, space, reason, override=False):
    kind = space[0]
    if kind == "group":
      g = self.groups[self.find(space[1])]
      g.blocked = reason if override else (g.blocked or reason)
    elif kind == "concat":
      for s in space[1]:
        self.block(s, reason, override)
    elif kind == "flat":
      self.block(space[1], reason, override)

  def canonical(self, space):
    kind = space[0]
    if kind == "group":
      return ("group", self.find(space[1]))
    if kind == "concat":
      return ("concat", tuple(self.canonical(s) for s in space[1]))
    if kind == "flat":
      return ("flat", self.canonical(space[1]), space[2])
    return space


def _channels(layer) -> int:
  return int(layer.output.shape[-1])


def _inbound(lc: dict) -> list:
  """The [name, node, index, kwargs] entries of a layer's first call."""
  return flatten.node_entries(lc["inbound_nodes"][0]) if lc["inbound_nodes"] else []


def _scalar_op(lc: dict, layer) -> Optional[dict]:
  """The keyword arguments of a TFOpLambda that adds, subtracts, multiplies or divides by a
  number, else None."""
  entries = _inbound(lc)
  if lc["class_name"] != "TFOpLambda" or getattr(layer, "symbol", "") not in SCALAR_OPS or \
      len(entries) != 1 or len(entries[0]) < 4:
    return None
  kwargs = entries[0][3]
  return kwargs if isinstance(kwargs.get("y"), (int, float)) else None


FOLDS = tuple(f for f in config_lib.STRUCTURED_FOLDS if f != "auto")  # "auto": decided earlier.


def analyze(model: keras.Model, skip: str = "", fold: str = "exact") -> Analysis:
  """Finds the channel groups of `model` and whether each can be removed.

  Args:
    model: a tf_keras Sequential or Functional model.
    skip: a regex; producers whose names match it (fully) are left whole.
    fold: "exact" leaves whole a group whose BatchNorm constant would meet zero padding (no
      bias can hold it exactly); "approximate" removes it anyway, folding the constant as in
      the image's interior (as Torch-Pruning does), and lists it in `approximate`.

  Returns:
    The Analysis; the classifier (any group reaching a model output) is never prunable.
  """
  model = flatten.as_functional(model)
  config = model.get_config()
  sp, in_space, out_space = _trace_spaces(model, config, skip)
  analysis = Analysis(model, sp.groups, in_space, out_space, config["layers"], {})
  analysis.consts = _zero_producer_values(analysis)
  if fold not in FOLDS:
    raise FlagError("structured_fold", fold, f"unknown; valid: {', '.join(FOLDS)}")
  _settle_inexact_folds(analysis, sp, fold)
  return analysis


def _trace_spaces(model: keras.Model, config: dict, skip: str):
  """(spaces, in_space, out_space): every layer's input and output channel space, in
  canonical form, with the groups reaching a model output blocked."""
  layers = {l.name: l for l in model.layers}
  sp = _Spaces()
  in_space, out_space = {}, {}
  for lc in config["layers"]:
    name = lc["name"]
    inputs = [out_space[n[0]] for n in _inbound(lc)]
    if inputs:
      in_space[name] = inputs[0]
    out_space[name] = _space_of(lc, layers[name], inputs, sp, skip)
  _block_outputs(config, out_space, sp)
  in_space = {k: sp.canonical(v) for k, v in in_space.items()}
  out_space = {k: sp.canonical(v) for k, v in out_space.items()}
  return sp, in_space, out_space


def _block_outputs(config: dict, out_space: dict, sp: _Spaces) -> None:
  """Blocks every group that reaches a model output: the classifier is never pruned."""
  for out in config["output_layers"]:
    sp.block(out_space[out[0]], "it is the model's output (the classifier is never pruned)",
             override=True)


def _settle_inexact_folds(analysis: Analysis, sp: _Spaces, fold: str) -> None:
  """Groups whose constant meets zero padding: blocked ("exact"), or, if otherwise
  prunable, listed in `analysis.approximate` ("approximate")."""
  inexact = _inexact_folds(analysis, sp)
  for group_id, reason in inexact.items():
    if fold == "exact":
      sp.block(("group", group_id), reason + ", so it cannot be folded exactly")
    elif sp.groups[group_id].blocked is None:
      analysis.approximate[group_id] = reason


def _space_of(lc: dict, layer, inputs: list, sp: "_Spaces", skip: str):
  """The channel space of one layer's output, given its inputs' spaces: a new group (a
  producer), its input's (a pass-through), a join of its inputs, or fixed (blocking what
  feeds it, with the reason)."""
  name, cls = lc["name"], lc["class_name"]
  if cls == "InputLayer":
    return ("fixed", _channels(layer))
  if len(lc["inbound_nodes"]) > 1:
    for s in inputs:
      sp.block(s, f"{name} is used more than once")
    return ("fixed", _channels(layer))
  if cls in PRODUCERS and not (cls == "Conv2D" and layer.groups != 1):
    space = sp.new(_channels(layer), name)
    if lc["config"].get("activation") == "softmax":  # Its channels depend on each other.
      sp.block(space, f"{name} ends in a softmax over its channels")
    if skip and re.fullmatch(skip, name):
      sp.block(space, f"{name} matches --structured_skip_layers")
    return space
  if (cls in PASS_THROUGH and not (cls == "DepthwiseConv2D" and layer.depth_multiplier != 1)
      or _scalar_op(lc, layer) is not None):
    return inputs[0]
  if cls == "Flatten" and len(layer.input.shape) == 4:
    return ("flat", inputs[0], int(layer.input.shape[1]) * int(layer.input.shape[2]))
  if cls in JOINS:
    groups = [s for s in inputs if s[0] == "group"]
    if len(groups) == len(inputs):
      root = groups[0][1]
      for s in groups[1:]:
        root = sp.union(root, s[1])
      return ("group", root)
    for s in inputs:
      sp.block(s, f"{name} joins it with channels that cannot be removed")
    return ("fixed", _channels(layer))
  if cls == "Concatenate" and layer.axis in (-1, len(layer.output.shape) - 1):
    return ("concat", tuple(inputs))
  for s in inputs:
    sp.block(s, f"{name} ({cls}) is not supported by the surgery")
  return ("fixed", _channels(layer))


def _zero_producer_values(a: Analysis) -> Dict[str, np.ndarray]:
  """Each layer's per-channel output if every producer output zero (weights and bias zeroed).

  A channel removed from a producer reads downstream as this value: zero through ReLU-like
  layers, a constant after a BatchNorm. Folding it into the consumer's bias keeps the shrunken
  model equal to the masked one.
  """
  layers = {l.name: l for l in a.model.layers}
  consts = {}
  for lc in a.order:
    name, cls = lc["name"], lc["class_name"]
    layer = layers[name]
    ins = [consts[n[0]] for n in _inbound(lc)]
    space = a.out_space[name]
    if cls == "InputLayer" or space[0] == "fixed":
      consts[name] = np.zeros(_channels(layer), np.float32)
    elif cls in PRODUCERS:
      act = keras.activations.get(layer.get_config().get("activation", "linear"))
      consts[name] = np.asarray(act(tf.zeros((1, _channels(layer)))), np.float32)[0]
    elif cls in PASS_THROUGH:
      rank = len(layer.input.shape)
      # Run the layer itself on a 9x9 map holding the constant; read the centre, away from
      # any border effect.
      x = np.broadcast_to(ins[0], (1,) + (9,) * (rank - 2) + ins[0].shape)
      y = np.asarray(layer(tf.constant(x, tf.float32), training=False))
      y = y.reshape(-1, y.shape[-1])
      consts[name] = y[len(y) // 2]
    elif cls == "TFOpLambda":  # A scalar op (analyze passes no other through).
      y = layer(tf.constant(ins[0][None], tf.float32), **_scalar_op(lc, layer))
      consts[name] = np.asarray(y, np.float32)[0]
    elif cls == "Flatten":
      consts[name] = np.tile(ins[0], space[2])
    elif cls in JOINS:
      op = {"Add": np.sum, "Multiply": np.prod, "Average": np.mean, "Maximum": np.max,
            "Minimum": np.min}.get(cls)
      consts[name] = ins[0] - ins[1] if cls == "Subtract" else op(np.stack(ins), axis=0)
    elif cls == "Concatenate":
      consts[name] = np.concatenate(ins)
  return consts


def _pads(layer) -> bool:
  """True if the layer reads zeros beyond the border (so a constant input is not uniform)."""
  cls = type(layer).__name__
  if cls == "ZeroPadding2D":
    return True
  size = getattr(layer, "kernel_size", (1, 1))
  return getattr(layer, "padding", "valid") == "same" and max(size) > 1 and cls != "MaxPooling2D"


def _inexact_folds(a: Analysis, sp: _Spaces) -> Dict[int, str]:
  """{group id: why}: groups where a nonzero constant meets zero padding, which no bias can
  hold exactly."""
  layers = {l.name: l for l in a.model.layers}
  found = {}
  for lc in a.order:
    name = lc["name"]
    if name not in a.in_space or not _pads(layers[name]):
      continue
    src = lc["inbound_nodes"][0][0][0]
    if np.any(np.abs(a.consts[src]) > 1e-7):
      for group_id in _groups_in(a.in_space[name]):
        root = sp.find(group_id)
        if root not in found and np.any(
            np.abs(_group_slice(a, a.in_space[name], a.consts[src], group_id)) > 1e-7):
          found[root] = f"a BatchNorm constant on its channels meets the zero padding of {name}"
  return found


def _groups_in(space) -> List[int]:
  if space[0] == "group":
    return [space[1]]
  if space[0] == "concat":
    return [g for s in space[1] for g in _groups_in(s)]
  if space[0] == "flat":
    return _groups_in(space[1])
  return []


def _size(a: Analysis, space) -> int:
  kind = space[0]
  if kind == "group":
    return a.groups[space[1]].size
  if kind == "concat":
    return sum(_size(a, s) for s in space[1])
  if kind == "flat":
    return _size(a, space[1]) * space[2]
  return space[1]


def _group_slice(a: Analysis, space, values, group_id):
  """The entries of `values` (laid out over `space`) that belong to group `group_id`."""
  return values[kept(a, space, {}, only=group_id)]


def kept(a: Analysis, space, keep: Dict[int, np.ndarray], only: Optional[int] = None):
  """Indices (into the original layout of `space`) of the channels that stay.

  With `only`, the indices of every channel of that group instead (for inspection).
  """
  kind = space[0]
  if kind == "group":
    size = a.groups[space[1]].size
    if only is not None:
      return np.arange(size) if space[1] == only else np.zeros(0, int)
    return keep.get(space[1], np.arange(size))
  if kind == "concat":
    out, offset = [], 0
    for s in space[1]:
      out.append(kept(a, s, keep, only) + offset)
      offset += _size(a, s)
    return np.concatenate(out)
  if kind == "flat":
    inner, channels = kept(a, space[1], keep, only), _size(a, space[1])
    # Flatten of (H, W, C) puts channel c of position p at p * C + c.
    return (np.arange(space[2])[:, None] * channels + inner[None, :]).ravel()
  return np.arange(space[1]) if only is None else np.zeros(0, int)


def _fold(layer, cls, const_in, removed):
  """What the removed input channels (reading `const_in`) add to each of the layer's outputs."""
  c = np.where(removed, const_in, 0.0).astype(np.float64)
  if not np.any(c):
    return None
  w = layer.get_weights()
  if cls == "Dense":
    return c @ w[0]
  if cls == "Conv2D":
    return np.einsum("hwio,i->o", w[0], c)
  dw, pw = w[0], w[1]  # SeparableConv2D: depthwise (h, w, in, m), pointwise (1, 1, in*m, out)
  per = np.einsum("hwim,i->im", dw, c).reshape(-1)
  return per @ pw[0, 0]


def shrink(a: Analysis, keep: Dict[int, np.ndarray]) -> keras.Model:
  """Rebuilds the model with only the `keep` channels of each group, copying kept weights.

  Args:
    a: the analysis of the model.
    keep: {group id: sorted indices of the channels that stay}; groups not named keep all.

  Returns:
    A new, smaller Functional model. Constants that removed channels would still have fed
    a consumer (after a BatchNorm) are folded into that consumer's bias.
  """
  layers = {l.name: l for l in a.model.layers}
  config = a.model.get_config()
  folds, slices = {}, {}
  for lc in config["layers"]:
    name, cls = lc["name"], lc["class_name"]
    k_in = kept(a, a.in_space[name], keep) if name in a.in_space else None
    k_out = kept(a, a.out_space[name], keep)
    slices[name] = (k_in, k_out)
    if cls in PRODUCERS:
      lc["config"]["units" if cls == "Dense" else "filters"] = len(k_out)
      src = lc["inbound_nodes"][0][0][0]
      removed = ~np.isin(np.arange(len(a.consts[src])), k_in)
      fold = _fold(layers[name], cls, a.consts[src], removed)
      if fold is not None:
        folds[name] = fold[k_out]
        lc["config"]["use_bias"] = True
  new = keras.Model.from_config(config)
  for layer in new.layers:
    old, (k_in, k_out) = layers[layer.name], slices[layer.name]
    layer.set_weights(_sliced(old, type(old).__name__, k_in, k_out, folds.get(layer.name)))
  return new


def _sliced(old, cls, k_in, k_out, fold):
  w = old.get_weights()
  if cls == "Conv2D":
    kernel = w[0][:, :, k_in][..., k_out]
    bias = w[1][k_out] if old.use_bias else np.zeros(len(k_out), np.float32)
    return [kernel] + ([bias + fold] if fold is not None else [bias] if old.use_bias else [])
  if cls == "Dense":
    kernel = w[0][k_in][:, k_out]
    bias = w[1][k_out] if old.use_bias else np.zeros(len(k_out), np.float32)
    return [kernel] + ([bias + fold] if fold is not None else [bias] if old.use_bias else [])
  if cls == "SeparableConv2D":
    m = w[0].shape[-1]
    rows = (np.asarray(k_in)[:, None] * m + np.arange(m)[None, :]).ravel()
    out = [w[0][:, :, k_in], w[1][:, :, rows][..., k_out]]
    bias = w[2][k_out] if old.use_bias else np.zeros(len(k_out), np.float32)
    return out + ([bias + fold] if fold is not None else [bias] if old.use_bias else [])
  if cls == "DepthwiseConv2D":
    return [w[0][:, :, k_out]] + ([w[1][k_out]] if old.use_bias else [])
  if cls == "BatchNormalization":
    return [x[k_out] for x in w]
  return w


def masked(a: Analysis, keep: Dict[int, np.ndarray]) -> keras.Model:
  """The original model with every removed channel zeroed at its producers (weights and bias):
  the reference the shrunken model must match before any fine-tuning."""
  ref = flatten.clone_with_weights(a.model)
  for g in a.groups.values():
    if g.id not in keep:
      continue
    removed = np.setdiff1d(np.arange(g.size), keep[g.id])
    for p in g.producers:
      layer = ref.get_layer(p)
      layer.set_weights(zeroed(layer, layer.get_weights(), removed))
  return ref


def zeroed(layer, weights: List[np.ndarray], removed: np.ndarray) -> List[np.ndarray]:
  """Copies of a producer's `weights` with its output channels `removed` zeroed (kernel, or a
  SeparableConv2D's pointwise kernel, and bias)."""
  w = [x.copy() for x in weights]
  w[1 if type(layer).__name__ == "SeparableConv2D" else 0][..., removed] = 0
  if getattr(layer, "use_bias", False):
    w[-1][removed] = 0
  return w


def max_output_difference(a: Analysis, keep, small: keras.Model, x: np.ndarray) -> float:
  """Max |shrunken(x) - masked original(x)|: 0 up to float error if the surgery is exact."""
  ref = masked(a, keep)
  return float(np.max(np.abs(ref.predict(x, verbose=0) - small.predict(x, verbose=0))))
