"""TensorFlow's own tutorial models, built and trained as the tutorials teach, through the CLI.

  python -m benchmarks.tutorials --out_dir=bench_out/tutorials              # all (~40 min)
  python -m benchmarks.tutorials --out_dir=bench_out/tutorials --only=cnn_logits,cnn_softmax

Each model is built with Keras 3 (`import keras`), trained with its tutorial's loss, saved and
given to `python -m pipeline.run --baseline_path=...`; a softmax (or sigmoid) twin of each
linear head shows what the head costs, if anything:
- cnn_logits / cnn_softmax: a CNN ending in `Dense(10)` trained with
  `SparseCategoricalCrossentropy(from_logits=True)`, and its softmax twin, on the shipped MNIST
  digits, with configs/mnist.flags (90% sparsity).
- classification / classification_softmax: the images/classification tutorial's model
  (RandomFlip, RandomRotation and RandomZoom inside it, Rescaling, three Conv-MaxPool, Dropout,
  Dense(128), a linear Dense(5)) on 5 x 200 generated 96x96 shapes, 50% sparsity, 12
  fine-tuning epochs.
- transfer_logit / transfer_sigmoid: the transfer_learning tutorial's model (augmentation,
  `mobilenet_v2.preprocess_input`, a MobileNetV2 base called with `training=False`, GAP,
  Dropout, `Dense(1)` linear with `BinaryCrossentropy(from_logits=True)`, or sigmoid) on 2 x 200
  generated shapes (circle, square); alpha 0.35 at 96x96, the base pre-trained on the 5-class
  shapes in place of ImageNet's weights (no download here); structured 10% + 50% sparsity,
  and (the _s30 rows) structured 30% + 50%, which its frozen BatchNorms do not survive.
Prints one Markdown table.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from benchmarks import keras3 as keras3_bench  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 96
FOLDER_FLAGS = ["--dataset=folder", f"--image_size={SIZE},{SIZE}", "--color_mode=rgb",
                "--batch_size=32", "--fine_tune_epochs=6", "--export_formats=float32,int8",
                "--benchmark_runs=2000"]


def _train(model, loss, flags, epochs, batch_size):
  """Trains as the tutorials do (Adam, the head's loss), keeping the best epoch."""
  import keras  # pylint: disable=g-import-not-at-top
  binary = isinstance(loss, keras.losses.BinaryCrossentropy)
  metric = keras.metrics.BinaryAccuracy("accuracy", threshold=0.0 if loss.get_config().get(
      "from_logits") else 0.5) if binary else "accuracy"
  return keras3_bench._train(model, flags, epochs, batch_size, loss, metric)  # pylint: disable=protected-access


def _folder(out_dir, classes):
  """200 generated images a class; the 2-class folder is drawn with another seed than the
  5-class one the transfer base is pre-trained on, so no image of it was seen before."""
  from pipeline.data import shapes  # pylint: disable=g-import-not-at-top
  root = os.path.join(out_dir, f"photos_{len(classes)}")
  if not os.path.isdir(root):
    shapes.write_folder(root, classes=classes, per_class=200, size=SIZE, seed=len(classes))
  return root


def cnn(out_dir, softmax):
  import keras  # pylint: disable=g-import-not-at-top
  layers = keras.layers
  name = f"cnn_{'softmax' if softmax else 'logits'}"
  model = keras.Sequential([
      keras.Input((28, 28, 1)), layers.Rescaling(1 / 255),
      layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
      layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(), layers.Flatten(),
      layers.Dropout(0.25), layers.Dense(128, activation="relu"), layers.Dropout(0.5),
      layers.Dense(10, activation="softmax" if softmax else None)], name=name)
  path = os.path.join(out_dir, f"{name}.keras")
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)
  _train(model, loss, {"dataset": "mnist"}, 12, 64).save(path)
  return ["--flagfile=configs/mnist.flags", f"--baseline_path={path}"]


