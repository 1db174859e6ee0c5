"""Where a .tflite file's time goes, operator by operator, on the runtime that ships it.

LiteRT's Python interpreter has no per-operator profiler, and the installed `litert-benchmark`
(ai-edge-litert 2.3.0) has no --enable_op_profiling. So each operator is timed by difference:
the file cut after its k-th operator (the first k operators, the k-th one's output made the
graph's output) is timed beside the file cut after k-1, all cuts interleaved in one process
(export/timing.py), and operator k costs the difference of their round medians. XNNPACK runs
each cut as it runs the whole file; the differences are noisy for operators of a few
microseconds, so `by_type` sums them per operator type, where the noise averages out.
"""

import collections
import dataclasses
import os
import tempfile
from typing import Dict, List, Sequence

import numpy as np

from export import timing


@dataclasses.dataclass(frozen=True)
class OpTime:
  index: int  # Position in the graph's execution order.
  op: str  # Builtin operator name, e.g. CONV_2D.
  output_dtype: str  # The operator's output type: FLOAT32, INT8, UINT8.
  ms: float  # Median over rounds of (cut k - cut k-1), milliseconds; can dip below 0 by noise.


def _flatbuffer_utils():
  from ai_edge_litert.tools import flatbuffer_utils  # pylint: disable=g-import-not-at-top
  return flatbuffer_utils


def cuts(content: bytes) -> List[tuple]:
  """[(index, op name, output dtype, flatbuffer of the first index+1 operators)] of the first
  subgraph of `content`, in execution order."""
  fb = _flatbuffer_utils()
  model = fb.read_model_from_bytearray(bytearray(content))
  graph = model.subgraphs[0]
  ops, outputs = list(graph.operators), list(graph.outputs)
  out = []
  try:
    for k, op in enumerate(ops):
      graph.operators, graph.outputs = ops[:k + 1], [op.outputs[0]]
      name = fb.opcode_to_name(model, op.opcodeIndex) or f"op{op.opcodeIndex}"
      dtype = fb.type_to_name(graph.tensors[op.outputs[0]].type)
      out.append((k, name, dtype, bytes(fb.convert_object_to_bytearray(model))))
  finally:
    graph.operators, graph.outputs = ops, outputs
  return out


def profile(files: Dict[str, str], runs: int = 400, rounds: int = 20, warmup_runs: int = 20
            ) -> Dict[str, List[OpTime]]:
  """{file name: its operators' times}: every cut of every file timed interleaved (1 thread,
  XNNPACK), each operator's time the paired difference of consecutive cuts."""
  with tempfile.TemporaryDirectory(prefix="op_profile-") as d:
    paths, meta = {}, {}
    for name, path in files.items():
      with open(path, "rb") as f:
        for k, op, dtype, content in cuts(f.read()):
          key = f"{name}/{k:04d}"
          paths[key] = os.path.join(d, f"{len(paths)}.tflite")
          with open(paths[key], "wb") as out:
            out.write(content)
          meta[key] = (name, k, op, dtype)
    timed = {t.name: t for t in timing.measure(paths, warmup_runs=warmup_runs, runs=runs,
                                               rounds=rounds)}
  result = {name: [] for name in files}
  for key, (name, k, op, dtype) in meta.items():
    now = np.asarray(timed[key].round_medians_ms)
    before = (np.asarray(timed[f"{name}/{k - 1:04d}"].round_medians_ms) if k else
              np.zeros_like(now))
    result[name].append(OpTime(k, op, dtype, float(np.median(now - before))))
  return result


def by_type(ops: Sequence[OpTime]) -> Dict[str, tuple]:
  """{op name (output dtype): (count, summed ms)}, the costliest first."""
  sums = collections.defaultdict(lambda: [0, 0.0])
  for o in ops:
    key = f"{o.op} ({o.output_dtype.lower()})"
    sums[key][0] += 1
    sums[key][1] += o.ms
  return dict(sorted(((k, tuple(v)) for k, v in sums.items()), key=lambda kv: -kv[1][1]))


def to_markdown(result: Dict[str, List[OpTime]]) -> str:
  """One table: each operator type's count and summed ms in every file, and the totals."""
  tables = {name: by_type(ops) for name, ops in result.items()}
  names = list(result)
  ops = list(dict.fromkeys(k.split(" (")[0] for t in tables.values() for k in t))
  lines = ["| operator | " + " | ".join(f"{n}: count, ms (output type)" for n in names) + " |",
           "|---|" + "---|" * len(names)]
  for op in ops:
    cells = []
    for n in names:
      hits = [(k, v) for k, v in tables[n].items() if k.split(" (")[0] == op]
      cells.append(", ".join(f"{c} x, {ms:.3f} ({k.split(' (')[1].rstrip(')')})"
                             for k, (c, ms) in hits) or "-")
    lines.append(f"| {op} | " + " | ".join(cells) + " |")
  lines.append("| **total** (sum of differences) | " + " | ".join(
      f"{len(result[n])} ops, {sum(o.ms for o in result[n]):.3f}" for n in names) + " |")
  return "\n".join(lines)
