"""Sensitivity curves: each layer pruned alone, scored on validation, the model left as it was."""

import numpy as np

from pipeline import data

from pipeline.planning import sensitivity
from pipeline.models import train


def test_curves_cost_accuracy_as_rates_rise_and_leave_the_model_untouched(trained_cnn,
                                                                           mnist_small, tmp_path):
  before = [w.copy() for w in trained_cnn.get_weights()]
  curves = sensitivity.analyze(trained_cnn, mnist_small, "inner", rates=(0.5, 0.99))
  for w0, w1 in zip(before, trained_cnn.get_weights()):
    np.testing.assert_array_equal(w0, w1)  # Every trial weight was put back.
  un, st = curves
  x, y = data.sample(mnist_small.validation, sensitivity.EXAMPLES)
  assert un.baseline == st.baseline == np.mean(
      np.argmax(trained_cnn.predict(x, verbose=0), -1) == y)
  assert set(un.accuracy) == {"conv2", "dense1"}
  assert set(st.accuracy) == {"conv1", "conv2", "dense1"}  # Groups; the classifier stays.
  # Removing 99% of conv2's weights (or channels) alone must cost accuracy; 50% far less.
  for c in curves:
    half, almost_all = c.accuracy["conv2"]
    assert almost_all < c.baseline - 0.2 and half > almost_all
  paths = sensitivity.write(curves, len(y), str(tmp_path))
  md = (tmp_path / "sensitivity.md").read_text()
  assert f"| conv2 | {100 * un.accuracy['conv2'][0]:.1f}% | " in md
  assert (tmp_path / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert len(paths) == 3


def test_zeroed_cross_entropy_rises_with_each_cut(trained_cnn, mnist_small):
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from pipeline.structured import prune as structured  # pylint: disable=g-import-not-at-top
  from pipeline.structured import surgery
  x, y = data.sample(mnist_small.validation, sensitivity.EXAMPLES)
  want = float(keras.losses.SparseCategoricalCrossentropy()(y, trained_cnn.predict(x, verbose=0)))
  assert abs(train.cross_entropy(trained_cnn, x, y) - want) < 1e-5
  a = surgery.analyze(trained_cnn)
  g = next(g for g in a.prunable() if list(g.producers) == ["dense1"])
  score = structured.scores(a, "l1", None, None)[g.id]
  removed = [8, 64, 120]
  loss = sensitivity.zeroed_accuracy(a, g, score, removed, x, y, metric=train.cross_entropy)
  # The loss rises as more units go (the weakest few may be dead or noise: no change, or a
  # hair lower, as 8 -> 64 of dense1's units gave 0.509 -> 0.503), and the weights are put back.
  assert np.all(np.diff(loss) >= -0.02) and loss[-1] > loss[0] + 0.05
  assert abs(train.cross_entropy(a.model, x, y) - want) < 1e-5
