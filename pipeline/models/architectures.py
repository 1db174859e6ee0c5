"""Model stage: build a tf_keras classifier by name. Every model takes raw pixels (0..255) and
scales them itself (a Rescaling layer), so its .tflite file takes what a camera gives."""

import os

from pipeline.config import Config, FlagError

import tf_keras as keras  # pylint: disable=g-bad-import-order  (after pipeline sets TF_USE_LEGACY_KERAS)


def small_cnn(input_shape, num_classes: int, widths=(32, 64, 128)) -> keras.Model:
  """conv32-conv64-dense128 with max pooling and dropout (about 225k parameters on 28x28).

  `widths` gives conv1's and conv2's filters and dense1's units (benchmarks vary them).
  """
  conv1, conv2, dense1 = widths
  return keras.Sequential([
      keras.layers.InputLayer(input_shape=input_shape),
      keras.layers.Rescaling(1 / 255, name="rescale"),
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
      keras.layers.Rescaling(1 / 255, name="rescale"),
      keras.layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1"),
      keras.layers.AveragePooling2D(name="pool1"),
      keras.layers.Conv2D(16, 5, activation="relu", name="conv2"),
      keras.layers.AveragePooling2D(name="pool2"),
      keras.layers.Flatten(name="flatten"),
      keras.layers.Dense(120, activation="relu", name="dense1"),
      keras.layers.Dense(84, activation="relu", name="dense2"),
      keras.layers.Dense(num_classes, activation="softmax", name="classifier"),
  ], name="lenet5")


MOBILENET_MIN_SIZE = 32
BATCHNORM_MOMENTUM = 0.9


def _mobilenet(application, input_shape, num_classes: int, alpha: float, weights, **kwargs):
  """A keras.applications backbone (no top) between a Rescaling to [-1, 1], the range these
  backbones were trained on, and a new head: average pooling, dropout, a softmax Dense.

  The backbone is built on the Rescaling's output (input_tensor), so the model is one flat
  graph that the structured surgery can read, not a model nested in a model.
  """
  inputs = keras.Input(shape=input_shape, name="image")
  x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
  backbone = application(input_tensor=x, alpha=alpha, include_top=False, weights=weights,
                         **kwargs)
  y = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
  y = keras.layers.Dropout(0.2, name="head_dropout")(y)
  y = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(y)
  # keras.applications sets BatchNorm momentum 0.999, made for ImageNet's millions of steps.
  # On a user's folder (a few hundred steps, weights moving fast) the moving statistics lag
  # the weights (docs/data-and-models.md, "BatchNorm momentum", has the measurement). 0.9
  # (PyTorch's default, momentum 0.1 there) follows the last ~10 steps.
  for layer in backbone.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.momentum = BATCHNORM_MOMENTUM
  return keras.Model(inputs, y, name=f"{application.__name__.lower()}_{alpha:g}")


def mobilenet_v2(input_shape, num_classes: int, alpha: float = 1.0, weights=None):
  """MobileNetV2 (Sandler et al. 2018); about 0.4M parameters at alpha 0.35 with 10 classes."""
  return _mobilenet(keras.applications.MobileNetV2, input_shape, num_classes, alpha, weights)


def mobilenet_v3_small(input_shape, num_classes: int, alpha: float = 1.0, weights=None):
  """MobileNetV3-Small (Howard et al. 2019), its own preprocessing replaced by ours."""
  return _mobilenet(keras.applications.MobileNetV3Small, input_shape, num_classes, alpha,
                    weights, include_preprocessing=False)


