"""The Python door, for a notebook that holds a trained Keras model and tf.data datasets:

    result = pipeline.prune(model, train_ds, validation_ds, pruning_rate=0.8)
    result.model        # the pruned model, in the Keras it was given (Keras 3 stays Keras 3)
    result.tflite       # {"pruned_int8": ".../tflite/pruned_int8.tflite", ...}
    result.ship         # which file to ship on this CPU, and why

Options are the CLI's flag names (`python -m pipeline.run --help`), checked by the same rules
(pipeline/rules.py); the call builds the same Config and runs the same stages
(pipeline/job.py) into the same kind of run directory as the CLI. Nothing here parses absl
flags, and the user's `tf.keras` keeps meaning what it meant (`_legacy_keras_loaded`).
"""

import contextlib
import dataclasses
import difflib
import hashlib
import os
import sys
import tempfile
from typing import Dict, Optional

from pipeline import config as config_lib
from pipeline import rules

# Fields the call sets from its own arguments, or that belong to the CLI's way of finding a
# model and data; an option naming one is refused with the reason.
_NOT_OPTIONS = {
    "dataset": "the data are train_ds, validation_ds and test_ds",
    "data_dir": "the data are train_ds, validation_ds and test_ds",
    "image_size": "the images are used as given (resize them in the datasets)",
    "color_mode": "the images are used as given",
    "validation_split": "validation_ds is the validation split",
    "max_train_examples": "train_ds is used whole (take fewer with train_ds.take(n))",
    "model": "the model is the first argument",
    "baseline_path": "the model is the first argument",
    "trust_model": "the model is an object, not a file",
    "alpha": "the model is the first argument",
    "weights": "the model is the first argument",
    "epochs": "the model comes trained (these train a built-in baseline)",
    "learning_rate": "the model comes trained (these train a built-in baseline)",
    "workdir": "pass workdir= (default: a new temporary directory)",
}


@dataclasses.dataclass(frozen=True)
class Result:
  """What pipeline.prune returns.

  Attributes:
    model: the pruned model in the Keras the call was given: a Keras 3 model (from the run's
      checked pruned_keras3.keras) for a Keras 3 one, a tf_keras model for a tf_keras one.
      The baseline itself when nothing was pruned.
    tflite: {file name: path} of every exported .tflite file.
    report: the run's report.json content.
    ship: "Which file to ship" on this CPU: {"fastest": name or None, "smallest": name or
      None, "lines": the report's text}.
    workdir: the run directory (report.md, log.txt, TensorBoard logs, the .keras files).
  """
  model: object
  tflite: Dict[str, str]
  report: dict
  ship: dict
  workdir: str

  def __repr__(self):
    return (f"Result(workdir={self.workdir!r}, tflite={sorted(self.tflite)}, "
            f"ship={ {k: v for k, v in self.ship.items() if k != 'lines'} })")


def config_from_options(options: dict, workdir: str) -> config_lib.Config:
  """The Config for `options` (the CLI's flag names as keywords), checked by the CLI's rules.

  Raises:
    TypeError: an option that is no flag, or one the call sets itself (named, with why).
    ValueError: a value its flag would refuse, or options that do not go together.
  """
  fields = {f.name: f for f in dataclasses.fields(config_lib.Config)}
  values = {}
  for name, value in options.items():
    if name in _NOT_OPTIONS:
      raise TypeError(f"pipeline.prune: option {name} is not taken here: {_NOT_OPTIONS[name]}")
    if name not in fields:
      near = difflib.get_close_matches(name, list(fields), 1)
      hint = f"; did you mean {near[0]}?" if near else ""
      raise TypeError(f"pipeline.prune: unknown option {name}{hint} (options are the CLI's "
                      "flag names: python -m pipeline.run --help)")
    values[name] = _typed(name, value, fields[name].default)
  cfg = config_lib.Config(**dict(values, workdir=workdir, dataset="python"))
  try:
    rules.check_values(cfg)
    rules.check(cfg)
  except config_lib.FlagError as e:
    raise ValueError(f"pipeline.prune: {e.flag}={e.value}: {e.why}") from None
  return cfg


def _typed(name: str, value, default):
  """`value` as the field's type (an int for a float field, a list or 'a,b' for a tuple)."""
  if isinstance(default, tuple):
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(str(v).strip() for v in items))
  kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}
  want = type(default) if default is not None else None
  ok = (value is None or want is None or
        (isinstance(value, kinds.get(want, (want,))) and
         (want is bool or not isinstance(value, bool))))
  if not ok:
    raise ValueError(f"pipeline.prune: {name}={value!r}: must be of type {want.__name__}")
  return float(value) if want is float and value is not None else value


