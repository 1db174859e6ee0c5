"""Keras 3 at the boundary: recognise a Keras 3 file (pipeline/models/safe_load.py loads it with
Keras 3's safe mode), hand the pipeline a tf_keras copy checked on real images, and write a
result back as a Keras 3 file checked the same way (pipeline/models/keras3_translate.py rebuilds the
models).

The check: both models' outputs on the same images within TOLERANCE (max |diff|; of the largest
|output| where that is above 1, as raw logits are) and the same top-1 class on every image (an image whose two best classes the reference itself ranks within
2 * TOLERANCE counts as agreeing: its top-1 is a tie at this precision).
"""

import dataclasses
import json
import os
import warnings
import zipfile
from typing import Optional

import numpy as np

from pipeline.models import keras3_translate as translate_lib

TOLERANCE = 1e-5
# A mixed-precision model computes in float16 and its copy in float32: they agree to about
# 1e-4, never to 1e-5 (docs/keras3.md has the figure).
MIXED_TOLERANCE = 1e-3


class Disagreement(ValueError):
  """The two models' outputs differ beyond TOLERANCE; the message names the first layer."""


@dataclasses.dataclass(frozen=True)
class Agreement:
  """How closely a rebuilt model matched its source on `images` images."""
  layers: int  # Layers rebuilt (nested models' layers included).
  max_diff: float
  images: int
  tolerance: float = TOLERANCE
  mixed_precision: str = ""  # The source computed in this policy; the copy in float32.

  def describe(self) -> str:
    mixed = (f" (a {self.mixed_precision} model against its float32 copy: checked to "
             f"{self.tolerance:g})" if self.mixed_precision else "")
    return (f"{self.layers} layers, max |diff| {self.max_diff:.1e} on {self.images} images, "
            f"same top-1{mixed}")


def saved_version(path: str) -> Optional[str]:
  """The Keras version a .keras or .h5 file records ('3.15.1'), or None if it records none.

  Raises:
    ValueError: a .keras file that is not a readable zip (truncated or corrupt).
  """
  if path.lower().endswith(".keras") and os.path.isfile(path):
    try:
      with zipfile.ZipFile(path) as z:
        if "metadata.json" not in z.namelist():
          return None
        return str(json.loads(z.read("metadata.json")).get("keras_version", "")) or None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
      raise ValueError(f"not a readable .keras file (a .keras file is a zip archive; this one "
                       f"is truncated or corrupt: {' '.join(str(e).split())[:120]})") from None
  if path.lower().endswith((".h5", ".hdf5")) and os.path.isfile(path):
    import h5py  # pylint: disable=g-import-not-at-top
    try:
      with h5py.File(path, "r") as f:
        v = f.attrs.get("keras_version")
    except OSError:
      return None
    return (v.decode() if isinstance(v, bytes) else str(v)) if v is not None else None
  return None


def is_keras3(version: Optional[str]) -> bool:
  """True for a version saved_version() read from a Keras 3 file (`import keras`, TF >= 2.16)."""
  return bool(version) and version.split(".")[0] == "3"


def is_keras3_file(path: str) -> bool:
  return is_keras3(saved_version(path))


def is_keras3_model(model) -> bool:
  """True for a model object built with Keras 3 (`import keras`), not tf_keras."""
  return type(model).__module__.split(".")[0] == "keras"


def _outputs(model, images: np.ndarray) -> list:
  """Each output of `model` on `images` (in batches of 32), as numpy arrays."""
  with warnings.catch_warnings():  # Keras 3 warns when a model built on [input] gets a tensor.
    warnings.filterwarnings("ignore", message="The structure of `inputs`")
    parts = [model(images[i:i + 32], training=False) for i in range(0, len(images), 32)]
  parts = [p if isinstance(p, (list, tuple)) else [p] for p in parts]
  return [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(parts[0]))]


