"""Which file to ship: the fastest and the smallest file within an accuracy budget, per target
(this CPU, emulated ARM, a phone), written once for the run report, the sweep table and
`python -m export.device`."""

import dataclasses
from typing import List, Optional, Sequence

DEFAULT_MAX_DROP = 1.0  # Points of test accuracy, when --max_accuracy_drop is not given.


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One file as measured on one target."""
  name: str
  accuracy_change: float  # Test accuracy minus the baseline's (a fraction: -0.01 is a point).
  speedup: Optional[float]  # Against the reference file on this target; None: not timed.
  gzip_ratio: float  # Reference gzip bytes / this file's.
  usable: bool = True  # Passed its gates, prepared, ran.


def _figures(c: Candidate, reference: str) -> str:
  speed = "not timed" if c.speedup is None else f"{c.speedup:.2f}x the speed of {reference}"
  return (f"{speed}, {c.gzip_ratio:.1f}x smaller (gzip), {100 * c.accuracy_change:+.2f} points "
          "of test accuracy")


def choose(candidates: Sequence[Candidate], max_drop_points: float):
  """(fastest, smallest) among usable candidates within `max_drop_points`; None where none."""
  ok = [c for c in candidates if c.usable and 100 * c.accuracy_change >= -max_drop_points - 1e-9]
  timed = [c for c in ok if c.speedup is not None]
  fastest = max(timed, key=lambda c: (c.speedup, c.gzip_ratio)) if timed else None
  smallest = max(ok, key=lambda c: (c.gzip_ratio, c.speedup or 0.0)) if ok else None
  return fastest, smallest


def lines(candidates: Sequence[Candidate], target: str, reference: str,
          max_drop_points: Optional[float]) -> List[str]:
  """'Which file to ship' for one target: the fastest and the smallest file within the budget
  (default DEFAULT_MAX_DROP points), the reference file itself left out, or why none is."""
  drop = DEFAULT_MAX_DROP if max_drop_points is None else max_drop_points
  given = ("--max_accuracy_drop" if max_drop_points is not None else
           "the default; --max_accuracy_drop sets it")
  others = [c for c in candidates if c.name != reference]
  if not others:
    return []  # Nothing to choose between.
  out = [f"Which file to ship, {target}: the fastest and the smallest within {drop:g} "
         f"point{'' if drop == 1 else 's'} of the baseline's test accuracy ({given}):"]
  fastest, smallest = choose(others, drop)
  if fastest is None and smallest is None:
    usable = [c for c in others if c.usable]
    if not usable:
      return out + [f"- none: no file other than {reference} passed its checks."]
    best = max(usable, key=lambda c: c.accuracy_change)
    return out + [f"- none qualifies: the most accurate, {best.name}, is "
                  f"{100 * best.accuracy_change:+.2f} points; ship {reference}, or prune "
                  "less, or fine-tune longer (--fine_tune_epochs)."]
  if fastest is not None and fastest.speedup > 1:
    out.append(f"- fastest: {fastest.name}: {_figures(fastest, reference)}.")
  elif fastest is not None:
    out.append(f"- fastest: {reference} itself: no other file within the bound is faster here "
               f"(the closest, {fastest.name}: {_figures(fastest, reference)}).")
  if smallest is not None:
    same = (" (the same file)" if fastest is not None and fastest.speedup > 1
            and smallest.name == fastest.name else "")
    out.append(f"- smallest: {smallest.name}{same}: {_figures(smallest, reference)}.")
  return out
