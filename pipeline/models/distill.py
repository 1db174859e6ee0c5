"""Knowledge distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"):
a teacher's softened outputs guide every fine-tuning of a pruned model (--distill).

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
           + (1 - alpha) * cross-entropy(labels, student)

`Distiller` wraps the student in a tf_keras Model with its own `train_step`, as in the Keras
distillation example: the student's layers (TF-MOT's pruning wrappers included) train as they
are, and TF-MOT's UpdatePruningStep finds them through the wrapper (it walks nested models).
Its loss is averaged over the global batch (`tf.nn.compute_average_loss`), so it trains the
same under a tf.distribute strategy. Each model's logits are read in its own head's terms
(pipeline/models/heads.py): a softmax's as log(probabilities), which differ from the
pre-softmax values by a constant per example and so give the same softened distributions; raw
logits as they are; a one-unit head's as the two-class logits [0, z]. So a softmax teacher
can teach a logit student, and a two-unit softmax a one-unit binary head.

Teacher outputs cost one forward pass per batch. Where the training split is not augmented
and its outputs are small (`PRECOMPUTE_BYTES`), they are computed once and streamed with the
batches instead (`Teacher.train_logits`); `Teacher.describe` says which, and why.
"""

import dataclasses
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from export import verify as verify_lib
from export.head import Head
from pipeline import data as data_lib
from pipeline.config import FlagError
from pipeline.models import heads

import tf_keras as keras  # pylint: disable=g-bad-import-order

PRECOMPUTE_BYTES = 256 << 20  # Teacher logits kept in memory for the whole training split.
_TINY = 1e-30  # Probabilities below it are 0 to float32 softmax anyway (log: -69).


@dataclasses.dataclass(frozen=True)
class Teacher:
  """The model fine-tuning learns from, with the loss's settings."""
  model: keras.Model = dataclasses.field(repr=False)
  alpha: float
  temperature: float
  source: str  # "baseline" or the --teacher_path.
  # Teacher logits over the training split, in its order; None: one forward pass per batch.
  train_logits: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
  why: str = ""  # Why the outputs are (not) precomputed.
  val_accuracy: float = float("nan")  # The teacher's, on the validation split.
  head: Head = Head()  # What the teacher outputs; its logits are read accordingly.

  def settings(self) -> dict:
    """What defines a distilled fit (part of its backup's fingerprint)."""
    return {"teacher": self.source, "alpha": self.alpha, "temperature": self.temperature}

  def describe(self) -> dict:
    return dict(self.settings(), teacher_outputs=self.why, val_accuracy=self.val_accuracy)


def loss_parts(labels, student_outputs, teacher_logits, alpha: float, temperature: float,
               head: Head):
  """Per-example (total, T^2 * KL, cross-entropy) of the distillation loss; `head` is the
  student's, `teacher_logits` the teacher's class logits (heads.logits)."""
  t = float(temperature)
  soft_teacher = tf.nn.softmax(teacher_logits / t)
  student_logits = heads.logits(head, student_outputs)
  kl = tf.reduce_sum(soft_teacher * (tf.math.log(tf.maximum(soft_teacher, _TINY))
                                     - tf.nn.log_softmax(student_logits / t)), axis=-1)
  ce = heads.per_example_loss(head, labels, student_outputs)
  kd = t * t * kl
  return alpha * kd + (1.0 - alpha) * ce, kd, ce


