"""The one greedy allocator behind --layer_rates=auto (layer_rates.allocate: weights removed
per layer) and --target_speedup (speed_target.path: milliseconds saved per channel group).

Each group has a ladder of rungs, (gain so far, predicted loss so far), from "nothing removed"
up; the move chosen is the one with the least loss per unit of gain, looking ahead past every
rung above the group's current one, so a costly rung before a cheap one is not a wall.
"""

from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

TIE = 1e-12  # Costs this close are equal; the caller's `prefer` decides.


def cheapest(ladders: Dict[str, Sequence[Tuple[float, float]]], at: Dict[str, int],
             frozen: Iterable[str] = (), prefer: Optional[Callable[[str, int], float]] = None,
             scale: Optional[Dict[str, float]] = None) -> Optional[Tuple[str, int]]:
  """(group, rung) of the move from `at` that costs the least loss per unit of gain, or None
  when no group can move.

  Args:
    ladders: group -> [(gain, loss)] per rung, rung 0 = nothing removed.
    at: group -> the rung it stands on.
    frozen: groups that do not move.
    prefer: ties (costs within TIE) go to the move with the largest prefer(group, rung).
    scale: group -> what one unit of its gain is worth (e.g. its weight count); default 1.

  A move that gains nothing is never chosen.
  """
  frozen, best = set(frozen), None
  for g, ladder in ladders.items():
    if g in frozen:
      continue
    gain_here, loss_here = ladder[at[g]]
    for j in range(at[g] + 1, len(ladder)):
      gain = (ladder[j][0] - gain_here) * (scale[g] if scale else 1)
      if gain <= 0:
        continue
      cost = (ladder[j][1] - loss_here) / gain
      key = prefer(g, j) if prefer else 0.0
      if best is None or cost < best[0] - TIE or (abs(cost - best[0]) <= TIE and key > best[3]):
        best = (cost, g, j, key)
  return None if best is None else (best[1], best[2])
