"""Verification: each .tflite file's accuracy through LiteRT and its agreement with Keras."""

import dataclasses
from typing import Dict, List, Optional, Sequence

from absl import logging
import numpy as np

from export import litert
from export.tflite import Export

FLOAT_TOLERANCE = 1e-4  # float32 exports must match Keras this closely (max abs output diff).
CHECK_IMAGES = 100


@dataclasses.dataclass(frozen=True)
class Verification:
  name: str
  test_accuracy: float
  top1_agreement: float  # Fraction of test images where the file and Keras pick the same class.
  max_abs_diff: Optional[float]  # Against Keras on CHECK_IMAGES images; float formats only.


class MismatchError(RuntimeError):
  """A float32 export's outputs differ from its Keras model's."""


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
    if e.format in ("float32", "float16"):
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
