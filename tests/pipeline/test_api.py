"""Tests for pipeline/api.py (`pipeline.prune`): the notebook door, with each kind of head a
Keras user's classifier ends in, and the same report as the CLI for the same inputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pipeline
from conftest import REPO, run_cli

ALLOWED_OPS = {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "QUANTIZE", "DEQUANTIZE",
               "SOFTMAX", "LOGISTIC", "DENSIFY"}


def colour_patches(n, classes, seed=0, size=16):
  """uint8 images on dark noise with a bright 6x6 patch in colour channel `label` (so flips
  and rotations keep the class), and their labels."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 80, (n, size, size, 3)).astype(np.uint8)
  y = np.arange(n) % classes
  for i, label in enumerate(y):
    r, c = rng.integers(0, size - 6, 2)
    x[i, r:r + 6, c:c + 6, label] = rng.integers(200, 256)
  return x, y


def tutorial_model(k, units, activation):
  """The images/classification tutorial's model, small: augmentation inside, Rescaling,
  Conv-MaxPool twice, Dropout, Dense, and the head."""
  layers = k.layers
  augmentation = k.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.1)],
                              name="data_augmentation")
  return k.Sequential([
      k.Input((16, 16, 3)), augmentation, layers.Rescaling(1 / 255),
      layers.Conv2D(8, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
      layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
      layers.Dropout(0.2), layers.Flatten(), layers.Dense(16, activation="relu"),
      layers.Dense(units, activation=activation, name="outputs")])


def trained(k, kind, data):
  """A model of `kind` trained as its tutorial trains it (its own loss, from_logits where the
  head is linear)."""
  units, activation = {"softmax": (3, "softmax"), "logits": (3, None), "sigmoid": (1, "sigmoid"),
                       "logit": (1, None)}[kind]
  k.utils.set_random_seed(0)
  model = tutorial_model(k, units, activation)
  loss = (k.losses.BinaryCrossentropy(from_logits=activation is None) if units == 1 else
          k.losses.SparseCategoricalCrossentropy(from_logits=activation is None))
  model.compile(k.optimizers.Adam(3e-3), loss=loss)
  model.fit(*data, epochs=8, batch_size=32, verbose=0)
  return model


OPTIONS = dict(structured_rate=0.25, channel_multiple=1, pruning_rate=0.5, distill=True,
               fine_tune_epochs=2, batch_size=32, export_formats="int8", benchmark_runs=10)


@pytest.mark.parametrize("kind,k", [("softmax", "tf_keras"), ("logits", "keras"),
                                    ("sigmoid", "keras"), ("logit", "keras")])
def test_each_head_prunes_structured_unstructured_distilled_and_exports(kind, k, tmp_path):
  import importlib  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import interpreter  # pylint: disable=g-import-not-at-top
  from pipeline.models import heads  # pylint: disable=g-import-not-at-top
  k = importlib.import_module(k)
  classes = 2 if kind in ("sigmoid", "logit") else 3
  train, val, test = (colour_patches(n, classes, seed) for n, seed in ((180, 0), (45, 1),
                                                                      (60, 2)))
  model = trained(k, kind, train)
  before = [w.copy() for w in model.get_weights()]
  result = pipeline.prune(model, train, val, test_ds=test, workdir=str(tmp_path / "run"),
                          **OPTIONS)
  r = result.report
  assert r["baseline"]["head"]["kind"] == kind
  assert r["pruned"]["distill"]["teacher"] == "baseline"
  assert abs(r["pruned"]["sparsity"] - 0.5) < 0.01
  assert r["pruned"]["params"] < r["baseline"]["params"]  # Channels removed for real.
  assert r["baseline"]["test_accuracy"] > 0.9 and r["pruned"]["test_accuracy"] > 0.9
  assert [e["name"] for e in r["exports"]] == ["baseline_float32", "pruned_int8",
                                              "pruned_int8_sparse"]
  assert [e["gate"] for e in r["exports"]] == ["ok"] * 3, [e["gate_reason"] for e in r["exports"]]
  # The result is in the Keras it came in, smaller, with the user's head; the user's model is
  # untouched.
  assert type(result.model).__module__.split(".")[0] == k.__name__
  assert result.model.count_params() == r["pruned"]["params"]
  assert heads.read(result.model).kind == kind
  assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
  # Each file outputs what the model does: one unit for a binary head; augmentation is
  # train-only, so no file holds an op of it.
  for name, path in result.tflite.items():
    it = interpreter.Interpreter(model_path=path)
    assert it.get_output_details()[0]["shape"][-1] == (1 if classes == 2 else 3), name
    ops = {d["op_name"] for d in it._get_ops_details()}  # pylint: disable=protected-access
    assert ops <= ALLOWED_OPS, (name, ops - ALLOWED_OPS)
  assert os.path.exists(result.tflite["pruned_int8"])
  assert "Head: " + r["baseline"]["head"]["describe"] in open(
      os.path.join(result.workdir, "report.md")).read()


def test_augmentation_inside_the_model_keeps_augmenting_while_fine_tuning(tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  from pipeline.stages import progress  # pylint: disable=g-import-not-at-top
  train = colour_patches(120, 3)
  model = tutorial_model(keras, 3, None)
  result = pipeline.prune(model, train, colour_patches(30, 3, 1), pruning_rate=0.5,
                          fine_tune_epochs=1, export_formats="float32", benchmark_runs=5,
                          workdir=str(tmp_path / "run"))
  pruned = progress.load_model(os.path.join(result.workdir, "pruned.keras"))  # What trained.
  flip = next(l for l in pruned.layers if type(l).__name__ == "RandomFlip")
  x = train[0][:8].astype(np.float32)
  out = np.concatenate([flip(x, training=True).numpy() for _ in range(4)])
  mirrored = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, np.tile(x, (4, 1, 1, 1)))])
  assert 0 < mirrored.sum() < len(mirrored)  # Flips some images, at random, while training.
  np.testing.assert_array_equal(flip(x, training=False).numpy(), x)
  assert "test: the validation data (no test_ds given)" in " ".join(
      result.report["dataset"]["notes"])


