"""Sensitivity analysis: prune one layer at a time, no fine-tuning, and see what it costs.

For every layer TF-MOT would prune, its kernel's smallest-magnitude weights are zeroed to each
rate (what TF-MOT's mask would do to that layer alone); for every structured group, its
lowest-L1 channels are zeroed at the producers (what structured pruning removes, equal to
the smaller model before fine-tuning). Each variant is scored on the validation split, so the
test split stays unread. A layer whose curve stays flat can lose more than one that drops.
"""

import dataclasses
import json
import os
from typing import Dict, List, Sequence

from absl import logging
import numpy as np

from pipeline import config as config_lib
from pipeline.models import sparsity
from pipeline import data as data_lib
from pipeline.planning import layer_rates
from pipeline.unstructured import prune as prune_lib
from pipeline.structured import prune as structured_lib
from pipeline.structured import surgery
from pipeline.models import train as train_lib
from export import workdir as workdir_lib

RATES = config_lib.SENSITIVITY_RATES
EXAMPLES = 2000  # Validation images scored per variant, at most.


@dataclasses.dataclass(frozen=True)
class Curves:
  kind: str  # "unstructured" (weights of a layer) or "structured" (channels of a group).
  rates: List[float]
  baseline: float  # Validation accuracy of the unpruned model.
  accuracy: Dict[str, List[float]]  # Layer or group name -> accuracy at each rate.


def unstructured(model, layers: Sequence[str], rates: Sequence[float], x: np.ndarray,
                 y: np.ndarray, progress=None) -> Curves:
  """Each layer alone, its kernel's smallest |w| zeroed to each rate; `model` is restored."""
  out = {}
  for name in layers:
    layer = model.get_layer(name)
    weights = layer.get_weights()
    target = sparsity.pruned_weight(layer)
    k_index = next(i for i, w in enumerate(layer.weights) if w is target)
    kernel = weights[k_index]
    order = np.argsort(np.abs(kernel), axis=None, kind="stable")
    curve = []
    try:
      for r in rates:
        k = kernel.copy().reshape(-1)
        k[order[:int(round(r * k.size))]] = 0
        trial = list(weights)
        trial[k_index] = k.reshape(kernel.shape)
        layer.set_weights(trial)
        curve.append(train_lib.accuracy_on(model, x, y))
        if progress:
          progress()
    finally:
      layer.set_weights(weights)
    out[name] = curve
  return Curves("unstructured", list(rates), train_lib.accuracy_on(model, x, y), out)


def structured(model, rates: Sequence[float], x: np.ndarray, y: np.ndarray, skip: str = "",
               progress=None) -> Curves:
  """Each prunable group alone, its lowest-L1 channels zeroed at the producers to each rate."""
  a = surgery.analyze(model, skip, "approximate")
  scores = structured_lib.scores(a, "l1", None, None)
  out = {}
  for g in a.prunable():
    if g.id in scores:
      out[",".join(g.producers)] = zeroed_accuracy(
          a, g, scores[g.id], [int(round(r * g.size)) for r in rates], x, y, progress)
  return Curves("structured", list(rates), train_lib.accuracy_on(a.model, x, y), out)


def zeroed_accuracy(a: surgery.Analysis, g: surgery.Group, score: np.ndarray,
                    removed_counts: Sequence[int], x: np.ndarray, y: np.ndarray,
                    progress=None, metric=train_lib.accuracy_on) -> List[float]:
  """Accuracy (or `metric(model, x, y)`) of `a.model` with group `g`'s lowest-scored channels
  zeroed at its producers, for each count removed; the weights are restored afterwards."""
  saved = {p: a.model.get_layer(p).get_weights() for p in g.producers}
  order = np.argsort(score, kind="stable")  # Weakest first.
  curve = []
  try:
    for n in removed_counts:
      for p in g.producers:  # What surgery.masked does, in place: no copy per trial.
        layer = a.model.get_layer(p)
        layer.set_weights(surgery.zeroed(layer, saved[p], order[:n]))
      curve.append(metric(a.model, x, y))
      if progress:
        progress()
  finally:
    for p, w in saved.items():
      a.model.get_layer(p).set_weights(w)
  return curve


