"""Export, verify and benchmark Keras models side by side: one report row per .tflite file."""

import contextlib
import time
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from export import graph as graph_lib
from export import tflite as tflite_lib
from export import timing as timing_lib
from export import verify as verify_lib
from pipeline import data as data_lib
from pipeline import sparsity as sparsity_lib
from pipeline import workdir as workdir_lib

REPRESENTATIVE_EXAMPLES = 200  # Training images used to calibrate int8 activations.
TIMING_ROUNDS = 100  # Interleaved rounds: more rounds, more chances of an undisturbed one.


@contextlib.contextmanager
def stage(name: str, seconds: dict):
  """Logs a stage's start and records its duration for the report."""
  logging.info("== %s", name)
  t0 = time.perf_counter()
  yield
  seconds[name] = round(time.perf_counter() - t0, 2)


def export_and_measure(models: Dict[str, object], plan: Dict[str, Tuple[Sequence[str], bool]],
                       outputs: Dict[str, np.ndarray], pruned_layers: Dict[str, List[str]],
                       data: data_lib.Dataset, out_dir: str, *, int8_io: bool, runs: int,
                       warmup_runs: int, seconds: Optional[dict] = None) -> List[dict]:
  """Exports every model per `plan`, verifies each file and times them all in one process.

  Args:
    models: {model name: Keras model}; must include "baseline" exported as float32, the
      reference for every size and speed ratio.
    plan: {model name: (formats, also_sparse)}, see tflite.export_tflite.
    outputs: {model name: Keras outputs on the whole test split}.
    pruned_layers: {model name: layers that were pruned}; a row's sparsity is counted over
      these (over every layer for a model not listed).
    data: the dataset (test split for accuracy, training split for int8 calibration).
    out_dir: where the .tflite files go.
    int8_io: int8 inputs/outputs for the int8 format.
    runs, warmup_runs: timed and untimed invokes per file (1 thread, XNNPACK with fallback).
    seconds: stage durations are added here.

  Returns:
    One dict per file: accuracy, agreement with Keras, stored sparsity, MACs, sizes, latency.

  Raises:
    verify.MismatchError: a file's outputs or stored sparsity do not match its Keras model.
  """
  seconds = {} if seconds is None else seconds
  x_test = data_lib.scaled(data.x_test)
  with stage("export", seconds):
    rep = data_lib.scaled(data.x_train[:REPRESENTATIVE_EXAMPLES])
    exports = tflite_lib.export_tflite(models, plan, out_dir, rep, int8_io,
                                       write=workdir_lib.atomic_write)
  with stage("verify", seconds):
    checks = verify_lib.verify(exports, outputs, x_test, data.y_test)
    kernels = {name: sparsity_lib.kernels(m) for name, m in models.items()}
    graphs = [verify_lib.stored_sparsity(e, kernels[e.model]) for e in exports]
  with stage("benchmark", seconds):
    timings = timing_lib.measure({e.name: e.path for e in exports}, threads=(1,),
                                 delegates=("xnnpack",), warmup_runs=warmup_runs, runs=runs,
                                 rounds=TIMING_ROUNDS,
                                 progress=lambda m: logging.info("benchmark: %s", m))

  ref = next(t for t in timings if t.name == tflite_lib.REFERENCE)
  has_avx = graph_lib.cpu_has_avx()
  rows = []
  for e, v, t, g in zip(exports, checks, timings, graphs):
    # Sparsity as stored in the file, over the layers that were pruned (all, if none were).
    chosen = pruned_layers.get(e.model)
    counted = [l for l in g.layers if not chosen or l.name in chosen]
    rows.append({
        "name": e.name, "path": e.path, "model": e.model, "format": e.format, "sparse": e.sparse,
        "bytes": t.bytes, "gzip_bytes": t.gzip_bytes, "gzip_ratio": ref.gzip_bytes / t.gzip_bytes,
        "test_accuracy": v.test_accuracy, "top1_agreement": v.top1_agreement,
        "max_abs_diff": v.max_abs_diff,
        "sparsity": sum(l.zeros for l in counted) / max(1, sum(l.weights for l in counted)),
        "layer_sparsity": g.layer_sparsity(), "macs": g.macs, "effective_macs": g.effective_macs,
        "latency_ms_best_round": t.best_round_ms, "latency_ms_p50": t.p50_ms,
        "latency_ms_p90": t.p90_ms, "latency_ms_std": t.std_ms,
        "disturbed_rounds": t.disturbed_rounds, "rounds": t.rounds,
        "speedup": timing_lib.speedup(ref, t), "speedup_p50": ref.p50_ms / t.p50_ms,
        "delegate": t.delegate,
        "fallback_reason": t.fallback_reason,
        "sparse_kernel_blockers": graph_lib.sparse_inference_blockers(g, has_avx),
    })
  return rows
