"""Where an epoch's time goes: the pipeline's `fit` against a bare in-memory `fit` of the same
model on the same images, side by side in one process.

  python -m benchmarks.epoch_time            # Fashion-MNIST small_cnn; about 4 minutes, 2 cores

Bare: `model.fit(x, y)` on float32 arrays already in memory, validating on the validation
arrays, nothing else. Pipeline: pipeline/models/train.fit as every stage calls it (the tf.data
input pipeline, per-epoch seeded order, BackupAndRestore, KeepBest, EpochSeed, TensorBoard),
and, with --distill's teacher, its Distiller. Each is timed per epoch by a callback; the
figure is the median of the epochs after the first (the first traces the graphs), the two
alternated twice so drift on a shared machine falls on both.
"""

import argparse
import dataclasses
import shutil
import tempfile
import time

import numpy as np

EPOCHS = 3


def _timer(keras):
  class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
      super().__init__()
      self.seconds, self._t = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
      self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      self.seconds.append(time.perf_counter() - self._t)
  return EpochTimer()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="fashion_mnist", help="As pipeline.run's; "
                      "fashion_mnist falls back to the embedded MNIST where it is not installed.")
  parser.add_argument("--max_train_examples", type=int, default=0,
                      help="Fewer training images (0: all).")
  args = parser.parse_args()
  # pylint: disable=g-import-not-at-top
  import tf_keras as keras
  from export import cpu
  from pipeline import data as data_lib
  from pipeline.config import Config
  from pipeline.models import architectures as models
  from pipeline.models import distill
  from pipeline.models import train
  cfg = Config(dataset=args.dataset, max_train_examples=args.max_train_examples)
  try:
    data = data_lib.load_dataset(cfg)
  except data_lib.DataNotFoundError as e:
    if args.dataset != "fashion_mnist":
      raise
    print(f"note: {e}; timing the embedded MNIST instead\n")
    cfg = Config(dataset="mnist", max_train_examples=args.max_train_examples)
    data = data_lib.load_dataset(cfg)
  x = np.concatenate(list(data_lib.image_batches(data.train, 1024)))
  y = data.train.labels
  xv = np.concatenate(list(data_lib.image_batches(data.validation, 1024)))
  yv = data.validation.labels
  teacher_model = models.build_model(cfg, data.input_shape, data.num_classes)
  teacher = distill.make_teacher(teacher_model, data, alpha=0.7, temperature=4.0,
                                 source="baseline", augment=False)
  logs = tempfile.mkdtemp(prefix="epoch_time-")
  seconds = {"bare in-memory fit": [], "pipeline fit": [], "pipeline fit, --distill": []}
  for i, mode in enumerate(list(seconds) * 2):
    keras.utils.set_random_seed(0)
    model = models.build_model(cfg, data.input_shape, data.num_classes)
    timer = _timer(keras)
    if mode.startswith("bare"):
      train.compile_model(model, cfg.learning_rate)
      model.fit(x, y, batch_size=cfg.batch_size, epochs=EPOCHS, validation_data=(xv, yv),
                verbose=0, callbacks=[timer])
    else:
      d = dataclasses.replace(data, teacher=teacher if "distill" in mode else None)
      train.fit(model, d, epochs=EPOCHS, batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate, seed=0, log_dir=f"{logs}/{i}", verbose=0,
                callbacks=[timer])
    seconds[mode] += timer.seconds[1:]
  shutil.rmtree(logs)
  bare = float(np.median(seconds["bare in-memory fit"]))
  print(f"CPU: {cpu.read().describe()}\n")
  print(f"{cfg.model} on {data.name}, {len(x):,} training images, batch {cfg.batch_size}; "
        f"median seconds per epoch over epochs 2-{EPOCHS} of two fits each, alternated:\n")
  print("| fit | s/epoch | epochs timed | vs bare |\n|---|---|---|---|")
  for mode, s in seconds.items():
    med = float(np.median(s))
    print(f"| {mode} | {med:.1f} | {', '.join(f'{v:.1f}' for v in s)} | {med / bare:.2f}x |")


if __name__ == "__main__":
  main()