def analyze(model, data: data_lib.Dataset, pruning_scope: str, skip: str = "",
            rates: Sequence[float] = RATES, examples: int = EXAMPLES,
            progress=None) -> List[Curves]:
  """Both kinds of curves, on up to `examples` validation images (all when fewer)."""
  x, y = data_lib.sample(data.validation, examples)
  layers = prune_lib.prunable_layers(model, pruning_scope)
  curves = [unstructured(model, layers, rates, x, y, progress)]
  try:
    curves.append(structured(model, rates, x, y, skip, progress))
  except ValueError as e:  # A graph the channel surgery does not handle: say so, keep the rest.
    logging.warning("Structured sensitivity skipped: %s", e)
  return curves


def to_markdown(curves: Sequence[Curves], examples: int) -> str:
  lines = [f"Sensitivity: each layer (or channel group) pruned alone, no fine-tuning, accuracy "
           f"on {examples:,} validation images. Read it as: flat curves can lose more."]
  for c in curves:
    what = ("weights of the layer (smallest magnitude)" if c.kind == "unstructured" else
            "channels of the group (lowest L1, zeroed at its producers)")
    lines += ["", f"{c.kind.capitalize()}: fraction of the {what} removed; unpruned "
              f"{100 * c.baseline:.2f}%.", "",
              "| layer | " + " | ".join(f"{r:g}" for r in c.rates) + " |",
              "|---|" + "---|" * len(c.rates)]
    lines += [f"| {name} | " + " | ".join(f"{100 * v:.1f}%" for v in acc) + " |"
              for name, acc in c.accuracy.items()]
  return "\n".join(lines) + "\n"


def chart(curves: Sequence[Curves], path: str) -> str:
  """One panel per kind, one curve per layer; written atomically."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.5), squeeze=False)
  for ax, c in zip(axes[0], curves):
    for name, acc in c.accuracy.items():
      ax.plot(c.rates, [100 * v for v in acc], "o-", ms=3, label=name.split(",")[0])
    ax.axhline(100 * c.baseline, color="0.5", ls="--", lw=1)
    ax.set_title(f"{c.kind}: one layer at a time, no fine-tuning", fontsize=9)
    ax.set_xlabel("fraction removed")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    if len(c.accuracy) <= 12:
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path + ".tmp.png", dpi=110)
  os.replace(path + ".tmp.png", path)
  plt.close(fig)
  return path


def write(curves: Sequence[Curves], examples: int, out_dir: str) -> List[str]:
  """sensitivity.md, sensitivity.json and sensitivity.png in `out_dir`."""
  return [workdir_lib.atomic_write(os.path.join(out_dir, "sensitivity.md"),
                                   to_markdown(curves, examples)),
          workdir_lib.atomic_write(os.path.join(out_dir, "sensitivity.json"), json.dumps(
              {"examples": examples, "curves": [dataclasses.asdict(c) for c in curves]},
              indent=2) + "\n"),
          chart(curves, os.path.join(out_dir, "sensitivity.png"))]


def stage(baseline, data: data_lib.Dataset, cfg, wd: str, con, seconds: dict) -> List[Curves]:
  """--sensitivity: per-layer curves of the baseline, sensitivity.{md,json,png} in the run."""
  with con.stage("sensitivity", seconds) as info:
    bar = con.bar(None, "sensitivity", "variant")
    try:
      curves = analyze(baseline, data, cfg.pruning_scope, cfg.structured_skip_layers,
                       progress=lambda: bar.update(1))
    finally:
      bar.close()
    write(curves, min(len(data.validation), EXAMPLES), wd)
    info["summary"] = ", ".join(f"{len(c.accuracy)} {c.kind} curves" for c in curves) + (
        f" on validation; {cfg.workdir}/sensitivity.md")
  return curves


def auto_rates(baseline, curves, cfg) -> Dict[str, float]:
  """--layer_rates=auto: the per-layer rates chosen from the sensitivity curves to
  reach --pruning_rate over the pruned layers' weights with the least predicted loss."""
  sizes = {n: int(np.prod(sparsity.pruned_weight(baseline.get_layer(n)).shape))
           for n in prune_lib.prunable_layers(baseline, cfg.pruning_scope)}
  rates = layer_rates.allocate(curves, sizes, cfg.pruning_rate)
  logging.info("--layer_rates=auto chose, for %.0f%% overall: %s", 100 * cfg.pruning_rate,
               ", ".join(f"{n} {r:.1%}" for n, r in rates.items()))
  return rates