def test_bad_options_are_named_before_anything_loads():
  cases = [({"pruning_rat": 0.5}, TypeError, "unknown option pruning_rat; did you mean "
            "pruning_rate?"),
           ({"pruning_rate": 1.5}, ValueError, "pruning_rate=1.5: must be in [0, 1)"),
           ({"structured_criterion": "size"}, ValueError, "structured_criterion=size: must be "
            "one of: l1, l2"),
           ({"epochs": 3}, TypeError, "option epochs is not taken here: the model comes trained"),
           ({"fine_tune_epochs": "4"}, ValueError, "fine_tune_epochs='4': must be of type int"),
           ({"distill_alpha": 0.3}, ValueError, "distill_alpha=0.3: is read only with --distill")]
  for options, error, text in cases:
    with pytest.raises(error) as e:
      pipeline.prune(None, None, None, **options)
    assert text in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_scaled_images_and_a_wrong_head_are_one_line(tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  x, y = colour_patches(40, 3)
  model = tutorial_model(keras, 3, None)
  with pytest.raises(ValueError, match=r"^train_ds: the images are scaled to 0..1 already"):
    pipeline.prune(model, (x / 255.0, y), (x, y), workdir=str(tmp_path / "a"))
  binary = tutorial_model(keras, 1, "sigmoid")
  with pytest.raises(ValueError, match=r"^model: the model outputs one unit \(a two-class head, "
                                       r"layer 'outputs'\), the data has 3 classes"):
    pipeline.prune(binary, (x, y), (x, y), workdir=str(tmp_path / "b"))
  assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


_NOTEBOOK = """
import json, os, sys
import numpy as np
sys.path.insert(0, {repo!r})
import keras, tensorflow as tf
before = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
import pipeline
keras.utils.set_random_seed(0)
model = keras.models.load_model({model!r})
arrays = dict(np.load({arrays!r}))
result = pipeline.prune(model, (arrays["x"], arrays["y"]), (arrays["vx"], arrays["vy"]),
                        test_ds=(arrays["tx"], arrays["ty"]), workdir={workdir!r}, **{options!r})
after = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
print(json.dumps({{"before": type(before).__module__, "after": type(after).__module__,
                   "env": os.environ.get("TF_USE_LEGACY_KERAS"),
                   "result_module": type(result.model).__module__}}))
"""

# pipeline imported first, tf.keras used only after the call has loaded TF-MOT.
_PIPELINE_FIRST = """
import json, os, sys
sys.path.insert(0, {repo!r})
import pipeline
from pipeline import api
with api._legacy_keras_loaded():  # What pipeline.prune does before it imports the stages.
  from pipeline import job  # noqa: F401  (tf_keras and TF-MOT load here)
import tensorflow as tf
after = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
print(json.dumps({{"after": type(after).__module__, "env": os.environ.get("TF_USE_LEGACY_KERAS"),
                   "tf_mot_loaded": "tensorflow_model_optimization" in sys.modules}}))
"""


def _python(code, env):
  return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc):
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-2000:]
  return json.loads(out.strip().splitlines()[-1])


