"""The ARM check: the emulated runtime's set-up errors, the report's ARM table, and (marked slow,
needing the emulator: `make arm`) a file that fails on arm64 XNNPACK reported as failing and a
sparse file that qualifies running XNNPACK's sparse path."""

import json
import os

import numpy as np
import pytest

from conftest import assert_message
from export import arm_check
from export import emulator
from export import litert
from export import tflite
from pipeline.report import sections
from pipeline.report.rows import ExportRow
from pipeline.stages import arm as arm_stage


def test_without_qemu_or_root_the_setup_is_one_line(monkeypatch, tmp_path):
  monkeypatch.setenv("PATH", str(tmp_path))  # No qemu-aarch64, no apt-get.
  with pytest.raises(emulator.Unavailable) as e:
    emulator.prepare(str(tmp_path / "arm"))
  assert_message(str(e.value), "ARM check unavailable:", "qemu-aarch64",
                 "apt-get install qemu-user")
  assert not (tmp_path / "arm").exists()


def test_a_folder_that_is_not_a_runtime_is_never_replaced(tmp_path):
  keep = tmp_path / "tools" / "keep.txt"
  keep.parent.mkdir()
  keep.write_text("mine")
  with pytest.raises(emulator.Unavailable) as e:
    emulator.prepare(str(keep.parent) + "/")
  assert_message(str(e.value), "ARM check unavailable:", str(keep.parent), "ready.json",
                 "empty folder")
  with pytest.raises(emulator.Unavailable, match="is a file, not a folder"):
    emulator.prepare(str(keep))
  assert keep.read_text() == "mine" and os.listdir(keep.parent) == ["keep.txt"]


def test_the_stage_says_why_it_skipped_and_the_run_goes_on(monkeypatch, tmp_path):
  monkeypatch.setenv("PATH", str(tmp_path))
  monkeypatch.setenv("PRUNE_ARM_DIR", str(tmp_path / "arm"))
  from export import console  # pylint: disable=g-import-not-at-top
  rows = [ExportRow(name="baseline_float32", path="x.tflite", model="baseline",
                    format="float32")]
  section = arm_stage.stage(rows, None, None, console.Console(enabled=False), {})
  assert section["skipped"].startswith("ARM check unavailable: qemu-aarch64 not found")
  assert rows[0].arm is None
  assert sections.arm_lines(section, [r.to_json() for r in rows]) == ["", f"--arm_check skipped: {section['skipped']}."]


def _arm(fmt, prepares=True, diff=1e-8, outside=None, speedup=None, error=""):
  return {"format": fmt, "prepares": prepares, "error": error, "max_abs_diff": diff,
          "outside": outside, "speedup": speedup, "emulated_ms": 10.0 if prepares else None}


def test_the_report_table_names_the_files_that_would_fail():
  speed = {"paired": 3.5, "p10": 3.4, "p90": 3.6, "best_round": 3.6, "p50": 3.5, "rounds": 5}
  rows = [
      {"name": "baseline_float32", "arm": _arm("float32")},
      {"name": "pruned_float32_sparse", "arm": _arm("float32", diff=2e-8, speedup=speed)},
      {"name": "pruned_int8_sparse", "arm": _arm(
          "int8", False, 3e-3, error="XNNPACK failed to prepare: failed to delegate")},
      {"name": "pruned_int8", "arm": _arm("int8", diff=0.8, speedup=speed,
                                          outside="top-1 class differs from x86's on 19 of 20 "
                                                  "images")}]
  text = "\n".join(sections.arm_lines({"runtime": emulator.LABEL, "examples": 20}, rows))
  assert "| baseline_float32 | float32 | yes | 1.0e-08 | 1.00x (reference) | 10.0 |" in text
  assert "| pruned_float32_sparse | float32 | yes | 2.0e-08 | 3.50x (3.40-3.60) | 10.0 |" in text
  assert ("| pruned_int8_sparse | int8 | **NO**: XNNPACK failed to prepare: failed to delegate | "
          "3.0e-03 | - (not run by XNNPACK) | - |") in text
  assert "Would not run with XNNPACK on a phone: pruned_int8_sparse (LiteRT" in text
  assert "Outputs differ from x86's: pruned_int8." in text


def test_a_reference_that_xnnpack_does_not_run_leaves_no_speed_ups():
  rows = [{"name": "baseline_float32", "arm": _arm("float32", False, error="failed")},
          {"name": "pruned_float32", "arm": _arm("float32")}]
  text = "\n".join(sections.arm_lines({"runtime": emulator.LABEL, "examples": 20}, rows))
  assert ("| baseline_float32 | float32 | **NO**: failed | 1.0e-08 | - (not run by XNNPACK) "
          "|") in text
  assert ("| pruned_float32 | float32 | yes | 1.0e-08 | - (the reference did not run with "
          "XNNPACK) | 10.0 |") in text


