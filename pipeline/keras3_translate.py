"""Rebuild a model in the other Keras: Keras 3 (`import keras`) to tf_keras (Keras 2) and back.

TF-MOT and this pipeline run on tf_keras; users' models are Keras 3. Neither can read the
other's files, so a model crosses over layer by layer: each layer is constructed as the class of
the same name on the other side, from the config keys that class accepts (Keras 3 adds
`quantization_config`, LoRA ranks and dtype policies as dicts; initializers are dropped, since
the weights are copied), the graph is replayed node by node (Sequential, Functional with
branches and merges, nested models with their call arguments such as `training=False`), and the
weights are copied. The few things one side lacks are rebuilt from parts the other has:
Keras 3's `relu6`, `hard_sigmoid` and `hard_swish` activations (tf_keras has no such names, and
its `hard_sigmoid` is another function) and its arithmetic ops (`x + 3.0`), which tf_keras
records as TFOpLambda layers. Anything else without an equivalent is refused by name.
"""

import dataclasses
import inspect
import operator
from typing import Callable, Dict, List, Tuple

import tensorflow as tf
import tf_keras


class Untranslatable(ValueError):
  """A layer or op has no equivalent on the other side; the message names it and its class."""


# Arithmetic ops by Keras 3 op class and by TFOpLambda symbol: both sides record Python
# arithmetic on a symbolic tensor as one of these.
_OPS = {"Add": operator.add, "Subtract": operator.sub, "Multiply": operator.mul,
        "Divide": operator.truediv, "TrueDivide": operator.truediv}
_TF_SYMBOLS = {"__operators__.add": operator.add, "math.add": operator.add,
               "math.subtract": operator.sub, "math.multiply": operator.mul,
               "math.truediv": operator.truediv, "math.divide": operator.truediv}
SUPPORTED_OPS = "add, subtract, multiply, divide"

# Config keys named differently on the two sides, by source side and class.
_RENAMES = {"keras3": {"LeakyReLU": {"negative_slope": "alpha"}},
            "tf_keras": {"LeakyReLU": {"alpha": "negative_slope"}}}
# Keys one side lacks that change nothing while unset (None or False): dropped quietly.
_QUIET = {"quantization_config", "lora_rank", "lora_alpha", "synchronized", "fused",
          "virtual_batch_size", "adjustment"}

# Activations with the same name and function on both sides.
_SAME_ACTIVATIONS = {"elu", "exponential", "gelu", "linear", "mish", "relu", "selu", "sigmoid",
                     "softmax", "softplus", "softsign", "swish", "tanh"}
_ALIASES = {"silu": "swish"}


def _relu6(side, x, name):
  return side.layers.ReLU(6.0, name=name)(x)


def _hard_sigmoid3(side, x, name):  # Keras 3's: relu6(x + 3) / 6.
  return side.layers.ReLU(6.0, name=name)(x + 3.0) * (1.0 / 6.0)


def _hard_swish3(side, x, name):  # x * relu6(x + 3) / 6, as tf_keras' own MobileNetV3 has it.
  return side.layers.Multiply(name=name)([x, _hard_sigmoid3(side, x, f"{name}_relu6")])


def _hard_sigmoid2(side, x, name):  # tf_keras': clip(0.2 x + 0.5, 0, 1).
  return side.layers.ReLU(1.0, name=name)(x * 0.2 + 0.5)


# Activations one side lacks, rebuilt from layers and arithmetic: by the source side's name.
_EXPANSIONS = {
    "keras3": {"relu6": _relu6, "hard_sigmoid": _hard_sigmoid3, "hard_silu": _hard_swish3,
               "hard_swish": _hard_swish3},
    "tf_keras": {"hard_sigmoid": _hard_sigmoid2},
}


@dataclasses.dataclass(frozen=True)
class _Side:
  """One Keras: its module, how to read a graph node, what its arithmetic ops are."""
  name: str
  module: object
  tensor_class: type

  @property
  def label(self) -> str:
    return "Keras 3" if self.name == "keras3" else "tf_keras"

  @property
  def layers(self):
    return self.module.layers

  def is_tensor(self, x) -> bool:
    return isinstance(x, self.tensor_class)


def _keras3():
  import keras  # pylint: disable=g-import-not-at-top  (Keras 3 loads only when a model needs it)
  return _Side("keras3", keras, keras.KerasTensor)


def _tf_keras():
  from tf_keras.src.engine import keras_tensor  # pylint: disable=g-import-not-at-top
  return _Side("tf_keras", tf_keras, keras_tensor.KerasTensor)


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
  return _translate(model, _keras3(), _tf_keras())


