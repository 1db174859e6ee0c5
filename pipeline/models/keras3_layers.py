"""One layer of one Keras built on the other side: Keras 3 (`import keras`) and tf_keras.

A layer becomes the class of the same name on the other side, constructed from the config keys
that class accepts (renamed where the two differ, dtype policies as names; initializers are
dropped, since the weights are copied after). What one side lacks is rebuilt from parts the
other has: Keras 3's `relu6`, `hard_sigmoid` and `hard_swish` activations (tf_keras has no
such names, and its `hard_sigmoid` is another function) and arithmetic on symbolic tensors
(`x + 3.0`: Keras 3 op nodes, tf_keras TFOpLambda layers). Anything else is refused by name.
pipeline/models/keras3_translate.py replays whole graphs with these.
"""

import dataclasses
import inspect
import operator
from typing import Callable, Dict, List

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
class Side:
  """One Keras: its module and its symbolic tensor class."""
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


def keras3():
  import keras  # pylint: disable=g-import-not-at-top  (Keras 3 loads only when a model needs it)
  return Side("keras3", keras, keras.KerasTensor)


def tf_keras_side():
  from tf_keras.src.engine import keras_tensor  # pylint: disable=g-import-not-at-top
  return Side("tf_keras", tf_keras, keras_tensor.KerasTensor)


@dataclasses.dataclass
class Call:
  """A source layer or op rebuilt from several destination parts: called as (args, kwargs)."""
  fn: Callable

  def __call__(self, args, kwargs):
    return self.fn(args, kwargs)


def _named_arithmetic(dst: Side, fn, name: str, a, b):
  """`fn(a, b)` on Keras 3 as a named layer: Keras 3 names its op nodes ("add", "multiply")
  without looking at the model's layer names, so `x + 3.0` next to a layer the user called
  "add" would make a model Keras 3 refuses to build. A number becomes a Rescaling."""
  if dst.is_tensor(b) and not dst.is_tensor(a) and fn in (operator.add, operator.mul):
    a, b = b, a
  if dst.is_tensor(a) and isinstance(b, (int, float)):
    scale, offset = {operator.add: (1.0, b), operator.sub: (1.0, -b), operator.mul: (b, 0.0),
                     operator.truediv: (1.0 / b, 0.0)}[fn]
    return dst.layers.Rescaling(scale, offset, name=name)(a)
  joins = {operator.add: "Add", operator.sub: "Subtract", operator.mul: "Multiply"}
  if dst.is_tensor(a) and dst.is_tensor(b) and fn in joins:
    return getattr(dst.layers, joins[fn])(name=name)([a, b])
  return fn(a, b)


