"""What a classifier's outputs are, and how a class is read from them: the one rule every
accuracy, agreement and output comparison follows, for Keras and .tflite outputs alike.

| kind | outputs | class | as TensorFlow's tutorials train it |
|---|---|---|---|
| softmax | n probabilities summing to 1 | argmax | `SparseCategoricalCrossentropy()` |
| logits | n raw scores | argmax | `SparseCategoricalCrossentropy(from_logits=True)` |
| sigmoid | one probability of label 1 | 1 if > 0.5 | `BinaryCrossentropy()` |
| logit | one raw score of label 1 | 1 if > 0 | `BinaryCrossentropy(from_logits=True)` |

pipeline/models/heads.py reads the kind off a Keras model; this module needs only numpy, so
the TFLite checks below pipeline/ use it too.
"""

import dataclasses

import numpy as np

KINDS = ("softmax", "logits", "sigmoid", "logit")
_WHAT = {"softmax": "class probabilities", "logits": "raw logits",
         "sigmoid": "one probability (sigmoid) of the positive class",
         "logit": "one raw logit of the positive class"}
_LOSS = {"softmax": "sparse cross-entropy", "logits": "sparse cross-entropy from logits",
         "sigmoid": "binary cross-entropy", "logit": "binary cross-entropy from logits"}


@dataclasses.dataclass(frozen=True)
class Head:
  """A single-label classifier's output head.

  Attributes:
    kind: one of KINDS.
    units: outputs per image (1 for the binary kinds).
    layer: the layer whose activation decides the kind ("" when not read off a model).
    how: why it was read so, e.g. "Dense 'outputs' has no activation".
  """
  kind: str = "softmax"
  units: int = 0
  layer: str = ""
  how: str = ""

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"head kind={self.kind}: unknown; valid: {', '.join(KINDS)}")

  @property
  def binary(self) -> bool:
    """One output unit: label 1 (the second class) against label 0."""
    return self.kind in ("sigmoid", "logit")

  @property
  def from_logits(self) -> bool:
    return self.kind in ("logits", "logit")

  @property
  def num_classes(self) -> int:
    return 2 if self.binary else self.units

  def classes(self, outputs: np.ndarray) -> np.ndarray:
    """The class each row of `outputs` picks.

    Raises:
      ValueError: outputs of one unit read by a head of several (argmax of one column is
        always class 0, an accuracy that would look like a result), or the reverse.
    """
    outputs = np.asarray(outputs)
    width = outputs.shape[-1] if outputs.ndim > 1 else 1
    if self.binary != (width == 1):
      raise ValueError(f"outputs of {width} unit(s) per image read by a {self.kind} head")
    if self.binary:
      return (outputs.reshape(-1) > (0.0 if self.kind == "logit" else 0.5)).astype(np.int64)
    return np.argmax(outputs, -1)

  def accuracy(self, outputs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose class is the label: the one accuracy every stage reports."""
    return float(np.mean(self.classes(outputs) == np.asarray(labels).reshape(-1)))

  def scale(self, reference: np.ndarray) -> float:
    """What an output difference is measured against: 1 for probabilities, the largest
    |logit| (at least 1) for logits, whose float32 rounding grows with their size."""
    if not self.from_logits:
      return 1.0
    return max(1.0, float(np.max(np.abs(reference)))) if np.size(reference) else 1.0

  def describe(self, class_names=()) -> str:
    """'outputs: raw logits (Dense 'outputs' has no activation); loss: sparse cross-entropy
    from logits', and for a binary head the class it scores."""
    text = f"outputs: {_WHAT[self.kind]}{f' ({self.how})' if self.how else ''}; " \
           f"loss: {_LOSS[self.kind]}"
    if self.binary and len(class_names) == 2:
      text += (f"; positive class: '{class_names[1]}' (label 1, the second class name, as "
               "image_dataset_from_directory orders them)")
    return text

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


SOFTMAX = Head("softmax")


def guess(outputs: np.ndarray) -> Head:
  """The head a file's outputs suggest, for tools given a .tflite file and nothing else
  (export.arm): one unit is a sigmoid when every value lies in [0, 1], else a logit; several
  are a softmax when every row is a probability distribution, else logits. Only to compare a
  file's outputs with themselves elsewhere (its class on two runtimes), never to score it."""
  p = np.asarray(outputs, np.float64)
  width = p.shape[-1] if p.ndim > 1 else 1
  unit = bool(p.size) and p.min() >= 0.0 and p.max() <= 1.0
  if width == 1:
    return Head("sigmoid" if unit else "logit", 1, how="read off the outputs")
  rows = unit and np.allclose(p.sum(axis=-1), 1.0, atol=1e-3)
  return Head("softmax" if rows else "logits", width, how="read off the outputs")
