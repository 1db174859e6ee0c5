"""Gates: the bound each exported format must meet against its Keras model, on every test image.

A broken file (wrong scales, a bad conversion) must fail the run, not sit in a table. Each
format has one documented bound; a file outside it is marked FAILED with the reason, the report
is still written, and the run exits non-zero.

| format | bound against the Keras model it came from |
|---|---|
| float32 | top-1 agreement >= 99.9% and max abs output difference < 1e-4 (for raw logits, 1e-4 of the largest |logit|) |
| float16 | test accuracy within 0.2 points |
| dynamic_int8, int8 | test accuracy within 1.0 point (`--max_int8_accuracy_change`) |
| any | stored sparsity per layer within 1 point of what its Keras kernel implies |
"""

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Bounds:
  float32_min_agreement: float = 0.999
  float32_max_abs_diff: float = 1e-4
  float16_max_points: float = 0.2  # |file accuracy - Keras accuracy|, in points.
  int8_max_points: float = 1.0

  def describe(self, fmt: str) -> str:
    if fmt == "float32":
      return (f"agreement >= {100 * self.float32_min_agreement:g}% and max |diff| < "
              f"{self.float32_max_abs_diff:g} (x the largest |logit| for logits)")
    points = self.float16_max_points if fmt == "float16" else self.int8_max_points
    return f"accuracy within {points:g} point{'' if points == 1 else 's'} of Keras"


def check(fmt: str, accuracy: float, keras_accuracy: float, agreement: float,
          max_abs_diff: Optional[float], bounds: Bounds = Bounds(),
          output_scale: float = 1.0) -> Optional[str]:
  """Why a file of format `fmt` is outside its bound, or None when it is within.

  Args:
    fmt: float32, float16, dynamic_int8 or int8.
    accuracy: the file's top-1 accuracy on the whole test split (0..1).
    keras_accuracy: its Keras model's accuracy on the same images.
    agreement: fraction of images where the file and Keras pick the same class.
    max_abs_diff: max |file output - Keras output| over the test split (float outputs).
    bounds: the bounds.
    output_scale: what the float32 difference is measured against (export/head.py Head.scale:
      1 for probabilities, the largest |logit| for raw logits).

  Raises:
    ValueError: unknown format.
  """
  points = 100 * (accuracy - keras_accuracy)
  if fmt == "float32":
    reasons = []
    if agreement < bounds.float32_min_agreement:
      reasons.append(f"agrees with Keras on {100 * agreement:.2f}% of test images "
                     f"(< {100 * bounds.float32_min_agreement:g}%)")
    bound = bounds.float32_max_abs_diff * output_scale
    if max_abs_diff is None or not max_abs_diff < bound:
      of = f" = {bounds.float32_max_abs_diff:g} x {output_scale:.3g}" if output_scale != 1 else ""
      reasons.append(f"outputs differ from Keras by up to {max_abs_diff:.2e} "
                     f"(bound {bound:g}{of})")
    return "; ".join(reasons) or None
  if fmt == "float16":
    limit = bounds.float16_max_points
  elif fmt in ("dynamic_int8", "int8"):
    limit = bounds.int8_max_points
  else:
    raise ValueError(f"export format={fmt}: unknown; valid: float32, float16, dynamic_int8, int8")
  if abs(points) > limit + 1e-9:  # 1e-9: 2 of 200 images is exactly a 1.0-point bound.
    return (f"test accuracy {100 * accuracy:.2f}% is {points:+.2f} points from Keras' "
            f"{100 * keras_accuracy:.2f}% (bound {limit:g})")
  return None