def make(op, src: Side, dst: Side, dropped: Dict[str, List[str]]):
  """The destination equivalent of source layer or op `op` (not a nested model).

  Returns:
    (made, weighted): `made` is called like the source layer, a destination layer or a Call
    of several parts; `weighted` is the destination layer that takes the source layer's
    weights, or None.

  Raises:
    Untranslatable: no equivalent (named, with its class).
  """
  cls_name = type(op).__name__
  if src.name == "tf_keras" and cls_name in ("TFOpLambda", "SlicingOpLambda"):
    fn = _TF_SYMBOLS.get(getattr(op, "symbol", ""))
    if fn is None:
      raise Untranslatable(f"layer {op.name} (TensorFlow op tf.{getattr(op, 'symbol', '?')}) "
                           f"has no Keras 3 equivalent here; supported ops: {SUPPORTED_OPS}")
    name = op.name.replace(".", "_")
    return Call(lambda args, kwargs: _named_arithmetic(
        dst, fn, name, *(list(args) + ([kwargs["y"]] if "y" in kwargs else [])))), None
  if not isinstance(op, src.layers.Layer):  # A Keras 3 op: x + 3.0 and the like.
    fn = _OPS.get(cls_name)
    if fn is None:
      raise Untranslatable(f"op {op.name} (keras.ops {cls_name}) has no tf_keras layer; "
                           f"supported ops: {SUPPORTED_OPS}")
    return Call(lambda args, kwargs: fn(*args, **kwargs)), None
  if cls_name == "Lambda":
    raise Untranslatable(f"layer {op.name} (Lambda) holds Python code, which does not carry "
                         "over between Keras versions; rebuild the model without Lambda "
                         "layers (keras.layers has a layer for most such uses)")
  cls = getattr(dst.layers, cls_name, None)
  if not (inspect.isclass(cls) and issubclass(cls, dst.layers.Layer)):
    raise Untranslatable(f"layer {op.name} ({cls_name}) has no {dst.label} equivalent; "
                         f"supported: the layers both Keras versions share by name "
                         f"(Conv2D, DepthwiseConv2D, Dense, BatchNormalization, Add, ...)")
  config = _config(op, cls, src, dst, dropped)
  expand = _activation(op, config, src)
  try:
    layer = cls(**config)
  except (TypeError, ValueError) as e:
    raise Untranslatable(f"layer {op.name} ({cls_name}): {dst.label} rejects its config "
                         f"({' '.join(str(e).split())[:160]})") from None
  if expand is None:
    return layer, layer
  if cls_name == "Activation":  # The whole layer is the activation: only the parts remain.
    return Call(lambda args, kwargs: expand(dst, args[0], op.name)), None
  return Call(lambda args, kwargs: expand(dst, layer(*args, **kwargs), f"{op.name}_act")), layer


def _activation(op, config: dict, src: Side):
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
  """The keyword arguments `cls(...)` takes: its own, and its bases' only while each
  constructor passes **kwargs on (Keras 3's SpatialDropout2D takes no `trainable`)."""
  names = set()
  for c in cls.__mro__:
    if "__init__" not in vars(c):
      continue
    params = inspect.signature(c.__init__).parameters.values()
    names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if not any(p.kind == p.VAR_KEYWORD for p in params):
      break
  return names - {"self"}


def _config(op, cls, src: Side, dst: Side, dropped: Dict[str, List[str]]) -> dict:
  """The source layer's config, reduced to what `cls` accepts and in the forms it reads; keys
  dropped with a meaningful value are recorded in `dropped` (named if the copy differs)."""
  accepted, config = _accepted(cls), {}
  renames = _RENAMES[src.name].get(type(op).__name__, {})
  for key, value in op.get_config().items():
    key = renames.get(key, key)
    if key.endswith("_initializer"):
      continue  # Initializers: the weights are copied after construction.
    if key not in accepted:
      if not (key in _QUIET and value in (None, False)):
        dropped.setdefault(op.name, []).append(key)
      continue
    if key == "dtype":
      value = dtype_name(value)
      if value.startswith("mixed_"):
        value = "float32"  # The pipeline trains and exports float32 (Translation says so).
    elif key == "axis" and isinstance(value, (list, tuple)) and len(value) == 1:
      value = int(value[0])  # tf_keras' BatchNormalization keeps [3]; Keras 3 takes 3.
    elif key.endswith(("_regularizer", "_constraint")) and value is not None:
      value = _object(value, key, op, dst)
    config[key] = value
  return config


def dtype_name(value):
  """'float32' from a dtype string or either side's policy dict."""
  if isinstance(value, dict):
    return value.get("config", {}).get("name", "float32")
  return getattr(value, "name", value)


def _object(value, key: str, op, dst: Side):
  """A regularizer or constraint rebuilt on `dst` from its class name and config."""
  what = dst.module.regularizers if key.endswith("_regularizer") else dst.module.constraints
  try:
    return what.deserialize({"class_name": value["class_name"], "config": value["config"]})
  except (KeyError, TypeError, ValueError) as e:
    raise Untranslatable(f"layer {op.name} ({type(op).__name__}): its {key} "
                         f"({value.get('class_name') if isinstance(value, dict) else value}) "
                         f"has no {dst.label} equivalent ({e})") from None
