"""Model: build, load and train the baseline.

Defined here, read by pipeline/flags/__init__.py (`config_from_flags`) only.
"""

from absl import flags

from pipeline import config as config_lib

TITLE = 'Model: build, load and train the baseline'

MODEL = flags.DEFINE_enum("model", "small_cnn", config_lib.MODELS, "Architecture to build: "
                          "small_cnn, lenet5 (28x28 digits), or the edge backbones mobilenet_v2 "
                          "and mobilenet_v3_small (images of at least 32x32) with a new head, "
                          "or sparse_mobilenet (RGB, built for XNNPACK's sparse kernels and "
                          "--pruning_policy=xnnpack).")
BASELINE_PATH = flags.DEFINE_string("baseline_path", None, "A trained Keras classifier (.keras) "
                                    "to use as the baseline instead of training one: Keras 3 "
                                    "(`import keras`, TensorFlow >= 2.16) or tf_keras. It must "
                                    "take raw pixels (0..255) shaped like the data. A Keras 3 "
                                    "model is rebuilt in tf_keras for TF-MOT, checked on "
                                    "validation images, and the result written back as Keras 3 "
                                    "too.")
KERAS3_OUTPUT = flags.DEFINE_bool("keras3_output", False, "Also write the pruned model (the "
                                  "baseline when nothing is pruned) as a Keras 3 .keras file, "
                                  "checked against it; automatic when --baseline_path is a "
                                  "Keras 3 file.")
TRUST_MODEL = flags.DEFINE_bool("trust_model", False, "Also load --baseline_path files that can "
                                "run code when loaded: .h5, SavedModel, Lambda layers.")
ALPHA = flags.DEFINE_float("alpha", 1.0, "MobileNet width multiplier (0.35 for small devices).")
WEIGHTS = flags.DEFINE_string("weights", None, "A MobileNet backbone weights file without its "
                              "top (e.g. ImageNet's *_no_top.h5) to start from; the classifier "
                              "head is new. Default: random initialisation.")
EPOCHS = flags.DEFINE_integer("epochs", 10, "Baseline training epochs.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size for training and fine-tuning.")
LR = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate for the baseline.")
