"""The pruning stages, in order: "blocks" (--remove_blocks), "structured" (--structured_rate,
or a --target_speedup plan), "prune" (TF-MOT, --prune), "budget" (--max_accuracy_drop) and
"cluster" (--cluster); then "qat" (--quantize_aware), which leaves a second model, the
quantization-aware copy the int8 file qat_int8 comes from. Each takes the float model the one
before left; `run` chains them and gathers the report fields."""

import dataclasses
import os
from typing import Dict, Optional

from export import console as console_lib
from pipeline import data as data_lib
from pipeline.config import Config
from pipeline.models import train as train_lib
from pipeline.stages import progress as progress_lib
from pipeline.collab import cluster as cluster_lib
from pipeline.collab import qat as qat_lib
from pipeline.planning import budget as budget_lib
from pipeline.planning import layer_rates
from pipeline.planning import speed_target
from pipeline.structured import blocks as blocks_lib
from pipeline.structured import prune as structured_lib
from pipeline.unstructured import prune as prune_lib
from pipeline.models import sparsity as sparsity_lib

_HOW = {"polynomial": "TF-MOT PolynomialDecay", "constant": "TF-MOT ConstantSparsity",
        "one_shot": "{criterion}, one-shot", "iterative": "{criterion}, {rounds} iterative rounds"}


def run(baseline, data: data_lib.Dataset, cfg: Config, wd: str, con: console_lib.Console,
        seconds: dict, schedule: Optional[prune_lib.Schedule] = None,
        plan: Optional[speed_target.Plan] = None,
        chosen_rates: Optional[Dict[str, float]] = None,
        progress: Optional[progress_lib.Progress] = None):
  """Structured (cfg.structured_rate, or the counts of `plan` for --target_speedup) then
  unstructured (cfg.prune, at `chosen_rates` for --layer_rates=auto) pruning of a copy.
  With `progress`, each stage that finished before is loaded, not run (`<wd>/<stage>.keras`).

  Returns:
    (final model, report fields about the pruning, names of the layers TF-MOT pruned).
  """
  final, row, pruned_layers = baseline, {}, []

  def once(name, run_stage):
    if progress is None:
      return run_stage()
    return progress_lib.model_stage(progress, name, wd, run_stage, seconds)

  if cfg.remove_blocks:
    final, row["blocks"] = once("blocks", lambda: _blocks(final, data, cfg, wd, con, seconds))
  if cfg.structured_rate > 0 or plan:
    final, row["structured"] = once(
        "structured", lambda: _structured(final, data, cfg, wd, con, seconds, plan))
  if cfg.prune:
    model, fields = once("prune", lambda: _encoded(_prune(final, data, cfg, wd, con, seconds,
                                                          schedule, chosen_rates)))
    result = _decoded(model, fields)
    final, pruned_layers = result.model, result.pruned_layers
    if cfg.max_accuracy_drop is not None:
      final, fields = once("budget", lambda: _budget(baseline, result, data, cfg, wd, con,
                                                     seconds))
      result, row["budget"] = _decoded(final, fields["result"]), fields["fields"]
    row.update(best_epoch=result.fit.best_epoch, val_accuracy=result.fit.best_val_accuracy,
               layer_rates=result.layer_rates, schedule=dataclasses.asdict(result.schedule))
  if cfg.cluster:
    final, row["cluster"] = once("cluster", lambda: _cluster(final, data, cfg, wd, con, seconds))
  if cfg.quantize_aware:
    row["qat"] = _qat_once(final, data, cfg, wd, con, seconds, bool(pruned_layers), progress)
  return final, row, pruned_layers


def _encoded(result: prune_lib.PruneResult):
  """(model, JSON fields) of a PruneResult, as the stage log keeps it."""
  return result.model, {"pruned_layers": result.pruned_layers,
                        "schedule": dataclasses.asdict(result.schedule),
                        "fit": dataclasses.asdict(result.fit), "layer_rates": result.layer_rates}


def _decoded(model, fields: dict) -> prune_lib.PruneResult:
  return prune_lib.PruneResult(model=model, pruned_layers=fields["pruned_layers"],
                               schedule=prune_lib.Schedule(**fields["schedule"]),
                               fit=train_lib.FitResult(**fields["fit"]),
                               layer_rates=fields["layer_rates"])


def _blocks(model, data, cfg: Config, wd: str, con, seconds: dict):
  with con.stage("blocks", seconds) as info:
    final, fields = blocks_lib.remove_blocks(model, data, cfg, wd,
                                             [console_lib.epoch_bar(con, "blocks")])
    info["summary"] = (f"removed {', '.join(b['block'] for b in fields['removed'])}; "
                       f"parameters {model.count_params():,} -> {final.count_params():,}")
  return final, fields


