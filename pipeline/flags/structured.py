"""Structured pruning: remove filters, channels, units and blocks for real.

Defined here, read by pipeline/flags/__init__.py (`config_from_flags`) only.
"""

import re

from absl import flags

from pipeline import config as config_lib

TITLE = 'Structured pruning: remove filters, channels, units and blocks for real'

S_RATE = flags.DEFINE_float("structured_rate", 0.0, "Fraction of filters/units removed for real "
                            "(a smaller dense model), 0 <= rate < 1; 0 turns it off.")
S_CRITERION = flags.DEFINE_enum(
    "structured_criterion", "l1", config_lib.STRUCTURED_CRITERIA,
    "Channel score: l1/l2 filter norm; apoz or mean_activation on calibration images; taylor "
    "(activation x gradient); bn_gamma (BatchNorm scale after the layer).")
S_SCOPE = flags.DEFINE_enum("structured_scope", "per_layer", config_lib.STRUCTURED_SCOPES,
                            "per_layer: the same fraction from every layer; global: one "
                            "threshold over normalised scores, so robust layers lose more.")
S_STEPS = flags.DEFINE_integer("structured_steps", 1, "Remove channels in this many steps, "
                               "fine-tuning between them.")
MIN_CHANNELS = flags.DEFINE_integer("min_channels", 4, "No layer keeps fewer channels.")
MULTIPLE = flags.DEFINE_integer(
    "channel_multiple", 8, "Round the channels each pruned layer keeps to the nearest multiple "
    "of this; layers this narrow or narrower stay whole. XNNPACK's float kernels work in SIMD "
    "tiles of channels (8 floats on AVX2, 16 on AVX-512, 4-8 on ARM64) and a partial tile costs "
    "about a full one. 1: off.")
S_SKIP = flags.DEFINE_string("structured_skip_layers", "", "Regex of layer names left whole "
                             "(the classifier always is).")
S_FOLD = flags.DEFINE_enum(
    "structured_fold", "auto", config_lib.STRUCTURED_FOLDS,
    "A removed channel after a BatchNorm leaves a constant; where it meets zero padding no bias "
    "holds it exactly. exact: leave such groups whole (the smaller model equals the masked one); "
    "approximate: remove them, fold the constant as in the image's interior and rely on "
    "fine-tuning (Torch-Pruning's way); auto: approximate when exact would leave most groups "
    "whole (trained MobileNets), else exact.")
BLOCKS = flags.DEFINE_integer(
    "remove_blocks", 0, "Remove this many whole blocks first, those whose removal raises the "
    "validation loss least: residual blocks with an identity skip (exact: the block becomes "
    "its input), or in Sequential models layers whose output has their input's shape; then "
    "fine-tune (--fine_tune_epochs).")
CALIBRATION = flags.DEFINE_integer("calibration_examples", 512, "Training images used by the "
                                   "activation-based criteria.")