@contextlib.contextmanager
def _legacy_keras_loaded():
  """Loads tf_keras and TF-MOT for the pipeline without changing what the user's `tf.keras`
  means: TF-MOT sets TF_USE_LEGACY_KERAS=1 when imported, which makes a `tf.keras` not yet
  touched resolve to tf_keras for good. So `tf.keras` is resolved first, under the user's own
  setting, and the variable is put back afterwards."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _ = tf.keras.Model  # Resolved now, as the user's environment says.
  saved = os.environ.get("TF_USE_LEGACY_KERAS")
  try:
    import tensorflow_model_optimization  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    yield
  finally:
    if saved is None:
      os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
      os.environ["TF_USE_LEGACY_KERAS"] = saved


def _options_text(cfg: config_lib.Config, model_digest: str, data_digest: str) -> str:
  """What identifies a call, as the CLI's flags text does: the same call resumes a run cut
  off in its workdir, any other is refused there."""
  lines = [f"--{k}={v}" for k, v in sorted(dataclasses.asdict(cfg).items())
           if k not in config_lib.RESUME_MAY_DIFFER]
  # Written as flags, so that export/workdir.py compares them as such.
  return "\n".join(lines + [f"--model_sha256={model_digest}",
                            f"--data_sha256={data_digest}"]) + "\n"


def _digest(model) -> str:
  h = hashlib.sha256()
  for w in model.get_weights():
    h.update(w.tobytes())
  return h.hexdigest()[:16]


def prune(model, train_ds, validation_ds, *, test_ds=None, workdir: Optional[str] = None,
          **options) -> Result:
  """Prunes a trained Keras classifier, exports .tflite files and reports what changed.

  Args:
    model: a trained classifier, Keras 3 (`import keras`) or tf_keras, ending in a softmax, raw
      logits or one unit (sigmoid or logit); it takes raw pixels (0..255) and scales them
      itself. Left untouched.
    train_ds, validation_ds: tf.data datasets of (images, labels) as
      `image_dataset_from_directory` returns them (integer, one-hot or binary labels), or
      (images, labels) numpy arrays. validation_ds chooses each fit's best epoch.
    test_ds: the same, scored for the report; default: validation_ds (the report says so).
    workdir: the run directory; default: a new temporary directory (kept, named in the result).
    **options: the CLI's flags by name (pruning_rate=0.8, structured_rate=0.3,
      fine_tune_epochs=4, distill=True, export_formats="float32,int8", ...); with none,
      nothing is pruned. prune=True is implied by pruning_rate, as `train.py --pruning_rate`
      does.

  Returns:
    A Result: .model, .tflite, .report, .ship, .workdir.

  Raises:
    TypeError: an unknown option, or one the call sets itself.
    ValueError: a bad option value or combination, or data or a model this tool cannot use
      (one line naming it).
    RuntimeError: a stage failed (the message names it and the log with its traceback).
  """
  if "pruning_rate" in options and "prune" not in options:
    options = dict(options, prune=True)
  cfg = config_from_options(options, workdir or "")
  with _legacy_keras_loaded():
    # pylint: disable=g-import-not-at-top  (TensorFlow, tf_keras and TF-MOT load here)
    from export import console as console_lib
    from pipeline import job
    from pipeline.data import objects
  con = console_lib.Console(stream=sys.stdout, notebook=True)
  with console_lib.scoped_logging():
    with con.stage("data") as info:
      data = objects.from_objects(train_ds, validation_ds, test_ds)
      copy = _copy(model)
      prep = job.preflight(cfg, check_workdir=bool(workdir), data=data, model=copy,
                           model_name="model")
      info["summary"] = job.describe_data(data)
    if not workdir:  # Made only once everything was checked: bad input leaves nothing behind.
      cfg = dataclasses.replace(cfg, workdir=os.path.join(tempfile.mkdtemp(prefix="prune-"),
                                                          "run"))
    text = _options_text(cfg, _digest(copy), objects.fingerprint(data))
    try:
      report = job.run_job(cfg, prep, text, con)
    except job.StageError as e:
      raise RuntimeError(str(e)) from None
  return _result(report, cfg, model)


def _copy(model):
  """A copy of a tf_keras model (the pipeline trains its copies; the user's stays as it was);
  a Keras 3 model is copied by its translation."""
  from pipeline.models import flatten as flatten_lib  # pylint: disable=g-import-not-at-top
  from pipeline.models import keras3 as keras3_lib  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  if isinstance(model, tf_keras.Model) and not keras3_lib.is_keras3_model(model):
    return flatten_lib.clone_with_weights(model)
  return model


def _result(report: dict, cfg: config_lib.Config, given) -> Result:
  """The Result of a finished run in cfg.workdir."""
  # pylint: disable=g-import-not-at-top
  from pipeline.models import keras3 as keras3_lib
  from pipeline.report import sections
  from pipeline.stages import progress as progress_lib
  wd = cfg.workdir
  name = "pruned" if report["pruned"] is not None else "baseline"
  if keras3_lib.is_keras3_model(given):
    import keras  # pylint: disable=g-import-not-at-top
    model = keras.saving.load_model(os.path.join(wd, report["keras3"]["path"]), safe_mode=True)
  else:
    model = progress_lib.load_model(os.path.join(wd, f"{name}.keras"))
  fastest, smallest = sections.ship_choice(report)
  ship = {"fastest": fastest, "smallest": smallest,
          "lines": [l for l in sections.ship_lines(report) if l]}
  tflite = {e["name"]: os.path.join(wd, e["path"]) for e in report["exports"]}
  return Result(model, tflite, report, ship, wd)

