"""Training stage: fit a model with a progress bar and TensorBoard logs, keeping its best epoch."""

import dataclasses
import os
from typing import Optional, Sequence

from absl import logging
import numpy as np

from export import verify as verify_lib
from pipeline.data import augment as augment_lib
from pipeline import data as data_lib
from pipeline.config import Config

import tf_keras as keras  # pylint: disable=g-bad-import-order


@dataclasses.dataclass(frozen=True)
class FitResult:
  best_epoch: int  # 1-based; 0 if no epoch qualified.
  best_val_accuracy: float
  history: dict


def compile_model(model: keras.Model, learning_rate: float) -> None:
  model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def fit(model: keras.Model, data: data_lib.Dataset, *, epochs: int, batch_size: int,
        learning_rate: float, seed: int, log_dir: str, verbose: int,
        callbacks: Sequence[keras.callbacks.Callback] = (), first_best_epoch: int = 0,
        augment=None) -> FitResult:
  """Compiles and fits `model` on the training split, validating on the validation split.

  The model's weights end at its best epoch (by validation accuracy) from `first_best_epoch`
  (0-based) on: while pruning ramps up, the sparsity target is not yet met, so earlier
  weights are not a valid result. tf_keras' EarlyStopping with patience=epochs never stops
  early and restores the best weights when training ends (tf_keras >= 2.13 restores whether
  or not it stopped; tests/test_train.py checks it).
  """
  compile_model(model, learning_rate)
  keep = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=epochs,
                                       restore_best_weights=True,
                                       start_from_epoch=first_best_epoch)
  train = data_lib.batches(data.train, batch_size, shuffle=True, seed=seed, augment=augment)
  val = data_lib.batches(data.validation, 256)
  hist = model.fit(train, validation_data=val, epochs=epochs, verbose=verbose,
                   callbacks=[*callbacks, keras.callbacks.TensorBoard(log_dir=log_dir), keep])
  qualified = keep.best_weights is not None
  best = keep.best_epoch + 1 if qualified else 0
  best_acc = float(keep.best) if qualified else float("nan")
  logging.info("Kept epoch %d of %d (validation accuracy %.4f).", best, epochs, best_acc)
  return FitResult(best_epoch=best, best_val_accuracy=best_acc,
                   history={k: [float(v) for v in vs] for k, vs in hist.history.items()})


def fine_tune(model: keras.Model, data: data_lib.Dataset, cfg: Config, log_dir: str, *,
              epochs: Optional[int] = None, seed: Optional[int] = None, first_best_epoch: int = 0,
              callbacks=()) -> FitResult:
  """The one fine-tuning every pruning method uses: `fit` at --fine_tune_learning_rate with
  --batch_size and --augment, for --fine_tune_epochs (or `epochs`), seeded by --seed (or
  `seed`), keeping the best epoch from `first_best_epoch` on."""
  return fit(model, data, epochs=cfg.fine_tune_epochs if epochs is None else epochs,
             batch_size=cfg.batch_size, learning_rate=cfg.fine_tune_learning_rate,
             seed=cfg.seed if seed is None else seed, log_dir=log_dir, verbose=cfg.verbose,
             first_best_epoch=first_best_epoch, callbacks=callbacks,
             augment=augment_lib.augmentation(cfg))


def evaluate(model: keras.Model, split: data_lib.Split) -> float:
  """Top-1 accuracy of `model` over every image of `split`."""
  return verify_lib.top1_accuracy(data_lib.predict(model, split), split.labels)


def accuracy_on(model, x: np.ndarray, y: np.ndarray) -> float:
  """Top-1 accuracy of `model` on images `x` with labels `y` held in memory."""
  return verify_lib.top1_accuracy(model.predict(x, batch_size=256, verbose=0), y)


def cross_entropy(model, x: np.ndarray, y: np.ndarray) -> float:
  """Mean validation cross-entropy (the models here end in a softmax, as training assumes)."""
  p = np.clip(model.predict(x, batch_size=256, verbose=0), 1e-7, 1.0)
  return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def train_baseline(model: keras.Model, data: data_lib.Dataset, cfg: Config, workdir: str,
                   callbacks: Sequence[keras.callbacks.Callback] = ()) -> FitResult:
  """Trains the baseline in place for `cfg.epochs`, keeping its best epoch.

  Args:
    model: a freshly built model.
    data: the dataset.
    cfg: uses epochs, batch_size, learning_rate, seed, augment and verbose.
    workdir: TensorBoard logs go to workdir/logs/baseline.
    callbacks: more tf_keras callbacks (a progress bar).

  Returns:
    The FitResult (best epoch, its validation accuracy, per-epoch history).
  """
  keras.utils.set_random_seed(cfg.seed)
  logging.info("Training the baseline %s for %d epochs.", model.name, cfg.epochs)
  return fit(model, data, epochs=cfg.epochs, batch_size=cfg.batch_size,
             learning_rate=cfg.learning_rate, seed=cfg.seed,
             log_dir=os.path.join(workdir, "logs", "baseline"), verbose=cfg.verbose,
             callbacks=callbacks, augment=augment_lib.augmentation(cfg))
