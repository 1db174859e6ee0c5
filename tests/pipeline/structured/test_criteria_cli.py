"""Every --structured_criterion through the real CLI on the built-in models, trained and saved
as .keras files the way users bring them (--baseline_path)."""

import json

import pytest
import tf_keras as keras

from conftest import REPO, assert_message, run_cli, small_config
from pipeline.models import architectures as models
from pipeline.models import train

ARGS = ["--structured_rate=0.5", "--max_train_examples=300", "--fine_tune_epochs=1",
        "--export_formats=float32", "--benchmark_runs=5", "--benchmark_warmup_runs=1"]
# The activation-based criteria (apoz, mean_activation, taylor) probe intermediate outputs:
# the ones that broke on Sequential models. l1/l2 read only kernels. Every criterion on every
# built-in model, reloaded from .keras, is scored in-process by test_structured.py; here each
# criterion runs once through the CLI (a process each, so the suite stays short).
# Through the CLI: one criterion read from the weights and one from activations and gradients,
# on both built-in CNNs; every criterion on every built-in model is scored in-process
# (test_structured_prune.py).
CASES = [("small_cnn", "taylor"), ("lenet5", "l1")]


@pytest.fixture(scope="module")
def saved(trained_cnn, mnist_small, tmp_path_factory):
  """{model name: path of a trained .keras file}."""
  d = tmp_path_factory.mktemp("saved")
  cfg = small_config(model="lenet5", epochs=1)
  lenet = models.build_model(cfg, mnist_small.input_shape, 10)
  train.train_baseline(lenet, mnist_small, cfg, str(d))
  paths = {"small_cnn": d / "small_cnn.keras", "lenet5": d / "lenet5.keras"}
  trained_cnn.save(paths["small_cnn"])
  lenet.save(paths["lenet5"])
  return paths


@pytest.mark.e2e
@pytest.mark.parametrize("model,criterion", CASES, ids=[f"{m}-{c}" for m, c in CASES])
def test_criterion_removes_channels_through_the_cli(saved, model, criterion, tmp_path):
  wd = tmp_path / "run"
  proc = run_cli([f"--baseline_path={saved[model]}", f"--model={model}",
                  f"--structured_criterion={criterion}", *ARGS, f"--workdir={wd}"], cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((wd / "report.json").read_text())
  assert report["pruned"]["structured"]["criterion"] == criterion
  assert report["pruned"]["params"] < 0.6 * report["baseline"]["params"]
  assert report["baseline"]["params"] == keras.models.load_model(saved[model]).count_params()
  assert all(e["gate"] == "ok" for e in report["exports"])


@pytest.mark.e2e
def test_bn_gamma_without_batchnorm_is_refused_before_anything_runs(saved, tmp_path):
  proc = run_cli([f"--baseline_path={saved['small_cnn']}", "--structured_criterion=bn_gamma",
                  *ARGS, f"--workdir={tmp_path / 'run'}"], cwd=REPO)
  assert proc.returncode == 2
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert_message("\n".join(errors), "error: --structured_criterion=bn_gamma:",
                 "BatchNormalization", "l1")
  assert not (tmp_path / "run").exists() and not (tmp_path / "run.incomplete").exists()
