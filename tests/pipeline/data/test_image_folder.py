"""Tests for pipeline/data/image_folder.py: generated RGB folders, split or not, and bad folders."""

import os
import shutil

import numpy as np
import pytest

from pipeline.data import shapes
from conftest import assert_message, first, small_config
from pipeline import data

CLASSES = shapes.CLASSES[:3]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """3 classes x 30 images of 40x40 (JPEG and PNG), unsplit."""
  return shapes.write_folder(str(tmp_path_factory.mktemp("photos")), CLASSES, 30, 40)


def _cfg(root, **kw):
  return small_config(**{"dataset": "folder", "data_dir": str(root), "max_train_examples": 0,
                         **kw})


def test_unsplit_folder_is_split_stratified_and_fixed(folder):
  ds = data.load_dataset(_cfg(folder))
  assert ds.class_names == CLASSES and ds.image_shape == (40, 40, 3)
  assert np.bincount(ds.test.labels).tolist() == [6, 6, 6]  # 20% of each class.
  assert len(ds.train) + len(ds.validation) == 72
  again = data.load_dataset(_cfg(folder, seed=3))
  np.testing.assert_array_equal(first(ds.test), first(again.test))  # --seed moves train only.
  assert "image size 40x40: the first training image's (--image_size to change)" in ds.notes
  summary = ds.summary()
  assert summary["per_class"]["test"] == [6, 6, 6] and summary["classes"] == list(CLASSES)


def test_decoded_pixels_are_the_files_pixels(folder):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ds = data.load_dataset(_cfg(folder))
  path = os.path.join(folder, CLASSES[0], "00001.png")  # PNG: lossless.
  want = tf.io.decode_png(open(path, "rb").read()).numpy().astype(np.float32)
  split = next(s for s in (ds.train, ds.validation, ds.test) if path in _paths(s))
  got = first(split)[_paths(split).index(path)]
  np.testing.assert_array_equal(got, want)


def _paths(split):
  return [r[0].numpy().decode() for r in split.records]


def test_image_size_and_grayscale(folder):
  ds = data.load_dataset(_cfg(folder, image_size="24,32", color_mode="grayscale"))
  x = first(ds.test, 4)
  assert ds.image_shape == (24, 32, 1) and x.shape == (4, 24, 32, 1)
  assert 0 <= x.min() and x.max() <= 255


def test_presplit_folder_uses_its_own_splits(folder, tmp_path):
  for split, n in (("train", 20), ("test", 5), ("validation", 4)):
    for c in CLASSES:
      os.makedirs(tmp_path / split / c)
      for f in sorted(os.listdir(os.path.join(folder, c)))[:n]:
        shutil.copy(os.path.join(folder, c, f), tmp_path / split / c / f)
  ds = data.load_dataset(_cfg(tmp_path))
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (60, 12, 15)
  assert "splits: the folder's own train/, validation/ and test/" in ds.notes


def _broken(tmp_path, folder, how):
  root = tmp_path / "broken"
  shutil.copytree(folder, root)
  how(root)
  return root


@pytest.mark.parametrize("how,facts", [
    (lambda r: [shutil.rmtree(r / c) for c in CLASSES], ("no class subfolders",)),
    (lambda r: [shutil.rmtree(r / c) for c in CLASSES[1:]], ("one class (circle)", "two")),
    (lambda r: [os.remove(r / "square" / f) for f in os.listdir(r / "square")],
     ("square", "no images", ".png")),
    (lambda r: (r / "square" / "00003.png").write_bytes(b"<html>not an image</html>"),
     ("square/00003.png", "not a JPEG, PNG, BMP or GIF", "3c68746d")),
    (lambda r: (os.makedirs(r / "train"), shutil.move(str(r / "circle"), str(r / "train"))),
     ("train/", "test/")),
])
def test_bad_folders_are_one_line_naming_folder_or_file(folder, tmp_path, how, facts):
  root = _broken(tmp_path, folder, how)
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(_cfg(root))
  assert_message(str(e.value), f"--data_dir={root}:", *facts)


def test_missing_folder_and_missing_data_dir(tmp_path):
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(_cfg(tmp_path / "typo"))
  assert_message(str(e.value), f"--data_dir={tmp_path}/typo:", "no such directory")
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(small_config(dataset="folder"))
  assert_message(str(e.value), "--dataset=folder:", "--data_dir")


