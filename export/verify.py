"""Verification: each .tflite file's accuracy through LiteRT and its agreement with Keras."""

import dataclasses
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from export import graph as graph_lib
from export import litert
from export.head import Head
from export.tflite import Export

SPARSITY_TOLERANCE = 0.01  # Stored sparsity may differ from Keras' by at most 1 point per layer.


@dataclasses.dataclass(frozen=True)
class Verification:
  name: str
  test_accuracy: float
  top1_agreement: float  # Fraction of test images where the file and Keras pick the same class.
  max_abs_diff: Optional[float]  # Against Keras over the whole test split; float outputs only.
  input_spec: str = ""  # What the file takes: shape, dtype, value range.
  # What max_abs_diff is measured against: 1 for probabilities, the largest |logit| for logits.
  output_scale: float = 1.0


def top1_accuracy(outputs: np.ndarray, labels: np.ndarray, head: Head) -> float:
  """Fraction of rows of `outputs` whose class (as `head` reads it: argmax, or a one-unit
  head's threshold) is the label: the one accuracy every stage reports, for Keras and TFLite
  outputs alike."""
  return head.accuracy(outputs, labels)


def expected_zeros(kernel: np.ndarray, layer: graph_lib.Layer) -> float:
  """Fraction of zeros the file should hold for this Keras kernel.

  Quantized weights also store as zero every weight smaller than half a quantization step, so
  the Keras kernel is quantized with the file's own scales first (per output channel, which is
  the last Keras axis; a depthwise kernel's channels are its last two axes).
  """
  if layer.scales is None or layer.dtype not in ("int8", "uint8"):
    return float(np.mean(kernel == 0))
  k = kernel
  if kernel.ndim == 4 and layer.op == "DEPTHWISE_CONV_2D":
    k = kernel.reshape(*kernel.shape[:2], -1)
  scales = np.asarray(layer.scales, np.float64)
  return float(np.mean(np.round(k / (scales if scales.size > 1 else scales[0])) == 0))


def stored_sparsity(export: Export, keras_kernels: Dict[str, np.ndarray]
                    ) -> Tuple[graph_lib.Graph, Optional[str]]:
  """Reads the sparsity stored in the file, per layer, and checks it against the Keras model.

  Args:
    export: the file.
    keras_kernels: {Keras layer name: its kernel}.

  Returns:
    The file's Graph (per-layer stored sparsity and MACs), and None, or why it does not match:
    a layer's stored sparsity differs from what its Keras kernel implies by more than
    SPARSITY_TOLERANCE, or a Keras layer has no counterpart in the file.
  """
  g = graph_lib.read(export.path, keras_kernels)
  layers = {l.name: l for l in g.layers}
  for name, kernel in keras_kernels.items():
    if name not in layers:
      return g, f"no weights of layer {name} found in the file"
    have = layers[name].sparsity
    if layers[name].scales is not None and layers[name].dtype in ("int8", "uint8"):
      # Quantized: every zero of the Keras kernel must be stored; rounding adds more, and how
      # many depends on a BatchNorm the converter folds into the kernel first, so no upper
      # bound is implied (the accuracy gate judges the rest).
      want = float(np.mean(kernel == 0))
      if have < want - SPARSITY_TOLERANCE:
        return g, (f"layer {name} stores {100 * have:.2f}% zeros, fewer than the "
                   f"{100 * want:.2f}% of its Keras kernel")
      continue
    want = expected_zeros(kernel, layers[name])
    if abs(have - want) > SPARSITY_TOLERANCE:
      return g, (f"layer {name} stores {100 * have:.2f}% zeros, its Keras kernel implies "
                 f"{100 * want:.2f}%")
  return g, None


def verify(exports: Sequence[Export], keras_outputs: Dict[str, np.ndarray],
           batches: Callable[[], Iterable[np.ndarray]], y_test: np.ndarray, head: Head
           ) -> List[Verification]:
  """Runs every file over the whole test split with LiteRT, batch by batch.

  Args:
    exports: the files.
    keras_outputs: {model name: Keras outputs on the test split}, for each Export.model.
    batches: returns a fresh iterator over the test images (float32 raw pixels), in the
      order of keras_outputs and y_test.
    y_test: integer labels.
    head: what the outputs are (the exported files keep the Keras model's head).

  Returns:
    One Verification per export, in order; gates.check judges them.
  """
  results = []
  for e in exports:
    opened = litert.open_model(e.path)
    spec = litert.input_spec(opened)  # Before predict resizes the input to a batch.
    probs = np.concatenate([litert.predict(opened, x, len(x)) for x in batches()])
    ref = keras_outputs[e.model]
    diff = None
    if e.format in ("float32", "float16", "dynamic_int8"):  # Float outputs: compare them.
      diff = float(np.max(np.abs(probs - ref)))
    v = Verification(e.name, top1_accuracy(probs, y_test, head),
                     float(np.mean(head.classes(probs) == head.classes(ref))), diff, spec,
                     head.scale(ref))
    logging.info("%s: test accuracy %.4f, agrees with Keras on %.2f%% of images%s; input %s.",
                 e.name, v.test_accuracy, 100 * v.top1_agreement,
                 "" if diff is None else f", max |diff| {diff:.1e}", v.input_spec)
    results.append(v)
  return results
