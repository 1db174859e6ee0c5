"""What exact resumes cost: `fit` with and without EpochSeed (pipeline/models/train.py).

  python -m benchmarks.epoch_seed                 # about 2 minutes on 2 cores

EpochSeed traces the training step again at every epoch, under a seed drawn from (seed, epoch),
so that a fit resumed after a crash draws the dropout masks the uninterrupted fit drew. The
retrace is a fixed cost per epoch, whatever the epoch's size. This times 4 epochs of MobileNetV2
alpha 0.35 at 96x96 (the camera recipe's model) on 320 random images, batch 32, twice each way,
alternating, in one process, and prints the added seconds per epoch with the CPU.
"""

import argparse
import shutil
import tempfile
import time

import numpy as np

EPOCHS, IMAGES = 4, 320


def main():
  argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
  # pylint: disable=g-import-not-at-top
  from export import cpu
  from pipeline import data as data_lib
  from pipeline.config import Config
  from pipeline.models import architectures as models
  from pipeline.models import train
  rng = np.random.default_rng(0)
  x = rng.integers(0, 255, (IMAGES, 96, 96, 3)).astype("uint8")
  y = rng.integers(0, 5, IMAGES)
  split = data_lib.in_memory(x, y)
  data = data_lib.Dataset("random", "random", (96, 96, 3), tuple("abcde"), split,
                          data_lib.in_memory(x[:64], y[:64]), split)
  cfg = Config(model="mobilenet_v2", alpha=0.35)
  reseed = train.EpochSeed.on_epoch_begin
  seconds = {"with EpochSeed": [], "without": []}
  logs = tempfile.mkdtemp(prefix="epoch_seed-")
  for i, mode in enumerate(list(seconds) * 2):
    train.EpochSeed.on_epoch_begin = reseed if mode == "with EpochSeed" else (
        lambda self, epoch, logs=None: None)
    model = models.build_model(cfg, (96, 96, 3), 5)
    started = time.monotonic()
    train.fit(model, data, epochs=EPOCHS, batch_size=32, learning_rate=1e-3, seed=0,
              log_dir=f"{logs}/{i}", verbose=0)
    seconds[mode].append(time.monotonic() - started)
  train.EpochSeed.on_epoch_begin = reseed
  shutil.rmtree(logs)
  with_, without = (float(np.mean(seconds[m])) for m in seconds)
  print(f"CPU: {cpu.read().describe()}\n")
  print(f"MobileNetV2 alpha 0.35, 96x96, {IMAGES} images, batch 32, {EPOCHS} epochs: with "
        f"EpochSeed {with_:.1f} s ({', '.join(f'{s:.1f}' for s in seconds['with EpochSeed'])}), "
        f"without {without:.1f} s ({', '.join(f'{s:.1f}' for s in seconds['without'])}): "
        f"{(with_ - without) / EPOCHS:.1f} s more an epoch.")


if __name__ == "__main__":
  main()
