"""Which flags go together: every rule that needs only the flags, checked before TensorFlow
loads (`check`), so a bad combination costs a fraction of a second, not an import.

Rules that need the data or the model (a criterion the model's layers support, a target the
graph can reach) run in pipeline/job.py's preflight, after loading, still before training.
"""

import os
from typing import Optional, Tuple

from export import workdir as workdir_lib
from pipeline import config as config_lib
from pipeline.config import Config, FlagError


def pattern(text: str, flag: str) -> Optional[Tuple[int, int]]:
  """'2,4' -> (2, 4); '' -> None: the value of --sparsity_m_by_n or --block_size.

  Raises:
    FlagError: not two positive integers (and for --sparsity_m_by_n, M < N).
  """
  if not text:
    return None
  try:
    a, b = (int(p) for p in text.split(","))
  except ValueError:
    a = b = 0
  if a < 1 or b < 1 or (flag == "sparsity_m_by_n" and a >= b):
    want = "M,N with 0 < M < N (e.g. 2,4)" if flag == "sparsity_m_by_n" else (
        "two positive integers, rows,columns (e.g. 1,4)")
    raise FlagError(flag, text, f"must be {want}")
  return a, b


def check(cfg: Config) -> None:
  """Raises FlagError, naming the flag and value at fault, for flags that do not go together."""
  _check_needs_prune(cfg)
  if cfg.structured_rate > 0 and cfg.target_speedup:
    raise FlagError("target_speedup", f"{cfg.target_speedup:g}", "chooses the structured rates "
                    f"itself; leave --structured_rate (now {cfg.structured_rate:g}) at 0")
  if cfg.strategy == "multi_worker" and cfg.target_speedup:
    raise FlagError("target_speedup", f"{cfg.target_speedup:g}", "chooses rates by timing "
                    "models, and each worker would time its own; with --strategy=multi_worker "
                    "use --structured_rate (or plan it in a one-worker run first)")
  _check_distill(cfg)
  if cfg.latency_table and not cfg.target_speedup:
    raise FlagError("latency_table", cfg.latency_table, "is read only with --target_speedup")
  if cfg.prune:
    _check_schedule(cfg)
    _check_patterns(cfg)
    _check_layer_rates(cfg)


def check_paths(cfg: Config, workdir: bool = True) -> None:
  """Paths given that do not exist, and (if `workdir`) a --workdir that cannot be used: checked
  before TensorFlow loads, so a typo costs a fraction of a second (preflight checks them
  again)."""
  if cfg.data_dir and not os.path.isdir(cfg.data_dir):
    raise FlagError("data_dir", cfg.data_dir, "no such directory")
  for flag in ("baseline_path", "teacher_path"):
    if getattr(cfg, flag) and not os.path.exists(getattr(cfg, flag)):
      raise FlagError(flag, getattr(cfg, flag), "no such file or directory")
  if workdir:
    workdir_lib.check(cfg.workdir, cfg.overwrite)


def _check_needs_prune(cfg: Config) -> None:
  if cfg.max_accuracy_drop is not None and (not cfg.prune or cfg.layer_rates):
    raise FlagError("max_accuracy_drop", f"{cfg.max_accuracy_drop:g}", "raises --pruning_rate "
                    "step by step, so it needs --prune and no --layer_rates")
  unstructured = [(k, v) for k, v, default in (
      ("schedule", cfg.schedule, "polynomial"),
      ("pruning_criterion", cfg.pruning_criterion, "magnitude"),
      ("sparsity_m_by_n", cfg.sparsity_m_by_n, ""), ("block_size", cfg.block_size, ""),
      ("pruning_policy", cfg.pruning_policy, "")) if v != default]
  if unstructured and not cfg.prune:
    raise FlagError(*unstructured[0], "sets how TF-MOT prunes weights, so it needs --prune")
  if cfg.layer_rates and not cfg.prune:
    raise FlagError("layer_rates", cfg.layer_rates, "sets TF-MOT's per-layer rates, so it "
                    "needs --prune")


def _check_distill(cfg: Config) -> None:
  for flag in ("teacher_path", "distill_alpha", "distill_temperature"):
    value = getattr(cfg, flag)
    if value != getattr(Config, flag) and not cfg.distill:  # Set, but nothing reads it.
      raise FlagError(flag, f"{value:g}" if isinstance(value, float) else value,
                      "is read only with --distill; add it")
  prunes = cfg.prune or cfg.structured_rate > 0 or cfg.target_speedup or cfg.remove_blocks
  if cfg.distill and not prunes:
    raise FlagError("distill", True, "teaches the fine-tuning of a pruned model; add --prune, "
                    "--structured_rate, --target_speedup or --remove_blocks")
  if cfg.distill and cfg.fine_tune_epochs == 0:
    raise FlagError("distill", True, "has no fine-tuning to teach with --fine_tune_epochs=0")


