"""What a person sees while a run works: one line per stage with its time, progress bars on a
terminal, one `error:` line when something breaks. The detail goes to the run's log file.

absl's INFO log (ours and TensorFlow's: "Assets written to ...", "Found untraced functions",
converter statistics) is written to `log.txt` in the run directory; the console shows
warnings and errors only, unless `--verbosity` is given (`--verbosity=0` shows INFO again).
"""

import contextlib
import logging as py_logging
import os
import sys
import tempfile
import time
from typing import Optional

from absl import logging

# TensorFlow's converter and SavedModel writer log these at WARNING for every export; they are
# expected and say nothing about the user's model, so they go to the log file only.
_CONVERTER_NOISE = ("Found untraced functions", "Assets written to", "Sharding callback",
                    "Compiled the loaded model", "No training configuration found",
                    # Each stage predicts with new models (checks of surgery and stripping).
                    "triggered tf.function retracing")


# TF-MOT's expected warnings during clustering and quantization-aware training, from any
# logger (the report explains them): CQAT trains centroids, not kernels; it leaves unclustered
# layers and layers without zeros as they are.
_TFMOT_NOISE = ("Gradients do not exist for variables", "does not contain zero weights, so "
                "apply CQAT", "No clustering performed on layer", "Too many centroids")


class _ConsoleFilter(py_logging.Filter):

  def filter(self, record):
    if record.levelno >= py_logging.ERROR:
      return True
    message = record.getMessage()
    return not ((record.name.startswith("tensorflow") and
                 any(n in message for n in _CONVERTER_NOISE)) or
                any(n in message for n in _TFMOT_NOISE))


@contextlib.contextmanager
def native_output_to_log(what: str):
  """Sends what C++ code writes to stderr (file descriptor 2) during the block to the log.

  TensorFlow's converter and LiteRT print from C++ straight to the descriptor ("fully_quantize:
  0, ...", "Created TensorFlow Lite XNNPACK delegate", CUDA probes at import), where no Python
  log level reaches them. The text is logged at INFO afterwards, so it lands in the run's log
  file (and on the console with --verbosity).
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as tmp:
    os.dup2(tmp.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      tmp.seek(0)
      text = tmp.read().decode("utf-8", "replace").strip()
      if text:
        logging.info("Output of %s (native stderr):\n%s", what, text)


def quiet(detail: bool) -> None:
  """Console shows WARNING and up (less converter noise), unless `detail` (--verbosity given).

  absl's own logger stays at INFO so that the log file (`log_to`) receives everything.
  """
  handler = logging.get_absl_handler()
  py_logging.captureWarnings(True)  # Python warnings (the converter's) become log records.
  if not detail:
    handler.setLevel(py_logging.WARNING)
    handler.addFilter(_ConsoleFilter())
    handler.setFormatter(py_logging.Formatter("%(levelname)s: %(message)s"))
  logging.set_verbosity(min(logging.get_verbosity(), logging.INFO))
  py_logging.getLogger("tensorflow").setLevel(py_logging.INFO)


def log_to(path: str) -> py_logging.Handler:
  """Also writes every log record (INFO and up, TensorFlow's included) to `path`."""
  handler = py_logging.FileHandler(path, encoding="utf-8")
  handler.setLevel(py_logging.INFO)
  handler.setFormatter(py_logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
  py_logging.getLogger().addHandler(handler)
  return handler


@contextlib.contextmanager
def scoped_logging():
  """quiet(detail=False) for the block only: the Python API's run logs INFO to its log file
  and shows warnings, then leaves the process's logging as the caller had it."""
  handler, tf_logger = logging.get_absl_handler(), py_logging.getLogger("tensorflow")
  saved = (handler.level, list(handler.filters), handler.formatter, logging.get_verbosity(),
           tf_logger.level)
  noise = _ConsoleFilter()  # TensorFlow's logger has a handler of its own outside absl's app.
  try:
    quiet(detail=False)
    tf_logger.addFilter(noise)
    yield
  finally:
    tf_logger.removeFilter(noise)
    handler.setLevel(saved[0])
    handler.filters[:] = saved[1]
    handler.setFormatter(saved[2])
    logging.set_verbosity(saved[3])
    py_logging.getLogger("tensorflow").setLevel(saved[4])
    py_logging.captureWarnings(False)


class Console:
  """Stage lines and progress bars on a stream (stderr); bars only where it is a terminal, or
  always in a notebook (`notebook=True`: tqdm.auto's widgets where Jupyter has them)."""

  def __init__(self, stream=None, bars: Optional[bool] = None, enabled: bool = True,
               notebook: bool = False):
    self.stream = stream or sys.stderr
    self.notebook = notebook
    self.bars = (notebook or self.stream.isatty()) if bars is None else bars
    self.enabled = enabled
    self.current = None  # The stage running now, named in error lines.

  def line(self, text: str) -> None:
    if self.enabled:
      self.stream.write(text + "\n")
      self.stream.flush()

  @contextlib.contextmanager
  def stage(self, name: str, seconds: Optional[dict] = None):
    """Times a stage; yields a dict whose "summary" is printed after its name and time."""
    logging.info("== %s", name)
    self.current, info, t0 = name, {}, time.perf_counter()
    yield info
    elapsed = time.perf_counter() - t0
    if seconds is not None:
      seconds[name] = round(elapsed, 2)
    summary = info.get("summary", "")
    logging.info("%s: %.1f s. %s", name, elapsed, summary)
    self.line(f"{name:<11}{elapsed:7.1f} s  {summary}".rstrip())
    self.current = None

  def bar(self, total: int, desc: str, unit: str):
    """A tqdm bar on the terminal or in a notebook (nothing elsewhere); call .update(n) and
    .close()."""
    if self.notebook:
      from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
    else:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    return tqdm(total=total, desc=f"{desc:<11}", unit=unit, file=self.stream, leave=False,
                disable=not (self.enabled and self.bars), dynamic_ncols=True)

  def round_progress(self, desc: str, total: int):
    """A progress(done, total) callable for export.timing.measure, and the bar to close."""
    bar = self.bar(total, desc, "round")

    def progress(done, _):
      bar.update(done - bar.n)
    return progress, bar


def epoch_bar(console: Console, desc: str):
  """A tf_keras callback showing one bar per fit (epochs, loss, validation accuracy)."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top

  class EpochBar(keras.callbacks.Callback):

    def on_train_begin(self, logs=None):
      self.bar = console.bar(self.params.get("epochs") or 0, desc, "epoch")

    def on_epoch_end(self, epoch, logs=None):
      logs = logs or {}
      self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()
                            if k in ("loss", "accuracy", "val_accuracy")}, refresh=False)
      self.bar.update(1)

    def on_train_end(self, logs=None):
      self.bar.close()

  return EpochBar()
