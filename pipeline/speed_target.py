"""`--target_speedup=3`: structured rates chosen to reach a measured speed-up (NetAdapt's idea).

1. A latency table (pipeline/latency_table.py) gives, for each prunable channel group, the
   latency of the model with only that group shrunk to each candidate count: timed here with
   LiteRT, or read from a device's table (--latency_table).
2. The predicted loss of each candidate is the validation accuracy drop with that group's
   lowest-L1 channels zeroed (no fine-tuning), as in the sensitivity analysis.
3. A path of nested allocations, from the dense model down: each move takes the group whose
   next cut costs the least predicted loss per millisecond saved one candidate down.
4. Savings do not add up exactly (shrinking two neighbours shrinks the layer between them
   twice over, so the table over-predicts), so allocations on the path are built and timed
   against the dense model (paired, in one process), searching up from the first one predicted
   to reach the target, then bisecting: the first that measures within TOLERANCE of the
   target is kept. With a table read off a device there is nothing to time here, so the first
   one predicted to reach it is kept and the prediction is what is reported.
"""

import dataclasses
import os
from typing import Callable, Dict, List, Optional

from absl import logging
import numpy as np

from pipeline import console as console_lib
from pipeline import data as data_lib
from pipeline import latency_table as table_lib
from pipeline import sensitivity as sensitivity_lib
from pipeline import structured as structured_lib
from pipeline import surgery
from pipeline.config import Config

TOLERANCE = 0.10  # A measured speed-up this close below the target counts as reaching it.


class Unreachable(ValueError):
  """The target is above what the table allows."""


@dataclasses.dataclass(frozen=True)
class Plan:
  counts: Dict[str, int]  # Group -> channels to keep (groups not named stay whole).
  target: float
  predicted: float  # The table's prediction for `counts`.
  measured: Optional[float]  # Paired speed-up of the shrunken model timed here, or None.
  tries: List[dict]  # Per allocation: aimed-at speed-up, predicted, measured.
  source: str  # Where the table came from.


def path(table: table_lib.Table, losses: Dict[str, List[float]],
         start: Optional[Dict[str, int]] = None, frozen=()) -> List[Dict[str, int]]:
  """Nested allocations from the dense model down to every group at its smallest count, each
  one candidate smaller than the one before in a single group: the cheapest way down.

  Args:
    table: the latency table.
    losses: group -> predicted accuracy loss at each of its table's kept counts (same order).
    start: the allocation to start from (default: the dense model).
    frozen: groups that keep their count in `start`.

  Returns:
    [{group: kept}] with `start` ({}: the dense model) first; every later entry is predicted faster.
    The move at each point goes to the group whose next cut (looking ahead to any smaller
    count, so a costly step before a cheap one is not a wall) costs the least predicted loss
    per millisecond saved; that group then moves one candidate down.
  """
  # Per group: (kept, saved ms, loss), from kept-whole to the smallest count, with saved time
  # and loss made non-decreasing, so noise cannot reward removing more.
  options = {}
  for g, e in table.entries.items():
    saved = np.maximum.accumulate([0.0] + [table.reference_ms - m for m in e.ms])
    loss = np.maximum.accumulate([0.0] + [max(0.0, x) for x in losses[g]])
    options[g] = list(zip([e.channels] + e.kept, saved, loss))
  start = start or {}
  at = {g: [o[0] for o in opts].index(start.get(g, opts[0][0])) for g, opts in options.items()}
  out = [dict(start)]
  while True:
    best = None
    for g, opts in options.items():
      if g in frozen:
        continue
      here = opts[at[g]]
      for j in range(at[g] + 1, len(opts)):
        gain = opts[j][1] - here[1]
        if gain <= 0:
          continue
        cost = (opts[j][2] - here[2]) / gain
        share = opts[at[g] + 1][0] / opts[0][0]  # Ties (flat curves) go to the smaller cut.
        if best is None or cost < best[0] - 1e-12 or (
            abs(cost - best[0]) <= 1e-12 and share > best[2]):
          best = (cost, g, share)
    if best is None:
      return out
    g = best[1]
    # One candidate down, past any that save no time (equal ms after the running maximum).
    at[g] += 1
    while at[g] + 1 < len(options[g]) and options[g][at[g]][1] <= options[g][at[g] - 1][1]:
      at[g] += 1
    out.append({n: options[n][at[n]][0] for n in options if at[n] > 0})


def predicted(table: table_lib.Table, counts: Dict[str, int]) -> float:
  saved = sum(table.saved_ms(g, k) for g, k in counts.items())
  return table.reference_ms / max(1e-9, table.reference_ms - saved)