def transfer_tutorial_model(size: int = 32):
  """tensorflow.org/tutorials/images/transfer_learning's model, built with Keras 3: random flip
  and rotation, mobilenet_v2.preprocess_input, a MobileNetV2 base called with training=False,
  GAP, Dropout and one linear unit (a binary head trained from logits); the base's BatchNorm
  shifts moved as training leaves them."""
  import keras  # pylint: disable=g-import-not-at-top
  layers = keras.layers
  base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35,
                                        include_top=False, weights=None)
  rng = np.random.default_rng(0)
  for layer in base.layers:
    if isinstance(layer, layers.BatchNormalization):
      g, b, m, v = layer.get_weights()
      layer.set_weights([g, rng.normal(0, 0.3, b.shape).astype(np.float32), m, v])
  augmentation = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.2)],
                                  name="data_augmentation")
  inputs = keras.Input((size, size, 3))
  x = keras.applications.mobilenet_v2.preprocess_input(augmentation(inputs))
  x = layers.GlobalAveragePooling2D()(base(x, training=False))
  return keras.Model(inputs, layers.Dense(1)(layers.Dropout(0.2)(x)))


@pytest.mark.e2e
def test_cli_prunes_the_transfer_learning_tutorials_binary_model_on_a_folder(tmp_path):
  """The transfer-learning tutorial's model (Keras 3, one logit unit, augmentation and a
  MobileNetV2 base nested with training=False), not one of ours, pruned structured on a
  generated two-class folder through the CLI: every file within its gate, the head kept and
  named with its positive class, the frozen base fine-tuned at 1e-5, the pruned model back in
  Keras 3. (Unstructured pruning of an inlined Keras 3 MobileNet: test_keras3; of this model,
  with structured: benchmarks/tutorials.py, docs/your-model.md. Each MobileNet .tflite takes
  about 18 s to convert here, so this run makes two.)"""
  import json  # pylint: disable=g-import-not-at-top
  import zipfile  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import interpreter  # pylint: disable=g-import-not-at-top
  from conftest import REPO, run_cli  # pylint: disable=g-import-not-at-top
  photos = shapes.write_folder(str(tmp_path / "photos"), ("circle", "square"), 20, 32, seed=1)
  transfer_tutorial_model().save(tmp_path / "mine.keras")
  wd = tmp_path / "run"
  proc = run_cli(["--dataset=folder", f"--data_dir={photos}",
                  f"--baseline_path={tmp_path}/mine.keras",
                  "--structured_rate=0.4", "--fine_tune_epochs=1",
                  # float32 only: int8 conversion of a MobileNet takes about 40 s a file here;
                  # int8 files of every head are checked on small models (test_api).
                  "--batch_size=16", "--export_formats=float32", "--benchmark_runs=10",
                  f"--workdir={wd}"], cwd=REPO, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((wd / "report.json").read_text())
  assert report["dataset"]["classes"] == ["circle", "square"]
  assert report["baseline"]["head"]["kind"] == "logit"
  st = report["pruned"]["structured"]
  assert st["fold"] == "approximate"  # Exact folding would leave the expansion layers whole.
  kept = {g: sizes for step in st["steps"] for g, sizes in step["groups"].items()}
  assert kept["block_1_expand"][1] < kept["block_1_expand"][0]  # Expansion layers pruned.
  assert report["pruned"]["macs"] < 0.8 * report["baseline"]["macs"]
  assert [e["name"] for e in report["exports"]] == ["baseline_float32", "pruned_float32"]
  assert all(e["gate"] == "ok" for e in report["exports"])
  lr = report["baseline"]["fine_tune_learning_rate"]
  assert lr["value"] == 1e-5 and "BatchNorm layer(s) keep frozen statistics" in lr["why"]
  md = (wd / "report.md").read_text()
  assert "positive class: 'square' (label 1" in md and "2 classes" in md
  assert report["baseline"]["keras3"]["max_diff"] <= 1e-5
  mine = keras.saving.load_model(wd / report["keras3"]["path"], safe_mode=True)
  assert mine.count_params() == report["pruned"]["params"]  # The smaller model, in Keras 3.
  assert mine.output_shape == (None, 1)
  # The pruned model still augments while training (its Random* layers are there) and its
  # base's BatchNorms still run with training=False; the files hold no augmentation op.
  layers = json.loads(zipfile.ZipFile(wd / "pruned.keras").read("config.json"))["config"]["layers"]
  assert {"RandomFlip", "RandomRotation"} <= {l["class_name"] for l in layers}
  bns = [l for l in layers if l["class_name"] == "BatchNormalization"]
  assert bns and all(l["inbound_nodes"][0][0][3] == {"training": False} for l in bns)
  for e in report["exports"]:
    ops = {d["op_name"] for d in interpreter.Interpreter(
        model_path=str(wd / e["path"]))._get_ops_details()}  # pylint: disable=protected-access
    assert ops <= {"MUL", "SUB", "ADD", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "PAD",
                   "FULLY_CONNECTED", "DENSIFY", "RELU6"}, ops


def _coded_folder(root, per_class=12, ext="png"):
  """Class k's images are filled with the value 40k + 20, so a pixel names its class."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for k, name in enumerate(CLASSES):
    os.makedirs(os.path.join(root, name))
    for i in range(per_class):
      image = np.full((16, 16, 3), 40 * k + 20, np.uint8)
      image[0, 0] = i  # Distinct files.
      content = tf.io.encode_png(image) if ext == "png" else None
      with open(os.path.join(root, name, f"{i:03d}.{ext}"), "wb") as f:
        f.write(content.numpy())
  return root


def test_every_split_streams_images_in_step_with_its_labels(tmp_path):
  ds = data.load_dataset(_cfg(_coded_folder(str(tmp_path / "coded")), max_train_examples=24))
  for split in (ds.train, ds.validation, ds.test):
    x = first(split)
    np.testing.assert_array_equal((x[:, 8, 8, 0] - 20) / 40, split.labels)
    for xb, yb in data.batches(split, 5, shuffle=True, seed=1):  # Shuffled: pairs stay pairs.
      np.testing.assert_array_equal((xb.numpy()[:, 8, 8, 0] - 20) / 40, yb.numpy())
  xs, ys = data.sample(ds.train, 10, seed=2)
  np.testing.assert_array_equal((xs[:, 8, 8, 0] - 20) / 40, ys)


def test_gif_in_a_grayscale_run_and_a_corrupt_first_image(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  root = _coded_folder(str(tmp_path / "gif"))
  # A GIF decodes to 3 channels only; --color_mode=grayscale must still read it.
  gif = bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c00000000"
                      "010001000002024401003b")
  (tmp_path / "gif" / CLASSES[1] / "zz.gif").write_bytes(gif)
  ds = data.load_dataset(_cfg(root, color_mode="grayscale", image_size="16,16"))
  assert first(ds.test).shape[-1] == 1 and len(first(ds.train)) == len(ds.train)
  del tf
  bad = _coded_folder(str(tmp_path / "bad"))
  for f in os.listdir(os.path.join(bad, CLASSES[0])):  # PNG magic, then garbage.
    (tmp_path / "bad" / CLASSES[0] / f).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(_cfg(bad))
  assert str(e.value).startswith(f"--data_dir={bad}: {CLASSES[0]}/") and "cannot be decoded" in \
      str(e.value)


def test_uint8_input_is_the_pixel_even_when_no_image_reaches_0_or_255(tmp_path):
  """The coded folder's pixels lie in 0..100 (never 255): calibration must still pin the
  input range to 0..255, so that a uint8 input has scale 1 and zero point 0."""
  from export import litert, tflite  # pylint: disable=g-import-not-at-top
  from pipeline.stages import measure  # pylint: disable=g-import-not-at-top
  from pipeline.models import architectures as models
  ds = data.load_dataset(_cfg(_coded_folder(str(tmp_path / "coded"))))
  assert first(ds.train).max() < 255
  rep = measure.representative(ds)
  assert rep.min() == 0 and rep.max() == 255 and np.sum(rep == 255) == 3  # One pixel, RGB.
  model = models.small_cnn(ds.input_shape, ds.num_classes, widths=(4, 4, 8))
  opened = litert.open_model(tflite.convert(model, "int8", representative=rep, int8_io=True))
  assert opened.interpreter.get_input_details()[0]["quantization"] == pytest.approx((1.0, 0))
