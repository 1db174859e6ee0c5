"""export/op_profile.py: the cut graphs are the real file's first operators, and each
operator gets a time."""

import numpy as np
import tf_keras as keras

from export import litert
from export import op_profile
from export import tflite


def _model():
  keras.utils.set_random_seed(0)
  return keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                           keras.layers.DepthwiseConv2D(3), keras.layers.GlobalAveragePooling2D(),
                           keras.layers.Dense(4, activation="softmax")])


def _run(content, x):
  interp = litert.open_model(content).interpreter
  interp.set_tensor(interp.get_input_details()[0]["index"], x)
  interp.invoke()
  return interp.get_tensor(interp.get_output_details()[0]["index"])


def test_each_cut_ends_at_its_operator_and_the_last_is_the_whole_file():
  model = _model()
  content = tflite.convert(model, "float32")
  cuts = op_profile.cuts(content)
  assert [c[1] for c in cuts] == ["CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED",
                                  "SOFTMAX"]
  x = np.random.default_rng(0).random((1, 12, 12, 3), np.float32)
  np.testing.assert_allclose(_run(cuts[-1][3], x), _run(content, x), atol=1e-6)
  conv = keras.Model(model.inputs, model.layers[0].output)
  np.testing.assert_allclose(_run(cuts[0][3], x), conv(x).numpy(), atol=1e-5)


def test_profile_times_every_operator_of_every_file(tmp_path):
  rep = np.random.default_rng(0).random((8, 12, 12, 3), np.float32)
  files = {}
  for fmt in ("float32", "int8"):
    files[fmt] = str(tmp_path / f"{fmt}.tflite")
    with open(files[fmt], "wb") as f:
      f.write(tflite.convert(_model(), fmt, representative=rep))
  result = op_profile.profile(files, runs=20, rounds=2, warmup_runs=2)
  assert [o.op for o in result["float32"]][0] == "CONV_2D"
  assert "QUANTIZE" in [o.op for o in result["int8"]]  # The float input, quantized.
  assert all(np.isfinite(o.ms) for ops in result.values() for o in ops)
  table = op_profile.to_markdown(result)
  assert "| CONV_2D | 1 x, " in table and "| **total**" in table
