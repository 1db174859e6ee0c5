"""Tests for pipeline/models/keras3.py and keras3_translate.py: models built with Keras 3 (`import
keras`, TensorFlow 2.21's default) rebuilt in tf_keras and back, checked on real images, and
Keras 3 files through safe_load and the CLI."""

import json
import zipfile

import keras
import numpy as np
import pytest
import tf_keras

from conftest import REPO, first, run_cli
from pipeline.models import keras3
from pipeline.models import keras3_translate as translate_lib
from pipeline.models import safe_load
from pipeline.structured import surgery

L = keras.layers


@pytest.fixture(scope="session")
def keras3_cnn(mnist_small):
  """A Sequential CNN built and trained with Keras 3 on 540 digits (2 epochs)."""
  keras.utils.set_random_seed(0)
  model = keras.Sequential([
      keras.Input((28, 28, 1)), L.Rescaling(1 / 255), L.Conv2D(16, 3, activation="relu"),
      L.MaxPooling2D(), L.Conv2D(32, 3, activation="relu", name="conv2"), L.MaxPooling2D(),
      L.Flatten(), L.Dropout(0.25), L.Dense(64, activation="relu"),
      L.Dense(10, activation="softmax")], name="users_cnn")
  model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
  model.fit(first(mnist_small.train), mnist_small.train.labels, epochs=2, batch_size=32,
            verbose=0)
  return model


@pytest.fixture(scope="session")
def digits(mnist_small):
  return first(mnist_small.validation, 48)


def _moved_batchnorm(model, seed=0):
  """BatchNorm statistics as training leaves them (fresh ones are 0 and 1: too easy)."""
  rng = np.random.default_rng(seed)
  for layer in model._flatten_layers():  # pylint: disable=protected-access
    if isinstance(layer, L.BatchNormalization):
      g, b, m, v = layer.get_weights()
      layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                         rng.normal(0, 0.5, m.shape), rng.uniform(0.5, 2, v.shape)])
  return model


def _same(a, b, x):
  return float(np.max(np.abs(np.asarray(a(x, training=False)) - np.asarray(b(x, training=False)))))


def _add_concat():
  inp = keras.Input((32, 32, 3))
  norm = L.Normalization()  # Adapted: Keras 3 reads its mean and variance only once finalized.
  norm.adapt(np.random.default_rng(4).uniform(0, 255, (64, 32, 32, 3)).astype(np.float32))
  x = norm(inp)
  a = L.Conv2D(8, 3, padding="same", activation="relu6", name="a")(x)
  a = L.LeakyReLU(negative_slope=0.1)(a)  # tf_keras calls it alpha.
  a = L.SpatialDropout2D(0.1)(a)  # Keras 3's takes no `trainable`.
  b = L.Conv2D(8, 1, name="b")(x)
  y = L.Concatenate()([L.Add()([a, b]), a])
  y = L.Dense(16, activation="hard_swish")(L.GlobalAveragePooling2D()(y))
  return keras.Model(inp, L.Dense(4, activation="softmax")(y), name="branches")


def _nested(application="MobileNetV2"):
  backbone = _moved_batchnorm(getattr(keras.applications, application)(
      input_shape=(32, 32, 3), alpha=0.35 if application == "MobileNetV2" else 1.0,
      include_top=False, weights=None))
  inp = keras.Input((32, 32, 3))
  x = backbone(L.Rescaling(1 / 127.5, offset=-1)(inp), training=False)
  out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(x))
  return keras.Model(inp, out, name="transfer")


def test_trained_sequential_cnn_translates_exactly_both_ways(keras3_cnn, digits):
  there = translate_lib.to_tf_keras(keras3_cnn)
  assert isinstance(there.model, tf_keras.Sequential)
  assert [l.name for l in there.model.layers] == [l.name for l in keras3_cnn.layers]
  agreement = keras3.agree(there, keras3_cnn, digits)
  assert agreement.max_diff <= 1e-5 and agreement.layers == len(keras3_cnn.layers)
  back = translate_lib.to_keras3(there.model)
  assert isinstance(back.model, keras.Sequential)
  assert _same(back.model, keras3_cnn, digits) <= 1e-5


@pytest.mark.parametrize("build,shape", [
    (_add_concat, (32, 32, 3)),
    (lambda: _moved_batchnorm(keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=5)), (96, 96, 3)),
    (lambda: _moved_batchnorm(keras.applications.MobileNetV3Small(
        input_shape=(96, 96, 3), weights=None, classes=5)), (96, 96, 3)),
], ids=["add_concat", "mobilenet_v2", "mobilenet_v3_small"])
def test_functional_models_translate_within_tolerance_both_ways(build, shape):
  model = build()
  x = np.random.default_rng(1).uniform(0, 255, (8,) + shape).astype(np.float32)
  there, agreement = keras3.to_tf_keras(model, x)
  assert agreement.max_diff <= keras3.TOLERANCE
  assert _same(translate_lib.to_keras3(there).model, model, x) <= keras3.TOLERANCE


