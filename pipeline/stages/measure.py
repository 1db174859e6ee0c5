"""Export, gate and benchmark Keras models side by side: one report row (report/rows.py
ExportRow) per .tflite file."""

from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from export import cpu as cpu_lib
from export import gates
from export import graph as graph_lib
from export import formats
from export.head import Head
from export import tflite as tflite_lib
from export import timing as timing_lib
from export import verify as verify_lib
from export import console as console_lib
from pipeline import data as data_lib
from pipeline.report import rows as rows_lib
from pipeline.unstructured import patterns
from pipeline.models import sparsity as sparsity_lib
from export import workdir as workdir_lib

REPRESENTATIVE_EXAMPLES = 200  # Training images used to calibrate int8 activations.
TIMING_ROUNDS = 100  # Interleaved rounds: each gives one paired ratio per file.


def representative(data: data_lib.Dataset, seed: int = 0) -> np.ndarray:
  """int8 calibration images drawn from the training stream, with one pixel set to 0 and one
  to 255, so the input's quantized range is exactly 0..255 and a uint8 input is the pixel
  itself. Two pixels, not two whole black and white images, which would widen the ranges of
  the layers inside as well."""
  x, _ = data_lib.sample(data.train, REPRESENTATIVE_EXAMPLES, seed)
  x = x.copy()
  x[0].reshape(-1, x.shape[-1])[0] = 0.0
  x[0].reshape(-1, x.shape[-1])[-1] = 255.0
  return x


def export_and_measure(models: Dict[str, object], plan: Dict[str, Tuple[Sequence[str], bool]],
                       outputs: Dict[str, np.ndarray], pruned_layers: Dict[str, List[str]],
                       data: data_lib.Dataset, out_dir: str, *, head: Head, int8_io: bool,
                       runs: int, warmup_runs: int, bounds: gates.Bounds = gates.Bounds(),
                       console: Optional[console_lib.Console] = None,
                       seconds: Optional[dict] = None) -> List[rows_lib.ExportRow]:
  """Exports every model per `plan`, gates each file and times them all in one process.

  Args:
    models: {model name: Keras model}; must include "baseline" exported as float32, the
      reference for every size and speed ratio.
    plan: {model name: (formats, also_sparse)}, see tflite.export_tflite.
    outputs: {model name: Keras outputs on the whole test split}.
    pruned_layers: {model name: layers that were pruned}; a row's sparsity is counted over
      these (over every layer for a model not listed).
    data: the dataset (test split for accuracy, training split for int8 calibration).
    head: what the models output (export/head.py); every file keeps it.
    out_dir: where the .tflite files go.
    int8_io: uint8 inputs/outputs for the int8 format.
    runs, warmup_runs: timed and untimed invokes per file (1 thread, XNNPACK with fallback).
    bounds: what each format must meet against its Keras model (export/gates.py).
    console: where stage lines and the benchmark's progress bar go (None: nowhere).
    seconds: stage durations are added here.

  Returns:
    One ExportRow per file: accuracy, agreement with Keras, its gate ("ok" or "FAILED" with
    the reason), stored sparsity, MACs, sizes, latency and paired speed-up.
  """
  seconds = {} if seconds is None else seconds
  con = console or console_lib.Console(enabled=False)
  with con.stage("export", seconds) as info:
    with console_lib.native_output_to_log("the TFLite converter"):
      exports = tflite_lib.export_tflite(models, plan, out_dir, representative(data), int8_io,
                                         write=workdir_lib.atomic_write)
    info["summary"] = f"{len(exports)} .tflite files"
  with con.stage("verify", seconds) as info:
    rows = _verify(exports, models, outputs, pruned_layers, data, bounds, head)
    failed = [r.name for r in rows if r.gate != "ok"]
    info["summary"] = (f"{len(rows) - len(failed)}/{len(rows)} files within their bounds on "
                       f"{len(data.test):,} test images"
                       + (f"; FAILED: {', '.join(failed)}" if failed else ""))
  with con.stage("benchmark", seconds) as info:
    _time(rows, runs, warmup_runs, con)
    info["summary"] = (f"{len(rows)} files x {timing_lib.invokes(runs, TIMING_ROUNDS):,} "
                       f"invokes in {TIMING_ROUNDS} "
                       f"interleaved rounds, 1 thread")
  return rows