def classification(out_dir, softmax):
  """tensorflow.org/tutorials/images/classification, with its data augmentation and Dropout."""
  import keras  # pylint: disable=g-import-not-at-top
  layers = keras.layers
  from pipeline.data import shapes  # pylint: disable=g-import-not-at-top
  root = _folder(out_dir, shapes.CLASSES[:5])
  augmentation = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.1),
                                   layers.RandomZoom(0.1)], name="data_augmentation")
  name = f"classification{'_softmax' if softmax else ''}"
  model = keras.Sequential([
      keras.Input((SIZE, SIZE, 3)), augmentation, layers.Rescaling(1. / 255),
      layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
      layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
      layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
      layers.Dropout(0.2), layers.Flatten(), layers.Dense(128, activation="relu"),
      layers.Dense(5, activation="softmax" if softmax else None, name="outputs")], name=name)
  path = os.path.join(out_dir, f"{name}.keras")
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)
  flags = dict(dataset="folder", data_dir=root, image_size=f"{SIZE},{SIZE}", color_mode="rgb")
  _train(model, loss, flags, 20, 32).save(path)
  # Random flips, rotations and zooms inside the model slow fine-tuning down: 12 epochs.
  return FOLDER_FLAGS + [f"--data_dir={root}", f"--baseline_path={path}", "--prune",
                         "--pruning_rate=0.5", "--fine_tune_epochs=12"]


def _pretrained_base(out_dir):
  """A MobileNetV2 base (alpha 0.35, 96x96) trained on the 5-class shapes, standing in for
  the ImageNet weights the tutorial downloads (none can be downloaded here): a base called
  with training=False keeps its BatchNorm statistics, so it has to come trained."""
  import keras  # pylint: disable=g-import-not-at-top
  from pipeline.data import shapes  # pylint: disable=g-import-not-at-top
  path = os.path.join(out_dir, "base.keras")
  if os.path.exists(path):
    return keras.saving.load_model(path)
  root = _folder(out_dir, shapes.CLASSES[:5])
  base = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35,
                                        include_top=False, weights=None)
  for layer in base.layers:  # BatchNorm momentum for a few hundred steps, not ImageNet's.
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.momentum = 0.9
  inputs = keras.Input((SIZE, SIZE, 3))
  x = base(keras.applications.mobilenet_v2.preprocess_input(inputs))
  model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x)),
                      name="pretraining")
  flags = dict(dataset="folder", data_dir=root, image_size=f"{SIZE},{SIZE}", color_mode="rgb")
  _train(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), flags, 40, 32)
  base.save(path)
  return base


def transfer(out_dir, sigmoid, structured_rate=0.1):
  """tensorflow.org/tutorials/images/transfer_learning's model: a pre-trained MobileNetV2
  base (here trained on other classes of the same kind of images, see _pretrained_base;
  alpha 0.35 at 96x96) called with training=False, augmentation and preprocess_input before
  it, GAP, Dropout and Dense(1); the whole model then fine-tuned, as the tutorial's second
  phase does."""
  import keras  # pylint: disable=g-import-not-at-top
  layers = keras.layers
  root = _folder(out_dir, ("circle", "square"))
  augmentation = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.2)],
                                  name="data_augmentation")
  inputs = keras.Input((SIZE, SIZE, 3))
  x = keras.applications.mobilenet_v2.preprocess_input(augmentation(inputs))
  x = layers.GlobalAveragePooling2D()(_pretrained_base(out_dir)(x, training=False))
  outputs = layers.Dense(1, activation="sigmoid" if sigmoid else None)(layers.Dropout(0.2)(x))
  name = f"transfer_{'sigmoid' if sigmoid else 'logit'}"
  model = keras.Model(inputs, outputs, name=name)
  path = os.path.join(out_dir, f"{name}.keras")
  if not os.path.exists(path):  # Trained once (seeded): both structured rates prune it.
    loss = keras.losses.BinaryCrossentropy(from_logits=not sigmoid)
    flags = dict(dataset="folder", data_dir=root, image_size=f"{SIZE},{SIZE}", color_mode="rgb")
    _train(model, loss, flags, 15, 32).save(path)
  return FOLDER_FLAGS + [f"--data_dir={root}", f"--baseline_path={path}",
                         f"--structured_rate={structured_rate}", "--prune", "--pruning_rate=0.5"]