def to_keras3(model) -> Translation:
  """A tf_keras model rebuilt as an equivalent Keras 3 model with the same weights.

  Raises:
    Untranslatable: a layer, activation or op with no Keras 3 equivalent (named).
  """
  return _translate(model, _tf_keras(), _keras3())


def _translate(model, src: _Side, dst: _Side) -> Translation:
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


def _model(model, src: _Side, dst: _Side, out: Translation, top: bool = False):
  """The graph of `model` replayed on `dst`: a Sequential stays a Sequential when every layer
  has a one-layer equivalent; anything else becomes a Functional model."""
  if isinstance(model, src.module.Sequential):
    kept = len(out.pairs)
    made = [_layer(l, src, dst, out) for l in model.layers]
    if all(isinstance(m, dst.layers.Layer) for m in made):
      for l, m in zip(model.layers, made):
        if not isinstance(m, dst.module.Model):
          out.pairs.append((l, m))
      seq = dst.module.Sequential([dst.module.Input(shape=model.input_shape[1:],
                                                    dtype=_dtype_name(model.inputs[0].dtype))]
                                  + made,
                                  name=model.name)
      if top:
        out.probes.extend((l.name, l.output, m.output) for l, m in zip(model.layers, made))
      return seq
    del out.pairs[kept:]  # Rebuilt below as a graph.
  name, model = model.name, getattr(model, "_functional", None) or model  # Keras 3 Sequential.
  inputs = [dst.module.Input(shape=t.shape[1:], dtype=_dtype_name(t.dtype),
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
      if isinstance(call, dst.layers.Layer) and not isinstance(call, dst.module.Model):
        out.pairs.append((op, call))
    if kwargs.get("mask", 0) is None:
      kwargs = {k: v for k, v in kwargs.items() if k != "mask"}  # Keras 3 records mask=None.
    result = call(args, kwargs) if isinstance(call, _Call) else call(*args, **kwargs)
    flat_src, flat_dst = tf.nest.flatten(outputs), tf.nest.flatten(result)
    for s, d in zip(flat_src, flat_dst):
      tensors[id(s)] = d
    if top and len(flat_src) == 1:
      out.probes.append((op.name, flat_src[0], flat_dst[0]))
  outputs = [tensors[id(t)] for t in model.outputs]
  return dst.module.Model(inputs, outputs[0] if len(outputs) == 1 else outputs, name=name)


@dataclasses.dataclass
class _Call:
  """A source layer or op rebuilt from several destination parts: called as (args, kwargs)."""
  fn: Callable

  def __call__(self, args, kwargs):
    return self.fn(args, kwargs)


def _nodes(model):
  """The model's own graph nodes, inputs first (deepest first, as Keras runs them)."""
  by_depth = model._nodes_by_depth  # pylint: disable=protected-access
  return [n for d in sorted(by_depth, reverse=True) for n in by_depth[d]]


def _read(node, src: _Side):
  """(operation, args, kwargs, outputs) of a node, on either side."""
  if src.name == "keras3":
    return node.operation, node.arguments.args, node.arguments.kwargs, node.outputs
  return node.layer, node.call_args, node.call_kwargs, node.outputs


def _map(structure, tensors, src: _Side):
  return tf.nest.map_structure(lambda x: tensors[id(x)] if src.is_tensor(x) else x, structure)


def _layer(op, src: _Side, dst: _Side, out: Translation):
  """The destination layer (or _Call of parts) equivalent to source layer or op `op`."""
  cls_name = type(op).__name__
  if isinstance(op, src.module.Model):
    return _model(op, src, dst, out)
  if src.name == "tf_keras" and cls_name in ("TFOpLambda", "SlicingOpLambda"):
    fn = _TF_SYMBOLS.get(getattr(op, "symbol", ""))
    if fn is None:
      raise Untranslatable(f"layer {op.name} (TensorFlow op tf.{getattr(op, 'symbol', '?')}) "
                           f"has no Keras 3 equivalent here; supported ops: {SUPPORTED_OPS}")
    return _Call(lambda args, kwargs: fn(*(list(args) + ([kwargs["y"]] if "y" in kwargs
                                                         else []))))
  if not isinstance(op, src.layers.Layer):  # A Keras 3 op: x + 3.0 and the like.
    fn = _OPS.get(cls_name)
    if fn is None:
      raise Untranslatable(f"op {op.name} (keras.ops {cls_name}) has no tf_keras layer; "
                           f"supported ops: {SUPPORTED_OPS}")
    return _Call(lambda args, kwargs: fn(*args, **kwargs))
  if cls_name == "Lambda":
    raise Untranslatable(f"layer {op.name} (Lambda) holds Python code, which does not carry "
                         "over between Keras versions; rebuild the model without Lambda "
                         "layers (keras.layers has a layer for most such uses)")
  cls = getattr(dst.layers, cls_name, None)
  if not (inspect.isclass(cls) and issubclass(cls, dst.layers.Layer)):
    raise Untranslatable(f"layer {op.name} ({cls_name}) has no {dst.label} equivalent; "
                         f"supported: the layers both Keras versions share by name "
                         f"(Conv2D, DepthwiseConv2D, Dense, BatchNormalization, Add, ...)")
  config = _config(op, cls, src, dst, out)
  expand = _activation(op, config, src)
  try:
    layer = cls(**config)
  except (TypeError, ValueError) as e:
    raise Untranslatable(f"layer {op.name} ({cls_name}): {dst.label} rejects its config "
                         f"({' '.join(str(e).split())[:160]})") from None
  if expand is None:
    return layer
  if cls_name == "Activation":  # The whole layer is the activation: only the parts remain.
    return _Call(lambda args, kwargs: expand(dst, args[0], op.name))
  out.pairs.append((op, layer))
  return _Call(lambda args, kwargs: expand(dst, layer(*args, **kwargs), f"{op.name}_act"))


def _activation(op, config: dict, src: _Side):
  """Checks config['activation']; returns the parts that rebuild it where the other side
  lacks it (the layer itself then made linear), else None."""
  act = config.get("activation")
  if act is None:
    return None
  if not isinstance(act, str):
    raise Untranslatable(f"layer {op.name} ({type(op).__name__}): its activation is a custom "
                         f"function ({act}); use a built-in activation")
  act = _ALIASES.get(act, act) if src.name == "keras3" else act
  expand = _EXPANSIONS[src.name].get(act)
  if expand is not None:
    config["activation"] = "linear"
    return expand
  if act not in _SAME_ACTIVATIONS:
    raise Untranslatable(f"layer {op.name} ({type(op).__name__}): activation {act} has no "
                         f"equivalent; supported: {', '.join(sorted(_SAME_ACTIVATIONS))}, "
                         f"{', '.join(sorted(_EXPANSIONS[src.name]))}")
  config["activation"] = act
  return None


def _accepted(cls) -> set:
  names = set()
  for c in cls.__mro__:
    if "__init__" in vars(c):
      names |= {p.name for p in inspect.signature(c.__init__).parameters.values()
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
  return names - {"self"}


def _config(op, cls, src: _Side, dst: _Side, out: Translation) -> dict:
  """The source layer's config, reduced to what `cls` accepts and in the forms it reads; keys
  dropped with a meaningful value are recorded in `out.dropped` (named if the copy differs)."""
  accepted, config = _accepted(cls), {}
  renames = _RENAMES[src.name].get(type(op).__name__, {})
  for key, value in op.get_config().items():
    key = renames.get(key, key)
    if key.endswith("_initializer"):
      continue  # Initializers: the weights are copied after construction.
    if key not in accepted:
      if not (key in _QUIET and value in (None, False)):
        out.dropped.setdefault(op.name, []).append(key)
      continue
    if key == "dtype":
      value = _dtype_name(value)
      if value.startswith("mixed_"):
        out.mixed_precision, value = value, "float32"  # The pipeline trains and exports float32.
    elif key == "axis" and isinstance(value, (list, tuple)) and len(value) == 1:
      value = int(value[0])  # tf_keras' BatchNormalization keeps [3]; Keras 3 takes 3.
    elif key.endswith(("_regularizer", "_constraint")) and value is not None:
      value = _object(value, key, op, dst)
    config[key] = value
  return config


def _dtype_name(value):
  """'float32' from a dtype string or either side's policy dict."""
  if isinstance(value, dict):
    return value.get("config", {}).get("name", "float32")
  return getattr(value, "name", value)


def _object(value, key: str, op, dst: _Side):
  """A regularizer or constraint rebuilt on `dst` from its class name and config."""
  what = dst.module.regularizers if key.endswith("_regularizer") else dst.module.constraints
  try:
    return what.deserialize({"class_name": value["class_name"], "config": value["config"]})
  except (KeyError, TypeError, ValueError) as e:
    raise Untranslatable(f"layer {op.name} ({type(op).__name__}): its {key} "
                         f"({value.get('class_name') if isinstance(value, dict) else value}) "
                         f"has no {dst.label} equivalent ({e})") from None
