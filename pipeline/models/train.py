"""Training stage: fit a model with a progress bar and TensorBoard logs, keeping its best epoch.

Every fit of a run is resumable: tf_keras' BackupAndRestore backs up the weights, the optimizer
and (being model weights) TF-MOT's pruning step and masks under `<log_dir>/backup`, and
`KeepBest` keeps the best epoch so far beside it, so a fit cut off by a crash continues from
its last backup and one that had finished is not run again (pipeline/stages/progress.py).
"""

import dataclasses
import json
import os
import shutil
from typing import List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from export import verify as verify_lib
from pipeline.data import augment as augment_lib
from pipeline import data as data_lib
from pipeline.config import Config
from pipeline.models import distill as distill_lib
from pipeline.models import heads

import tf_keras as keras  # pylint: disable=g-bad-import-order

BACKUP = "backup"  # Under each fit's log directory; removed when the run finishes.
_STATE, _BEST, _FINAL = "keep_best.json", "best.weights.npz", "final.weights.npz"


@dataclasses.dataclass(frozen=True)
class FitResult:
  best_epoch: int  # 1-based; 0 if no epoch qualified.
  best_val_accuracy: float
  history: dict


def _save_weights(weights, path: str) -> None:
  tmp = path + ".tmp.npz"
  np.savez(tmp, *weights)
  os.replace(tmp, path)


def _load_weights(path: str) -> list:
  with np.load(path) as f:
    return [f[f"arr_{i}"] for i in range(len(f.files))]


class EpochSeed(keras.callbacks.Callback):
  """Seeds each epoch's random ops (dropout) from (seed, epoch) alone, by tracing the training
  step again at every epoch under that seed: a fit resumed at epoch E draws what the
  uninterrupted fit drew there."""

  def __init__(self, seed: int):
    super().__init__()
    self.seed = seed

  def on_epoch_begin(self, epoch, logs=None):
    tf.random.set_seed(self.seed * 1_000_003 + epoch)
    self.model.train_function = self.model.make_train_function(force=True)


class KeepBest(keras.callbacks.EarlyStopping):
  """EarlyStopping that never stops early and restores the best epoch's weights at the end,
  with its state (best epoch, its weights, every epoch's logs) in `state_dir` after each epoch,
  so a fit resumed by BackupAndRestore still keeps the best epoch of the whole fit; and, once
  the fit has finished, its result (`finished`)."""

  def __init__(self, state_dir: str, epochs: int, first_best_epoch: int):
    super().__init__(monitor="val_accuracy", mode="max", patience=epochs,
                     restore_best_weights=True, start_from_epoch=first_best_epoch)
    self.state_dir, self.logs = state_dir, []

  def finished(self) -> Optional[dict]:
    """The finished fit's result ({"best_epoch", "best", "history"}), or None."""
    path = os.path.join(self.state_dir, _STATE)
    if not os.path.exists(os.path.join(self.state_dir, _FINAL)) or not os.path.exists(path):
      return None
    with open(path) as f:
      state = json.load(f)
    return state if state.get("finished") else None

  def final_weights(self) -> list:
    return _load_weights(os.path.join(self.state_dir, _FINAL))

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    path = os.path.join(self.state_dir, _STATE)
    if os.path.exists(path):  # Resumed: what the epochs before the crash found.
      with open(path) as f:
        state = json.load(f)
      self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
      self.logs = state["logs"]
      if os.path.exists(os.path.join(self.state_dir, _BEST)):
        self.best_weights = _load_weights(os.path.join(self.state_dir, _BEST))
      logging.info("Resuming a fit after epoch %d (best so far: epoch %d, %.4f).",
                   len(self.logs), self.best_epoch + 1, self.best)

  def on_epoch_end(self, epoch, logs=None):
    before = self.best_weights
    super().on_epoch_end(epoch, logs)
    self.logs = self.logs[:epoch] + [{k: float(v) for k, v in (logs or {}).items()}]
    os.makedirs(self.state_dir, exist_ok=True)
    if self.best_weights is not None and self.best_weights is not before:
      _save_weights(self.best_weights, os.path.join(self.state_dir, _BEST))
    self._write(finished=False)

  def on_train_end(self, logs=None):
    super().on_train_end(logs)  # Restores the best epoch's weights.
    os.makedirs(self.state_dir, exist_ok=True)
    _save_weights(self.model.get_weights(), os.path.join(self.state_dir, _FINAL))
    self._write(finished=True)

  def _write(self, finished: bool) -> None:
    state = {"best": float(self.best), "best_epoch": int(self.best_epoch),
             "wait": int(self.wait), "logs": self.logs, "finished": finished,
             "qualified": self.best_weights is not None}
    tmp = os.path.join(self.state_dir, _STATE + ".tmp")
    with open(tmp, "w") as f:
      json.dump(state, f)
    os.replace(tmp, os.path.join(self.state_dir, _STATE))


