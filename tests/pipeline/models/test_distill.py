"""Distillation (--distill): the loss is the formula, the teacher's outputs reach the right
images, a distilled student ends closer to its teacher, and TF-MOT still prunes exactly."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import small_config
from pipeline import data as data_lib
from pipeline.models import distill
from pipeline.models import safe_load
from pipeline.models import sparsity
from pipeline.models import train
from pipeline.planning import layer_rates
from pipeline.unstructured import prune


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _formula(labels, student_p, teacher_p, alpha, t):
  """Hinton et al.'s loss in numpy, per example: alpha T^2 KL + (1 - alpha) CE."""
  pt, ps = _softmax(np.log(teacher_p) / t), _softmax(np.log(student_p) / t)
  kl = np.sum(pt * (np.log(pt) - np.log(ps)), axis=-1)
  ce = -np.log(student_p[np.arange(len(labels)), labels])
  return alpha * t * t * kl + (1 - alpha) * ce


def _dense(seed, classes=4):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.Input((6,)), keras.layers.Dense(classes, activation="softmax")])


@pytest.mark.parametrize("precomputed", [False, True])
def test_the_loss_of_a_training_step_is_the_formula_on_a_fixed_batch(precomputed):
  student, teacher = _dense(1), _dense(2)
  x = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32) * 3
  y = np.arange(32) % 4
  teacher_p = teacher.predict(x, verbose=0)
  logits = np.log(teacher_p) if precomputed else None
  d = distill.Distiller(student, distill.Teacher(teacher, 0.3, 2.5, "baseline", logits))
  d.compile(optimizer=keras.optimizers.SGD(0.0))  # A step that moves nothing.
  targets = (y, logits) if precomputed else y
  logs = d.fit(x, targets, batch_size=32, epochs=1, verbose=0).history
  expected = _formula(y, student.predict(x, verbose=0), teacher_p, 0.3, 2.5)
  assert logs["loss"][0] == pytest.approx(expected.mean(), rel=1e-5)
  assert logs["student_loss"][0] == pytest.approx(
      -np.log(student.predict(x, verbose=0)[np.arange(32), y]).mean(), rel=1e-5)
  assert 0.3 * logs["distill_loss"][0] + 0.7 * logs["student_loss"][0] == pytest.approx(
      logs["loss"][0], rel=1e-5)


def test_the_loss_is_the_same_under_a_distribution_strategy():
  x = np.random.default_rng(1).normal(size=(64, 6)).astype(np.float32)
  y = np.arange(64) % 4
  with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():  # Models live in the scope.
    student, teacher = _dense(1), _dense(2)
    d = distill.Distiller(student, distill.Teacher(teacher, 0.5, 4.0, "baseline"))
    d.compile(optimizer=keras.optimizers.SGD(0.0))
  logs = d.fit(x, y, batch_size=64, epochs=1, verbose=0).history
  expected = _formula(y, student.predict(x, verbose=0), teacher.predict(x, verbose=0), 0.5, 4)
  assert logs["loss"][0] == pytest.approx(expected.mean(), rel=1e-5)


def test_precomputed_teacher_outputs_travel_with_their_own_images(trained_cnn, mnist_small):
  teacher = distill.make_teacher(trained_cnn, mnist_small, alpha=0.5, temperature=4.0,
                                 source="baseline", augment=False)
  assert teacher.train_logits is not None and "computed once" in teacher.why
  split = distill.training_split(mnist_small.train, teacher)
  x, (_, t) = next(iter(data_lib.epoch_batches(split, 64, seed=3, first_epoch=1, epochs=2)))
  np.testing.assert_allclose(t.numpy(), np.log(trained_cnn.predict(x.numpy(), verbose=0)),
                             atol=1e-4)
  per_batch = distill.make_teacher(trained_cnn, mnist_small, alpha=0.5, temperature=4.0,
                                   source="baseline", augment=True)
  assert per_batch.train_logits is None and "--augment" in per_batch.why


