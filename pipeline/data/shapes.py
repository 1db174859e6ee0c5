"""Generated RGB image folders: coloured shapes on noisy backgrounds, one subfolder per class.

A stand-in for a user's photos that needs no download: `python -m pipeline.data.shapes DIR
--per_class=200 --size=96` writes DIR/<class>/NNNN.jpg|png (alternating, so both decoders run).
Tests and benchmarks call `write_folder` directly.
"""

import os
from typing import Sequence

import numpy as np

CLASSES = ("circle", "square", "triangle", "cross", "ring", "stripes", "diamond", "dot")


def draw(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
  """One uint8 (size, size, 3) image: a shape of a random bright colour, position and size on
  a dark noisy background."""
  image = rng.integers(0, 110, (size, size, 3)).astype(np.uint8)
  r = int(rng.integers(size // 6, size // 3 + 1))
  cx, cy = rng.integers(r, size - r, 2)
  yy, xx = np.mgrid[:size, :size]
  dx, dy = xx - cx, yy - cy
  masks = {
      "circle": dx ** 2 + dy ** 2 <= r ** 2,
      "square": (abs(dx) <= r) & (abs(dy) <= r),
      "triangle": (dy <= r) & (dy >= -r) & (abs(dx) <= (dy + r) / 2),
      "cross": ((abs(dx) <= r) & (abs(dy) <= r // 4)) | ((abs(dy) <= r) & (abs(dx) <= r // 4)),
      "ring": (dx ** 2 + dy ** 2 <= r ** 2) & (dx ** 2 + dy ** 2 >= (0.6 * r) ** 2),
      "stripes": (abs(dx) <= r) & (abs(dy) <= r) & ((dy // max(1, r // 3)) % 2 == 0),
      "diamond": abs(dx) + abs(dy) <= r,
      "dot": dx ** 2 + dy ** 2 <= (r // 3 + 1) ** 2,
  }
  image[masks[kind]] = rng.integers(140, 256, 3).astype(np.uint8)
  return image


def write_folder(root: str, classes: Sequence[str] = CLASSES[:5], per_class: int = 40,
                 size: int = 64, seed: int = 0) -> str:
  """Writes `per_class` images of each class under root/<class>/; returns root."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  for kind in classes:
    os.makedirs(os.path.join(root, kind), exist_ok=True)
    for i in range(per_class):
      image = draw(kind, size, rng)
      if i % 2:
        content, ext = tf.io.encode_png(image), "png"
      else:
        content, ext = tf.io.encode_jpeg(image, quality=90), "jpg"
      with open(os.path.join(root, kind, f"{i:05d}.{ext}"), "wb") as f:
        f.write(content.numpy())
  return root


if __name__ == "__main__":
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("root", help="folder to write (class subfolders go inside)")
  parser.add_argument("--classes", type=int, default=5, help="number of classes (at most 8)")
  parser.add_argument("--per_class", type=int, default=200, help="images per class")
  parser.add_argument("--size", type=int, default=96, help="image height and width")
  parser.add_argument("--seed", type=int, default=0, help="random seed")
  args = parser.parse_args()
  write_folder(args.root, CLASSES[:args.classes], args.per_class, args.size, args.seed)
  print(f"Wrote {args.classes} x {args.per_class} images of {args.size}x{args.size} to "
        f"{args.root}")
