"""A latency table: what each channel group costs on this CPU, measured, not assumed from MACs.

For every prunable channel group and each candidate kept count (multiples of
--channel_multiple), the model with that group alone shrunk is exported as float32 and timed
with LiteRT (1 thread, XNNPACK) interleaved with the dense export in one process, so each
entry is a paired ratio (export/timing.py). Latency is far from linear in MACs: XNNPACK works
in SIMD channel tiles, so 29 channels cost what 32 cost.

The table is kept as milliseconds (the dense file's median over each candidate's paired
speed-up), beside the candidate .tflite files, so a table timed on a phone can replace it:
time the files in `latency_table/` there, write their milliseconds into a copy of
latency_table.json, and pass it as `--latency_table=FILE`.
"""

import dataclasses
import json
import os
import tempfile
from typing import Dict, List, Optional

import numpy as np

from export import cpu as cpu_lib
from export import timing as timing_lib
from export import tflite as tflite_lib
from pipeline.structured import surgery
from export import workdir as workdir_lib

MAX_CANDIDATES = 8  # Kept counts timed per group, at most (spread evenly).
CHUNK = 24  # Candidate files open at once while timing.
ROUNDS = 50
SECONDS = 60.0  # What the timing of the whole table aims to take.
FILE = "latency_table.json"


@dataclasses.dataclass(frozen=True)
class Entry:
  group: str  # The group's producers, comma-separated (as in the structured report).
  channels: int  # Before pruning.
  kept: List[int]  # Candidate kept counts, descending.
  ms: List[float]  # Latency of the model with only this group shrunk to each count.
  files: List[str]  # The candidate files (relative to the run directory), to time elsewhere.


@dataclasses.dataclass(frozen=True)
class Table:
  reference_ms: float  # The dense float32 export.
  entries: Dict[str, Entry]
  source: str  # Where it was timed ("measured here on <cpu>", or the file read).
  reference_file: str = ""  # The dense file (relative to the run directory), if kept.