def _top1_agrees(reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> np.ndarray:
  top2 = np.sort(reference, axis=-1)[:, -2:] if reference.shape[-1] > 1 else None
  tie = (top2[:, 1] - top2[:, 0] <= 2 * tolerance) if top2 is not None else False
  return (np.argmax(reference, -1) == np.argmax(candidate, -1)) | tie


def agree(translation: translate_lib.Translation, source, images: np.ndarray) -> Agreement:
  """Checks `translation.model` against `source` on `images`.

  Raises:
    Disagreement: outputs beyond the tolerance or another top-1; names the first layer whose
      output differs and its max |diff|.
  """
  base = MIXED_TOLERANCE if translation.mixed_precision else TOLERANCE
  a, b = _outputs(source, images)[0], _outputs(translation.model, images)[0]
  # Raw logits round with their size: the tolerance is of the largest |output| (at least 1),
  # as for the layers inside (_first_difference).
  tol = base * (max(1.0, float(np.max(np.abs(a)))) if a.size else 1.0)
  diff = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
  agrees = _top1_agrees(a, b, tol)
  if diff <= tol and np.all(agrees):
    return Agreement(len(translation.pairs), diff, len(images), tol,
                     translation.mixed_precision)
  where = _first_difference(translation, source, images, base)
  raise Disagreement(f"the rebuilt model's outputs differ from the original's (max |diff| "
                     f"{diff:.2e} over {tol:g}, top-1 differs on {int(np.sum(~agrees))} of "
                     f"{len(images)} images){where}")


def _first_difference(translation: translate_lib.Translation, source, images, tol) -> str:
  """'; first at layer conv2 (max |diff| 3.1e-02)', with the config keys the other side has no
  place for, or '' where no single layer stands out."""
  probes = translation.probes
  if not probes:
    return ""
  s = translation.source_module.Model(source.inputs, [p[1] for p in probes])
  d = translation.module.Model(translation.model.inputs, [p[2] for p in probes])
  x = images[:8]
  for (name, _, _), u, v in zip(probes, _outputs(s, x), _outputs(d, x)):
    if u.shape != v.shape or np.max(np.abs(u - v)) > tol * max(1.0, float(np.max(np.abs(u)))):
      gap = float(np.max(np.abs(u - v))) if u.shape == v.shape else float("inf")
      keys = translation.dropped.get(name)
      unsupported = (f"; its config keys {', '.join(keys)} have no place on the other side"
                     if keys else "")
      return f"; first at layer {name} (max |diff| {gap:.2e}){unsupported}"
  return ""


def to_tf_keras(model3, images: np.ndarray):
  """A checked tf_keras copy of a Keras 3 model.

  Returns:
    (tf_keras model, Agreement).

  Raises:
    translate_lib.Untranslatable: a layer, activation or op with no tf_keras equivalent.
    Disagreement: the copy's outputs differ (first layer named).
  """
  translation = translate_lib.to_tf_keras(model3)
  return translation.model, agree(translation, model3, images)


def write(model, path: str, images: np.ndarray) -> Agreement:
  """Writes a tf_keras model as a Keras 3 .keras file, checked before it is saved and again
  after Keras 3 reloads it with safe_mode=True; nothing is left at `path` if a check fails.

  Raises:
    translate_lib.Untranslatable, Disagreement: as to_tf_keras.
  """
  translation = translate_lib.to_keras3(model)
  agreement = agree(translation, model, images)
  directory = os.path.dirname(path) or "."
  tmp = os.path.join(directory, ".tmp-" + os.path.basename(path))
  try:
    translation.model.save(tmp)
    import keras  # pylint: disable=g-import-not-at-top  (loaded by to_keras3 already)
    reloaded = keras.saving.load_model(tmp, safe_mode=True)
    again = agree(dataclasses.replace(translation, model=reloaded, probes=[]), model, images)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return dataclasses.replace(agreement, max_diff=max(agreement.max_diff, again.max_diff))