def _forget_other_fit(backup: str, fingerprint: dict) -> None:
  """Removes a backup in `backup` left by a fit of other settings or another model: only the
  same fit resumes from it."""
  path = os.path.join(backup, "fit.json")
  mine = json.loads(json.dumps(fingerprint))
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f) == mine:
        return
    logging.warning("%s holds the backup of another fit; starting this one afresh.", backup)
    shutil.rmtree(backup)
  os.makedirs(backup, exist_ok=True)
  with open(path, "w") as f:
    json.dump(mine, f)


def resume_point(restore_dir: str, steps: int) -> Tuple[int, int]:
  """(epoch, batches into it) where BackupAndRestore's last backup in `restore_dir` resumes a
  fit of `steps` batches an epoch (tf_keras reads the chief's copy, `<dir>/chief`)."""
  path = tf.train.latest_checkpoint(os.path.join(restore_dir, "chief"))
  if not path:
    return 0, 0
  epoch = int(tf.train.load_variable(path, "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
  batch = int(tf.train.load_variable(path, "ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"))
  return (epoch + 1, 0) if batch < 0 or batch + 1 >= steps else (epoch, batch + 1)


def fit_finished(state_dir: str) -> bool:
  """Whether the fit backed up in `state_dir` had finished."""
  try:
    with open(os.path.join(state_dir, _STATE)) as f:
      return bool(json.load(f)["finished"])
  except (OSError, ValueError, KeyError):
    return False


def epochs_done(state_dir: str) -> int:
  """Epochs a (possibly interrupted) fit backed up in `state_dir` had finished."""
  try:
    with open(os.path.join(state_dir, _STATE)) as f:
      return len(json.load(f)["logs"])
  except (OSError, ValueError, KeyError):
    return 0


def remove_backups(root: str) -> None:
  """Deletes every fit's backup under `root` (a finished run keeps none)."""
  for parent, dirs, _ in os.walk(root):
    if BACKUP in dirs:
      shutil.rmtree(os.path.join(parent, BACKUP))
      dirs.remove(BACKUP)


def compile_model(model: keras.Model, learning_rate: float) -> None:
  """Adam, and the loss and accuracy of the model's own head (pipeline/models/heads.py): a
  logit head trains from logits, a one-unit head on binary cross-entropy."""
  if isinstance(model, distill_lib.Distiller):  # Its train_step holds the loss and metrics.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return
  head = heads.read(model)
  model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=heads.loss(head),
                metrics=[heads.accuracy_metric(head)])


def fit(model: keras.Model, data: data_lib.Dataset, *, epochs: int, batch_size: int,
        learning_rate: float, seed: int, log_dir: str, verbose: int,
        callbacks: Sequence[keras.callbacks.Callback] = (), first_best_epoch: int = 0,
        augment=None, backup_every_steps: int = 0) -> FitResult:
  """Compiles and fits `model` on the training split, validating on the validation split.

  The model's weights end at its best epoch (by validation accuracy) from `first_best_epoch`
  (0-based) on: while pruning ramps up, the sparsity target is not yet met, so earlier
  weights are not a valid result. The fit backs itself up in `<log_dir>/backup` every epoch
  (and every `backup_every_steps` steps): run again after a crash, it continues from there;
  run again after it finished, it sets the weights it ended with and trains nothing.
  With a teacher on `data` (--distill), the model learns from it (pipeline/models/distill.py).
  """
  model = distill_lib.trainee(model, data.teacher)
  compile_model(model, learning_rate)
  backup = os.path.join(log_dir, BACKUP)
  _forget_other_fit(backup, {"epochs": epochs, "batch_size": batch_size, "seed": seed,
                             "learning_rate": learning_rate, "first_best_epoch": first_best_epoch,
                             "weights": [list(w.shape) for w in model.weights],
                             "distill": data.teacher and data.teacher.settings()})
  keep = KeepBest(backup, epochs, first_best_epoch)
  done = keep.finished()
  if done is None:
    restore = keras.callbacks.BackupAndRestore(
        os.path.join(backup, "restore"), save_freq=backup_every_steps or "epoch")
    steps = -(-len(data.train) // batch_size)
    epoch, skip = resume_point(os.path.join(backup, "restore"), steps)
    train = data_lib.epoch_batches(distill_lib.training_split(data.train, data.teacher),
                                   batch_size, seed, epoch, epochs, augment, skip_batches=skip)
    val = data_lib.batches(data.validation, 256)
    # keep before restore: each epoch's best is saved before the backup that moves past it;
    # restore before the others: TF-MOT's UpdatePruningStep reads the restored pruning step.
    model.fit(train, validation_data=val, epochs=epochs, steps_per_epoch=steps, verbose=verbose,
              callbacks=[keep, restore, *callbacks, EpochSeed(seed),
                         keras.callbacks.TensorBoard(log_dir=log_dir)])
    done = keep.finished()
  else:
    model.set_weights(keep.final_weights())
    logging.info("Fit in %s had finished before: its weights are restored, nothing trained.",
                 log_dir)
  best = done["best_epoch"] + 1 if done["qualified"] else 0
  best_acc = float(done["best"]) if done["qualified"] else float("nan")
  logging.info("Kept epoch %d of %d (validation accuracy %.4f).", best, epochs, best_acc)
  history = {k: [float(e[k]) for e in done["logs"] if k in e]
             for k in dict.fromkeys(k for e in done["logs"] for k in e)}
  return FitResult(best_epoch=best, best_val_accuracy=best_acc, history=history)


FINE_TUNE_LR = 5e-4  # Adam, for a model whose BatchNorm layers renormalise as it trains.
# A base called with training=False (TensorFlow's transfer-learning tutorial) keeps its
# BatchNorm statistics frozen: a step of 1e-4 already broke such a MobileNetV2 here (val
# accuracy 97% -> 72% in 9 steps, docs/your-model.md); the tutorial fine-tunes it at 1e-5.
FROZEN_BN_LR = 1e-5


def frozen_batchnorms(model: keras.Model) -> List[str]:
  """BatchNormalization layers that keep their moving statistics while the model trains:
  called with training=False (a nested base, as the tutorials call it) or not trainable."""
  from pipeline.models import flatten as flatten_lib  # pylint: disable=g-import-not-at-top
  model = getattr(model, "student", model)
  frozen = []
  for lc in model.get_config().get("layers", []):
    if lc["class_name"] != "BatchNormalization":
      continue
    calls = [e[3] for node in lc.get("inbound_nodes", []) for e in flatten_lib.node_entries(node)
             if len(e) > 3 and isinstance(e[3], dict)]
    if not lc["config"].get("trainable", True) or any(c.get("training") is False for c in calls):
      frozen.append(lc["config"]["name"])
  return frozen


def fine_tune_learning_rate(model: keras.Model, cfg: Config) -> Tuple[float, str]:
  """(learning rate, why): --fine_tune_learning_rate when given, else FINE_TUNE_LR, or
  FROZEN_BN_LR where BatchNorm statistics stay frozen."""
  if cfg.fine_tune_learning_rate is not None:
    return cfg.fine_tune_learning_rate, "--fine_tune_learning_rate"
  frozen = frozen_batchnorms(model)
  if frozen:
    return FROZEN_BN_LR, (f"auto: {len(frozen)} BatchNorm layer(s) keep frozen statistics "
                          f"(called with training=False, e.g. {frozen[0]}), which a larger "
                          "step breaks; --fine_tune_learning_rate sets it")
  return FINE_TUNE_LR, "auto; --fine_tune_learning_rate sets it"


def fine_tune(model: keras.Model, data: data_lib.Dataset, cfg: Config, log_dir: str, *,
              epochs: Optional[int] = None, seed: Optional[int] = None, first_best_epoch: int = 0,
              callbacks=()) -> FitResult:
  """The one fine-tuning every pruning method uses: `fit` at fine_tune_learning_rate(...) with
  --batch_size and --augment, for --fine_tune_epochs (or `epochs`), seeded by --seed (or
  `seed`), keeping the best epoch from `first_best_epoch` on."""
  return fit(model, data, epochs=cfg.fine_tune_epochs if epochs is None else epochs,
             batch_size=cfg.batch_size, learning_rate=fine_tune_learning_rate(model, cfg)[0],
             seed=cfg.seed if seed is None else seed, log_dir=log_dir, verbose=cfg.verbose,
             first_best_epoch=first_best_epoch, callbacks=callbacks,
             augment=augment_lib.augmentation(cfg), backup_every_steps=cfg.backup_every_steps)


def evaluate(model: keras.Model, split: data_lib.Split) -> float:
  """Top-1 accuracy of `model` over every image of `split` (as its head reads a class)."""
  return verify_lib.top1_accuracy(data_lib.predict(model, split), split.labels,
                                  heads.read(model))


def accuracy_on(model, x: np.ndarray, y: np.ndarray) -> float:
  """Top-1 accuracy of `model` on images `x` with labels `y` held in memory."""
  return verify_lib.top1_accuracy(model.predict(x, batch_size=256, verbose=0), y,
                                  heads.read(model))


def cross_entropy(model, x: np.ndarray, y: np.ndarray) -> float:
  """Mean cross-entropy of `model` on images `x` with labels `y`, in its head's terms."""
  return heads.cross_entropy(heads.read(model), model.predict(x, batch_size=256, verbose=0), y)


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
             callbacks=callbacks, augment=augment_lib.augmentation(cfg),
             backup_every_steps=cfg.backup_every_steps)
