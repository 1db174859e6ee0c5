"""The Pareto frontier of a sweep, and its charts: accuracy against size and against speed."""

import os
from typing import List, Sequence


def frontier(xs: Sequence[float], ys: Sequence[float]) -> List[int]:
  """Indices of the points no other point beats: none has x as low and y as high, one of them
  strictly. Lower x is better (size, latency), higher y is better (accuracy). Sorted by x."""
  order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
  out, best = [], float("-inf")
  for i in order:
    if ys[i] > best:
      out.append(i)
      best = ys[i]
  return out


def chart(rows: Sequence[dict], x_key: str, x_label: str, path: str, log_x: bool = False,
          title: str = "") -> str:
  """One marker per row (test accuracy against `x_key`); the frontier joined and labelled.

  Rows need "label", "test_accuracy" and `x_key`; writes `path` atomically and returns it.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  xs = [r[x_key] for r in rows]
  ys = [100 * r["test_accuracy"] for r in rows]
  best = frontier(xs, ys)
  fig, ax = plt.subplots(figsize=(8, 5))
  ax.scatter(xs, ys, s=30, color="0.6", label="every file")
  ax.plot([xs[i] for i in best], [ys[i] for i in best], "o-", color="C1", label="Pareto frontier")
  for i in sorted(set(best) | {i for i, r in enumerate(rows) if r["label"] == "baseline"}):
    ax.annotate(rows[i]["label"], (xs[i], ys[i]), fontsize=7, xytext=(4, -3),
                textcoords="offset points")  # The others are in the table; labels would pile up.
  if log_x:
    ax.set_xscale("log")
  ax.set_xlabel(x_label)
  if title:
    ax.set_title(title, fontsize=8)
  ax.set_ylabel("test accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=110)
  os.replace(tmp, path)
  plt.close(fig)
  return path
