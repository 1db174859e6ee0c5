"""`--target_speedup=3`: structured rates chosen to reach a measured speed-up (NetAdapt's idea).

1. A latency table (pipeline/planning/latency_table.py) gives, for each prunable channel
   group, the latency of the model with only that group shrunk to each candidate count: timed
   here with LiteRT, or read from a device's table (--latency_table).
2. The predicted loss of each candidate is the validation cross-entropy increase with that
   group's lowest-scored channels zeroed (no fine-tuning). Not the accuracy drop: on 2,000
   images it is flat for small cuts, so a group whose cuts save almost no time looked free
   (BUILD.md, issue #10's figures: 0.51 points lost to uniform pruning that way).
3. A path of nested allocations, from the dense model down: each move takes the group whose
   next cut costs the least predicted loss per millisecond saved one candidate down. An
   allocation's predicted speed-up multiplies its groups' own latency fractions.
4. Groups do not combine exactly (two neighbours share the layer between them), so
   allocations on the path are built and timed
   against the dense model (paired, in one process), searching up from the first one predicted
   to reach the target, then bisecting, for the first that measures at least
   (1 - TOLERANCE) x the target. If that one overshoots by more than TOLERANCE because one
   coarse step jumped past the target, the path is tried again from the step before with that
   group held (and again, holding one more group, while a step still jumps past); of the
   allocations that reach the target, one within TOLERANCE of it is kept before one further
   above. If none reaches it, the fastest is kept and the run says so.
   With a table read off a device nothing is timed here: the first allocation predicted to
   reach the target is kept, and the prediction is what is reported.
"""

import dataclasses
import functools
import os
from typing import Callable, Dict, List, Optional

from absl import logging
import numpy as np

from export import console as console_lib
from pipeline import data as data_lib
from pipeline.planning import allocate as allocate_lib
from pipeline.planning import latency_table as table_lib
from pipeline.planning import sensitivity as sensitivity_lib
from pipeline.structured import prune as structured_lib
from pipeline.structured import surgery
from pipeline.models import train as train_lib
from pipeline.config import Config

TOLERANCE = 0.05  # A measured speed-up this close below the target counts as reaching it.


class BadTarget(ValueError):
  """Input that only the latency stage can judge (a table, a target): one line, exit 2."""


class Unreachable(BadTarget):
  """The target is above what the table allows."""


@dataclasses.dataclass(frozen=True)
class Plan:
  counts: Dict[str, int]  # Group -> channels to keep (groups not named stay whole).
  target: float
  predicted: float  # The table's prediction for `counts`.
  measured: Optional[float]  # Paired speed-up of the shrunken model timed here, or None.
  reached: bool  # measured (or, untimed, predicted) >= (1 - TOLERANCE) x target.
  tries: List[dict]  # Per allocation timed: path, step, predicted, measured, counts, kept.
  source: str  # Where the table came from.
  untimed_groups: List[str] = dataclasses.field(default_factory=list)  # Left whole: no entry.
  tolerance: float = TOLERANCE


def _options(table: table_lib.Table, losses: Optional[Dict[str, List[float]]] = None):
  """Per group: [(kept, saved ms, loss)] from kept-whole to the smallest count, with saved
  time and loss made non-decreasing, so noise cannot reward removing more."""
  out = {}
  for g, e in table.entries.items():
    saved = np.maximum.accumulate([0.0] + [table.reference_ms - m for m in e.ms])
    loss = np.maximum.accumulate([0.0] + [max(0.0, x) for x in (
        losses[g] if losses else [0.0] * len(e.kept))])
    out[g] = list(zip([e.channels] + e.kept, saved, loss))
  return out


