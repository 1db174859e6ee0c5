"""Tests for export/benchmark.py: the CLI on files this project did not write, and bad input."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import REPO, assert_message, run_cli
from export import cpu


@pytest.fixture(scope="module")
def foreign_files(tmp_path_factory):
  """Two .tflite files made here from a plain tf_keras model, not by the pipeline."""
  d = tmp_path_factory.mktemp("foreign")
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.layers.InputLayer(input_shape=(16,)),
                            keras.layers.Dense(64, activation="relu"), keras.layers.Dense(4)])
  conv = tf.lite.TFLiteConverter.from_keras_model(model)
  (d / "float.tflite").write_bytes(conv.convert())
  conv.optimizations = [tf.lite.Optimize.DEFAULT]
  conv.representative_dataset = lambda: ([np.ones((1, 16), np.float32) * i / 10] for i in range(10))
  (d / "int8.tflite").write_bytes(conv.convert())
  return d


def test_cli_times_foreign_files_and_writes_json(foreign_files):
  out = foreign_files / "out.json"
  proc = run_cli([str(foreign_files / "float.tflite"), str(foreign_files / "int8.tflite"),
                  "--threads=1,2", "--delegates=xnnpack,builtin", "--runs=40", "--warmup_runs=2",
                  "--rounds=4", f"--json={out}"], cwd=REPO, module="export.benchmark")
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = [l for l in proc.stdout.splitlines()
          if l.startswith(("| float |", "| int8 |")) and ("| xnnpack |" in l or "| builtin |" in l)]
  assert len(rows) == 8  # 2 files x 2 delegates x 2 thread counts.
  result = json.loads(out.read_text())
  assert result["reference"] == "float"
  assert {(r["name"], r["delegate"], r["threads"]) for r in result["results"]} == {
      (n, d, t) for n in ("float", "int8") for d in ("xnnpack", "builtin") for t in (1, 2)}
  for r in result["results"]:
    assert r["runs"] == 40 and len(r["round_medians_ms"]) == 4 and r["bytes"] > 0
    ref = next(x for x in result["results"] if x["name"] == "float" and
               (x["delegate_requested"], x["threads"]) == (r["delegate_requested"], r["threads"]))
    ratios = np.array(ref["round_medians_ms"]) / np.array(r["round_medians_ms"])
    assert r["speedup"]["paired"] == pytest.approx(float(np.median(ratios)))
  assert result["work"]["float"]["macs"] == 16 * 64 + 64 * 4  # Read from the file's graph.
  machine = cpu.read()
  assert proc.stdout.startswith(f"CPU: {machine.describe()}\n")
  assert result["cpu_description"] == machine.describe()
  blocked = "no: this CPU has AVX;" if machine.has("AVX") else "no: "
  assert f"| float | 1,280 | 1.00x | 1,280 | {blocked}" in proc.stdout


@pytest.mark.parametrize("args,expected", [
    ([], ("error:", "no .tflite file", "python -m export.benchmark")),
    (["missing.tflite"], ("error: missing.tflite:", "no such file")),
    (["--delegates=gpu", "x.tflite"], ("error: flag --delegates=['gpu']:", "xnnpack, builtin")),
    (["--threads=0", "x.tflite"], ("error: flag --threads=['0']:", "positive integers")),
])
def test_cli_bad_input_one_line(tmp_path, args, expected):
  proc = run_cli(args, cwd=tmp_path, module="export.benchmark")
  assert proc.returncode == 2
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert_message("\n".join(errors), *expected)
  assert "Traceback" not in proc.stderr


def test_cli_rejects_a_file_that_is_not_a_model(tmp_path):
  (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
  proc = run_cli([str(tmp_path / "junk.tflite")], cwd=tmp_path, module="export.benchmark")
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith(f"error: {tmp_path}/junk.tflite: not a ")