class Distiller(keras.Model):
  """The student, trained on the distillation loss; validated on its own cross-entropy and
  accuracy (`val_loss`, `val_accuracy`). Training batches are (images, labels), or (images,
  (labels, teacher logits)) where the teacher's outputs were precomputed."""

  def __init__(self, student: keras.Model, teacher: Teacher):
    super().__init__(name=f"{student.name}_distilled")
    self.student = student
    # Not tracked: its weights stay out of the fit's backups and kept epochs (not trained).
    self.__dict__["teacher"] = None if teacher.train_logits is not None else teacher.model
    self.alpha, self.temperature = float(teacher.alpha), float(teacher.temperature)
    self.head, self.teacher_head = heads.read(student), teacher.head
    self.loss_mean = keras.metrics.Mean("loss")
    self.distill_mean = keras.metrics.Mean("distill_loss")  # T^2 * KL, before alpha.
    self.student_mean = keras.metrics.Mean("student_loss")  # Cross-entropy, before 1 - alpha.
    self.accuracy = heads.accuracy_metric(self.head)
    self.built = True  # Its only weights are the student's, already built.

  @property
  def metrics(self):
    return [self.loss_mean, self.distill_mean, self.student_mean, self.accuracy]

  def call(self, x, training=False):
    return self.student(x, training=training)

  def train_step(self, data):
    x, y = data
    if self.teacher is None:
      y, teacher_logits = y
    else:
      teacher_logits = heads.logits(self.teacher_head, self.teacher(x, training=False))
    with tf.GradientTape() as tape:
      out = self.student(x, training=True)
      total, kd, ce = loss_parts(y, out, teacher_logits, self.alpha, self.temperature,
                                 self.head)
      loss = tf.nn.compute_average_loss(total)
      if self.student.losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
    self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)
    for metric, value in ((self.loss_mean, total), (self.distill_mean, kd),
                          (self.student_mean, ce)):
      metric.update_state(value)
    self._accuracy(y, out)
    return {m.name: m.result() for m in self.metrics}

  def _accuracy(self, y, out):
    self.accuracy.update_state(heads.accuracy_labels(self.head, y, out), out)

  def test_step(self, data):
    x, y = data
    out = self.student(x, training=False)
    self.student_mean.update_state(heads.per_example_loss(self.head, y, out))
    self._accuracy(y, out)
    return {"loss": self.student_mean.result(), "accuracy": self.accuracy.result()}


def make_teacher(model: keras.Model, data: data_lib.Dataset, *, alpha: float,
                 temperature: float, source: str, augment: bool) -> Teacher:
  """The Teacher for fine-tuning on `data`: its training-split logits precomputed where the
  batches are not augmented (an augmented image needs its own teacher pass) and they fit
  PRECOMPUTE_BYTES."""
  size, train_logits, head = len(data.train) * data.num_classes * 4, None, heads.read(model)
  val = verify_lib.top1_accuracy(data_lib.predict(model, data.validation),
                                 data.validation.labels, head)
  logging.info("Distillation: the teacher (%s) has %.2f%% validation accuracy.", source, 100 * val)
  if augment:
    why = "one teacher pass per batch (--augment: each batch's images are new)"
  elif data.train.shard_by == "file":
    why = ("one teacher pass per batch (TFDS records: workers read their own files, so "
           "outputs cannot be streamed in one order)")
  elif size > PRECOMPUTE_BYTES:
    why = (f"one teacher pass per batch ({size / 2**20:.0f} MiB of logits for the training "
           f"split, more than {PRECOMPUTE_BYTES >> 20} MiB)")
  else:
    train_logits = heads.logits(head, data_lib.predict(model, data.train)).numpy()
    why = f"computed once for the {len(data.train):,} training images, streamed with the batches"
  logging.info("Distillation: teacher outputs %s.", why)
  return Teacher(model, alpha, temperature, source, train_logits, why, val, head)


def check_teacher(model: keras.Model, images: np.ndarray, path: str, num_classes: int) -> Head:
  """The head of a --teacher_path model, checked: readable (softmax, logits, or one unit),
  scoring the data's classes, its outputs on `images` what its layers say.

  Raises:
    FlagError: naming --teacher_path, with the reason.
  """
  try:
    head = heads.read(model)
  except heads.HeadError as e:
    raise FlagError("teacher_path", path, str(e)) from None
  why = heads.check_fits(head, num_classes) or heads.check_outputs(
      head, model.predict(images, verbose=0))
  if why:
    raise FlagError("teacher_path", path, why)
  return head


def trainee(model: keras.Model, teacher: Optional[Teacher]) -> keras.Model:
  """What `fit` trains: `model` itself, or a Distiller around it."""
  return model if teacher is None else Distiller(model, teacher)


def training_split(split: data_lib.Split, teacher: Optional[Teacher]) -> data_lib.Split:
  """`split`, its labels paired with the teacher's precomputed logits where there are any."""
  if teacher is None or teacher.train_logits is None:
    return split
  if len(teacher.train_logits) != len(split):
    raise ValueError(f"teacher logits for {len(teacher.train_logits)} training images, the "
                     f"split has {len(split)}")
  return dataclasses.replace(split, soft=teacher.train_logits)
