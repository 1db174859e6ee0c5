"""The records `make bench` keeps on Fashion-MNIST small_cnn, each with and without --distill:
one recipe a user can run alone (a flagfile, or the flags named), and the target it is held to.

benchmarks/compare.py prunes each recipe from its one baseline, times every file with all the
others, and `verdicts` says per record and variant whether it was met, or by how much not.
"""

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence

from absl import flags


@dataclasses.dataclass(frozen=True)
class Record:
  name: str
  target: str  # In words, for the table.
  flagfile: Optional[str]  # The recipe's own flagfile, or None: `overrides` alone.
  overrides: dict  # Config fields on top of the flagfile's (or of the benchmark's own flags).
  figure: Callable[[dict], float]  # What is held to the target, from one file's row.
  at_least: float  # The figure must reach this...
  max_drop: float  # ...in a file at most this many points below the baseline.
  unit: str = "x"

  def recipe(self) -> str:
    def flag(k, v):
      if isinstance(v, bool):
        return f"--{k}" if v else f"--no{k}"
      return f"--{k}={','.join(v) if isinstance(v, tuple) else v}"
    extra = " ".join(flag(k, v) for k, v in self.overrides.items())
    return f"--flagfile={self.flagfile} {extra}".strip() if self.flagfile else extra


RECORDS = (
    Record("speed", ">= 5x lower latency than the dense float32 file, within 1.0 point",
           "configs/fashion_mnist_edge.flags", {}, lambda r: r["speedup"], 5.0, 1.0),
    Record("size", ">= 40x smaller (gzip) than the dense float32 file, within 1.0 point",
           "configs/fashion_mnist_small.flags", {}, lambda r: r["gzip_ratio"], 40.0, 1.0),
    Record("sparsity98", "98% unstructured sparsity within 1.0 point", None,
           {"prune": True, "pruning_rate": 0.98, "export_formats": ("float32",)},
           lambda r: 100 * r["sparsity"], 98.0, 1.0, "%"),
    Record("sparsity95", "95% unstructured sparsity with no loss", None,
           {"prune": True, "pruning_rate": 0.95, "export_formats": ("float32",)},
           lambda r: 100 * r["sparsity"], 95.0, 0.0, "%"),
)


def flagfile_values(path: str) -> dict:
  """{Config field: value} set by the lines of `path` itself (not the flagfiles it includes),
  parsed by the pipeline's own flag parsers."""
  values = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line.startswith("--") or line.startswith("--flagfile="):
        continue
      name, _, text = line[2:].partition("=")
      if not _ and name.startswith("no") and name[2:] in flags.FLAGS:
        values[name[2:]] = False
      elif not _:
        values[name] = True
      else:
        value = flags.FLAGS[name].parser.parse(text)
        values[name] = tuple(value) if isinstance(value, list) else value
  return values


def variants(cfg) -> Dict[str, tuple]:
  """{model name: (label, Config, Record)}: every record's recipe with and without --distill."""
  out = {}
  for rec in RECORDS:
    values = dict(flagfile_values(rec.flagfile) if rec.flagfile else {}, **rec.overrides)
    for distill in (False, True):
      rcfg = dataclasses.replace(cfg, **dict(values, distill=distill))
      name = f"record_{rec.name}" + ("_distill" if distill else "")
      out[name] = (f"R. {rec.name}: {rec.recipe()}" + (" --distill" if distill else
                                                         " --nodistill"), rcfg, rec)
  return out


def verdict(rec: Record, rows: Sequence[dict], baseline_accuracy: float, label: str) -> str:
  """Whether the best file of one variant met the record, or by how much it fell short."""
  ok = [r for r in rows if r["gate"] == "ok"]
  points = lambda r: 100 * (r["test_accuracy"] - baseline_accuracy)  # noqa: E731
  within = [r for r in ok if points(r) >= -rec.max_drop - 1e-9]
  if within:
    best = max(within, key=rec.figure)
    got = rec.figure(best)
    status = "met" if got >= rec.at_least - 1e-9 else (
        f"NOT met: {rec.at_least - got:.2f}{rec.unit} short")
    return (f"{label}: {best['name']} {got:.2f}{rec.unit} at {points(best):+.2f} points "
            f"(target {rec.target}): {status}.")
  if not ok:
    return f"{label}: no file passed its gates: NOT met."
  best = max(ok, key=points)
  return (f"{label}: NOT met: the most accurate file, {best['name']}, is {points(best):+.2f} "
          f"points ({rec.figure(best):.2f}{rec.unit}), {-points(best) - rec.max_drop:.2f} "
          f"points outside the target's {rec.max_drop:g}.")


def verdicts(plans: Dict[str, tuple], rows: Sequence[dict], baseline_accuracy: float
             ) -> List[str]:
  """One line per record variant, in `plans`' order (see `variants`)."""
  return [verdict(rec, [r for r in rows if r["model"] in (name, f"{name}_qat")],
                  baseline_accuracy, label) for name, (label, _, rec) in plans.items()]
