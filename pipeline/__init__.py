"""Train, prune and export a Keras image classifier; see pipeline/run.py for the entry point."""

import os

# TF-MOT works only with Keras 2 (tf_keras). This must be set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
