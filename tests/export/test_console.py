"""Tests for export/console.py: stage lines, epoch bars, and what the quiet console hides."""

import io
import time
import logging as py_logging

from conftest import small_config
from export import console
from pipeline.models import architectures as models
from pipeline.models import train


def test_stage_line_has_name_time_and_summary():
  out = io.StringIO()
  con = console.Console(stream=out, bars=False)
  seconds = {}
  with con.stage("baseline", seconds) as info:
    time.sleep(0.05)
    info["summary"] = "kept epoch 3 of 3"
  assert out.getvalue().startswith("baseline ") and out.getvalue().endswith(
      " s  kept epoch 3 of 3\n")
  assert 0.05 <= seconds["baseline"] < 5 and con.current is None


def test_epoch_bar_counts_every_epoch_of_each_fit(mnist_small, tmp_path):
  out = io.StringIO()
  con = console.Console(stream=out, bars=True)
  bar = console.epoch_bar(con, "prune")
  model = models.build_model(small_config(), mnist_small.input_shape, 10)
  for run in range(2):  # One callback, two fits (as structured pruning's steps use it).
    train.fit(model, mnist_small, epochs=2, batch_size=128, learning_rate=1e-3, seed=0,
              log_dir=str(tmp_path / str(run)), verbose=0, callbacks=[bar])
  text = out.getvalue()
  assert text.count("2/2") >= 2 and "prune" in text and "val_accuracy=" in text


def test_no_bars_off_a_terminal(mnist_small, tmp_path):
  out = io.StringIO()  # Not a tty: bars off by default.
  con = console.Console(stream=out)
  model = models.build_model(small_config(), mnist_small.input_shape, 10)
  train.fit(model, mnist_small, epochs=1, batch_size=128, learning_rate=1e-3, seed=0,
            log_dir=str(tmp_path), verbose=0, callbacks=[console.epoch_bar(con, "baseline")])
  assert out.getvalue() == ""


def _record(name, level, msg):
  return py_logging.LogRecord(name, level, __file__, 0, msg, (), None)


def test_console_filter_drops_converter_noise_only():
  f = console._ConsoleFilter()  # pylint: disable=protected-access
  assert not f.filter(_record("tensorflow", py_logging.WARNING,
                              "Found untraced functions such as conv1"))
  assert f.filter(_record("tensorflow", py_logging.WARNING, "a real TensorFlow warning"))
  # The same words in an error, or from our own code, still show.
  assert f.filter(_record("tensorflow", py_logging.ERROR, "Found untraced functions"))
  assert f.filter(_record("absl", py_logging.WARNING, "Assets written to /tmp/x"))
