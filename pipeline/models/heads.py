"""Read a classifier's head off its last layers, and train and score it in its own terms.

Users' models end the way TensorFlow's tutorials teach: a softmax, a linear `Dense(n)` trained
with `from_logits=True`, or one unit (sigmoid or linear) for two classes. `read` finds which
from the layers' configs (walking back through Dropout, Flatten and Reshape to the layer with
the activation); `check_outputs` confirms it on real images. Every loss, accuracy, gradient
criterion and distillation logit in the pipeline comes from here, so none assumes a softmax.
The rules for reading a class from outputs live in export/head.py (numpy only).
"""

from typing import Optional

import numpy as np
import tensorflow as tf

from export.head import Head

import tf_keras as keras  # pylint: disable=g-bad-import-order

# Layers that pass their input's values on (or drop some while training): looked through.
_PASS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
         "GaussianDropout", "AlphaDropout", "Flatten", "Reshape", "ActivityRegularization")
_TF_OPS = {"nn.softmax": "softmax", "math.softmax": "softmax", "math.sigmoid": "sigmoid",
           "nn.sigmoid": "sigmoid"}
_TINY = 1e-7  # Probabilities are clipped to [_TINY, 1 - _TINY] before a log, as Keras does.


class HeadError(ValueError):
  """The model's output cannot be read as one single-label classifier (names the layer)."""


def _unwrap(layer):
  """The layer inside TF-MOT's pruning wrapper (or any tf_keras wrapper with `.layer`)."""
  while hasattr(layer, "layer") and isinstance(getattr(layer, "layer"), keras.layers.Layer):
    layer = layer.layer
  return layer


def _layer_of(tensor):
  """The layer (tf_keras) or operation (Keras 3) that made a symbolic tensor, or None."""
  history = getattr(tensor, "_keras_history", None)
  return history[0] if history is not None else None  # (layer or operation, node, index).


def _producer(layer):
  """The layer whose output `layer` was called on (called once, on one tensor), or None."""
  try:
    x = layer.input
  except (AttributeError, ValueError):  # Called several times or never.
    return None
  return None if isinstance(x, (list, tuple)) else _layer_of(x)


def _activation(layer) -> Optional[str]:
  """The activation that ends `layer`: 'softmax', 'sigmoid', 'linear', another name, or None
  for a layer that passes values on."""
  inner = _unwrap(layer)
  kind = type(inner).__name__
  if kind in _PASS:
    return None
  if kind == "Softmax":
    return "softmax"
  if kind in ("TFOpLambda", "SlicingOpLambda"):
    return _TF_OPS.get(getattr(inner, "symbol", ""), f"tf.{getattr(inner, 'symbol', '?')}")
  act = inner.get_config().get("activation") if hasattr(inner, "get_config") else None
  if act is None:
    return f"a {kind}"  # No activation of its own: nothing says what it outputs.
  if isinstance(act, dict):  # Quantization-aware training wraps it: QuantizeAwareActivation.
    act = act.get("config", {}).get("activation", act.get("class_name", "?"))
  if not isinstance(act, str):
    act = getattr(act, "__name__", str(act))
  if kind == "Activation" and act == "linear":
    return None
  return act


def _why(layer, act: str) -> str:
  inner = _unwrap(layer)
  kind = type(inner).__name__
  if kind == "Softmax":
    return f"Softmax layer '{inner.name}'"
  if kind in ("TFOpLambda", "SlicingOpLambda"):
    return f"'{inner.name}' is tf.{inner.symbol}"
  if act == "linear":
    return f"{kind} '{inner.name}' has no activation"
  return f"{kind} '{inner.name}' ends in a {act}"


def read(model) -> Head:
  """The head of a classifier, from its layers' configs alone: a tf_keras model (TF-MOT-wrapped
  or distilled too) or a Keras 3 one (`import keras`), whose layers read the same.

  Raises:
    HeadError: several outputs, outputs that are not one vector per image, an activation no
      classifier ends in (relu, tanh, ...), a sigmoid over several units (multi-label), or a
      softmax over one unit; the message names the layer.
  """
  model = getattr(model, "student", model)  # A Distiller trains its student.
  outputs = model.outputs or []
  if len(outputs) != 1:
    raise HeadError(f"the model has {len(outputs)} outputs; a single-label classifier has one "
                    "(class scores per image)")
  shape = tuple(outputs[0].shape)
  layer = _layer_of(outputs[0])
  last = _unwrap(layer).name
  if len(shape) != 2 or not shape[-1]:
    raise HeadError(f"layer '{last}' outputs {shape[1:]} per image; a classifier outputs one "
                    "vector of class scores (a regression, segmentation or detection head is "
                    "not supported)")
  act, seen = _activation(layer), layer
  while act is None:
    seen = _producer(seen)
    if seen is None:
      raise HeadError(f"cannot tell what layer '{last}' outputs: no layer before it has an "
                      "activation this tool can read")
    act = _activation(seen)
  return _kind(act, int(shape[-1]), seen)


