"""Training stage: fit a model with a progress bar and TensorBoard logs, keeping its best epoch."""

import dataclasses
import os
from typing import Sequence

from absl import logging
import numpy as np

from pipeline import data as data_lib
from pipeline.config import Config

import tf_keras as keras  # pylint: disable=g-bad-import-order


@dataclasses.dataclass(frozen=True)
class FitResult:
  best_epoch: int  # 1-based; 0 if no epoch qualified.
  best_val_accuracy: float
  history: dict


class KeepBest(keras.callbacks.Callback):
  """Restores the weights of the epoch with the best validation accuracy when training ends.

  Keras' EarlyStopping restores only when it stops early; this always does. Epochs before
  `first_epoch` (0-based) are not candidates: while pruning ramps up, the sparsity target is
  not yet met, so those weights are not a valid result.
  """

  def __init__(self, first_epoch: int = 0):
    super().__init__()
    self.first_epoch = first_epoch
    self.best_epoch, self.best, self.weights = -1, -np.inf, None

  def on_epoch_end(self, epoch, logs=None):
    acc = (logs or {}).get("val_accuracy")
    if epoch >= self.first_epoch and acc is not None and acc > self.best:
      self.best_epoch, self.best, self.weights = epoch, acc, self.model.get_weights()

  def on_train_end(self, logs=None):
    if self.weights is not None:
      self.model.set_weights(self.weights)


def compile_model(model: keras.Model, learning_rate: float) -> None:
  model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def fit(model: keras.Model, data: data_lib.Dataset, *, epochs: int, batch_size: int,
        learning_rate: float, seed: int, log_dir: str, verbose: int,
        callbacks: Sequence[keras.callbacks.Callback] = (), first_best_epoch: int = 0
        ) -> FitResult:
  """Compiles and fits `model` on the training split, validating on the validation split.

  The model's weights end at its best epoch (by validation accuracy) from `first_best_epoch` on.
  """
  compile_model(model, learning_rate)
  keep = KeepBest(first_best_epoch)
  train = data_lib.as_tf_dataset(data.x_train, data.y_train, batch_size, shuffle=True, seed=seed)
  val = data_lib.as_tf_dataset(data.x_val, data.y_val, 512, shuffle=False)
  hist = model.fit(train, validation_data=val, epochs=epochs, verbose=verbose,
                   callbacks=[*callbacks, keras.callbacks.TensorBoard(log_dir=log_dir), keep])
  best = keep.best_epoch + 1
  logging.info("Kept epoch %d of %d (validation accuracy %.4f).", best, epochs, keep.best)
  return FitResult(best_epoch=best, best_val_accuracy=float(keep.best),
                   history={k: [float(v) for v in vs] for k, vs in hist.history.items()})


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
  """Top-1 accuracy of `model` on uint8 images `x`."""
  probs = model.predict(data_lib.scaled(x), batch_size=512, verbose=0)
  return float(np.mean(np.argmax(probs, axis=-1) == y))


def train_baseline(model: keras.Model, data: data_lib.Dataset, cfg: Config,
                   workdir: str) -> FitResult:
  """Trains the baseline in place for `cfg.epochs`, keeping its best epoch.

  Args:
    model: a freshly built model.
    data: the dataset.
    cfg: uses epochs, batch_size, learning_rate, seed and verbose.
    workdir: TensorBoard logs go to workdir/logs/baseline.

  Returns:
    The FitResult (best epoch, its validation accuracy, per-epoch history).
  """
  keras.utils.set_random_seed(cfg.seed)
  logging.info("Training the baseline %s for %d epochs.", model.name, cfg.epochs)
  return fit(model, data, epochs=cfg.epochs, batch_size=cfg.batch_size,
             learning_rate=cfg.learning_rate, seed=cfg.seed,
             log_dir=os.path.join(workdir, "logs", "baseline"), verbose=cfg.verbose)