def path(table: table_lib.Table, losses: Dict[str, List[float]],
         start: Optional[Dict[str, int]] = None, frozen=()) -> List[Dict[str, int]]:
  """Nested allocations from the dense model down to every group at its smallest count, each
  one candidate smaller than the one before in a single group: the cheapest way down.

  Args:
    table: the latency table.
    losses: group -> predicted loss (validation cross-entropy increase) at each of its
      table's kept counts (same order).
    start: the allocation to start from (default: the dense model).
    frozen: groups that keep their count in `start`.

  Returns:
    [{group: kept}] with `start` ({}: the dense model) first; every later entry is predicted faster.
    The move at each point goes to the group whose next cut (looking ahead to any smaller
    count, so a costly step before a cheap one is not a wall: allocate.cheapest) costs the
    least predicted loss per millisecond saved; that group then moves one candidate down.
  """
  options = _options(table, losses)
  start = start or {}
  at = {g: [o[0] for o in opts].index(start.get(g, opts[0][0])) for g, opts in options.items()}
  ladders = {g: [(saved, loss) for _, saved, loss in opts] for g, opts in options.items()}
  out = [dict(start)]
  while True:
    # Ties (flat curves) go to the group whose next candidate is the smaller cut.
    move = allocate_lib.cheapest(
        ladders, at, frozen,
        prefer=lambda g, j: options[g][at[g] + 1][0] / options[g][0][0])
    if move is None:
      return out
    g = move[0]
    # One candidate down, past any that save no time (equal ms after the running maximum).
    at[g] += 1
    while at[g] + 1 < len(options[g]) and options[g][at[g]][1] <= options[g][at[g] - 1][1]:
      at[g] += 1
    out.append({n: options[n][at[n]][0] for n in options if at[n] > 0})


def predicted(table: table_lib.Table, counts: Dict[str, int]) -> float:
  """The table's speed-up for `counts`: each group's own latency fraction (its time over the
  dense time, smoothed as `path` sees it), multiplied. Adding the savings instead counts a
  layer between two cut groups twice and can pass the dense time itself (an infinite
  prediction); multiplying never does. Fashion-MNIST small_cnn's table (AMD EPYC AVX2) for
  conv1 16, conv2 24, dense1 40: multiplied 2.76x, added 6.76x, measured 2.89x."""
  options = _options(table)
  fraction = 1.0
  for g, c in counts.items():
    saved = dict((k, s) for k, s, _ in options[g])[c]
    fraction *= max(1e-9, 1.0 - saved / table.reference_ms)
  return 1.0 / fraction


def most(table: table_lib.Table, target: float, device: bool) -> None:
  """Raises Unreachable if even every group of the table at its smallest count is predicted
  slower than `target` (which the losses cannot change)."""
  if not table.entries:
    raise Unreachable(f"--target_speedup={target:g}: no prunable channel group has a count to "
                      "cut to (all matched by --structured_skip_layers, or no wider than "
                      "--min_channels / --channel_multiple)")
  floor = {g: e.kept[-1] for g, e in table.entries.items()}
  best = predicted(table, floor)
  if best < target:
    how = ("time smaller counts on the device" if device else
           "lower --min_channels / --channel_multiple")
    raise Unreachable(f"--target_speedup={target:g}: the latency table predicts at most "
                      f"{best:.2f}x with its groups at their smallest counts ("
                      f"{', '.join(f'{g} {k}' for g, k in floor.items())}); ask for less, or "
                      f"{how}")


def plan(a: surgery.Analysis, table: table_lib.Table, losses: Dict[str, List[float]],
         target: float, time_pair: Optional[Callable] = None, device: bool = False) -> Plan:
  """The allocation on `path` to keep: measured with `time_pair(small model) -> Speedup`
  (against the dense model), else the first predicted to reach the target.

  Raises:
    Unreachable: the table predicts less than the target even at the end of the path.
  """
  most(table, target, device)
  steps = path(table, losses)
  preds = [predicted(table, c) for c in steps]
  first = next(i for i, p in enumerate(preds) if p >= target)
  if time_pair is None:
    return Plan(steps[first], target, preds[first], None, True, [], table.source)
  trials = _Trials(a, target, time_pair)
  trials.follow(steps, preds, "main")
  lo, hi = search(steps, trials.reaches, first)
  found = [trials.result(hi)] + _held_paths(table, losses, trials, steps, lo, hi, target)
  low = target * (1 - TOLERANCE)
  counts, pred, got, at = _best(found, target)
  trials.tries[at]["kept"] = True
  if got < low:
    logging.warning("--target_speedup=%g: not reached; the fastest allocation on the path "
                    "measured %.2fx.", target, got)
  return Plan(counts, target, pred, got, got >= low, trials.tries, table.source)


