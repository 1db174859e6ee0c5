"""Prune a trained Keras image classifier and export smaller, faster .tflite files.

Two doors, one engine (pipeline/job.py): the CLI, `python -m pipeline.run` (pipeline/run.py),
and from Python or a notebook, `pipeline.prune(model, train_ds, validation_ds, ...)`
(pipeline/api.py). Importing the package changes nothing in the process: no TensorFlow import,
no environment variable (the CLI entry points set their own).
"""

from pipeline.api import prune  # noqa: F401  (TensorFlow loads when it is called)