def sparse_mobilenet(input_shape, num_classes: int, alpha: float = 1.0) -> keras.Model:
  """A MobileNet-style float model that TF-MOT's PruneForLatencyOnXNNPack accepts, so its 1x1
  convolutions can be pruned for XNNPACK's sparse kernels (Elsen et al., "Fast Sparse
  ConvNets"): ZeroPadding2D(1) and a 3x3 stride-2 VALID convolution on the RGB input, then
  depthwise 3x3 + 1x1 blocks (stride 2 through ZeroPadding2D and VALID), BatchNorm and ReLU,
  and GlobalAveragePooling2D(keepdims=True) before a Dense head. Widths 32-64-128-128-256-256
  times `alpha`, multiples of 8."""
  def width(c):
    return max(8, int(round(c * alpha / 8)) * 8)
  layers = keras.layers
  inp = keras.Input(input_shape)
  x = layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inp)
  x = layers.ZeroPadding2D(1, name="stem_pad")(x)
  x = layers.Conv2D(width(32), 3, strides=2, padding="valid", use_bias=False, name="stem")(x)
  x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
  for i, (c, stride) in enumerate([(64, 1), (128, 2), (128, 1), (256, 2), (256, 1)], 1):
    if stride == 2:
      x = layers.ZeroPadding2D(1, name=f"block{i}_pad")(x)
    x = layers.DepthwiseConv2D(3, strides=stride, padding="valid" if stride == 2 else "same",
                               use_bias=False, name=f"block{i}_dw")(x)
    x = layers.ReLU(name=f"block{i}_dw_relu")(layers.BatchNormalization(name=f"block{i}_dw_bn")(x))
    x = layers.Conv2D(width(c), 1, use_bias=False, name=f"block{i}_pw")(x)
    x = layers.ReLU(name=f"block{i}_pw_relu")(layers.BatchNormalization(name=f"block{i}_pw_bn")(x))
  x = layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
  x = layers.Flatten(name="flatten")(x)
  out = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
  model = keras.Model(inp, out, name="sparse_mobilenet")
  for layer in model.layers:  # As for the MobileNets above: small data sets, few steps.
    if isinstance(layer, layers.BatchNormalization):
      layer.momentum = BATCHNORM_MOMENTUM
  return model


BUILDERS = {"small_cnn": small_cnn, "lenet5": lenet5, "mobilenet_v2": mobilenet_v2,
            "mobilenet_v3_small": mobilenet_v3_small, "sparse_mobilenet": sparse_mobilenet}


def build_model(cfg: Config, input_shape, num_classes: int) -> keras.Model:
  """A fresh model named by `cfg.model` (MobileNets: `cfg.alpha`, backbone from `cfg.weights`).

  Raises:
    ValueError: unknown model, images too small or a weights file that does not fit (one line
      naming the flag).
  """
  if cfg.model not in BUILDERS:
    raise FlagError("model", cfg.model, f"unknown; valid: {', '.join(BUILDERS)}")
  keras.utils.set_random_seed(cfg.seed)
  shape = "x".join(map(str, input_shape))
  if cfg.model == "sparse_mobilenet":
    if input_shape[-1] != 3 or min(input_shape[:2]) < MOBILENET_MIN_SIZE:
      fix = " and ".join(f for f, bad in (("--color_mode=rgb", input_shape[-1] != 3), (
          "--image_size", min(input_shape[:2]) < MOBILENET_MIN_SIZE)) if bad)
      raise FlagError("model", "sparse_mobilenet", f"needs RGB images of at least "
                      f"{MOBILENET_MIN_SIZE}x{MOBILENET_MIN_SIZE}, the data's are {shape}; "
                      f"set {fix}")
    if cfg.weights:
      raise FlagError("weights", cfg.weights, "sparse_mobilenet has no pretrained weights")
    return sparse_mobilenet(input_shape, num_classes, cfg.alpha)
  if not cfg.model.startswith("mobilenet"):
    if cfg.weights:
      raise FlagError("weights", cfg.weights, f"only the MobileNet backbones load weights; "
                      f"use --baseline_path for a whole trained {cfg.model}")
    return BUILDERS[cfg.model](input_shape, num_classes)
  if min(input_shape[:2]) < MOBILENET_MIN_SIZE:
    raise FlagError("model", cfg.model, f"needs images of at least {MOBILENET_MIN_SIZE}x"
                    f"{MOBILENET_MIN_SIZE}, the data's are {shape}; set --image_size")
  if cfg.weights:
    if not os.path.isfile(cfg.weights):
      raise FlagError("weights", cfg.weights, "no such file")
    if input_shape[-1] != 3:
      raise FlagError("weights", cfg.weights, f"pretrained backbones take RGB images, the "
                      f"data's are {shape}; set --color_mode=rgb")
  try:
    return BUILDERS[cfg.model](input_shape, num_classes, alpha=cfg.alpha, weights=cfg.weights)
  except (ValueError, OSError) as e:
    reason = " ".join(str(e).split())[:200]
    what = (f"--weights={cfg.weights}: does not fit {cfg.model} with --alpha={cfg.alpha:g} "
            "and no top" if cfg.weights else f"--model={cfg.model} --alpha={cfg.alpha:g}")
    raise ValueError(f"{what} ({reason})") from None