def _held_paths(table: table_lib.Table, losses: Dict[str, List[float]], trials: "_Trials",
                steps: List[Dict[str, int]], lo: int, hi: int, target: float) -> list:
  """The results (as `_Trials.result`) found on side paths, searched while the step kept
  (steps[hi], right after steps[lo]) overshoots the target by more than TOLERANCE."""
  found, held = [], set()
  while trials.measured[hi] > target * (1 + TOLERANCE) and hi - lo == 1:
    # One coarse step jumped over the target (a narrow layer's 8 channels can be a third of
    # the latency): go on from the step before it with that group held, in the other groups'
    # steps; if one of those jumps over too, hold it as well, until no group is left.
    held |= {g for g in steps[hi] if steps[hi][g] != steps[lo].get(g)}
    side = path(table, losses, steps[lo], held)
    if len(side) < 2:
      break
    steps, preds = side, [predicted(table, c) for c in side]
    trials.follow(steps, preds, f"side {len(held)}")
    lo, hi = search(side, trials.reaches, next((i for i, p in enumerate(preds) if p >= target),
                                               len(side) - 1))
    found.append(trials.result(hi))
  return found


def _best(found: list, target: float):
  """The result (counts, predicted, measured, try index) to keep of those `found`."""
  low = target * (1 - TOLERANCE)
  # Reaching first; then within the tolerance above rather than further; then the closest.
  return min(found, key=lambda f: (f[2] < low, f[2] > target * (1 + TOLERANCE),
                                   abs(f[2] / target - 1)))


class _Trials:
  """Times allocations of the path being searched (each allocation once, whichever path it
  is met on) and keeps every try for the report."""

  def __init__(self, a: surgery.Analysis, target: float, time_pair: Callable):
    self.a, self.target, self.time_pair = a, target, time_pair
    self.tries, self.seen = [], {}
    self.steps, self.preds, self.measured, self.label = [], [], {}, "main"

  def follow(self, steps, preds, label: str) -> None:
    """Searches `steps` (predicted `preds`) next: main, side 1, side 2, ..."""
    self.steps, self.preds, self.measured, self.label = steps, preds, {}, label

  def reaches(self, i: int) -> bool:
    """Whether step i, timed (once), reaches the target within TOLERANCE."""
    counts = self.steps[i]
    key = tuple(sorted(counts.items()))
    if key in self.seen:  # Timed on an earlier path.
      self.measured[i] = self.seen[key]
    if i not in self.measured:
      small = surgery.shrink(self.a, {g.id: np.arange(counts[",".join(g.producers)])
                                      for g in self.a.prunable()
                                      if ",".join(g.producers) in counts})
      self.measured[i] = self.seen[key] = self.time_pair(small).paired
      self.tries.append({"path": self.label, "step": i, "predicted": self.preds[i],
                         "measured": self.measured[i], "counts": dict(counts), "kept": False})
      logging.info("Speed target %.2fx: step %d of %d, predicted %.2fx, measured %.2fx: %s.",
                   self.target, i, len(self.steps) - 1, self.preds[i], self.measured[i], counts)
    return self.measured[i] >= self.target * (1 - TOLERANCE)

  def result(self, i: int):
    """(counts, predicted, measured, index of its latest try) of step i."""
    counts = self.steps[i]
    latest = max(j for j, t in enumerate(self.tries) if t["counts"] == counts)
    return counts, self.preds[i], self.measured[i], latest