BUILDERS = {
    "cnn_logits": lambda d: cnn(d, False), "cnn_softmax": lambda d: cnn(d, True),
    "classification": lambda d: classification(d, False),
    "classification_softmax": lambda d: classification(d, True),
    "transfer_logit": lambda d: transfer(d, False),
    "transfer_sigmoid": lambda d: transfer(d, True),
    # 30% of a frozen-BatchNorm base's channels: measured to collapse (docs/your-model.md).
    "transfer_logit_s30": lambda d: transfer(d, False, 0.3),
    "transfer_sigmoid_s30": lambda d: transfer(d, True, 0.3),
}


def row(name: str, report: dict, code: int) -> str:
  b, p = report["baseline"], report["pruned"]
  bad = [e["name"] for e in report["exports"] if e["gate"] != "ok"]
  gates = f"{len(report['exports']) - len(bad)}/{len(report['exports'])} ok" + (
      f" (outside: {', '.join(bad)})" if bad else "")
  int8 = next((e for e in report["exports"] if e["name"] == "pruned_int8"), None)
  int8_text = (f"{100 * int8['test_accuracy']:.2f}%" if int8 else "-")
  return (f"| {name} | {b['head']['kind']} | {100 * b['test_accuracy']:.2f}% "
          f"| {100 * p['test_accuracy']:.2f}% ({100 * (p['test_accuracy'] - b['test_accuracy']):+.2f}) "
          f"| {100 * p['sparsity']:.1f}% | {p['macs'] / b['macs']:.2f}x | {int8_text} "
          f"| {gates} | {code} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out_dir", default="bench_out/tutorials", help="models, folders, runs")
  parser.add_argument("--only", default=",".join(BUILDERS), help="comma-separated: "
                      + ", ".join(BUILDERS))
  parser.add_argument("--summarize_only", action="store_true",
                      help="only print the table of the runs already in --out_dir")
  args = parser.parse_args()
  os.makedirs(args.out_dir, exist_ok=True)
  lines = ["| model (Keras 3) | head | baseline | pruned (points) | sparsity | MACs "
           "| pruned int8 file | gates | exit |", "|---|---|---|---|---|---|---|---|---|"]
  codes = {}
  for name in args.only.split(","):
    wd = os.path.join(args.out_dir, f"run_{name}")
    if not args.summarize_only:
      import keras  # pylint: disable=g-import-not-at-top
      keras.utils.set_random_seed(0)  # Each model built and trained from the same seed.
      flags = BUILDERS[name](args.out_dir)
      cmd = [sys.executable, "-m", "pipeline.run", *flags, f"--workdir={wd}", "--overwrite"]
      print("$", " ".join(cmd), file=sys.stderr, flush=True)
      proc = subprocess.run(cmd, cwd=REPO, check=False, stdout=subprocess.DEVNULL)
      codes[name] = proc.returncode
      with open(os.path.join(args.out_dir, f"exit_{name}.txt"), "w") as f:
        f.write(str(proc.returncode))
    if not os.path.exists(os.path.join(wd, "report.json")):
      sys.exit(f"error: {name}: the run wrote no report")
    if name not in codes:
      with open(os.path.join(args.out_dir, f"exit_{name}.txt")) as f:
        codes[name] = int(f.read())
    with open(os.path.join(wd, "report.json")) as f:
      lines.append(row(name, json.load(f), codes[name]))
  with open(os.path.join(wd, "report.json")) as f:
    cpu = json.load(f)["benchmark"].get("cpu_description", "?")
  print("\n".join(lines + ["", f"CPU: {cpu}."]))


if __name__ == "__main__":
  main()
