"""The report's rows, typed: one `ExportRow` per .tflite file. Stages fill them; report.json
holds `to_json()` of each, and report.md is rendered from that JSON (so a report read back
from disk renders the same)."""

import dataclasses
from typing import Dict, List, Optional


@dataclasses.dataclass
class ExportRow:
  """One exported file: what it is, how it compares with its Keras model, its gate, its size
  and its paired speed against the reference file (export/formats.py REFERENCE)."""
  name: str  # <model>_<format>[_sparse], e.g. pruned_int8.
  path: str  # Absolute while the run goes; relative to the run directory in report.json.
  model: str  # "baseline" or "pruned" (benchmarks: their recipe's name).
  format: str  # One of export/formats.py FORMATS.
  sparse: bool = False  # Stored with TFLite's sparse tensor encoding.
  # Accuracy on the test split, and against the Keras model the file came from.
  test_accuracy: Optional[float] = None
  keras_test_accuracy: Optional[float] = None
  top1_agreement: Optional[float] = None
  max_abs_diff: Optional[float] = None  # Float formats only.
  input_spec: Optional[str] = None
  accuracy_change: Optional[float] = None  # Against the baseline's Keras test accuracy.
  # The gate (export/gates.py): "ok" or "FAILED", the bound, and why it failed.
  gate: str = "ok"
  gate_bound: str = ""
  gate_reason: str = ""
  # The graph as stored: sparsity over the pruned layers, MACs.
  sparsity: float = 0.0
  layer_sparsity: Dict[str, float] = dataclasses.field(default_factory=dict)
  macs: Optional[int] = None
  effective_macs: Optional[float] = None
  sparse_kernel_blockers: List[str] = dataclasses.field(default_factory=list)
  # Size, and its ratio to the reference's gzip size.
  bytes: Optional[int] = None
  gzip_bytes: Optional[int] = None
  gzip_ratio: Optional[float] = None
  # Timing (export/timing.py): latency percentiles and the paired speed-up.
  latency_ms_p50: Optional[float] = None
  latency_ms_p90: Optional[float] = None
  latency_ms_best_round: Optional[float] = None
  latency_ms_std: Optional[float] = None
  disturbed_rounds: Optional[int] = None
  rounds: Optional[int] = None
  speedup: Optional[float] = None
  speedup_p10: Optional[float] = None
  speedup_p90: Optional[float] = None
  speedup_p50: Optional[float] = None
  speedup_best_round: Optional[float] = None
  delegate: Optional[str] = None
  fallback_reason: Optional[str] = None
  arm: Optional[dict] = None  # --arm_check: pipeline/stages/arm.py's result for this file.

  def fail(self, reason: str) -> None:
    """Marks the file outside its gate, keeping the reasons already there."""
    self.gate = "FAILED"
    self.gate_reason = "; ".join(filter(None, [self.gate_reason, reason]))

  def to_json(self) -> dict:
    return dataclasses.asdict(self)
