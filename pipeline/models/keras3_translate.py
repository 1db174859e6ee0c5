"""Rebuild a model in the other Keras: Keras 3 (`import keras`) to tf_keras (Keras 2) and back.

TF-MOT and this pipeline run on tf_keras; users' models are Keras 3. Neither can read the
other's files, so a model crosses over layer by layer (pipeline/models/keras3_layers.py builds each
layer): the graph is replayed node by node (Sequential, Functional with branches and merges,
nested models with their call arguments such as `training=False`), then the weights are copied.
"""

import dataclasses
from typing import Dict, List, Tuple

import tensorflow as tf

from pipeline.models import keras3_layers as layers_lib
from pipeline.models.keras3_layers import Side
from pipeline.models.keras3_layers import Untranslatable


@dataclasses.dataclass
class Translation:
  """A model rebuilt on the other side, and the layer pairs whose weights were copied."""
  model: object
  pairs: List[Tuple[object, object]]  # (source layer, new layer), nested models' layers too.
  probes: List[Tuple[str, object, object]]  # (layer name, source tensor, new tensor), top level.
  source_module: object = None  # keras or tf_keras: the side each model is on.
  module: object = None
  dropped: Dict[str, List[str]] = dataclasses.field(default_factory=dict)  # layer -> keys.
  mixed_precision: str = ""  # The source's mixed policy ("mixed_float16"); the copy is float32.


def to_tf_keras(model) -> Translation:
  """A Keras 3 model rebuilt as an equivalent tf_keras model with the same weights.

  Raises:
    Untranslatable: a layer, activation or op with no tf_keras equivalent (named).
  """
  return _translate(model, layers_lib.keras3(), layers_lib.tf_keras_side())


def to_keras3(model) -> Translation:
  """A tf_keras model rebuilt as an equivalent Keras 3 model with the same weights.

  Raises:
    Untranslatable: a layer, activation or op with no Keras 3 equivalent (named).
  """
  return _translate(model, layers_lib.tf_keras_side(), layers_lib.keras3())


def _translate(model, src: Side, dst: Side) -> Translation:
  out = Translation(None, [], [], src.module, dst.module)
  out.model = _model(model, src, dst, out, top=True)
  for a, b in out.pairs:
    have, want = [w.shape for w in a.get_weights()], [tuple(w.shape) for w in b.weights]
    if [tuple(s) for s in have] != want:
      raise Untranslatable(f"layer {a.name} ({type(a).__name__}): weights shaped {have} do "
                           f"not fit the {dst.label} layer's {want}")
    b.set_weights(a.get_weights())
    if hasattr(b, "finalize_state"):  # Keras 3's Normalization reads mean/variance only then.
      b.finalize_state()
  return out


def _model(model, src: Side, dst: Side, out: Translation, top: bool = False):
  """The graph of `model` replayed on `dst`: a Sequential stays a Sequential when every layer
  has a one-layer equivalent; anything else becomes a Functional model."""
  if isinstance(model, src.module.Sequential):
    kept = len(out.pairs)
    made = [_layer(l, src, dst, out) for l in model.layers]
    if all(isinstance(m, dst.layers.Layer) for m in made):
      first = dst.module.Input(shape=model.input_shape[1:],
                               dtype=layers_lib.dtype_name(model.inputs[0].dtype))
      seq = dst.module.Sequential([first] + made, name=model.name)
      if top:
        out.probes.extend((l.name, l.output, m.output) for l, m in zip(model.layers, made))
      return seq
    del out.pairs[kept:]  # Rebuilt below as a graph.
  name, model = model.name, getattr(model, "_functional", None) or model  # Keras 3 Sequential.
  inputs = [dst.module.Input(shape=t.shape[1:], dtype=layers_lib.dtype_name(t.dtype),
                             name=t._keras_history[0].name)  # pylint: disable=protected-access
            for t in model.inputs]
  tensors = {id(t): n for t, n in zip(model.inputs, inputs)}
  made: Dict[int, object] = {}
  for node in _nodes(model):
    op, args, kwargs, outputs = _read(node, src)
    if isinstance(op, src.layers.InputLayer):
      continue
    args, kwargs = _map(args, tensors, src), _map(kwargs, tensors, src)
    call = made.get(id(op))
    if call is None:
      call = made[id(op)] = _layer(op, src, dst, out)
    if kwargs.get("mask", 0) is None:
      kwargs = {k: v for k, v in kwargs.items() if k != "mask"}  # Keras 3 records mask=None.
    result = call(args, kwargs) if isinstance(call, layers_lib.Call) else call(*args, **kwargs)
    flat_src, flat_dst = tf.nest.flatten(outputs), tf.nest.flatten(result)
    for s, d in zip(flat_src, flat_dst):
      tensors[id(s)] = d
    if top and len(flat_src) == 1:
      out.probes.append((op.name, flat_src[0], flat_dst[0]))
  outputs = [tensors[id(t)] for t in model.outputs]
  return dst.module.Model(inputs, outputs[0] if len(outputs) == 1 else outputs, name=name)


def _nodes(model):
  """The model's own graph nodes, inputs first (deepest first, as Keras runs them)."""
  by_depth = model._nodes_by_depth  # pylint: disable=protected-access
  return [n for d in sorted(by_depth, reverse=True) for n in by_depth[d]]


def _read(node, src: Side):
  """(operation, args, kwargs, outputs) of a node, on either side."""
  if src.name == "keras3":
    return node.operation, node.arguments.args, node.arguments.kwargs, node.outputs
  return node.layer, node.call_args, node.call_kwargs, node.outputs


def _map(structure, tensors, src: Side):
  return tf.nest.map_structure(lambda x: tensors[id(x)] if src.is_tensor(x) else x, structure)


def _layer(op, src: Side, dst: Side, out: Translation):
  """The destination equivalent of `op`; a nested model is replayed whole."""
  if isinstance(op, src.module.Model):
    return _model(op, src, dst, out)
  made, weighted = layers_lib.make(op, src, dst, out.dropped)
  if weighted is not None:
    out.pairs.append((op, weighted))
  if getattr(op, "dtype_policy", None) is not None and \
      str(getattr(op.dtype_policy, "name", "")).startswith("mixed_"):
    out.mixed_precision = op.dtype_policy.name
  return made