@pytest.mark.e2e
def test_cli_and_api_write_the_same_report_and_leave_tf_keras_alone(tmp_path, mnist_small):
  """The same Keras 3 model and the same images through both doors: the same accuracies,
  sparsity, files and gates. The API runs as a notebook does, in a process where tf.keras is
  Keras 3 (TF_USE_LEGACY_KERAS unset) and used before the call; and, in another, with pipeline
  imported first and tf.keras used only after TF-MOT loaded: it stays Keras 3 in both."""
  import keras  # pylint: disable=g-import-not-at-top
  from conftest import first  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
                            keras.layers.Conv2D(8, 3, activation="relu"),
                            keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                            keras.layers.Dense(10)])  # Raw logits, as the tutorials end.
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(first(mnist_small.train), mnist_small.train.labels, epochs=2, verbose=0)
  model.save(tmp_path / "user.keras")
  np.savez(tmp_path / "arrays.npz", x=mnist_small.train.images, y=mnist_small.train.labels,
           vx=mnist_small.validation.images, vy=mnist_small.validation.labels,
           tx=mnist_small.test.images, ty=mnist_small.test.labels)
  options = dict(pruning_rate=0.6, fine_tune_epochs=2, batch_size=64,
                 export_formats="float32,dynamic_int8", benchmark_runs=10)
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env["PYTHONPATH"] = REPO
  notebook = _python(_NOTEBOOK.format(repo=REPO, model=str(tmp_path / "user.keras"),
                                      arrays=str(tmp_path / "arrays.npz"),
                                      workdir=str(tmp_path / "api"), options=options), env)
  light = _python(_PIPELINE_FIRST.format(repo=REPO), env)
  cli = run_cli(["--dataset=mnist", "--max_train_examples=600", f"--baseline_path={tmp_path}/"
                 "user.keras", "--prune", *(f"--{k}={v}" for k, v in options.items()),
                 f"--workdir={tmp_path}/cli"], cwd=REPO)
  assert cli.returncode == 0, cli.stderr[-2000:]
  seen = _result(notebook)
  assert seen["before"].startswith("keras.src") and seen["after"].startswith("keras.src"), seen
  assert seen["env"] is None and seen["result_module"].startswith("keras.src"), seen
  seen = _result(light)
  assert seen == {"after": seen["after"], "env": None, "tf_mot_loaded": True}, seen
  assert seen["after"].startswith("keras.src"), seen  # Keras 3, not tf_keras.
  a, c = (json.loads((tmp_path / n / "report.json").read_text()) for n in ("api", "cli"))
  for part in ("baseline", "pruned"):
    for field in ("test_accuracy", "params", "macs"):
      assert a[part][field] == c[part][field], (part, field)
  assert a["pruned"]["sparsity"] == c["pruned"]["sparsity"]
  assert a["baseline"]["head"] == c["baseline"]["head"]
  assert [(e["name"], e["test_accuracy"], e["gate"]) for e in a["exports"]] == [
      (e["name"], e["test_accuracy"], e["gate"]) for e in c["exports"]]