def _kind(act: str, units: int, layer) -> Head:
  name = _unwrap(layer).name
  if act == "softmax":
    if units == 1:
      raise HeadError(f"layer '{name}' is a softmax over one unit, which always outputs 1; a "
                      "two-class head is Dense(2, activation='softmax') or Dense(1, "
                      "activation='sigmoid')")
    return Head("softmax", units, name, _why(layer, act))
  if act == "sigmoid":
    if units > 1:
      raise HeadError(f"layer '{name}' is a sigmoid over {units} units: a multi-label head "
                      "(several classes per image), which this tool does not prune; a "
                      "single-label classifier ends in a softmax, or one sigmoid unit")
    return Head("sigmoid", 1, name, _why(layer, act))
  if act == "linear":
    return Head("logit" if units == 1 else "logits", units, name, _why(layer, act))
  raise HeadError(f"layer '{name}' ends in {act}: not a classifier head (softmax, sigmoid, or "
                  "none for raw logits)")


def check_fits(head: Head, num_classes: int) -> Optional[str]:
  """Why `head` cannot classify `num_classes` classes, or None."""
  if head.num_classes == num_classes:
    return None
  if head.binary:
    return (f"the model outputs one unit (a two-class head, layer '{head.layer}'), the data "
            f"has {num_classes} classes")
  return f"the model outputs {head.units} classes, the data has {num_classes}"


def check_outputs(head: Head, outputs: np.ndarray) -> Optional[str]:
  """What the values of `outputs` (on real images) say against `head`, or None when they fit:
  probabilities in [0, 1] summing to 1 per image for a softmax, in [0, 1] for a sigmoid; raw
  logits that all look like probabilities are suspicious (a normalisation the configs hide)."""
  p = np.asarray(outputs, np.float64)
  in_unit = p.size and p.min() >= -1e-6 and p.max() <= 1 + 1e-6
  sums = p.sum(axis=-1)
  if head.kind == "softmax" and not (in_unit and np.allclose(sums, 1.0, atol=1e-3)):
    return (f"read as a softmax, but its outputs are not probabilities (values "
            f"{p.min():.3g}..{p.max():.3g}, rows summing to {sums.min():.3g}..{sums.max():.3g})")
  if head.kind == "sigmoid" and not in_unit:
    return f"read as a sigmoid, but its outputs range {p.min():.3g}..{p.max():.3g}"
  if head.kind == "logits" and in_unit and np.allclose(sums, 1.0, atol=1e-3):
    return ("read as raw logits, but every output row is a probability distribution (a "
            "softmax the layer configs do not show?)")
  return None


def loss(head: Head) -> keras.losses.Loss:
  """The training loss for `head` (mean over the batch), as the tutorials compile it."""
  if head.binary:
    return keras.losses.BinaryCrossentropy(from_logits=head.from_logits)
  return keras.losses.SparseCategoricalCrossentropy(from_logits=head.from_logits)


def accuracy_metric(head: Head) -> keras.metrics.Metric:
  """Accuracy named "accuracy" (fits log `val_accuracy`): argmax, or the binary threshold."""
  if head.binary:
    return keras.metrics.BinaryAccuracy("accuracy", threshold=0.0 if head.from_logits else 0.5)
  return keras.metrics.SparseCategoricalAccuracy("accuracy")


def _column(labels, outputs):
  """Labels as float (N, 1), beside one-unit outputs."""
  return tf.reshape(tf.cast(labels, outputs.dtype), (-1, 1))


def per_example_loss(head: Head, labels, outputs):
  """Cross-entropy of each image, in `head`'s own terms (a tensor of shape (N,))."""
  outputs = tf.cast(outputs, tf.float32)
  if head.binary:
    return keras.losses.binary_crossentropy(_column(labels, outputs), outputs,
                                            from_logits=head.from_logits)
  return keras.losses.sparse_categorical_crossentropy(labels, outputs,
                                                      from_logits=head.from_logits)


def mean_loss(head: Head, labels, outputs):
  """The batch's mean cross-entropy, a scalar tensor (for gradients outside `fit`)."""
  return tf.reduce_mean(per_example_loss(head, labels, outputs))


def logits(head: Head, outputs):
  """Class logits (up to a constant per image) of `outputs`: a softmax's as log-probabilities,
  raw logits as they are, and a one-unit head's as the two-class logits [0, z], z its logit
  (for a sigmoid, log(p / (1 - p))). Softmax of these is each class's probability."""
  outputs = tf.cast(outputs, tf.float32)
  if head.kind == "softmax":
    return tf.math.log(tf.maximum(outputs, 1e-30))
  if head.kind == "logits":
    return outputs
  z = outputs
  if head.kind == "sigmoid":
    p = tf.clip_by_value(outputs, _TINY, 1 - _TINY)
    z = tf.math.log(p) - tf.math.log1p(-p)
  return tf.concat([tf.zeros_like(z), z], axis=-1)


def cross_entropy(head: Head, outputs: np.ndarray, labels: np.ndarray) -> float:
  """Mean cross-entropy of `outputs` against integer `labels`."""
  return float(mean_loss(head, np.asarray(labels), outputs).numpy())


def accuracy_labels(head: Head, labels, outputs):
  """`labels` shaped as `head`'s accuracy metric compares them with `outputs`."""
  return _column(labels, outputs) if head.binary else labels
