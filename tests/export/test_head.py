"""Tests for export/head.py: how a class is read from each head's outputs."""

import numpy as np
import pytest

from export.head import Head

LABELS = np.array([0, 1, 1, 0])


def test_each_kind_reads_the_class_its_way():
  probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.9, 0.1]])
  assert Head("softmax", 2).accuracy(probs, LABELS) == 1.0
  assert Head("logits", 2).accuracy(np.log(probs) + 5.0, LABELS) == 1.0  # Shift-invariant.
  sigmoid = np.array([[0.2], [0.9], [0.51], [0.49]])
  assert Head("sigmoid", 1).classes(sigmoid).tolist() == [0, 1, 1, 0]
  logit = np.array([[-3.0], [0.1], [2.0], [0.0]])  # 0 is not above the threshold.
  assert Head("logit", 1).classes(logit).tolist() == [0, 1, 1, 0]
  # A sigmoid's probabilities read as logits would call 0.2 positive: the threshold matters.
  assert Head("logit", 1).accuracy(sigmoid, LABELS) == 0.5


def test_a_one_unit_output_is_never_read_by_argmax():
  with pytest.raises(ValueError, match="outputs of 1 unit"):
    Head("softmax", 2).classes(np.zeros((4, 1)))  # argmax would say class 0 every time.
  with pytest.raises(ValueError, match="outputs of 3 unit"):
    Head("sigmoid", 1).classes(np.zeros((4, 3)))
  with pytest.raises(ValueError, match="head kind=relu: unknown; valid: softmax, logits"):
    Head("relu")


def test_scale_and_description():
  assert Head("softmax", 3).scale(np.array([[0.9, 0.05, 0.05]])) == 1.0
  assert Head("logits", 3).scale(np.array([[12.0, -30.0, 1.0]])) == 30.0
  assert Head("logit", 1).scale(np.array([[0.2]])) == 1.0  # Never below 1.
  text = Head("logit", 1, "out", "Dense 'out' has no activation").describe(("cat", "dog"))
  assert text.startswith("outputs: one raw logit of the positive class (Dense 'out' has no "
                         "activation); loss: binary cross-entropy from logits")
  assert "positive class: 'dog' (label 1" in text
  assert Head("softmax", 2).num_classes == 2 and Head("sigmoid", 1).num_classes == 2


def test_a_file_alone_suggests_its_head():
  from export.head import guess  # pylint: disable=g-import-not-at-top
  assert guess(np.array([[0.2], [0.9]])).kind == "sigmoid"
  assert guess(np.array([[-2.0], [0.9]])).kind == "logit"
  assert guess(np.array([[0.2, 0.8], [0.5, 0.5]])).kind == "softmax"
  assert guess(np.array([[0.2, 0.3], [0.5, 0.5]])).kind == "logits"
