"""Latency, load time, memory and size of .tflite files, measured interleaved in one process.

Speed-ups are ratios of *best-round medians*: the runs are split into interleaved rounds, each
round's median is taken, and the lowest of them stands for the file's latency on an undisturbed
machine. On a shared machine another process can slow a stretch of rounds (about 1.2x for a 76 us
model and 1.7x for a 17 us one in `make bench`), which an all-sample p50 mixes in; it never makes a
round faster. The same rule as `timeit`'s ("the lowest value gives a lower bound for how fast
your machine can run the snippet"). p50/p90/p99 over all samples are reported beside it, with
the number of disturbed rounds, so the noise stays visible.
"""

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
  best_round_ms: float  # The lowest round median: the latency with the least interference.
  rounds: int
  disturbed_rounds: int  # Rounds whose median is over DISTURBED x the best round's.
  load_ms: float  # Interpreter construction + allocate_tensors (delegate preparation included).
  peak_rss_increase_mb: float  # Peak resident memory added by loading and running this file.
  bytes: int
  gzip_bytes: int


DISTURBED = 1.10


def summarize(samples_ns_by_round: Sequence[Sequence[int]]) -> dict:
  """Statistics of one configuration from its samples (nanoseconds), one sequence per round.

  Returns:
    p50_ms, p90_ms, p99_ms, mean_ms, std_ms over all samples; best_round_ms, the lowest of the
    round medians; rounds; disturbed_rounds, how many round medians exceed DISTURBED x the best.
  """
  rounds = [np.asarray(r, np.float64) / 1e6 for r in samples_ns_by_round if len(r)]
  if not rounds:
    raise ValueError("no samples to summarize")
  ms = np.concatenate(rounds)
  medians = np.array([np.median(r) for r in rounds])
  best = float(medians.min())
  return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
          "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
          "std_ms": float(ms.std()), "best_round_ms": best, "rounds": len(rounds),
          "disturbed_rounds": int(np.sum(medians > DISTURBED * best))}


def speedup(reference: "Timing", t: "Timing") -> float:
  """How many times lower `t`'s latency is than `reference`'s: best-round medians' ratio."""
  return reference.best_round_ms / t.best_round_ms


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
  rounds (A B C A B C ...), so drift in machine load hits every one alike, and each round's
  median is kept apart (see `summarize`). Only invoke() is inside the timer; inputs are set
  once, before.

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
                            bytes=size, gzip_bytes=gz, rounds=[]))
        if progress:
          progress(f"opened {name} ({opened.delegate}, {n} thread{'s' if n > 1 else ''})")

  per_round = max(1, runs // rounds)
  for r in range(rounds):
    for c in configs:
      invoke = c["opened"].interpreter.invoke
      samples = []
      c["rounds"].append(samples)
      for _ in range(per_round):
        t0 = time.perf_counter_ns()
        invoke()
        samples.append(time.perf_counter_ns() - t0)
    if progress:
      progress(f"round {r + 1}/{rounds}")

  out = []
  for c in configs:
    out.append(Timing(
        name=c["name"], path=c["path"], delegate_requested=c["delegate_requested"],
        delegate=c["opened"].delegate, fallback_reason=c["opened"].fallback_reason or "",
        threads=c["threads"], warmup_runs=warmup_runs, runs=sum(map(len, c["rounds"])),
        **summarize(c["rounds"]), load_ms=c["load_ms"], peak_rss_increase_mb=c["rss_mb"],
        bytes=c["bytes"], gzip_bytes=c["gzip_bytes"]))
  return out


def to_markdown(results: Sequence[Timing], reference: str) -> str:
  """A table of every configuration, with speed-up against `reference` at the same settings."""
  ref = {(t.delegate_requested, t.threads): t for t in results if t.name == reference}
  lines = ["| file | kernels | threads | best round ms | p50 ms | p90 ms | p99 ms | mean ms "
           "| std ms | disturbed rounds | load ms | peak RSS +MB | bytes | gzip bytes "
           "| speed-up (best round) | speed-up (p50) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for t in results:
    r = ref.get((t.delegate_requested, t.threads))
    kernels = t.delegate + (" (fallback)" if t.fallback_reason else "")
    best = f"{speedup(r, t):.2f}x" if r else ""
    p50 = f"{r.p50_ms / t.p50_ms:.2f}x" if r else ""
    lines.append(f"| {t.name} | {kernels} | {t.threads} | {t.best_round_ms:.4f} | {t.p50_ms:.4f} "
                 f"| {t.p90_ms:.4f} | {t.p99_ms:.4f} | {t.mean_ms:.4f} | {t.std_ms:.4f} "
                 f"| {t.disturbed_rounds}/{t.rounds} | {t.load_ms:.1f} "
                 f"| {t.peak_rss_increase_mb:.1f} | {t.bytes:,} | {t.gzip_bytes:,} | {best} "
                 f"| {p50} |")
  lines += ["", f"Best round: the lowest of the {results[0].rounds if results else 0} interleaved "
            f"rounds' medians; a round is disturbed when its median is over "
            f"{DISTURBED:.2f}x the best."]
  notes = [f"- {t.name}: {t.fallback_reason}" for t in results if t.fallback_reason]
  if notes:
    lines += ["", "Fell back to builtin kernels:"] + sorted(set(notes))
  return "\n".join(lines)
