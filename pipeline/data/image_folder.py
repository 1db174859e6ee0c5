"""An image folder: one subfolder per class, split as train/[validation/]test or not at all."""

import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from pipeline.data import core as data_lib
from pipeline import config as config_lib
from pipeline.config import Config

# The formats tf.io.decode_image reads, by extension, and the bytes each file starts with.
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"GIF8": "GIF"}
SPLIT_DIRS = ("train", "validation", "test")
TEST_FRACTION = 0.2  # Held out of an unsplit folder, stratified, fixed (seed 0).
_TEST_SPLIT_SEED = 0


def _fail(cfg: Config, why: str):
  return data_lib.DataNotFoundError(f"--data_dir={cfg.data_dir}: {why}")


def index(root: str, cfg: Config, classes: Tuple[str, ...] = ()) -> Tuple[Tuple[str, ...],
                                                                           List[str], np.ndarray]:
  """(class names, image paths, labels) of a folder of class subfolders, sorted by name.

  Every image's first bytes are checked, so a file that is no image is named here rather
  than failing a decode mid-training.

  Raises:
    DataNotFoundError: no class subfolders, one class, a class without images, a file that
      is no image, or (with `classes`) other classes than the train folder's.
  """
  where = os.path.relpath(root, cfg.data_dir)
  where = "" if where == "." else f"{where}/"
  found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
  if not found:
    raise _fail(cfg, f"{where}holds no class subfolders (one folder of images "
                f"per class, e.g. {where}cats/ and {where}dogs/)")
  if classes and tuple(found) != classes:
    raise _fail(cfg, f"{where} has classes {', '.join(found)}; train/ has "
                f"{', '.join(classes)}")
  if len(found) < 2:
    raise _fail(cfg, f"{where}holds one class ({found[0]}); a classifier needs at least two")
  paths, labels = [], []
  for label, name in enumerate(found):
    files = sorted(f for f in os.listdir(os.path.join(root, name))
                   if f.lower().endswith(EXTENSIONS) and not f.startswith("."))
    if not files:
      raise _fail(cfg, f"class folder {where}{name} holds no images "
                  f"({', '.join(EXTENSIONS)})")
    for f in files:
      path = os.path.join(root, name, f)
      with open(path, "rb") as fh:
        head = fh.read(4)
      if not any(head.startswith(m) for m in _MAGIC):
        raise _fail(cfg, f"{where}{name}/{f} is not a JPEG, PNG, BMP or GIF image (it starts "
                    f"with {head.hex() or 'nothing'})")
      paths.append(path)
      labels.append(label)
  return tuple(found), paths, np.asarray(labels, np.int64)


def _decoder(size, channels: int):
  def decode(path):
    # Decoded as RGB whatever the file holds (GIF decodes to 3 channels only), then converted.
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return data_lib.resize_and_color(image, size, channels)
  return decode


def _first_size(path: str, cfg: Config):
  try:
    image = tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
  except tf.errors.OpError as e:
    raise _fail(cfg, f"{os.path.relpath(path, cfg.data_dir)} cannot be decoded "
                f"({' '.join(e.message.split())[:120]})") from None
  return int(image.shape[0]), int(image.shape[1])


def load(cfg: Config) -> data_lib.Dataset:
  """The folder at `cfg.data_dir` as a Dataset (see data.load_dataset).

  With train/ and test/ (and optionally validation/) subfolders, those are the splits; else
  every subfolder is a class and TEST_FRACTION of each class is the (fixed) test split. Images
  are resized to --image_size (default: the first training image's size) and read as
  --color_mode (default rgb).

  Raises:
    DataNotFoundError: the folder is missing or not a usable image folder (one line naming
      the folder or file).
    ValueError: a bad --image_size.
  """
  if not cfg.data_dir:
    raise data_lib.DataNotFoundError("--dataset=folder: needs --data_dir, a folder with one "
                                     "subfolder of images per class")
  if not os.path.isdir(cfg.data_dir):
    raise _fail(cfg, "no such directory")
  size = config_lib.parse_image_size(cfg.image_size)
  channels = 1 if cfg.color_mode == "grayscale" else 3
  notes = []
  split_dirs = {s: os.path.join(cfg.data_dir, s) for s in SPLIT_DIRS
                if os.path.isdir(os.path.join(cfg.data_dir, s))}
  indexed: Dict[str, tuple] = {}
  if "train" in split_dirs and "test" in split_dirs:
    classes, paths, labels = index(split_dirs["train"], cfg)
    indexed["train"] = (paths, labels)
    for s in ("validation", "test"):
      if s in split_dirs:
        indexed[s] = index(split_dirs[s], cfg, classes)[1:]
    notes.append("splits: the folder's own train/"
                 + (", validation/" if "validation" in indexed else "") + " and test/")
  else:
    if split_dirs:
      raise _fail(cfg, f"has {'/, '.join(split_dirs)}/ but not both train/ and test/; give "
                  "both (validation/ is optional), or only class folders")
    classes, paths, labels = index(cfg.data_dir, cfg)
    keep, held = data_lib.split_indices(labels, TEST_FRACTION, _TEST_SPLIT_SEED)
    keep, held = np.sort(keep), np.sort(held)
    indexed["train"] = ([paths[i] for i in keep], labels[keep])
    indexed["test"] = ([paths[i] for i in held], labels[held])
    notes.append(f"test: {TEST_FRACTION:.0%} of each class, fixed (the folder has no test/)")
  if size is None:
    size = _first_size(indexed["train"][0][0], cfg)
    notes.insert(0, f"image size {size[0]}x{size[1]}: the first training image's "
                 "(--image_size to change)")
  shape = (*size, channels)
  decode = _decoder(size, channels)
  splits = {s: data_lib.Split(tf.data.Dataset.from_tensor_slices((list(p), lab)), lab, decode,
                              data_lib.cacheable(len(lab), shape))
            for s, (p, lab) in indexed.items()}
  train, val, how = data_lib.train_and_validation(splits["train"], cfg, splits.get("validation"))
  if not splits["test"].cache or not train.cache:
    notes.append("decoded images do not fit the in-memory cache: read from disk each epoch")
  return data_lib.Dataset("folder", f"folder:{cfg.data_dir}", shape, classes, train, val,
                          splits["test"], tuple(notes + [how]))