def _structured(model, data, cfg: Config, wd: str, con, seconds: dict, plan):
  with con.stage("structured", seconds) as info:
    s = structured_lib.prune_structures(model, data, cfg, wd,
                                        [console_lib.epoch_bar(con, "structured")],
                                        counts=plan and plan.counts)
    info["summary"] = (f"{cfg.structured_criterion}, {cfg.structured_scope}: parameters "
                       f"{s.params_before:,} -> {s.params_after:,}, MACs "
                       f"{s.macs_after / s.macs_before:.2f}x")
  fields = {
      "rate": cfg.structured_rate, "criterion": cfg.structured_criterion,
      "scope": cfg.structured_scope, "steps": s.steps, "skipped": s.skipped, "fold": s.fold,
      "channel_multiple": cfg.channel_multiple, "fold_reason": s.fold_reason,
      # Reported only (nothing is chosen by it): what the structured stage alone kept.
      "test_accuracy": train_lib.evaluate(s.model, data.test)}
  if plan:
    fields["target"] = dataclasses.asdict(plan)
  return s.model, fields


def _prune(model, data, cfg: Config, wd: str, con, seconds: dict, schedule, chosen_rates):
  with con.stage("prune", seconds) as info:
    result = prune_lib.prune(model, data, cfg, wd,
                             layer_rates.for_model(model, cfg, chosen_rates), schedule,
                             [console_lib.epoch_bar(con, "prune")])
    reached = sparsity_lib.summarize(result.model, result.pruned_layers)["sparsity"]
    names = result.pruned_layers
    on = (", ".join(names) if len(names) <= 6 else
          f"{len(names)} layers ({names[0]} ... {names[-1]})")
    how = _HOW[cfg.schedule].format(criterion=cfg.pruning_criterion,
                                    rounds=cfg.iterative_rounds)
    info["summary"] = (f"{how} to {reached:.1%} sparsity on {on}, kept epoch "
                       f"{result.fit.best_epoch or '-'}")
  return result


def _budget(baseline, result, data, cfg: Config, wd: str, con, seconds: dict):
  """--max_accuracy_drop: raises the rate step by step from `result`; returns the model kept
  and {"result": `result` with the per-layer rates it has (encoded), "fields": the report's}."""
  with con.stage("budget", seconds) as info:
    found = budget_lib.search(baseline, result, data, cfg, os.path.join(wd, "logs", "budget"),
                              [console_lib.epoch_bar(con, "budget")])
    info["summary"] = (f"kept {found.rate:.2%} sparsity ({len(found.path) - 1} step(s)); "
                       f"{found.stopped}")
  reached = sparsity_lib.layer_sparsity(found.model)  # Per layer: global_magnitude's own.
  result = dataclasses.replace(result, layer_rates={n: reached[n] for n in result.layer_rates})
  fields = {"max_drop": cfg.max_accuracy_drop, "rate": found.rate,
            "baseline_val_accuracy": found.baseline_val_accuracy, "path": found.path,
            "stopped": found.stopped}
  return found.model, {"result": _encoded(result)[1], "fields": fields}


def _cluster(model, data, cfg: Config, wd: str, con, seconds: dict):
  with con.stage("cluster", seconds) as info:
    c = cluster_lib.cluster(model, data, cfg, wd, [console_lib.epoch_bar(con, "cluster")])
    kept = cluster_lib.describe(c.model, c.layers, cfg.cluster_per_channel)
    info["summary"] = (f"{cfg.cluster} values per {'channel' if cfg.cluster_per_channel else 'kernel'}"
                       f" on {', '.join(c.layers)}, kept epoch {c.fit.best_epoch or '-'}")
  return c.model, {"clusters": cfg.cluster, "per_channel": cfg.cluster_per_channel,
                   "layers": kept, "skipped": c.skipped, "best_epoch": c.fit.best_epoch,
                   "val_accuracy": c.fit.best_val_accuracy,
                   "test_accuracy": train_lib.evaluate(c.model, data.test)}


def _qat_once(model, data, cfg: Config, wd: str, con, seconds: dict, pruned: bool, progress):
  """The "qat" stage: its weights in wd/qat.weights.npz (qat_lib.save), its report fields in
  the stage log; read back, not run, where it finished before."""
  if progress is not None and progress.done("qat"):
    return progress.result("qat")
  if progress is not None:
    progress.start("qat")
  with con.stage("qat", seconds) as info:
    q = qat_lib.quantize_aware(model, data, cfg, wd, pruned, bool(cfg.cluster),
                               [console_lib.epoch_bar(con, "qat")])
    info["summary"] = (f"{q.scheme}, {cfg.qat_epochs} epoch(s) at {cfg.qat_learning_rate:g}, "
                       f"kept epoch {q.fit.best_epoch or '-'}")
  qat_lib.save(q.model, os.path.join(wd, qat_lib.WEIGHTS))
  fields = {"scheme": q.scheme, "epochs": cfg.qat_epochs, "learning_rate": cfg.qat_learning_rate,
            "output_only": q.output_only, "best_epoch": q.fit.best_epoch,
            "val_accuracy": q.fit.best_val_accuracy}
  if progress is not None:
    progress.record("qat", fields, [qat_lib.WEIGHTS], seconds.get("qat"))
  return fields