def test_hard_swish_blocks_become_tf_keras_parts_the_surgery_can_prune():
  model = keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), weights=None, classes=5)
  there = translate_lib.to_tf_keras(model).model
  kinds = {type(l).__name__ for l in there.layers}
  assert "TFOpLambda" in kinds and "Rescaling" in kinds  # x + 3.0; preprocessing kept inside.
  analysis = surgery.analyze(there, "", "approximate")
  prunable = {p for g in analysis.prunable() for p in g.producers}
  assert "expanded_conv_1_expand" in prunable  # Its hard-swish passes channels through.
  assert "expanded_conv_3_squeeze_excite_conv" in prunable
  assert analysis.skipped()["logits"].startswith("it is the model's output")


@pytest.mark.parametrize("application", ["MobileNetV2", "MobileNetV3Small"])
def test_nested_backbone_keeps_training_false(tmp_path, application):
  model = _nested(application)
  path = str(tmp_path / "transfer.keras")
  model.save(path)
  loaded = safe_load.load(path, (32, 32, 3), 3)
  assert not any(isinstance(l, tf_keras.Model) for l in loaded.model.layers)  # Inlined.
  x = np.random.default_rng(2).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
  ref = np.asarray(model(x, training=False))
  assert np.max(np.abs(loaded.model(x, training=False).numpy() - ref)) <= 1e-5
  # The backbone was called with training=False (the Keras guide's transfer learning), so
  # fine-tuning keeps its BatchNorms on their moving statistics; batch statistics would
  # differ from them by far more than 1e-5.
  assert np.max(np.abs(loaded.model(x, training=True).numpy() - ref)) <= 1e-5


def test_disagreement_names_the_first_layer_that_differs(keras3_cnn, digits):
  there = translate_lib.to_tf_keras(keras3_cnn)
  conv2 = there.model.get_layer("conv2")
  kernel, bias = conv2.get_weights()
  conv2.set_weights([kernel * 1.5, bias])
  with pytest.raises(keras3.Disagreement, match=r"first at layer conv2 \(max \|diff\|"):
    keras3.agree(there, keras3_cnn, digits)


def test_mixed_precision_is_checked_against_its_float32_copy(digits):
  inp = keras.Input((28, 28, 1))
  x = L.Conv2D(8, 3, activation="relu", dtype="mixed_float16")(L.Rescaling(1 / 255)(inp))
  out = L.Dense(10, activation="softmax", dtype="float32")(L.GlobalAveragePooling2D()(x))
  model = keras.Model(inp, out)
  there, agreement = keras3.to_tf_keras(model, digits)
  assert {l.dtype for l in there.layers} == {"float32"}  # The pipeline trains in float32.
  assert agreement.mixed_precision == "mixed_float16"
  assert agreement.max_diff <= keras3.MIXED_TOLERANCE
  assert "a mixed_float16 model against its float32 copy" in agreement.describe()


def test_keras3_file_is_recognised_and_loaded_through_safe_load(tmp_path, keras3_cnn, digits):
  path = str(tmp_path / "user.keras")
  keras3_cnn.save(path)
  assert keras3.is_keras3_file(path)
  loaded = safe_load.load(path, (28, 28, 1), 10, images=digits)
  assert isinstance(loaded.model, tf_keras.Model)
  assert loaded.keras3.layers == len(keras3_cnn.layers) and loaded.keras3.images == len(digits)
  tf_path = str(tmp_path / "tf.keras")
  loaded.model.save(tf_path)
  assert not keras3.is_keras3_file(tf_path)


def test_write_gives_a_keras3_file_that_reloads_in_safe_mode(tmp_path, keras3_cnn, digits):
  model = translate_lib.to_tf_keras(keras3_cnn).model
  path = str(tmp_path / "out_keras3.keras")
  agreement = keras3.write(model, path, digits)
  assert agreement.max_diff <= 1e-5
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out_keras3.keras"]  # No temp file.
  reloaded = keras.saving.load_model(path, safe_mode=True)
  assert _same(reloaded, model, digits) <= 1e-5


def _message(path, **kw):
  with pytest.raises(ValueError) as e:
    safe_load.load(str(path), **kw)
  text = str(e.value)
  assert "\n" not in text and text.startswith(f"--baseline_path={path}: ")
  return text


@keras.saving.register_keras_serializable(package="users")
class Doubler(L.Layer):

  def call(self, x):
    return 2 * x


