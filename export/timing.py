"""Latency, load time, memory and size of .tflite files, measured interleaved in one process.

Speed-ups are **paired**: the runs are split into rounds; in every round each file runs its
share of invokes, in an order rotated from round to round, and each round's median is kept.
For each round, the reference's median over the file's median is one ratio; the speed-up is
the median of those per-round ratios, with their 10th-90th percentile as its spread. Another
process that slows a stretch of rounds slows the reference and the file together, so the
ratio of the same round keeps the pairing that interleaving buys, where the ratio of each
file's own fastest round (which may come from different rounds, and whose minimum is biased
low for a small, noisy model) throws it away. The best-round ratio and the all-sample p50
ratio are kept beside it as secondary figures, with the number of disturbed rounds.
"""

import dataclasses
import gzip
import time
from typing import Callable, Dict, List, Optional, Sequence

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
  best_round_ms: float  # The lowest round median.
  rounds: int
  disturbed_rounds: int  # Rounds whose median is over DISTURBED x the best round's.
  round_medians_ms: tuple  # One median per round, in round order: what pairing uses.
  load_ms: float  # Interpreter construction + allocate_tensors (delegate preparation included).
  peak_rss_increase_mb: float  # Peak resident memory added by loading and running this file.
  bytes: int
  gzip_bytes: int


@dataclasses.dataclass(frozen=True)
class Speedup:
  """How many times lower a file's latency is than a reference's, timed in the same rounds."""
  paired: float  # Median over rounds of reference round median / file round median.
  p10: float  # 10th and 90th percentiles of the per-round ratios: the spread.
  p90: float
  best_round: float  # Secondary: reference's lowest round median / file's lowest.
  p50: float  # Secondary: ratio of the all-sample p50s.
  rounds: int  # Rounds paired.

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)

  def describe(self) -> str:
    """'4.21x (p10-p90 3.90-4.48x)'."""
    return f"{self.paired:.2f}x (p10-p90 {self.p10:.2f}-{self.p90:.2f}x)"


DISTURBED = 1.10