def plan(a: surgery.Analysis, table: table_lib.Table, losses: Dict[str, List[float]],
         target: float, time_pair: Optional[Callable] = None) -> Plan:
  """The first allocation on `path` that reaches the target: measured with `time_pair(dense,
  small) -> Speedup` (bisection over the path; within TOLERANCE below counts), else predicted.

  Raises:
    Unreachable: the table predicts less than the target even at the end of the path.
  """
  steps = path(table, losses)
  preds = [predicted(table, c) for c in steps]
  if preds[-1] < target:
    raise Unreachable(f"--target_speedup={target:g}: the latency table predicts at most "
                      f"{preds[-1]:.2f}x with every prunable group at its smallest count ("
                      f"{', '.join(f'{g} {k}' for g, k in steps[-1].items())}); ask for less, "
                      "or lower --min_channels / --channel_multiple")
  first = next(i for i, p in enumerate(preds) if p >= target)
  if time_pair is None:
    return Plan(steps[first], target, preds[first], None, [], table.source)
  tries, measured = [], {}

  def reaches(i):
    if i not in measured:
      small = surgery.shrink(a, {g.id: np.arange(steps[i][",".join(g.producers)])
                                 for g in a.prunable() if ",".join(g.producers) in steps[i]})
      measured[i] = time_pair(a.model, small).paired
      tries.append({"path": "side" if steps is not main else "main", "step": i,
                    "predicted": preds[i], "measured": measured[i],
                    "counts": dict(steps[i])})
      logging.info("Speed target %.2fx: step %d of %d, predicted %.2fx, measured %.2fx: %s.",
                   target, i, len(steps) - 1, preds[i], measured[i], steps[i])
    return measured[i] >= target * (1 - TOLERANCE)

  main = steps
  lo, hi = search(steps, reaches, first)
  best = (steps[hi], preds[hi], measured[hi])
  if measured[hi] > target * (1 + TOLERANCE) and hi - lo == 1:
    # One coarse step jumped over the target (a narrow layer's 8 channels can be a third of
    # the latency): go on from the step before it with that group held, in smaller steps.
    moved = [g for g in steps[hi] if steps[hi][g] != steps[lo].get(g)]
    side = path(table, losses, steps[lo], moved)
    if len(side) > 1:
      steps, preds = side, [predicted(table, c) for c in side]
      measured = {}
      _, hi2 = search(side, reaches, next((i for i, p in enumerate(preds) if p >= target),
                                            len(side) - 1))
      if abs(measured[hi2] / target - 1) < abs(best[2] / target - 1):
        best = (side[hi2], preds[hi2], measured[hi2])
  return Plan(best[0], target, best[1], best[2], tries, table.source)


def search(steps, reaches, first: int):
  """(lo, hi): steps[hi] is the first step that `reaches` (or the last step when none does);
  steps[lo] the last one before it known not to. Looks up from `first` with doubling strides
  (the table over-predicts, so the first predicted step is usually short), then bisects."""
  lo, hi = 0, None
  i, stride = first, 1
  while hi is None:
    if reaches(i):
      hi = i
    elif i == len(steps) - 1:
      return i, i
    else:
      lo, i, stride = i, min(len(steps) - 1, i + stride), stride * 2
  while hi - lo > 1:
    mid = (lo + hi) // 2
    if reaches(mid):
      hi = mid
    else:
      lo = mid
  return lo, hi


def analysis(model, cfg: Config) -> surgery.Analysis:
  """The channel groups the structured stage would see (same skip regex and fold)."""
  return surgery.analyze(model, cfg.structured_skip_layers,
                         structured_lib.choose_fold(model, cfg)[0])


def check(model, cfg: Config) -> None:
  """Raises the one-line ValueError a bad --latency_table would give, before any training."""
  if cfg.latency_table:
    table_lib.load(cfg.latency_table, analysis(model, cfg))


def choose(model, data: data_lib.Dataset, cfg: Config, out_dir: str, progress=None) -> Plan:
  """The kept counts for cfg.target_speedup; latency_table.{json,md} (and, when measured here,
  the candidate files in latency_table/) are written to `out_dir`.

  Raises:
    Unreachable: the target is above what the table allows.
  """
  a = analysis(model, cfg)
  if cfg.latency_table:
    table = table_lib.load(cfg.latency_table, a)
  else:
    table = table_lib.measure(a, cfg.channel_multiple, cfg.min_channels,
                              os.path.join(out_dir, "latency_table"), progress)
  table_lib.write(table, out_dir)
  x, y = data_lib.sample(data.validation, sensitivity_lib.EXAMPLES)
  base = float(np.mean(np.argmax(a.model.predict(x, batch_size=256, verbose=0), -1) == y))
  scores = structured_lib.scores(a, "l1", None, None)
  losses = {}
  for g in a.prunable():
    e = table.entries.get(",".join(g.producers))
    if e is not None:
      accuracy = sensitivity_lib.zeroed_accuracy(a, g, scores[g.id],
                                                 [g.size - k for k in e.kept], x, y, progress)
      losses[e.group] = [base - v for v in accuracy]
  table = dataclasses.replace(table, entries={g: e for g, e in table.entries.items()
                                              if g in losses})
  return plan(a, table, losses, cfg.target_speedup,
              None if cfg.latency_table else table_lib.time_pair)


def stage(baseline, data: data_lib.Dataset, cfg: Config, wd: str, con, seconds: dict) -> Plan:
  """The "latency" stage of a run (pipeline/job.py): table, losses, allocation, correction."""
  with con.stage("latency", seconds) as info:
    bar = con.bar(None, "latency table", "step")
    try:
      with console_lib.native_output_to_log("the TFLite converter"):
        found = choose(baseline, data, cfg, wd, progress=lambda: bar.update(1))
    finally:
      bar.close()
    got = (f"measured {found.measured:.2f}x" if found.measured else
           f"predicted {found.predicted:.2f}x (not timed here)")
    info["summary"] = (f"target {found.target:g}x: {got}; keeps " + ", ".join(
        f"{g} {k}" for g, k in found.counts.items()) + f"; {cfg.workdir}/latency_table.md")
  return found