def test_outputs_are_judged_against_x86_per_image():
  same = np.array([True] * 19 + [False])
  assert arm_check.outside("int8", np.ones(20, bool), 4e-3) is None
  assert arm_check.outside("int8", same, 4e-3) == ("top-1 class differs from x86's on 1 of 20 "
                                                   "images")
  assert arm_check.outside("float32", np.ones(20, bool), 2e-4) == (
      "outputs differ from x86's by up to 2.0e-04 (float32 bound 0.0001)")
  assert arm_check.outside("float16", np.ones(20, bool), 2e-4) is None


def test_a_files_format_is_read_off_the_file_not_its_name(tmp_path):
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3),
                            keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
  rep = np.random.default_rng(0).uniform(0, 255, (8, 8, 8, 1)).astype(np.float32)
  for fmt, name in (("float32", "a_int8"), ("float16", "b_float32"),
                    ("dynamic_int8", "c_float16"), ("int8", "d_float32")):
    (tmp_path / f"{name}.tflite").write_bytes(tflite.convert(model, fmt, representative=rep))
    assert arm_check.file_format(str(tmp_path / f"{name}.tflite")) == fmt


# --- With the emulator (slow; `make arm` sets it up). -------------------------------------


@pytest.fixture(scope="module")
def runtime():
  try:
    return emulator.prepare()
  except emulator.Unavailable as e:
    pytest.skip(str(e))


def _mobilenets(tmp_path, size=32):
  """sparse_mobilenet with BatchNorm statistics from one epoch, 90% of each 1x1 kernel zeroed,
  as dense and sparse-encoded float32 files; and the same network ending as TF-MOT's
  PruneForLatencyOnXNNPack docs show (GlobalAveragePooling keepdims, a 1x1 conv, Flatten)."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from pipeline.models import architectures as models  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = models.sparse_mobilenet((size, size, 3), 10)
  x = np.random.default_rng(0).uniform(0, 255, (64, size, size, 3)).astype(np.float32)
  model.compile("sgd", "sparse_categorical_crossentropy")
  model.fit(x, np.zeros(64), epochs=1, verbose=0)
  head = keras.layers.Conv2D(10, 1, name="head")(model.get_layer("pool").output)
  conv_head = keras.Model(model.input, keras.layers.Softmax()(keras.layers.Flatten()(head)))
  files = {"dense": tflite.convert(model, "float32")}
  for layer in model.layers:
    if type(layer).__name__ == "Conv2D" and layer.kernel_size == (1, 1):
      w = layer.get_weights()
      w[0][np.abs(w[0]) < np.quantile(np.abs(w[0]), 0.9)] = 0
      layer.set_weights(w)
  files["sparse90"] = tflite.convert(model, "float32", sparse=True)
  files["conv_head_sparse90"] = tflite.convert(conv_head, "float32", sparse=True)
  paths = {}
  for name, content in files.items():
    paths[name] = str(tmp_path / f"{name}.tflite")
    with open(paths[name], "wb") as f:
      f.write(content)
  return paths, x[:8]


@pytest.mark.slow
@pytest.mark.emulator
def test_on_arm_a_sparse_file_fails_or_runs_the_sparse_path(runtime, tmp_path):
  paths, x = _mobilenets(tmp_path)
  # On x86 every file runs with XNNPACK (its sparse path is off with AVX).
  assert all(litert.open_model(p).delegate == "xnnpack" for p in paths.values())
  assert litert.predict(litert.open_model(paths["conv_head_sparse90"]), x[:1], 1).shape == (1, 10)
  got = {r.name: r for r in arm_check.check(paths, x, runtime, "dense", runs=10, rounds=5,
                                            warmup_runs=1)}
  bad = got["conv_head_sparse90"]
  assert not bad.prepares and "failed to prepare" in bad.error and bad.speedup is None
  good = got["sparse90"]
  assert good.prepares and good.outside is None and good.max_abs_diff < 1e-4
  assert good.speedup.paired > 1.5, good.speedup
  text = arm_check.to_markdown(list(got.values()), "dense")
  assert "Would not run with XNNPACK on a phone: conv_head_sparse90 (LiteRT" in text


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.e2e
def test_the_cli_runs_files_on_arm(runtime, tmp_path):
  del runtime
  from conftest import run_cli  # pylint: disable=g-import-not-at-top
  paths, _ = _mobilenets(tmp_path)
  p = run_cli([paths["dense"], paths["sparse90"], "--examples=4", "--runs=10", "--rounds=5",
               f"--json={tmp_path / 'arm.json'}"], str(tmp_path), module="export.arm")
  assert p.returncode == 0, p.stderr[-2000:]
  assert "| sparse90 | float32 | yes |" in p.stdout
  saved = json.loads((tmp_path / "arm.json").read_text())  # What the table shows, as data.
  rows = {r["name"]: r for r in saved["results"]}
  assert saved["reference"] == "dense" and rows["sparse90"]["prepares"] is True
