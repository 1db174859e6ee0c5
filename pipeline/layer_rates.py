"""Per-layer pruning rates by hand: `--layer_rates=conv2:0.8,dense.*:0.95`.

Each entry is a layer name or a regular expression (matched against the whole name, with no
comma in it, since commas separate the entries) and the
fraction of that layer's weights to remove; the first entry that matches a layer wins, and
layers no entry matches keep --pruning_rate. TF-MOT then prunes each layer under its own
PolynomialDecay schedule.
"""

import re
from typing import Dict, List, Sequence, Tuple


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
      raise ValueError(f"--layer_rates={text}: {entry!r} is not LAYER:RATE with a rate in [0, 1) "
                       "(e.g. conv2:0.8)")
    try:
      re.compile(pattern)
    except re.error as e:
      raise ValueError(f"--layer_rates={text}: {pattern!r} is not a valid regex ({e})") from None
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
    raise ValueError(f"--layer_rates={text}: {', '.join(map(repr, unused))} matches no pruned "
                     f"layer that an earlier entry has not taken; the pruned layers are: "
                     f"{', '.join(layers)}")
  return rates