@pytest.fixture(scope="module")
def students(trained_cnn, mnist_small, tmp_path_factory):
  """A narrow CNN trained from scratch with and without trained_cnn as its teacher: the same
  seed, data and epochs."""
  out = {}
  for name, teacher in (("plain", None), ("distilled", distill.make_teacher(
      trained_cnn, mnist_small, alpha=1.0, temperature=4.0, source="baseline",
      augment=False))):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(mnist_small.input_shape),
                              keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    train.fit(model, dataclasses.replace(mnist_small, teacher=teacher), epochs=3,
              batch_size=32, learning_rate=3e-3, seed=0,
              log_dir=str(tmp_path_factory.mktemp(name)), verbose=0)
    out[name] = model
  return out


def test_a_distilled_student_ends_closer_to_its_teacher(students, trained_cnn, mnist_small):
  x = data_lib.sample(mnist_small.validation, 200)[0]
  teacher = trained_cnn.predict(x, verbose=0)

  def kl(model):
    p = np.clip(model.predict(x, verbose=0), 1e-7, 1)
    return float(np.mean(np.sum(teacher * (np.log(np.clip(teacher, 1e-7, 1)) - np.log(p)), -1)))

  assert kl(students["distilled"]) < 0.8 * kl(students["plain"]), (
      kl(students["distilled"]), kl(students["plain"]))


def test_tf_mot_reaches_the_rate_exactly_with_distillation(trained_cnn, mnist_small, tmp_path):
  cfg = small_config(prune=True, pruning_rate=0.75, fine_tune_epochs=2, distill=True)
  data = dataclasses.replace(mnist_small, teacher=distill.make_teacher(
      trained_cnn, mnist_small, alpha=0.7, temperature=4.0, source="baseline", augment=False))
  result = prune.prune(trained_cnn, data, cfg, str(tmp_path),
                       layer_rates.for_model(trained_cnn, cfg))
  reached = sparsity.layer_sparsity(result.model)
  assert result.pruned_layers and all(reached[n] == 0.75 for n in result.pruned_layers), reached
  assert "distill_loss" in result.fit.history and "student_loss" in result.fit.history
  assert result.fit.best_val_accuracy > 0.5


def test_a_keras3_model_teaches_as_teacher_path(tmp_path, mnist_small):
  import keras as keras3  # pylint: disable=g-import-not-at-top
  keras3.utils.set_random_seed(0)
  user = keras3.Sequential([keras3.Input(mnist_small.input_shape),
                            keras3.layers.Rescaling(1 / 255), keras3.layers.Flatten(),
                            keras3.layers.Dense(10, activation="softmax")])
  path = str(tmp_path / "teacher.keras")
  user.save(path)
  x = data_lib.sample(mnist_small.validation, 16)[0]
  loaded = safe_load.load(path, mnist_small.input_shape, 10, images=x, flag_name="teacher_path")
  assert loaded.keras3 is not None
  teacher = distill.make_teacher(loaded.model, mnist_small, alpha=1.0, temperature=1.0,
                                 source=path, augment=False)
  np.testing.assert_allclose(np.exp(teacher.train_logits[:16]), user.predict(
      np.concatenate(list(data_lib.image_batches(mnist_small.train)))[:16], verbose=0),
                             atol=1e-5)
  logits_model = keras.Sequential([keras.Input(mnist_small.input_shape), keras.layers.Flatten(),
                                   keras.layers.Dense(10)])  # No softmax: raw logits, taken so.
  assert distill.check_teacher(logits_model, x, "t.keras", 10).kind == "logits"
  assert distill.check_teacher(loaded.model, x, path, 10).kind == "softmax"
  relu = keras.Sequential([keras.Input(mnist_small.input_shape), keras.layers.Flatten(),
                           keras.layers.Dense(10, activation="relu", name="scores")])
  with pytest.raises(ValueError, match=r"^--teacher_path=t.keras: layer 'scores' ends in relu"):
    distill.check_teacher(relu, x, "t.keras", 10)
  with pytest.raises(ValueError, match=r"^--teacher_path=t.keras: the model outputs 10 classes, "
                                       r"the data has 3"):
    distill.check_teacher(logits_model, x, "t.keras", 3)
  with pytest.raises(ValueError, match=r"^--teacher_path=.*: .*"):
    safe_load.load(str(tmp_path / "missing.keras"), flag_name="teacher_path")
