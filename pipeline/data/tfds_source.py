"""Any TFDS image-classification dataset by name, streamed from its prepared copy."""

import difflib
import os
import socket
import threading
from typing import Optional

import numpy as np

from pipeline.data import core as data_lib
from pipeline import config as config_lib
from pipeline.config import Config, FlagError

# TFDS downloads from this host; if it does not answer quickly we are offline.
_TFDS_HOST = ("storage.googleapis.com", 443)
_ONLINE_PROBE_SECONDS = 4.0
TEST_FRACTION = 0.2  # Held out of train, stratified with a fixed seed, where there is no test.
_TEST_SPLIT_SEED = 0


def online(timeout: float = _ONLINE_PROBE_SECONDS) -> bool:
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


def _where(data_dir: Optional[str]) -> str:
  return f"--data_dir={data_dir}" if data_dir else "TFDS's default directory"


def _first_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _builder(name: str, data_dir: Optional[str]):
  """tfds.builder(name), with one-line errors: an unknown name lists the closest ones."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    close = difflib.get_close_matches(name, tfds.list_builders(), n=3, cutoff=0.6)
    raise data_lib.DataNotFoundError(
        f"--dataset={name}: no such dataset (mnist, fashion_mnist, folder, or a TFDS name)"
        + (f"; did you mean {', '.join(close)}?" if close else "")) from None
  except Exception as e:  # pylint: disable=broad-except
    raise data_lib.DataNotFoundError(f"--dataset={name}: TFDS could not read its copy in "
                                     f"{_where(data_dir)}: {_first_line(e)}") from e


def prepared(name: str, data_dir: Optional[str]) -> bool:
  """True if TFDS has a prepared copy of `name` there; a broken copy is an error, not False."""
  return os.path.exists(os.path.join(str(_builder(name, data_dir).data_path),
                                     "dataset_info.json"))


def _split_names(builder) -> tuple:
  return tuple(builder.info.splits)


def _prepared_builder(name: str, data_dir: Optional[str]):
  """(builder, whether its copy is prepared); no copy while offline is an error."""
  if data_dir is not None and not os.path.isdir(data_dir):
    raise data_lib.DataNotFoundError(f"--data_dir={data_dir}: no such directory")
  builder = _builder(name, data_dir)
  is_prepared = prepared(name, data_dir)
  if not is_prepared and not online():
    raise data_lib.DataNotFoundError(
        f"--dataset={name}: no prepared copy in {_where(data_dir)}, and TFDS cannot download it "
        f"offline; prepare it with `tfds build {name}` on a machine with a network and pass "
        "--data_dir pointing at that directory")
  return builder, is_prepared


def _image_classification_keys(name: str, info) -> tuple:
  """(supervised keys, image feature) of `info`; ValueError unless image and class label."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  keys = info.supervised_keys
  feature = info.features[keys[0]] if keys else None
  if not isinstance(feature, tfds.features.Image) or not isinstance(
      info.features[keys[1]], tfds.features.ClassLabel):
    raise FlagError("dataset", name, f"not an image classification dataset (its supervised "
                    f"keys are {keys})")
  return keys, feature


