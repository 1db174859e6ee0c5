"""Tests for pipeline/models/train.py: the best epoch is the one kept."""

import numpy as np
import tf_keras as keras

from conftest import small_config
from pipeline.models import architectures as models
from pipeline.models import train


def test_fit_keeps_best_epoch_weights(mnist_small, tmp_path):
  cfg = small_config(epochs=4, learning_rate=3e-3)
  model = models.build_model(cfg, mnist_small.input_shape, 10)
  result = train.train_baseline(model, mnist_small, cfg, str(tmp_path))
  val_acc = result.history["val_accuracy"]
  assert result.best_epoch == int(np.argmax(val_acc)) + 1
  assert result.best_val_accuracy == max(val_acc)
  # The model holds the best epoch's weights, not the last epoch's.
  assert abs(train.evaluate(model, mnist_small.validation) - max(val_acc)) < 1e-6
  assert (tmp_path / "logs" / "baseline" / "train").is_dir()  # TensorBoard curves.


class _ZeroWeightsBeforeLastEpoch(keras.callbacks.Callback):
  """Ruins the last epoch (all weights zero: ReLUs die, accuracy falls to chance)."""

  def on_epoch_begin(self, epoch, logs=None):
    if epoch == self.params["epochs"] - 1:
      self.model.set_weights([np.zeros_like(w) for w in self.model.get_weights()])


def test_best_weights_restored_when_training_ends_without_stopping(mnist_small, tmp_path):
  # EarlyStopping restores only on stopping in some Keras versions; fit() relies on it
  # restoring at the end of training. A ruined last epoch shows which weights are kept.
  cfg = small_config()
  model = models.build_model(cfg, mnist_small.input_shape, 10)
  result = train.fit(model, mnist_small, epochs=3, batch_size=64, learning_rate=2e-3, seed=0,
                     log_dir=str(tmp_path), verbose=0, callbacks=[_ZeroWeightsBeforeLastEpoch()])
  val_acc = result.history["val_accuracy"]
  assert val_acc[-1] < max(val_acc[:-1]) and result.best_epoch < 3
  assert abs(train.evaluate(model, mnist_small.validation) - max(val_acc)) < 1e-6


def test_keep_best_ignores_epochs_before_first(mnist_small, tmp_path):
  cfg = small_config()
  model = models.build_model(cfg, mnist_small.input_shape, 10)
  result = train.fit(model, mnist_small, epochs=3, batch_size=64, learning_rate=1e-3, seed=0,
                     log_dir=str(tmp_path), verbose=0, first_best_epoch=2)
  assert result.best_epoch == 3


def test_trained_model_beats_chance(trained_cnn, mnist_small):
  assert train.evaluate(trained_cnn, mnist_small.test) > 0.6


class _Crash(keras.callbacks.Callback):
  """Stands in for a kill: raises after `step` optimizer steps."""

  def __init__(self, step):
    super().__init__()
    self.step = step

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) == self.step:
      raise KeyboardInterrupt("killed")


def test_a_fit_cut_off_mid_epoch_resumes_from_its_step_backup_to_the_same_weights(
    mnist_small, tmp_path):
  # 540 images / 64 = 9 steps an epoch; backups every 4 steps; cut off at step 14 (epoch 2,
  # after its 5th batch; last backup at step 12): the resumed fit must skip the batches
  # already seen and end where the uninterrupted one ends. No dropout here: its masks for the
  # rest of an epoch resumed mid-way differ (each epoch's are seeded at its start).
  kwargs = dict(epochs=3, batch_size=64, learning_rate=1e-3, seed=0, verbose=0,
                backup_every_steps=4)

  def build():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.layers.Input(mnist_small.input_shape),
                             keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(4, 3),
                             keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])

  whole = build()
  train.fit(whole, mnist_small, log_dir=str(tmp_path / "whole"), **kwargs)
  cut = build()
  try:
    train.fit(cut, mnist_small, log_dir=str(tmp_path / "cut"), callbacks=[_Crash(14)], **kwargs)
  except KeyboardInterrupt:
    pass
  restore = str(tmp_path / "cut" / train.BACKUP / "restore")
  assert train.resume_point(restore, 9) == (1, 3)  # Epoch 2 (0-based 1), 3 batches in.
  resumed = build()
  result = train.fit(resumed, mnist_small, log_dir=str(tmp_path / "cut"), **kwargs)
  assert len(result.history["val_accuracy"]) == 3
  for a, b in zip(whole.get_weights(), resumed.get_weights()):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # Run again once finished: nothing is trained, the same weights come back.
  again = build()
  train.fit(again, mnist_small, log_dir=str(tmp_path / "cut"), callbacks=[_Crash(1)], **kwargs)
  for a, b in zip(resumed.get_weights(), again.get_weights()):
    np.testing.assert_array_equal(a, b)