def search(steps, reaches, first: int):
  """(lo, hi): steps[hi] is the first step that `reaches` (or the last step when none does);
  steps[lo] the last one before it known not to. Looks up from `first` with doubling strides
  (the first step predicted to reach is often measured short), then bisects."""
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
  """Raises the one-line ValueError a bad --latency_table (unreadable, or predicted unable to
  reach --target_speedup) would give, before any training. Without --baseline_path the
  model is untrained, whose folds may differ from the trained one's: the latency stage reads
  the table again against the trained model."""
  if cfg.latency_table:
    most(table_lib.load(cfg.latency_table, analysis(model, cfg)), cfg.target_speedup, True)


def choose(model, data: data_lib.Dataset, cfg: Config, out_dir: str, progress=None) -> Plan:
  """The kept counts for cfg.target_speedup; latency_table.{json,md} (and, when measured here,
  the candidate files in latency_table/) are written to `out_dir`.

  The predicted loss of a candidate zeroes the channels cfg.structured_criterion would
  remove; groups that criterion cannot score (bn_gamma without a BatchNorm) are left out.

  Raises:
    BadTarget: the table does not fit the trained model, or the target is above what it
      allows (Unreachable).
  """
  a = analysis(model, cfg)
  if cfg.latency_table:
    try:
      table = table_lib.load(cfg.latency_table, a)
    except ValueError as e:
      raise BadTarget(str(e)) from None
  else:
    table = table_lib.measure(a, cfg.channel_multiple, cfg.min_channels,
                              os.path.join(out_dir, "latency_table"), progress)
  table_lib.write(table, out_dir)
  x_cal, y_cal = data_lib.sample(data.train, cfg.calibration_examples, cfg.seed)
  scores = structured_lib.scores(a, cfg.structured_criterion, x_cal, y_cal)
  x, y = data_lib.sample(data.validation, sensitivity_lib.EXAMPLES)
  base = train_lib.cross_entropy(a.model, x, y)
  losses = {}
  for g in a.prunable():
    e = table.entries.get(",".join(g.producers))
    if e is not None and g.id in scores:
      after = sensitivity_lib.zeroed_accuracy(a, g, scores[g.id], [g.size - k for k in e.kept],
                                              x, y, progress, train_lib.cross_entropy)
      losses[e.group] = [v - base for v in after]
  untimed = [",".join(g.producers) for g in a.prunable()
             if ",".join(g.producers) not in losses]
  table = dataclasses.replace(table, entries={g: e for g, e in table.entries.items()
                                              if g in losses})
  time_pair = None
  if not cfg.latency_table:
    dense = os.path.join(out_dir, "latency_table", "dense.tflite")
    time_pair = functools.partial(table_lib.time_pair, dense)
  found = plan(a, table, losses, cfg.target_speedup, time_pair, bool(cfg.latency_table))
  return dataclasses.replace(found, untimed_groups=untimed)


def stage(baseline, data: data_lib.Dataset, cfg: Config, wd: str, con, seconds: dict) -> Plan:
  """The "latency" stage of a run (pipeline/job.py): table, losses, allocation, search."""
  with con.stage("latency", seconds) as info:
    bar = con.bar(None, "latency table", "step")
    try:
      with console_lib.native_output_to_log("the TFLite converter"):
        found = choose(baseline, data, cfg, wd, progress=lambda: bar.update(1))
    finally:
      bar.close()
    got = (f"measured {found.measured:.2f}x" if found.measured else
           f"predicted {found.predicted:.2f}x (not timed here)")
    info["summary"] = (f"target {found.target:g}x{'' if found.reached else ' NOT reached'}: "
                       f"{got}; keeps " + ", ".join(f"{g} {k}" for g, k in found.counts.items())
                       + f"; {cfg.workdir}/latency_table.md")
  return found