def _verify(exports, models, outputs, pruned_layers, data, bounds,
            head: Head) -> List[rows_lib.ExportRow]:
  """A row per file with its accuracy against Keras, its stored graph and its gate."""
  with console_lib.native_output_to_log("LiteRT"):
    checks = verify_lib.verify(exports, outputs, lambda: data_lib.image_batches(data.test),
                               data.test.labels, head)
  kernels = {name: sparsity_lib.kernels(m) for name, m in models.items()}
  keras_acc = {n: verify_lib.top1_accuracy(o, data.test.labels, head) for n, o in outputs.items()}
  has_avx = cpu_lib.read().has("AVX")
  rows = []
  for e, v in zip(exports, checks):
    g, stored = verify_lib.stored_sparsity(e, kernels[e.model])
    # Sparsity as stored in the file, over the layers that were pruned (all, if none were).
    chosen = pruned_layers.get(e.model)
    counted = [l for l in g.layers if not chosen or l.name in chosen]
    row = rows_lib.ExportRow(
        name=e.name, path=e.path, model=e.model, format=e.format, sparse=e.sparse,
        test_accuracy=v.test_accuracy, keras_test_accuracy=keras_acc[e.model],
        top1_agreement=v.top1_agreement, max_abs_diff=v.max_abs_diff, input_spec=v.input_spec,
        gate_bound=bounds.describe(e.format),
        sparsity=sum(l.zeros for l in counted) / max(1, sum(l.weights for l in counted)),
        layer_sparsity=g.layer_sparsity(), macs=g.macs, effective_macs=g.effective_macs,
        sparse_kernel_blockers=graph_lib.sparse_inference_blockers(g, has_avx))
    for reason in (gates.check(e.format, v.test_accuracy, keras_acc[e.model], v.top1_agreement,
                               v.max_abs_diff, bounds, v.output_scale), stored):
      if reason:
        row.fail(reason)
    if row.gate != "ok":
      logging.error("%s FAILED its gate (%s): %s", e.name, row.gate_bound, row.gate_reason)
    rows.append(row)
  return rows


def _time(rows: List[rows_lib.ExportRow], runs: int, warmup_runs: int, con) -> None:
  """Times every file interleaved in one process; fills each row's size, latency and paired
  speed-up against the reference file."""
  progress, bar = con.round_progress("benchmark", TIMING_ROUNDS)
  try:
    timings = timing_lib.measure({r.name: r.path for r in rows}, threads=(1,),
                                 delegates=("xnnpack",), warmup_runs=warmup_runs, runs=runs,
                                 rounds=TIMING_ROUNDS, progress=progress)
  finally:
    bar.close()
  ref = next(t for t in timings if t.name == formats.REFERENCE)
  for r, t in zip(rows, timings):
    s = timing_lib.speedup(ref, t)
    r.bytes, r.gzip_bytes, r.gzip_ratio = t.bytes, t.gzip_bytes, ref.gzip_bytes / t.gzip_bytes
    r.latency_ms_p50, r.latency_ms_p90 = t.p50_ms, t.p90_ms
    r.latency_ms_best_round, r.latency_ms_std = t.best_round_ms, t.std_ms
    r.disturbed_rounds, r.rounds = t.disturbed_rounds, t.rounds
    r.speedup, r.speedup_p10, r.speedup_p90 = s.paired, s.p10, s.p90
    r.speedup_p50, r.speedup_best_round = s.p50, s.best_round
    r.delegate, r.fallback_reason = t.delegate, t.fallback_reason


def check_patterns(rows: List[rows_lib.ExportRow], layers: List[str], cfg) -> str:
  """--sparsity_m_by_n / --block_size: checks the pattern in every dense-stored float32 file of
  the pruned model; a file that breaks it fails its gate. Returns what was checked."""
  checked = []
  for row in rows:
    if row.model != "pruned" or row.format != "float32" or row.sparse:
      continue
    bad = {n: k for n, k in patterns.violations(row.path, layers, cfg).items() if k}
    checked.append(row.name)
    if bad:
      row.fail(f"{patterns.describe(cfg)} broken in "
               + ", ".join(f"{n} ({k} groups)" for n, k in bad.items()))
  return (f"{patterns.describe(cfg)}: checked in {', '.join(checked)} on every pruned layer "
          f"({', '.join(layers)})")
