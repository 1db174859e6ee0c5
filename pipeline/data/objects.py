"""Data a notebook already holds: tf.data datasets as `image_dataset_from_directory` returns
them (batched `(images, labels)`, labels as integers, one-hot rows or binary floats) or
`(images, labels)` numpy arrays, gathered once into in-memory splits (pipeline.prune's door).

Images must be the raw pixels (0..255) the model scales itself, as the tutorials build their
models (a Rescaling layer first): the exported .tflite then takes what a camera gives, and int8
calibration pins the input range to 0..255. Images already scaled to 0..1 are refused.
"""

from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

from pipeline.data import core


def _labels(y: np.ndarray, name: str) -> np.ndarray:
  """Integer labels from integers, one-hot rows (label_mode='categorical') or 0/1 floats
  (label_mode='binary')."""
  y = np.asarray(y)
  if y.ndim == 2 and y.shape[1] > 1:
    if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
      raise ValueError(f"{name}: labels of {y.shape[1]} columns are not one-hot rows")
    return np.argmax(y, axis=1).astype(np.int64)
  y = y.reshape(-1)
  if y.size and (np.any(y != np.round(y)) or y.min() < 0):
    raise ValueError(f"{name}: labels must be class indices 0, 1, ... (got values "
                     f"{y.min():g}..{y.max():g})")
  return y.astype(np.int64)


def _gather(obj, name: str) -> Tuple[np.ndarray, np.ndarray]:
  """(images, labels) of a tf.data dataset (batched or not) or an (images, labels) pair."""
  if isinstance(obj, tf.data.Dataset):
    spec = obj.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
      raise ValueError(f"{name}: a dataset of (images, labels) pairs is needed, as "
                       f"image_dataset_from_directory makes (got elements {spec})")
    batched = len(spec[0].shape) == 4
    xs, ys = [], []
    for x, y in obj.as_numpy_iterator():
      xs.append(x if batched else x[None])
      ys.append(y if batched else np.asarray(y)[None])
    if not xs:
      raise ValueError(f"{name}: the dataset is empty")
    return np.concatenate(xs), np.concatenate(ys)
  if isinstance(obj, (tuple, list)) and len(obj) == 2:
    return np.asarray(obj[0]), np.asarray(obj[1])
  raise ValueError(f"{name}: expected a tf.data.Dataset of (images, labels) or an (images, "
                   f"labels) pair of arrays, got {type(obj).__name__}")


def _images(x: np.ndarray, name: str) -> np.ndarray:
  """uint8 where the pixels are whole numbers 0..255 (as decoded files are), else float32."""
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"{name}: images must be shaped (N, height, width, 1 or 3), got "
                     f"{x.shape}")
  if x.dtype == np.uint8:
    return x
  x = x.astype(np.float32)
  if x.size and (x.min() < 0 or x.max() > 255):
    raise ValueError(f"{name}: pixel values {x.min():g}..{x.max():g} are outside 0..255; pass "
                     "raw pixels and let the model scale them (a Rescaling layer)")
  if x.size and x.max() <= 1.0:
    raise ValueError(f"{name}: the images are scaled to 0..1 already; pass raw pixels 0..255 "
                     "(drop the dataset's .map(lambda x, y: (x / 255, y))) and put "
                     "keras.layers.Rescaling(1/255) first in the model, so the .tflite takes "
                     "what a camera gives")
  return x.astype(np.uint8) if np.all(x == np.round(x)) else x


def _class_names(objects: Sequence, count: int) -> Tuple[str, ...]:
  """The `class_names` image_dataset_from_directory attaches to its dataset, else '0'..'n-1'."""
  for obj in objects:
    names = getattr(obj, "class_names", None)
    if names:
      if len(names) < count:
        raise ValueError(f"the dataset names {len(names)} classes ({', '.join(names)}), its "
                         f"labels go up to {count - 1}")
      return tuple(str(n) for n in names)
  return tuple(str(i) for i in range(count))


def from_objects(train, validation, test=None) -> core.Dataset:
  """A Dataset of in-memory splits from the objects given to pipeline.prune.

  Args:
    train, validation: tf.data datasets of (images, labels), or (images, labels) arrays.
    test: the same, or None: the validation data is then also the test split (noted).

  Raises:
    ValueError: one line naming train_ds, validation_ds or test_ds: not (images, labels),
      images of another shape than the training images', scaled pixels, bad labels.
  """
  parts = {"train_ds": train, "validation_ds": validation}
  if test is not None:
    parts["test_ds"] = test
  arrays = {}
  for name, obj in parts.items():
    x, y = _gather(obj, name)
    x, y = _images(x, name), _labels(y, name)
    if len(x) != len(y):
      raise ValueError(f"{name}: {len(x)} images but {len(y)} labels")
    if name != "train_ds" and x.shape[1:] != arrays["train_ds"][0].shape[1:]:
      raise ValueError(f"{name}: images shaped {x.shape[1:]}, the training images "
                       f"{arrays['train_ds'][0].shape[1:]}")
    arrays[name] = (x, y)
  count = 1 + max(int(y.max()) for _, y in arrays.values())
  classes = _class_names(list(parts.values()), max(count, 2))
  splits = {n: core.in_memory(x, y) for n, (x, y) in arrays.items()}
  notes = ["splits: the train_ds and validation_ds given"]
  if test is None:
    notes.append("test: the validation data (no test_ds given): test accuracy is measured on "
                 "the images that also chose the best epoch")
  stored = sum(x.nbytes for x, _ in arrays.values())
  dtypes = {str(x.dtype) for x, _ in arrays.values()}
  notes.append(f"held in memory: {stored / 2**20:.0f} MiB of {'/'.join(sorted(dtypes))} pixels")
  shape = tuple(int(v) for v in arrays["train_ds"][0].shape[1:])
  return core.Dataset("python", "Python objects: " + ", ".join(
      f"{n} ({len(arrays[n][1]):,} images)" for n in arrays), shape, classes,
                      splits["train_ds"], splits["validation_ds"],
                      splits.get("test_ds", splits["validation_ds"]), tuple(notes))


def fingerprint(dataset: core.Dataset) -> str:
  """A short hash of the splits' images and labels: a resumed run must have the same data."""
  import hashlib  # pylint: disable=g-import-not-at-top
  h = hashlib.sha256()
  for split in (dataset.train, dataset.validation, dataset.test):
    h.update(split.labels.tobytes())
    h.update(np.ascontiguousarray(split.images).tobytes())
  return h.hexdigest()[:16]