def _undecoded_splits(builder, image_key: str, splits: tuple) -> dict:
  """{split: Split of undecoded records and their labels} for train and any validation/test."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def records(split):
    return builder.as_dataset(split=split, as_supervised=True, shuffle_files=False,
                              decoders={image_key: tfds.decode.SkipDecoding()})

  def labels(split):
    batches = records(split).map(lambda x, y: y).batch(65_536)
    return np.concatenate([b.numpy() for b in batches] or [np.zeros(0)]).astype(np.int64)

  return {s: data_lib.Split(records(s), labels(s), shard_by="file")
          for s in ("train", "validation", "test") if s in splits or s == "train"}


def _read(builder, name: str, data_dir: Optional[str], is_prepared: bool) -> tuple:
  """(info, supervised keys, image feature, undecoded splits), downloading first if needed;
  a TFDS failure becomes a one-line DataNotFoundError."""
  try:
    if not is_prepared:
      builder.download_and_prepare()
    info = builder.info
    keys, feature = _image_classification_keys(name, info)
    splits = _split_names(builder)
    if splits and "train" not in splits:
      raise FlagError("dataset", name, f"has no train split (it has {', '.join(splits)})")
    return info, keys, feature, _undecoded_splits(builder, keys[0], splits)
  except ValueError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    what = "download and prepare" if not is_prepared else "read its prepared copy of"
    raise data_lib.DataNotFoundError(f"--dataset={name}: TFDS could not {what} it in "
                                     f"{_where(data_dir)}: {_first_line(e)}") from e


def _decoded_size(cfg: Config, name: str, feature) -> tuple:
  """(size, channels) to decode to: --image_size/--color_mode, else the dataset's own."""
  height, width, channels = feature.shape
  size = config_lib.parse_image_size(cfg.image_size)
  if size is None and (height is None or width is None):
    raise FlagError("dataset", name, "its images come in different sizes; set "
                    "--image_size=HEIGHT,WIDTH (e.g. 160,160)")
  size = size or (height, width)
  channels = {"rgb": 3, "grayscale": 1}.get(cfg.color_mode, channels)
  return size, channels


def _add_decoders(raw: dict, feature, size: tuple, channels: int) -> None:
  """Gives every split of `raw` (in place) a decoder to `size` and `channels`."""
  shape = (*size, channels)

  def decode(record):
    return data_lib.resize_and_color(feature.decode_example(record), size, channels)

  for s, split in raw.items():
    raw[s] = data_lib.Split(split.records, split.labels, decode,
                            data_lib.cacheable(len(split), shape), shard_by="file")


def _shape_note(feature, size: tuple, channels: int) -> str:
  """The note on the image shape, and whether it is the dataset's own."""
  height, width, _ = feature.shape
  shape = (*size, channels)
  return (f"images {'x'.join(map(str, shape))}"
          + (" (--image_size/--color_mode)" if (size, channels) != (
              (height, width), feature.shape[2]) else " (the dataset's own)"))


def _train_and_test(raw: dict) -> tuple:
  """(train, test, note): the dataset's own test split, else TEST_FRACTION of train."""
  train = raw["train"]
  if "test" in raw:
    return train, raw["test"], "test: the dataset's own split (fixed)"
  keep, held = data_lib.split_indices(train.labels, TEST_FRACTION, _TEST_SPLIT_SEED)
  return (data_lib.subset(train, keep), data_lib.subset(train, held),
          f"test: {TEST_FRACTION:.0%} of train, stratified, fixed (the dataset has no test split)")


def load(cfg: Config) -> data_lib.Dataset:
  """`cfg.dataset` from TFDS: its own train/validation/test splits where it has them.

  No test split: TEST_FRACTION of train, stratified, fixed (seed 0). No validation split:
  cfg.validation_split of the rest, stratified by cfg.seed. Images are decoded after
  shuffling, resized to --image_size and converted to --color_mode where asked.

  Raises:
    DataNotFoundError: unknown name, no prepared copy offline, or a TFDS failure (one line).
    ValueError: not an image classification dataset, or images of varying size without
      --image_size.
  """
  name, data_dir = cfg.dataset, cfg.data_dir
  builder, is_prepared = _prepared_builder(name, data_dir)
  info, keys, feature, raw = _read(builder, name, data_dir, is_prepared)
  size, channels = _decoded_size(cfg, name, feature)
  shape = (*size, channels)
  _add_decoders(raw, feature, size, channels)
  notes = [_shape_note(feature, size, channels)]
  train, test, test_note = _train_and_test(raw)
  notes.append(test_note)
  train, val, how = data_lib.train_and_validation(train, cfg, raw.get("validation"))
  names = tuple(info.features[keys[1]].names)
  return data_lib.Dataset(name, f"tfds:{name} ({'prepared copy' if is_prepared else 'downloaded'})",
                          shape, names, train, val, test, tuple(notes + [how]))
