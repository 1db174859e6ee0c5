"""TFLite conversion: float32, float16, dynamic-range and full-integer int8, dense or sparse."""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from export.formats import FORMATS


@dataclasses.dataclass(frozen=True)
class Export:
  name: str  # e.g. "pruned_int8_sparse"
  path: str  # Absolute path of the .tflite file.
  model: str  # Which Keras model it came from: "baseline" or "pruned".
  format: str  # One of FORMATS.
  sparse: bool  # Converted with EXPERIMENTAL_SPARSITY (sparse tensor encoding).


def convert(model, fmt: str, sparse: bool = False,
            representative: Optional[np.ndarray] = None, int8_io: bool = False) -> bytes:
  """Converts a tf_keras model to a .tflite flatbuffer.

  Args:
    model: the Keras model (stripped of pruning wrappers).
    fmt: one of FORMATS.
    sparse: also apply Optimize.EXPERIMENTAL_SPARSITY, which stores pruned weights sparsely.
    representative: float32 model inputs to calibrate int8 activations (needed for "int8").
    int8_io: for "int8", make the model's input and output uint8 (else they stay float32);
      with representative data spanning 0..255, a uint8 input is the raw pixel itself.

  Raises:
    ValueError: unknown format, or "int8" without representative data.
  """
  if fmt not in FORMATS:
    raise ValueError(f"export format={fmt}: unknown; valid: {', '.join(FORMATS)}")
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  opts = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
  if fmt != "float32":
    opts.append(tf.lite.Optimize.DEFAULT)
  converter.optimizations = opts
  if fmt == "float16":
    converter.target_spec.supported_types = [tf.float16]
  elif fmt == "int8":
    if representative is None or not len(representative):
      raise ValueError("export format=int8: needs representative data to calibrate activations")
    converter.representative_dataset = lambda: ([representative[i:i + 1]]
                                                for i in range(len(representative)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
      converter.inference_input_type = tf.uint8
      converter.inference_output_type = tf.uint8
  return converter.convert()


def export_tflite(models: Dict[str, object], plan: Dict[str, Tuple[Sequence[str], bool]],
                  out_dir: str, representative: np.ndarray, int8_io: bool = False,
                  write=None) -> List[Export]:
  """Exports each model in the formats its plan names.

  Args:
    models: {model name: Keras model}.
    plan: {model name: (formats, also_sparse)}; with also_sparse, every format is written a
      second time with sparse encoding. Files are named <model>_<format>[_sparse].tflite.
    out_dir: directory for the .tflite files.
    representative: float32 inputs from the training split, for int8 calibration.
    int8_io: int8 inputs/outputs for the "int8" format.
    write: write(path, bytes) used to store files (default: plain write); the pipeline passes
      an atomic writer.

  Returns:
    One Export per file, in plan order.
  """
  write = write or _write
  exports = []
  for name, (formats, also_sparse) in plan.items():
    for fmt in formats:
      for sparse in ((False, True) if also_sparse else (False,)):
        export_name = f"{name}_{fmt}" + ("_sparse" if sparse else "")
        path = os.path.join(out_dir, export_name + ".tflite")
        write(path, convert(models[name], fmt, sparse, representative, int8_io))
        exports.append(Export(export_name, path, name, fmt, sparse))
  return exports


def _write(path: str, content: bytes) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "wb") as f:
    f.write(content)
