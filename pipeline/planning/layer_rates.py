"""Per-layer pruning rates by hand: `--layer_rates=conv2:0.8,dense.*:0.95`.

Each entry is a layer name or a regular expression (matched against the whole name, with no
comma in it, since commas separate the entries) and the fraction of that layer's weights to
remove; the first entry that matches a layer wins, and layers no entry matches keep
--pruning_rate. TF-MOT then prunes each layer under its own PolynomialDecay schedule.

`--layer_rates=auto` chooses them from the sensitivity curves instead (`allocate`).
"""

import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from pipeline.planning import allocate as allocate_lib
from pipeline.unstructured import prune as prune_lib
from pipeline.config import FlagError


def parse(text: str) -> List[Tuple[str, float]]:
  """'conv2:0.8,dense.*:0.95' -> [('conv2', 0.8), ('dense.*', 0.95)].

  Raises:
    ValueError: an entry that is not PATTERN:RATE, a bad regex, or a rate outside [0, 1).
  """
  out = []
  for entry in filter(None, (e.strip() for e in text.split(","))):
    pattern, sep, rate_text = entry.rpartition(":")
    try:
      rate = float(rate_text) if sep and pattern else -1.0
    except ValueError:
      rate = -1.0
    if not 0.0 <= rate < 1.0:
      raise FlagError("layer_rates", text, f"{entry!r} is not LAYER:RATE with a rate in [0, 1) "
                      "(e.g. conv2:0.8)")
    try:
      re.compile(pattern)
    except re.error as e:
      raise FlagError("layer_rates", text, f"{pattern!r} is not a valid regex ({e})") from None
    out.append((pattern, rate))
  return out


def resolve(spec: Sequence[Tuple[str, float]], layers: Sequence[str], default: float,
            text: str = "") -> Dict[str, float]:
  """{layer: rate} for every layer to prune.

  Raises:
    ValueError: an entry matches none of `layers` (the prunable ones are listed).
  """
  rates, used = {}, set()
  for name in layers:
    rates[name] = default
    for pattern, rate in spec:
      if re.fullmatch(pattern, name):
        rates[name] = rate
        used.add(pattern)
        break
  unused = [p for p, _ in spec if p not in used]
  if unused:
    raise FlagError("layer_rates", text, f"{', '.join(map(repr, unused))} matches no pruned "
                    f"layer that an earlier entry has not taken; the pruned layers are: "
                    f"{', '.join(layers)}")
  return rates


def rates_for(layers: Sequence[str], text: str, default: float,
              chosen: Optional[Dict[str, float]] = None) -> Dict[str, float]:
  """{layer: final sparsity} for the layers TF-MOT prunes, zero rates left out: `chosen` (the
  rates --layer_rates=auto decided) or the --layer_rates `text`, and `default` for the rest.

  Raises:
    ValueError: a --layer_rates entry that cannot be parsed or matches no layer, or rates that
      leave no layer to prune.
  """
  if chosen is not None:
    rates = {n: chosen.get(n, default) for n in layers}
  else:
    rates = resolve(parse(text) if text else [], layers, default, text)
  rates = {n: r for n, r in rates.items() if r > 0}
  if not rates:
    raise FlagError("layer_rates", text, "leaves no layer to prune; drop --prune for a "
                    "dense model")
  return rates


def for_model(model, cfg, chosen: Optional[Dict[str, float]] = None) -> Dict[str, float]:
  """rates_for over the layers `model` prunes under `cfg` (--pruning_scope, --pruning_policy),
  with --layer_rates and --pruning_rate: the rates unstructured/prune.prune takes."""
  return rates_for(prune_lib.layers_in_scope(model, cfg), cfg.layer_rates, cfg.pruning_rate,
                   chosen)


def allocate(curves, sizes: Dict[str, int], target: float) -> Dict[str, float]:
  """Per-layer rates reaching `target` sparsity over the layers of `sizes` (weights counted)
  with the least predicted loss, from sensitivity curves (sensitivity.Curves, unstructured).

  The predicted loss of a layer at a rate is its validation accuracy drop when pruned alone
  (made non-decreasing in the rate, so noise cannot reward pruning more); losses of layers
  add up. Greedy on the grid of measured rates (allocate.cheapest): the step with the least
  loss per weight removed goes first; the last step stops exactly at the target.

  Raises:
    ValueError: the target is above the highest measured rate, or a layer has no curve.
  """
  missing = [n for n in sizes if n not in curves.accuracy]
  if missing:
    raise FlagError("layer_rates", "auto", f"no sensitivity curve for {', '.join(missing)}")
  grid = [0.0] + list(curves.rates)
  if target > grid[-1]:
    raise FlagError("layer_rates", "auto", f"--pruning_rate={target} is above the highest rate "
                    f"the sensitivity analysis measures ({grid[-1]})")
  ladders = {}
  for n in sizes:
    drops = [0.0] + [max(0.0, curves.baseline - a) for a in curves.accuracy[n]]
    ladders[n] = list(zip(grid, np.maximum.accumulate(drops)))
  at = {n: 0 for n in sizes}
  need = target * sum(sizes.values())
  rates = {n: 0.0 for n in sizes}
  while sum(rates[n] * sizes[n] for n in sizes) < need - 1e-9:
    # Ties (flat curves) go to the lower resulting rate, so layers rise together.
    move = allocate_lib.cheapest(ladders, at, prefer=lambda n, j: -grid[j], scale=sizes)
    if move is None:  # Every layer at the highest rate: as close to the target as it gets.
      break
    n, j = move
    others = sum(rates[m] * sizes[m] for m in sizes if m != n)
    at[n] = j
    rates[n] = min(grid[j], (need - others) / sizes[n])
  return rates