def _check_schedule(cfg: Config) -> None:
  """A schedule and criterion that do not go together."""
  if cfg.schedule not in config_lib.SCHEDULES:
    raise FlagError("schedule", cfg.schedule,
                    f"unknown; valid: {', '.join(config_lib.SCHEDULES)}")
  if cfg.pruning_criterion not in config_lib.PRUNING_CRITERIA:
    raise FlagError("pruning_criterion", cfg.pruning_criterion,
                    f"unknown; valid: {', '.join(config_lib.PRUNING_CRITERIA)}")
  if cfg.schedule in ("polynomial", "constant") and cfg.pruning_criterion != "magnitude":
    raise FlagError("pruning_criterion", cfg.pruning_criterion, f"TF-MOT's {cfg.schedule} "
                    "schedule re-chooses masks by magnitude as it goes; use "
                    "--schedule=one_shot or --schedule=iterative")
  if cfg.fine_tune_epochs == 0 and cfg.schedule != "one_shot":
    raise FlagError("fine_tune_epochs", 0, "only --schedule=one_shot prunes without "
                    f"fine-tuning (now --schedule={cfg.schedule})")
  if cfg.schedule == "iterative" and cfg.fine_tune_epochs < cfg.iterative_rounds:
    raise FlagError("iterative_rounds", cfg.iterative_rounds, "each round fine-tunes at least "
                    f"one epoch, more than --fine_tune_epochs={cfg.fine_tune_epochs}")
  if cfg.pruning_criterion == "global_magnitude" and cfg.layer_rates:
    raise FlagError("pruning_criterion", "global_magnitude", "chooses each layer's rate itself "
                    f"(one threshold); drop --layer_rates={cfg.layer_rates}")


def _check_patterns(cfg: Config) -> None:
  """Patterns that cannot be honoured."""
  m_by_n = pattern(cfg.sparsity_m_by_n, "sparsity_m_by_n")
  block = pattern(cfg.block_size, "block_size")
  if cfg.pruning_policy not in ("", "xnnpack"):
    raise FlagError("pruning_policy", cfg.pruning_policy, "unknown; valid: xnnpack")
  if not (m_by_n or block or cfg.pruning_policy):
    return
  flag = (("sparsity_m_by_n", cfg.sparsity_m_by_n) if m_by_n else
          ("block_size", cfg.block_size) if block else ("pruning_policy", cfg.pruning_policy))
  if sum(map(bool, (m_by_n, block, cfg.pruning_policy))) > 1:
    raise FlagError(*flag, "take one of --sparsity_m_by_n, --block_size and --pruning_policy")
  if cfg.schedule not in ("polynomial", "constant") or cfg.pruning_criterion != "magnitude":
    raise FlagError(*flag, "TF-MOT applies it with its own magnitude schedules; use "
                    "--schedule=polynomial or constant and --pruning_criterion=magnitude")
  if cfg.layer_rates:
    raise FlagError(*flag, f"sets every pruned layer's pattern; drop "
                    f"--layer_rates={cfg.layer_rates}")
  if cfg.max_accuracy_drop is not None:
    raise FlagError(*flag, f"fixes what is pruned, so --max_accuracy_drop="
                    f"{cfg.max_accuracy_drop:g} has no rate to raise")


def _check_layer_rates(cfg: Config) -> None:
  if cfg.layer_rates != "auto":
    return
  if cfg.structured_rate > 0 or cfg.target_speedup:
    flag = "--target_speedup" if cfg.target_speedup else "--structured_rate"
    raise FlagError("layer_rates", "auto", "the sensitivity curves are measured on the "
                    f"baseline, not on the model {flag} leaves; set the rates by hand "
                    "(--layer_rates=LAYER:RATE,...) with structured pruning")
  highest = config_lib.SENSITIVITY_RATES[-1]
  if cfg.pruning_rate > highest:
    raise FlagError("layer_rates", "auto", f"--pruning_rate={cfg.pruning_rate} is above the "
                    f"highest rate the sensitivity analysis measures ({highest})")
