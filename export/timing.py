"""Latency, load time, memory and size of .tflite files, measured interleaved in one process."""

import dataclasses
import gzip
import time
from typing import Dict, List, Sequence

import numpy as np

from export import litert


@dataclasses.dataclass(frozen=True)
class Timing:
  name: str
  path: str
  delegate_requested: str
  delegate: str  # What ran: differs from the request after a fallback.
  fallback_reason: str
  threads: int
  warmup_runs: int
  runs: int
  p50_ms: float
  p90_ms: float
  p99_ms: float
  mean_ms: float
  std_ms: float
  load_ms: float  # Interpreter construction + allocate_tensors (delegate preparation included).
  peak_rss_increase_mb: float  # Peak resident memory added by loading and running this file.
  bytes: int
  gzip_bytes: int


def file_sizes(path: str):
  """(bytes, gzip bytes at level 9) of a file, the way the TF-MOT tutorial measures size."""
  with open(path, "rb") as f:
    content = f.read()
  return len(content), len(gzip.compress(content, compresslevel=9))


def _status_kb(field: str) -> float:
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return float(line.split()[1])
  except OSError:
    pass
  return float("nan")


def _reset_peak_rss() -> bool:
  """Resets the kernel's peak-RSS counter (VmHWM) to the current RSS, where Linux allows."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _fill_inputs(interp, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  for d in interp.get_input_details():
    if np.issubdtype(d["dtype"], np.integer):
      info = np.iinfo(d["dtype"])
      x = rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(d["dtype"])
    else:
      x = rng.random(d["shape"], dtype=np.float32).astype(d["dtype"])
    interp.set_tensor(d["index"], x)


def measure(files: Dict[str, str], threads: Sequence[int] = (1,),
            delegates: Sequence[str] = ("xnnpack",), warmup_runs: int = 20, runs: int = 200,
            rounds: int = 10, progress=None) -> List[Timing]:
  """Times invoke() of every file x delegate x thread count.

  All configurations are opened and warmed up first, then timed in `rounds` interleaved
  rounds (A B C A B C ...), so drift in machine load hits every one alike. Only invoke() is
  inside the timer; inputs are set once, before.

  Args:
    files: {name: path of a .tflite file}.
    threads: thread counts to try.
    delegates: "xnnpack" (LiteRT's default) and/or "builtin" kernels.
    warmup_runs: untimed invokes per configuration before timing.
    runs: timed invokes per configuration, split across the rounds.
    rounds: how many interleaved rounds.
    progress: optional callable(str) told of each step.

  Returns:
    One Timing per configuration, in the order files x delegates x threads.
  """
  configs = []
  for name, path in files.items():
    size, gz = file_sizes(path)
    for delegate in delegates:
      for n in threads:
        rss0 = _status_kb("VmRSS")
        exact_peak = _reset_peak_rss()
        t0 = time.perf_counter()
        opened = litert.open_model(path, threads=n, delegate=delegate)
        load_ms = (time.perf_counter() - t0) * 1e3
        _fill_inputs(opened.interpreter)
        for _ in range(max(1, warmup_runs)):
          opened.interpreter.invoke()
        peak = _status_kb("VmHWM") if exact_peak else _status_kb("VmRSS")
        configs.append(dict(name=name, path=path, delegate_requested=delegate, opened=opened,
                            threads=n, load_ms=load_ms, rss_mb=max(0.0, (peak - rss0) / 1024),
                            bytes=size, gzip_bytes=gz, samples=[]))
        if progress:
          progress(f"opened {name} ({opened.delegate}, {n} thread{'s' if n > 1 else ''})")

  per_round = max(1, runs // rounds)
  for r in range(rounds):
    for c in configs:
      invoke = c["opened"].interpreter.invoke
      samples = c["samples"]
      for _ in range(per_round):
        t0 = time.perf_counter_ns()
        invoke()
        samples.append(time.perf_counter_ns() - t0)
    if progress:
      progress(f"round {r + 1}/{rounds}")

  out = []
  for c in configs:
    ms = np.asarray(c["samples"], np.float64) / 1e6
    out.append(Timing(
        name=c["name"], path=c["path"], delegate_requested=c["delegate_requested"],
        delegate=c["opened"].delegate, fallback_reason=c["opened"].fallback_reason or "",
        threads=c["threads"], warmup_runs=warmup_runs, runs=len(ms),
        p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)), mean_ms=float(ms.mean()), std_ms=float(ms.std()),
        load_ms=c["load_ms"], peak_rss_increase_mb=c["rss_mb"],
        bytes=c["bytes"], gzip_bytes=c["gzip_bytes"]))
  return out


def to_markdown(results: Sequence[Timing], reference: str) -> str:
  """A table of every configuration, with speed-up against `reference` at the same settings."""
  ref = {(t.delegate_requested, t.threads): t for t in results if t.name == reference}
  lines = ["| file | kernels | threads | p50 ms | p90 ms | p99 ms | mean ms | std ms | load ms "
           "| peak RSS +MB | bytes | gzip bytes | speed-up |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for t in results:
    r = ref.get((t.delegate_requested, t.threads))
    kernels = t.delegate + (" (fallback)" if t.fallback_reason else "")
    speedup = f"{r.p50_ms / t.p50_ms:.2f}x" if r else ""
    lines.append(f"| {t.name} | {kernels} | {t.threads} | {t.p50_ms:.4f} | {t.p90_ms:.4f} "
                 f"| {t.p99_ms:.4f} | {t.mean_ms:.4f} | {t.std_ms:.4f} | {t.load_ms:.1f} "
                 f"| {t.peak_rss_increase_mb:.1f} | {t.bytes:,} | {t.gzip_bytes:,} | {speedup} |")
  notes = [f"- {t.name}: {t.fallback_reason}" for t in results if t.fallback_reason]
  if notes:
    lines += ["", "Fell back to builtin kernels:"] + sorted(set(notes))
  return "\n".join(lines)
