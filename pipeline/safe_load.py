"""Load a user's trained Keras classifier as the baseline without running code from the file.

A `.keras` file is read with `safe_mode=True`: a Lambda layer (Python bytecode) in it is
refused. `.h5` files and SavedModel directories can carry Lambda bytecode or arbitrary graph
ops that run on load, so they are refused unless the user says they trust the file.
"""

import json
import os
from typing import List

from absl import logging
import tf_keras as keras

from pipeline import flatten as flatten_lib


def _lambda_layers_in_h5(path: str) -> List[str]:
  """Names of the Lambda layers an .h5 file's model config declares (read as JSON, not run)."""
  import h5py  # pylint: disable=g-import-not-at-top
  try:
    with h5py.File(path, "r") as f:
      config = f.attrs.get("model_config")
  except OSError:
    return []
  if config is None:
    return []
  found = []

  def walk(node):
    if isinstance(node, dict):
      if node.get("class_name") == "Lambda":
        found.append(node.get("config", {}).get("name", "?"))
      for v in node.values():
        walk(v)
    elif isinstance(node, list):
      for v in node:
        walk(v)

  walk(json.loads(config if isinstance(config, str) else config.decode("utf-8")))
  return found


def _custom_classes_in_keras(path: str) -> List[str]:
  """Classes a .keras file's config names outside Keras itself (read as JSON, not run)."""
  import zipfile  # pylint: disable=g-import-not-at-top
  try:
    with zipfile.ZipFile(path) as z:
      config = json.loads(z.read("config.json"))
  except (OSError, KeyError, ValueError, zipfile.BadZipFile):
    return []
  found = []

  def walk(node):
    if isinstance(node, dict):
      module = node.get("module")
      if "class_name" in node and isinstance(module, str) and not module.startswith(
          ("keras", "tf_keras", "builtins")):
        found.append(f"{node['class_name']} (from {module})")
      for v in node.values():
        walk(v)
    elif isinstance(node, list):
      for v in node:
        walk(v)

  walk(config)
  return sorted(set(found))


def _reason(e: Exception) -> str:
  text = " ".join(str(e).split())
  if "safe_mode" in text or "Lambda" in text and "deserializ" in text:
    return ("it holds a Lambda layer, whose Python code would run on load; rebuild the model "
            "without Lambda layers, or pass --trust_model if you trust its source")
  if "Unknown layer" in text or "Could not locate class" in text or "custom_objects" in text:
    return (f"it uses a custom layer this tool cannot build ({text[:160]}); register it with "
            "keras.saving.register_keras_serializable in an importable module, or re-save the "
            "model with built-in layers")
  return f"not a Keras model ({text[:160] or type(e).__name__})"


_SCALERS = ("Rescaling", "Normalization")


def _warn_unless_scaled(model: keras.Model, flag: str) -> None:
  """This tool feeds raw pixels (0..255). A model trained on scaled inputs with the scaling
  outside it would silently score near chance; say so when no scaling layer comes first."""
  for layer in model.layers:
    if type(layer).__name__ in _SCALERS:
      return
    if getattr(layer, "kernel", None) is not None or getattr(layer, "depthwise_kernel", None) \
        is not None:
      break
  logging.warning("%s: no Rescaling or Normalization layer before the first weighted layer. "
                  "This tool feeds raw pixels 0..255; if the model was trained on scaled "
                  "inputs, put keras.layers.Rescaling(1/255) (or its own scaling) in front and "
                  "save it again.", flag)


def load_baseline(path: str, input_shape=None, num_classes=None,
                  trust: bool = False) -> keras.Model:
  """Loads a trained Keras classifier (.keras; .h5 or SavedModel only with `trust`).

  Args:
    path: the file or directory given as --baseline_path.
    input_shape: if given, the model's input must have this shape (batch axis excluded).
    num_classes: if given, the model must output this many classes.
    trust: --trust_model: allow formats that can run code from the file.

  Raises:
    ValueError: one line naming --baseline_path: missing, a format refused without
      --trust_model, not a Keras model, a Lambda or custom layer, or a model that does not
      fit the data (both shapes or class counts named).
  """
  flag = f"--baseline_path={path}"
  if not os.path.exists(path):
    raise ValueError(f"{flag}: no such file or directory")
  is_h5 = path.lower().endswith((".h5", ".hdf5"))
  if is_h5 or os.path.isdir(path):
    if not trust:
      kind = "an .h5 file" if is_h5 else "a SavedModel directory"
      lambdas = _lambda_layers_in_h5(path) if is_h5 else []
      holds = (f"; this one holds Lambda layer(s) {', '.join(lambdas)}" if lambdas else "")
      raise ValueError(f"{flag}: {kind} can run code from the file when loaded{holds}; "
                       "re-save it as .keras (model.save('model.keras')), or pass "
                       "--trust_model if you trust its source")
  elif not path.lower().endswith(".keras"):
    raise ValueError(f"{flag}: not a .keras file, an .h5 file or a SavedModel directory")
  else:
    custom = _custom_classes_in_keras(path)
    if custom:
      raise ValueError(f"{flag}: it uses custom classes this tool cannot build: "
                       f"{', '.join(custom)}; re-save the model with built-in Keras layers")
  try:
    if is_h5 or os.path.isdir(path):
      model = keras.models.load_model(path, compile=False)
    else:
      model = keras.models.load_model(path, compile=False, safe_mode=not trust)
  except Exception as e:  # pylint: disable=broad-except  (any loader failure: one line)
    raise ValueError(f"{flag}: {_reason(e)}") from None
  if not isinstance(model, keras.Model):
    raise ValueError(f"{flag}: not a Keras model (loaded {type(model).__name__})")
  if trust:
    # The user trusts this file: the structured surgery and TF-MOT rebuild the model from
    # its config, which re-creates its Lambda layers; tf_keras refuses that in safe mode.
    keras.__internal__.enable_unsafe_deserialization()
  if flatten_lib.has_nested(model):
    nested = [l.name for l in model.layers if isinstance(l, keras.Model)]
    try:
      model = flatten_lib.flatten(model)
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f"{flag}: holds nested model(s) {', '.join(nested)} that cannot be "
                       f"inlined ({' '.join(str(e).split())[:160]})") from None
    logging.info("Inlined nested model(s) %s into one graph, so TF-MOT and the structured "
                 "surgery see their layers.", ", ".join(nested))
  _warn_unless_scaled(model, flag)
  have = tuple(model.input_shape[1:])
  if input_shape is not None and have != tuple(input_shape):
    hint = ("; set --image_size/--color_mode to match" if len(have) == 3 and
            None not in have else "")
    raise ValueError(f"{flag}: the model takes images shaped {have}, the data's are "
                     f"{tuple(input_shape)}{hint}")
  if num_classes is not None and model.output_shape[-1] != num_classes:
    raise ValueError(f"{flag}: the model outputs {model.output_shape[-1]} classes, the data "
                     f"has {num_classes}")
  return model
