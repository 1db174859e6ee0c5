"""Model stage: build a tf_keras CNN by name, or load an already trained baseline."""

import os

from pipeline.config import Config

import tf_keras as keras  # pylint: disable=g-bad-import-order  (after pipeline sets TF_USE_LEGACY_KERAS)


def small_cnn(input_shape, num_classes: int, widths=(32, 64, 128)) -> keras.Model:
  """conv32-conv64-dense128 with max pooling and dropout (about 225k parameters on 28x28).

  `widths` gives conv1's and conv2's filters and dense1's units (benchmarks vary them).
  """
  conv1, conv2, dense1 = widths
  return keras.Sequential([
      keras.layers.InputLayer(input_shape=input_shape),
      keras.layers.Conv2D(conv1, 3, activation="relu", name="conv1"),
      keras.layers.MaxPooling2D(name="pool1"),
      keras.layers.Conv2D(conv2, 3, activation="relu", name="conv2"),
      keras.layers.MaxPooling2D(name="pool2"),
      keras.layers.Flatten(name="flatten"),
      keras.layers.Dropout(0.25, name="dropout1"),
      keras.layers.Dense(dense1, activation="relu", name="dense1"),
      keras.layers.Dropout(0.5, name="dropout2"),
      keras.layers.Dense(num_classes, activation="softmax", name="classifier"),
  ], name="small_cnn")


def lenet5(input_shape, num_classes: int) -> keras.Model:
  """LeCun et al. 1998 with ReLU and average pooling (about 62k parameters on 28x28)."""
  return keras.Sequential([
      keras.layers.InputLayer(input_shape=input_shape),
      keras.layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1"),
      keras.layers.AveragePooling2D(name="pool1"),
      keras.layers.Conv2D(16, 5, activation="relu", name="conv2"),
      keras.layers.AveragePooling2D(name="pool2"),
      keras.layers.Flatten(name="flatten"),
      keras.layers.Dense(120, activation="relu", name="dense1"),
      keras.layers.Dense(84, activation="relu", name="dense2"),
      keras.layers.Dense(num_classes, activation="softmax", name="classifier"),
  ], name="lenet5")


BUILDERS = {"small_cnn": small_cnn, "lenet5": lenet5}


def build_model(cfg: Config, input_shape, num_classes: int) -> keras.Model:
  """A fresh, untrained model named by `cfg.model`.

  Raises:
    ValueError: `cfg.model` is not one of BUILDERS.
  """
  if cfg.model not in BUILDERS:
    raise ValueError(f"--model={cfg.model}: unknown; valid: {', '.join(BUILDERS)}")
  keras.utils.set_random_seed(cfg.seed)
  return BUILDERS[cfg.model](input_shape, num_classes)


def load_baseline(path: str, input_shape=None, num_classes=None) -> keras.Model:
  """Loads a trained Keras model (.keras, .h5 or SavedModel directory) to use as the baseline.

  Args:
    path: the file or directory given as --baseline_path.
    input_shape: if given, the model's input must have this shape (batch axis excluded).
    num_classes: if given, the model must output this many classes.

  Raises:
    ValueError: the path is missing, is not a Keras model, or does not fit the data.
  """
  if not os.path.exists(path):
    raise ValueError(f"--baseline_path={path}: no such file or directory")
  try:
    model = keras.models.load_model(path, compile=False)
  except Exception as e:  # pylint: disable=broad-except  (any loader failure means "not a model")
    reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
    raise ValueError(f"--baseline_path={path}: not a Keras model ({reason})") from None
  if not isinstance(model, keras.Model):
    raise ValueError(f"--baseline_path={path}: not a Keras model (loaded {type(model).__name__})")
  if input_shape is not None and tuple(model.input_shape[1:]) != tuple(input_shape):
    raise ValueError(f"--baseline_path={path}: model input {tuple(model.input_shape[1:])} does not "
                     f"match the data's {tuple(input_shape)}")
  if num_classes is not None and model.output_shape[-1] != num_classes:
    raise ValueError(f"--baseline_path={path}: model outputs {model.output_shape[-1]} classes, "
                     f"the data has {num_classes}")
  return model