def test_refusals_name_the_layer_and_the_reason(tmp_path, keras3_cnn):
  inp = keras.Input((28, 28, 1))
  x = L.Lambda(lambda t: t / 255.0, name="scale_by_lambda")(inp)
  lam = keras.Model(inp, L.Dense(10, activation="softmax")(L.Flatten()(x)))
  lam.save(tmp_path / "lambda.keras")
  text = _message(tmp_path / "lambda.keras", trust=True)  # Trusted or not: no way across.
  assert "Lambda layer(s) scale_by_lambda" in text and "--trust_model" not in text

  inp = keras.Input((28, 28, 1))
  custom = keras.Model(inp, L.Dense(10)(L.Flatten()(Doubler(name="doubler")(inp))))
  custom.save(tmp_path / "custom.keras")
  assert "custom classes this tool cannot build: Doubler (" in _message(tmp_path / "custom.keras")

  inp = keras.Input((28, 28, 1))
  rms = keras.Model(inp, L.Dense(10)(L.RMSNormalization(name="rms")(L.Flatten()(inp))))
  rms.save(tmp_path / "rms.keras")
  text = _message(tmp_path / "rms.keras")
  assert "layer rms (RMSNormalization) has no tf_keras equivalent" in text

  inp = keras.Input((28, 28, 1))
  cut = keras.Model(inp, L.Dense(10)(keras.ops.mean(L.Flatten()(inp), axis=-1, keepdims=True)))
  cut.save(tmp_path / "op.keras")
  assert "(keras.ops Mean) has no tf_keras layer" in _message(tmp_path / "op.keras")

  inp = keras.Input((28, 28, 1))
  leaky = keras.Model(inp, L.Dense(10)(L.Dense(8, activation="leaky_relu", name="d")(
      L.Flatten()(inp))))
  leaky.save(tmp_path / "leaky.keras")
  assert "layer d (Dense): activation leaky_relu has no equivalent" in _message(
      tmp_path / "leaky.keras")

  inp = keras.Input((28, 28, 1))
  regression = keras.Model(inp, L.Dense(4, activation="relu", name="boxes")(L.Flatten()(inp)))
  regression.save(tmp_path / "boxes.keras")
  assert "layer 'boxes' ends in relu: not a classifier head" in _message(tmp_path / "boxes.keras")

  keras3_cnn.save(tmp_path / "cnn.keras")
  text = _message(tmp_path / "cnn.keras", input_shape=(32, 32, 3), num_classes=10)
  assert "takes images shaped (28, 28, 1), the data's are (32, 32, 3)" in text
  assert "outputs 10 classes, the data has 5" in _message(tmp_path / "cnn.keras",
                                                           num_classes=5)

  content = (tmp_path / "cnn.keras").read_bytes()
  (tmp_path / "cut.keras").write_bytes(content[:len(content) // 2])
  assert "not a readable .keras file" in _message(tmp_path / "cut.keras")


@pytest.mark.e2e
def test_cli_prunes_a_keras3_cnn_and_writes_it_back_in_keras3(tmp_path, keras3_cnn):
  keras3_cnn.save(tmp_path / "user.keras")
  wd = tmp_path / "run"
  proc = run_cli(["--flagfile=configs/smoke.flags", f"--baseline_path={tmp_path}/user.keras",
                  "--export_formats=float32,dynamic_int8", f"--workdir={wd}"], cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((wd / "report.json").read_text())
  assert report["baseline"]["keras3"]["max_diff"] <= 1e-5
  assert report["keras3"]["path"] == "pruned_keras3.keras"
  assert abs(report["pruned"]["sparsity"] - 0.5) < 0.01
  assert all(e["gate"] == "ok" for e in report["exports"])
  md = (wd / "report.md").read_text()
  assert f"Keras 3 model translated: {len(keras3_cnn.layers)} layers" in md
  assert "Keras 3 file: pruned_keras3.keras" in md
  with zipfile.ZipFile(wd / "pruned_keras3.keras") as z:
    assert json.loads(z.read("metadata.json"))["keras_version"].startswith("3.")
  mine = keras.saving.load_model(wd / "pruned_keras3.keras", safe_mode=True)
  ours = tf_keras.models.load_model(wd / "pruned.keras", compile=False)
  x = np.random.default_rng(3).uniform(0, 255, (16, 28, 28, 1)).astype(np.float32)
  assert _same(mine, ours, x) <= 1e-5
  kernel = mine.get_layer("conv2").get_weights()[0]
  assert abs(float(np.mean(kernel == 0)) - 0.5) < 0.01  # The pruned zeros came back too.


def test_a_keras3_mobilenet_v3_small_loses_channels_and_goes_back_to_keras3(tmp_path):
  """Hard-swish and squeeze-excite blocks: the groups they allow are removed, the rest are left
  whole with their reason, and the smaller model is written back in Keras 3. In-process (the
  stages a run chains); the CLI tests cover the command (the CNN and the user MobileNetV2)."""
  # pylint: disable=g-import-not-at-top
  from conftest import small_config
  from export import console
  from pipeline import job
  from pipeline.data import shapes
  from pipeline.report import sections
  from pipeline.stages import keras3 as keras3_stage
  from pipeline.structured import prune as structured
  photos = shapes.write_folder(str(tmp_path / "photos"), shapes.CLASSES[:3], 16, 32, seed=2)
  model = _moved_batchnorm(keras.applications.MobileNetV3Small(
      input_shape=(32, 32, 3), weights=None, classes=3))
  model.save(tmp_path / "v3.keras")
  # Trained-looking BatchNorms: exact folding would keep the expansions whole.
  cfg = small_config(dataset="folder", data_dir=photos, baseline_path=str(tmp_path / "v3.keras"),
                     structured_rate=0.4, structured_fold="approximate", fine_tune_epochs=1,
                     batch_size=16, workdir=str(tmp_path / "run"))
  prep = job.preflight(cfg)
  assert prep.keras3 is not None and prep.keras3.max_diff <= 1e-5
  result = structured.prune_structures(prep.baseline, prep.data, cfg, str(tmp_path))
  kept = {g: sizes for step in result.steps for g, sizes in step["groups"].items()}
  assert kept["expanded_conv_1_expand"][1] < kept["expanded_conv_1_expand"][0]
  assert result.macs_after < 0.7 * result.macs_before
  row = {"rate": 0.4, "criterion": "l1", "scope": "per_layer", "steps": result.steps,
         "skipped": result.skipped, "fold": result.fold, "fold_reason": result.fold_reason}
  assert "- left whole: logits: it is the model's output" in "\n".join(
      sections.structured_lines(row, []))
  out = keras3_stage.stage(result.model, "pruned", prep.data, cfg, str(tmp_path),
                           console.Console(enabled=False), {})
  mine = keras.saving.load_model(tmp_path / out["path"], safe_mode=True)
  assert mine.count_params() == result.model.count_params()  # The smaller model, in Keras 3.


def test_a_result_that_cannot_go_back_to_keras3_fails_before_training(digits):
  from conftest import small_config  # pylint: disable=g-import-not-at-top
  from pipeline.stages import keras3 as keras3_stage  # pylint: disable=g-import-not-at-top
  inp = tf_keras.Input((28, 28, 1))
  x = tf_keras.layers.ThresholdedReLU(0.5, name="gate")(tf_keras.layers.Flatten()(inp))
  model = tf_keras.Model(inp, tf_keras.layers.Dense(10, activation="softmax")(x))
  with pytest.raises(ValueError) as e:
    keras3_stage.preflight(model, digits, small_config(keras3_output=True))
  assert str(e.value).startswith("--keras3_output: the result cannot be written back as Keras 3: "
                                 "layer gate (ThresholdedReLU) has no Keras 3 equivalent")


@pytest.mark.e2e
def test_cli_prunes_a_functional_model_with_branches(tmp_path):
  """Add and Concatenate, an adapted Normalization, relu6, LeakyReLU and hard-swish: through
  the CLI with structured and unstructured pruning, and back to Keras 3."""
  from pipeline.data import shapes  # pylint: disable=g-import-not-at-top
  photos = shapes.write_folder(str(tmp_path / "photos"), shapes.CLASSES[:4], 12, 32, seed=3)
  keras.utils.set_random_seed(0)
  _add_concat().save(tmp_path / "branches.keras")
  wd = tmp_path / "run"
  proc = run_cli(["--dataset=folder", f"--data_dir={photos}",
                  f"--baseline_path={tmp_path}/branches.keras", "--structured_rate=0.5",
                  "--channel_multiple=1", "--min_channels=2", "--prune", "--pruning_rate=0.5",
                  "--pruning_scope=all", "--fine_tune_epochs=1", "--batch_size=16",
                  "--export_formats=float32", "--benchmark_runs=5", f"--workdir={wd}"],
                 cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((wd / "report.json").read_text())
  assert report["pruned"]["params"] < report["baseline"]["params"]
  assert all(e["gate"] == "ok" for e in report["exports"])
  mine = keras.saving.load_model(wd / "pruned_keras3.keras", safe_mode=True)
  ours = tf_keras.models.load_model(wd / "pruned.keras", compile=False)
  x = np.random.default_rng(5).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
  assert _same(mine, ours, x) <= 1e-5


def test_keras3_h5_needs_trust_then_translates(tmp_path, keras3_cnn, digits):
  path = tmp_path / "user.h5"
  keras3_cnn.save(path)
  assert keras3.is_keras3_file(str(path))
  assert "an .h5 file can run code from the file" in _message(path)
  loaded = safe_load.load(str(path), (28, 28, 1), 10, trust=True, images=digits)
  assert loaded.keras3 is not None and loaded.keras3.max_diff <= 1e-5