def candidates(size: int, multiple: int, min_channels: int) -> List[int]:
  """Kept counts below `size` worth timing: multiples of `multiple` (every count when it is
  1) from the smallest allowed, at most MAX_CANDIDATES of them, descending."""
  step = max(1, multiple)
  low = -(-max(1, min_channels) // step) * step
  counts = list(range(low, size, step))
  if len(counts) > MAX_CANDIDATES:
    picks = np.unique(np.round(np.linspace(0, len(counts) - 1, MAX_CANDIDATES)).astype(int))
    counts = [counts[i] for i in picks]
  return sorted(counts, reverse=True)


def measure(a: surgery.Analysis, multiple: int, min_channels: int, out_dir: str,
            progress=None) -> Table:
  """Exports and times every candidate of every prunable group of `a`; files go to `out_dir`.

  Args:
    a: the analysis of the dense model (its weights do not matter to latency).
    multiple, min_channels: --channel_multiple and --min_channels.
    out_dir: where dense.tflite and the candidates are written (created).
    progress: optional callable(), once per file exported and once per timing round.
  """
  os.makedirs(out_dir, exist_ok=True)
  files = {"dense": export_float32(a.model, os.path.join(out_dir, "dense.tflite"))}
  names = {}
  for g in a.prunable():
    group = ",".join(g.producers)
    for k in candidates(g.size, multiple, min_channels):
      name = f"{g.producers[0]}_{k}"
      files[name] = export_float32(surgery.shrink(a, {g.id: np.arange(k)}),
                                   os.path.join(out_dir, name + ".tflite"))
      names.setdefault(group, (g.size, []))[1].append((k, name))
      if progress:
        progress()
  ms = _dense_ms(files["dense"])
  trials = [n for n in files if n != "dense"]
  runs = int(np.clip(SECONDS * 1e3 / (ms * len(files)), ROUNDS, 40 * ROUNDS))
  ref, speed = None, {}
  # In chunks, each timed with the dense file (a paired ratio needs only its own rounds), so a
  # MobileNet's hundreds of candidates are never all open at once.
  for start in range(0, len(trials), CHUNK):
    chunk = {"dense": files["dense"]} | {n: files[n] for n in trials[start:start + CHUNK]}
    timed = timing_lib.measure(chunk, warmup_runs=10, runs=runs, rounds=ROUNDS,
                               progress=(lambda *_: progress()) if progress else None)
    ref = ref or timed[0]
    speed.update({t.name: timing_lib.speedup(timed[0], t).paired for t in timed[1:]})
  entries = {}
  for group, (size, picks) in names.items():
    entries[group] = Entry(group, size, [k for k, _ in picks],
                           [ref.p50_ms / speed[n] for _, n in picks],
                           [os.path.join(os.path.basename(out_dir), n + ".tflite")
                            for _, n in picks])
  return Table(ref.p50_ms, entries, f"measured here on {cpu_lib.read().describe()} (LiteRT "
               "float32, 1 thread, XNNPACK)",
               os.path.join(os.path.basename(out_dir), "dense.tflite"))


def export_float32(model, path: str) -> str:
  """Writes `model`'s float32 .tflite to `path` (atomically); returns the path."""
  workdir_lib.atomic_write(path, tflite_lib.convert(model, "float32"))
  return path


def _dense_ms(path: str) -> float:
  """A first estimate of the dense file's latency, to size the timing runs."""
  timings = timing_lib.measure({"dense": path}, warmup_runs=5, runs=50, rounds=5)
  return max(1e-3, timings[0].p50_ms)


def write(table: Table, out_dir: str) -> List[str]:
  """latency_table.json (readable back with `load`) and latency_table.md in `out_dir`."""
  body = {"reference_ms": table.reference_ms, "source": table.source,
          "reference_file": table.reference_file,
          "entries": [dataclasses.asdict(e) for e in table.entries.values()]}
  lines = [f"Latency table ({table.source}): the dense float32 file takes "
           f"{table.reference_ms:.4f} ms; each row shrinks one group alone. Speed-up = dense / "
           "candidate.", "", "| group | channels | kept: ms (speed-up) |", "|---|---|---|"]
  for e in table.entries.values():
    lines.append(f"| {e.group} | {e.channels} | " + ", ".join(
        f"{k}: {m:.4f} ({table.reference_ms / m:.2f}x)" for k, m in zip(e.kept, e.ms)) + " |")
  return [workdir_lib.atomic_write(os.path.join(out_dir, FILE),
                                   json.dumps(body, indent=2) + "\n"),
          workdir_lib.atomic_write(os.path.join(out_dir, "latency_table.md"),
                                   "\n".join(lines) + "\n")]


def load(path: str, a: Optional[surgery.Analysis] = None) -> Table:
  """A table written by `write` (its milliseconds possibly replaced by a device's).

  Raises:
    ValueError: unreadable, malformed, or (given `a`) naming groups the model does not have
      or channel counts that differ from the model's; one line naming --latency_table.
  """
  def bad(why):
    return ValueError(f"--latency_table={path}: {why}")
  try:
    with open(path) as f:
      body = json.load(f)
    entries = {e["group"]: Entry(e["group"], int(e["channels"]), [int(k) for k in e["kept"]],
                                 [float(m) for m in e["ms"]], list(e.get("files", [])))
               for e in body["entries"]}
    table = Table(float(body["reference_ms"]), entries, f"read from {path}: "
                  f"{body.get('source', 'no source given')}", body.get("reference_file", ""))
  except OSError as e:
    raise bad(f"cannot read it ({e.strerror})") from None
  except (ValueError, KeyError, TypeError) as e:
    raise bad(f"not a latency table written by this tool ({type(e).__name__}: {e})") from None
  for e in entries.values():
    if len(e.kept) != len(e.ms) or not all(np.isfinite(m) and m > 0
                                           for m in e.ms + [table.reference_ms]):
      raise bad(f"group {e.group}: needs one positive, finite ms per kept count")
    if any(not 1 <= k < e.channels for k in e.kept) or e.kept != sorted(set(e.kept), reverse=True):
      raise bad(f"group {e.group}: kept counts {e.kept} must be distinct, descending, and "
                f"between 1 and {e.channels - 1}")
  if a is not None:
    groups = {",".join(g.producers): g.size for g in a.prunable()}
    unknown = [g for g in entries if g not in groups]
    if unknown:
      raise bad(f"group(s) {', '.join(unknown)} are not prunable groups of this model; its "
                f"groups are: {', '.join(groups)}")
    wrong = [f"{g} ({e.channels}, model {groups[g]})" for g, e in entries.items()
             if e.channels != groups[g]]
    if wrong:
      raise bad(f"channel counts differ from the model's: {', '.join(wrong)}")
  return table


def time_pair(dense_path: str, small, runs: int = 2000) -> timing_lib.Speedup:
  """Paired speed-up of `small`'s float32 export over the dense file, timed together here."""
  with tempfile.TemporaryDirectory() as tmp:
    files = {"dense": dense_path,
             "small": export_float32(small, os.path.join(tmp, "small.tflite"))}
    ref, t = timing_lib.measure(files, warmup_runs=20, runs=runs, rounds=ROUNDS)
  return timing_lib.speedup(ref, t)
