"""Verification: each .tflite file's accuracy through LiteRT and its agreement with Keras."""

import dataclasses
from typing import Dict, List, Optional, Sequence

from absl import logging
import numpy as np

from export import graph as graph_lib
from export import litert
from export.tflite import Export

FLOAT_TOLERANCE = 1e-4  # float32 exports must match Keras this closely (max abs output diff).
CHECK_IMAGES = 100
SPARSITY_TOLERANCE = 0.01  # Stored sparsity may differ from Keras' by at most 1 point per layer.


@dataclasses.dataclass(frozen=True)
class Verification:
  name: str
  test_accuracy: float
  top1_agreement: float  # Fraction of test images where the file and Keras pick the same class.
  max_abs_diff: Optional[float]  # Against Keras on CHECK_IMAGES images; float formats only.


class MismatchError(RuntimeError):
  """A file differs from its Keras model: outputs (float32) or stored sparsity."""


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


def stored_sparsity(export: Export, keras_kernels: Dict[str, np.ndarray]) -> graph_lib.Graph:
  """Reads the sparsity stored in the file, per layer, and checks it against the Keras model.

  Args:
    export: the file.
    keras_kernels: {Keras layer name: its kernel}.

  Returns:
    The file's Graph (per-layer stored sparsity and MACs).

  Raises:
    MismatchError: a layer's stored sparsity differs from what its Keras kernel implies by
      more than SPARSITY_TOLERANCE, or a Keras layer has no counterpart in the file.
  """
  g = graph_lib.read(export.path, keras_kernels)
  layers = {l.name: l for l in g.layers}
  for name, kernel in keras_kernels.items():
    if name not in layers:
      raise MismatchError(f"{export.name}: no weights of layer {name} found in the file")
    want = expected_zeros(kernel, layers[name])
    if abs(layers[name].sparsity - want) > SPARSITY_TOLERANCE:
      raise MismatchError(f"{export.name}: layer {name} stores {100 * layers[name].sparsity:.2f}% "
                          f"zeros, its Keras kernel implies {100 * want:.2f}%")
  return g


def verify(exports: Sequence[Export], keras_outputs: Dict[str, np.ndarray],
           x_test: np.ndarray, y_test: np.ndarray) -> List[Verification]:
  """Runs every file over the whole test split with LiteRT.

  Args:
    exports: the files.
    keras_outputs: {model name: Keras outputs on x_test}, for each Export.model.
    x_test: float32 test images in [0, 1].
    y_test: integer labels.

  Returns:
    One Verification per export, in order.

  Raises:
    MismatchError: a float32 file's outputs differ from Keras by more than FLOAT_TOLERANCE.
  """
  results = []
  for e in exports:
    probs = litert.predict(litert.open_model(e.path), x_test)
    ref = keras_outputs[e.model]
    diff = None
    if e.format in ("float32", "float16", "dynamic_int8"):  # Float outputs: compare them.
      diff = float(np.max(np.abs(probs[:CHECK_IMAGES] - ref[:CHECK_IMAGES])))
      if e.format == "float32" and diff > FLOAT_TOLERANCE:
        raise MismatchError(f"{e.name}: TFLite outputs differ from Keras by {diff:.2e} "
                            f"(> {FLOAT_TOLERANCE:g}) on {CHECK_IMAGES} test images")
    pred = np.argmax(probs, -1)
    v = Verification(e.name, float(np.mean(pred == y_test)),
                     float(np.mean(pred == np.argmax(ref, -1))), diff)
    logging.info("%s: test accuracy %.4f, agrees with Keras on %.2f%% of images%s.", e.name,
                 v.test_accuracy, 100 * v.top1_agreement,
                 "" if diff is None else f", max |diff| {diff:.1e}")
    results.append(v)
  return results