def summarize(samples_ns_by_round: Sequence[Sequence[int]]) -> dict:
  """Statistics of one configuration from its samples (nanoseconds), one sequence per round.

  Returns:
    p50_ms, p90_ms, p99_ms, mean_ms, std_ms over all samples; round_medians_ms, one per
    round; best_round_ms, the lowest of them; rounds; disturbed_rounds, how many round
    medians exceed DISTURBED x the best.

  Raises:
    ValueError: no round holds a sample.
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
          "disturbed_rounds": int(np.sum(medians > DISTURBED * best)),
          "round_medians_ms": tuple(float(m) for m in medians)}


def speedup(reference: Timing, t: Timing) -> Speedup:
  """`t`'s speed-up over `reference`, paired round by round (see the module docstring).

  Raises:
    ValueError: the two were not timed in the same number of rounds.
  """
  ref, own = np.asarray(reference.round_medians_ms), np.asarray(t.round_medians_ms)
  if len(ref) != len(own) or not len(ref):
    raise ValueError(f"cannot pair {t.name} ({len(own)} rounds) with {reference.name} "
                     f"({len(ref)} rounds): time them in one measure() call")
  ratios = ref / own
  return Speedup(paired=float(np.median(ratios)), p10=float(np.percentile(ratios, 10)),
                 p90=float(np.percentile(ratios, 90)),
                 best_round=reference.best_round_ms / t.best_round_ms,
                 p50=reference.p50_ms / t.p50_ms, rounds=len(ratios))


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


def invokes(runs: int, rounds: int) -> int:
  """Timed invokes per file that `measure` makes for `runs` over `rounds`: whole rounds, at
  least one invoke each."""
  return max(1, runs // rounds) * rounds


def measure(files: Dict[str, str], threads: Sequence[int] = (1,),
            delegates: Sequence[str] = ("xnnpack",), warmup_runs: int = 20, runs: int = 200,
            rounds: int = 10, progress: Optional[Callable[[int, int], None]] = None
            ) -> List[Timing]:
  """Times invoke() of every file x delegate x thread count.

  All configurations are opened and warmed up first, then timed in `rounds` interleaved
  rounds. Round r starts at configuration r mod n (A B C, B C A, C A B, ...), so no file
  always runs first or always follows the same neighbour. Each round's median is kept apart
  (see `summarize` and `speedup`). Only invoke() is inside the timer; inputs are set once.

  Args:
    files: {name: path of a .tflite file}.
    threads: thread counts to try.
    delegates: "xnnpack" (LiteRT's default) and/or "builtin" kernels.
    warmup_runs: untimed invokes per configuration before timing.
    runs: timed invokes per configuration, split across the rounds.
    rounds: how many interleaved rounds.
    progress: optional callable(rounds done, rounds) called after each round.

  Returns:
    One Timing per configuration, in the order files x delegates x threads.
  """
  configs = _open_all(files, threads, delegates, warmup_runs)
  _time_rounds(configs, runs, rounds, progress)
  return [_to_timing(c, warmup_runs) for c in configs]


def _open_all(files: Dict[str, str], threads: Sequence[int], delegates: Sequence[str],
              warmup_runs: int) -> List[dict]:
  """Opens and warms up every configuration, in the order files x delegates x threads."""
  configs = []
  for name, path in files.items():
    size, gz = file_sizes(path)
    for delegate in delegates:
      for n in threads:
        configs.append(_open_config(name, path, delegate, n, warmup_runs, size, gz))
  return configs


def _open_config(name: str, path: str, delegate: str, n: int, warmup_runs: int, size: int,
                 gz: int) -> dict:
  """Opens one configuration, sets its inputs and warms it up, measuring load time and memory.

  Returns:
    The configuration: its opened model, load_ms, rss_mb, sizes and an empty list of rounds.
  """
  rss0 = _status_kb("VmRSS")
  exact_peak = _reset_peak_rss()
  t0 = time.perf_counter()
  opened = litert.open_model(path, threads=n, delegate=delegate)
  load_ms = (time.perf_counter() - t0) * 1e3
  _fill_inputs(opened.interpreter)
  for _ in range(max(1, warmup_runs)):
    opened.interpreter.invoke()
  peak = _status_kb("VmHWM") if exact_peak else _status_kb("VmRSS")
  return dict(name=name, path=path, delegate_requested=delegate, opened=opened,
              threads=n, load_ms=load_ms, rss_mb=max(0.0, (peak - rss0) / 1024),
              bytes=size, gzip_bytes=gz, rounds=[])


def _time_rounds(configs: List[dict], runs: int, rounds: int,
                 progress: Optional[Callable[[int, int], None]]) -> None:
  """Times every configuration in `rounds` rotated rounds, appending each round's samples
  (nanoseconds per invoke) to its "rounds"."""
  per_round = invokes(runs, rounds) // rounds
  for r in range(rounds):
    shift = r % len(configs)
    for c in configs[shift:] + configs[:shift]:
      invoke = c["opened"].interpreter.invoke
      samples = []
      c["rounds"].append(samples)
      for _ in range(per_round):
        t0 = time.perf_counter_ns()
        invoke()
        samples.append(time.perf_counter_ns() - t0)
    if progress:
      progress(r + 1, rounds)


def _to_timing(c: dict, warmup_runs: int) -> Timing:
  """The Timing of one timed configuration."""
  return Timing(
      name=c["name"], path=c["path"], delegate_requested=c["delegate_requested"],
      delegate=c["opened"].delegate, fallback_reason=c["opened"].fallback_reason or "",
      threads=c["threads"], warmup_runs=warmup_runs, runs=sum(map(len, c["rounds"])),
      **summarize(c["rounds"]), load_ms=c["load_ms"], peak_rss_increase_mb=c["rss_mb"],
      bytes=c["bytes"], gzip_bytes=c["gzip_bytes"])


def to_markdown(results: Sequence[Timing], reference: str) -> str:
  """A table of every configuration, with speed-ups against `reference` at the same settings."""
  ref = {(t.delegate_requested, t.threads): t for t in results if t.name == reference}
  lines = ["| file | kernels | threads | p50 ms | p90 ms | p99 ms | best round ms | std ms "
           "| disturbed rounds | load ms | peak RSS +MB | bytes | gzip bytes "
           "| speed-up (paired, p10-p90) | speed-up (best round) | speed-up (p50) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for t in results:
    r = ref.get((t.delegate_requested, t.threads))
    s = speedup(r, t) if r else None
    kernels = t.delegate + (" (fallback)" if t.fallback_reason else "")
    cells = ([s.describe(), f"{s.best_round:.2f}x", f"{s.p50:.2f}x"] if s else ["", "", ""])
    lines.append(f"| {t.name} | {kernels} | {t.threads} | {t.p50_ms:.4f} | {t.p90_ms:.4f} "
                 f"| {t.p99_ms:.4f} | {t.best_round_ms:.4f} | {t.std_ms:.4f} "
                 f"| {t.disturbed_rounds}/{t.rounds} | {t.load_ms:.1f} "
                 f"| {t.peak_rss_increase_mb:.1f} | {t.bytes:,} | {t.gzip_bytes:,} | "
                 + " | ".join(cells) + " |")
  rounds = results[0].rounds if results else 0
  lines += ["", f"Paired speed-up: the median over {rounds} interleaved rounds of the "
            f"reference's round median over the file's (p10-p90 of those ratios in brackets). "
            f"Best round: each file's lowest round median; a round is disturbed when its median "
            f"is over {DISTURBED:.2f}x the best."]
  notes = [f"- {t.name}: {t.fallback_reason}" for t in results if t.fallback_reason]
  if notes:
    lines += ["", "Fell back to builtin kernels:"] + sorted(set(notes))
  return "\n".join(lines)
