"""Load a user's trained Keras classifier as the baseline without running code from the file.

A `.keras` file, from Keras 3 (`import keras`, TensorFlow >= 2.16) or tf_keras, is read with
`safe_mode=True`: a Lambda layer (Python bytecode) in it is refused. A Keras 3 model is
rebuilt in tf_keras, which TF-MOT needs, and the copy checked on real images
(pipeline/models/keras3.py). `.h5` files and SavedModel directories can carry Lambda bytecode or
arbitrary graph ops that run on load, so they are refused unless the user trusts the file.
"""

import dataclasses
import json
import os
from typing import List, Optional

from absl import logging
import numpy as np
import tf_keras as keras

from pipeline.models import flatten as flatten_lib
from pipeline.models import heads
from pipeline.models import keras3 as keras3_lib
from pipeline.models import sparsity


def _configs(node):
  """Every dict in a saved model's config tree (layers, nested models, their parts)."""
  if isinstance(node, dict):
    yield node
    for v in node.values():
      yield from _configs(v)
  elif isinstance(node, list):
    for v in node:
      yield from _configs(v)


def _saved_config(path: str):
  """The model config a .h5 or .keras file declares, read as JSON (nothing is run), or None."""
  import zipfile  # pylint: disable=g-import-not-at-top
  if path.lower().endswith(".keras"):
    try:
      with zipfile.ZipFile(path) as z:
        return json.loads(z.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
      return None
  import h5py  # pylint: disable=g-import-not-at-top
  try:
    with h5py.File(path, "r") as f:
      config = f.attrs.get("model_config")
  except OSError:
    return None
  if config is None:
    return None
  return json.loads(config if isinstance(config, str) else config.decode("utf-8"))


def _lambda_layers(config) -> List[str]:
  """Names of the Lambda layers a saved config declares."""
  return [node.get("config", {}).get("name", "?") for node in _configs(config)
          if node.get("class_name") == "Lambda"]


def _custom_classes(config) -> List[str]:
  """Classes a .keras config names outside Keras itself: by their module, or registered by the
  user (`register_keras_serializable` gives them a "package>Name" registered name)."""
  found = set()
  for node in _configs(config):
    module, registered = node.get("module"), node.get("registered_name")
    if "class_name" not in node:
      continue
    if isinstance(module, str) and not module.startswith(("keras", "tf_keras", "builtins")):
      found.add(f"{node['class_name']} (from {module})")
    elif isinstance(registered, str) and ">" in registered:
      found.add(f"{node['class_name']} (registered as {registered})")
  return sorted(found)


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


# Layers that scale pixels: TFOpLambda is arithmetic on the input, as
# keras.applications.mobilenet_v2.preprocess_input (x / 127.5 - 1) leaves it in a graph.
_SCALERS = ("Rescaling", "Normalization", "TFOpLambda")


def _warn_unless_scaled(model: keras.Model, flag: str) -> None:
  """This tool feeds raw pixels (0..255). A model trained on scaled inputs with the scaling
  outside it would silently score near chance; say so when no scaling layer comes first."""
  for layer in model.layers:
    if type(layer).__name__ in _SCALERS:
      return
    if sparsity.pruned_weight(layer) is not None:
      break
  logging.warning("%s: no Rescaling, Normalization or arithmetic (preprocess_input) before "
                  "the first weighted layer. "
                  "This tool feeds raw pixels 0..255; if the model was trained on scaled "
                  "inputs, put keras.layers.Rescaling(1/255) (or its own scaling) in front and "
                  "save it again.", flag)


@dataclasses.dataclass(frozen=True)
class Loaded:
  """A baseline ready for the pipeline (tf_keras), and how a Keras 3 file was carried over."""
  model: keras.Model
  keras3: Optional[keras3_lib.Agreement] = None  # None: the file was tf_keras (Keras 2).


def load_baseline(path: str, input_shape=None, num_classes=None,
                  trust: bool = False) -> keras.Model:
  """load(...).model: the tf_keras model alone."""
  return load(path, input_shape, num_classes, trust).model


def load(path: str, input_shape=None, num_classes=None, trust: bool = False,
         images: Optional[np.ndarray] = None, flag_name: str = "baseline_path") -> Loaded:
  """Loads a trained classifier: .keras from Keras 3 or tf_keras (.h5 or SavedModel only with
  `trust`). A Keras 3 model is rebuilt in tf_keras and the copy checked on `images`.

  Args:
    path: the file or directory given as --baseline_path (or --`flag_name`).
    input_shape: if given, the model's input must have this shape (batch axis excluded).
    num_classes: if given, the model must classify this many classes (a one-unit binary
      head: two).
    trust: --trust_model: allow formats that can run code from the file.
    images: raw-pixel images to check a Keras 3 model's tf_keras copy on (a batch of the
      validation split); default: 16 images of uniform noise.
    flag_name: the flag errors name (--teacher_path loads a model the same way).

  Raises:
    ValueError: one line naming --baseline_path: missing, a format refused without
      --trust_model, a corrupt file, not a Keras model, a Lambda or custom layer, a layer
      with no tf_keras equivalent, a copy that does not agree (first layer named), or a model
      that does not fit the data (both shapes or class counts named).
  """
  flag = f"--{flag_name}={path}"
  return adopt(open_file(path, trust, flag), flag, input_shape, num_classes, trust, images)


def open_file(path: str, trust: bool = False, flag: Optional[str] = None):
  """The model in a file as its own Keras saved it (a Keras 3 or a tf_keras model), loaded
  without running code from it (see load); nothing is checked against the data yet.

  Raises:
    ValueError: as load, but for the fit to the data.
  """
  flag = flag or f"--baseline_path={path}"
  if not os.path.exists(path):
    raise ValueError(f"{flag}: no such file or directory")
  try:
    version = keras3_lib.saved_version(path)
  except ValueError as e:
    raise ValueError(f"{flag}: {e}") from None
  is_keras3 = keras3_lib.is_keras3(version)
  _refuse_unsafe(path, flag, trust, is_keras3)
  try:
    if is_keras3:
      import keras as keras3  # pylint: disable=g-import-not-at-top  (only for Keras 3 files)
      return _load_with(keras3.saving.load_model, path, trust)
    return _load_with(keras.models.load_model, path, trust)
  except Exception as e:  # pylint: disable=broad-except  (any loader failure: one line)
    raise ValueError(f"{flag}: {_reason(e)}") from None


def adopt(model, flag: str, input_shape=None, num_classes=None, trust: bool = False,
          images: Optional[np.ndarray] = None) -> Loaded:
  """A user's model object (Keras 3 or tf_keras) made ready for the pipeline: a Keras 3 model
  rebuilt in tf_keras and checked on `images`, nested models inlined, checked against the
  data's image shape and classes. A Keras 3 model is left as it was; a tf_keras one is used
  as it is (inlining builds a new graph of the same layers).

  Args:
    model: the model.
    flag: how errors name it ("--baseline_path=m.keras", or "model" in the Python API).
    input_shape, num_classes, trust, images: as load.

  Raises:
    ValueError: one line beginning with `flag` (see load).
  """
  agreement = None
  if keras3_lib.is_keras3_model(model):
    _check_fits(model, flag, input_shape, num_classes)
    if images is None:
      images = np.random.default_rng(0).uniform(0, 255, (16,) + tuple(model.input_shape[1:]))
    try:
      model, agreement = keras3_lib.to_tf_keras(model, np.asarray(images, np.float32))
    except ValueError as e:  # Untranslatable, Disagreement.
      raise ValueError(f"{flag}: Keras 3 model: {e}") from None
    logging.info("Keras 3 model translated to tf_keras: %s.", agreement.describe())
  elif not isinstance(model, keras.Model):
    raise ValueError(f"{flag}: not a Keras model (got {type(model).__name__})")
  if trust:
    # The user trusts this file: the structured surgery and TF-MOT rebuild the model from
    # its config, which re-creates its Lambda layers; tf_keras refuses that in safe mode.
    keras.__internal__.enable_unsafe_deserialization()
  model = _inline_nested(model, flag)
  _warn_unless_scaled(model, flag)
  _check_fits(model, flag, input_shape, num_classes)
  return Loaded(model, agreement)


def _refuse_unsafe(path: str, flag: str, trust: bool, keras3: bool) -> None:
  """Formats that can run code, Lambda layers and custom classes: refused before loading."""
  is_h5 = path.lower().endswith((".h5", ".hdf5"))
  if is_h5 or os.path.isdir(path):
    if not trust:
      kind = "an .h5 file" if is_h5 else "a SavedModel directory"
      lambdas = _lambda_layers(_saved_config(path)) if is_h5 else []
      holds = (f"; this one holds Lambda layer(s) {', '.join(lambdas)}" if lambdas else "")
      raise ValueError(f"{flag}: {kind} can run code from the file when loaded{holds}; "
                       "re-save it as .keras (model.save('model.keras')), or pass "
                       "--trust_model if you trust its source")
    return
  if not path.lower().endswith(".keras"):
    raise ValueError(f"{flag}: not a .keras file, an .h5 file or a SavedModel directory")
  config = _saved_config(path)
  custom = _custom_classes(config)
  if custom:
    raise ValueError(f"{flag}: it uses custom classes this tool cannot build: "
                     f"{', '.join(custom)}; re-save the model with built-in Keras layers")
  lambdas = _lambda_layers(config)
  if lambdas and (not trust or keras3):
    why = ("whose Python code would run on load and does not carry over from Keras 3 to "
           "tf_keras" if keras3 else "whose Python code would run on load")
    fix = "" if keras3 else ", or pass --trust_model if you trust its source"
    raise ValueError(f"{flag}: it holds Lambda layer(s) {', '.join(lambdas)}, {why}; rebuild "
                     f"the model without Lambda layers{fix}")


def _load_with(load_model, path: str, trust: bool):
  """Either Keras' load_model: .keras in safe mode unless trusted (.h5 and SavedModel were
  allowed only with --trust_model, and have no safe mode)."""
  if path.lower().endswith((".h5", ".hdf5")) or os.path.isdir(path):
    return load_model(path, compile=False)
  return load_model(path, compile=False, safe_mode=not trust)


def _inline_nested(model: keras.Model, flag: str) -> keras.Model:
  if not flatten_lib.has_nested(model):
    return model
  nested = [l.name for l in model.layers if isinstance(l, keras.Model)]
  try:
    model = flatten_lib.flatten(model)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{flag}: holds nested model(s) {', '.join(nested)} that cannot be "
                     f"inlined ({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
  logging.info("Inlined nested model(s) %s into one graph, so TF-MOT and the structured "
               "surgery see their layers.", ", ".join(nested))
  return model


def head_of(model, flag: str):
  """The model's head (pipeline/models/heads.py).

  Raises:
    ValueError: `flag`: why it is not one single-label classifier (the layer named).
  """
  try:
    return heads.read(model)
  except heads.HeadError as e:
    raise ValueError(f"{flag}: {e}") from None


def _check_fits(model, flag: str, input_shape, num_classes) -> None:
  """The model has a classifier head (pipeline/models/heads.py) for the data's classes and
  takes its images (either Keras)."""
  head = head_of(model, flag)
  have = tuple(model.input_shape[1:])
  if input_shape is not None and have != tuple(input_shape):
    hint = ("; set --image_size/--color_mode to match" if len(have) == 3 and
            None not in have else "")
    raise ValueError(f"{flag}: the model takes images shaped {have}, the data's are "
                     f"{tuple(input_shape)}{hint}")
  why = heads.check_fits(head, num_classes) if num_classes is not None else None
  if why:
    raise ValueError(f"{flag}: {why}")
