"""Which flags go together: every rule that needs only the flags, checked before TensorFlow
loads (`check`), so a bad combination costs a fraction of a second, not an import.

Rules that need the data or the model (a criterion the model's layers support, a target the
graph can reach) run in pipeline/job.py's preflight, after loading, still before training.
"""

import os
import re
from typing import Callable, Dict, Optional, Tuple

from export import workdir as workdir_lib
from pipeline import config as config_lib
from pipeline.config import Config, FlagError


def _range(low=None, high=None, high_open=False, what=""):
  """A test of a number within [low, high] (or [low, high)), and the words that say so."""
  def test(v):
    return ((low is None or v >= low) and
            (high is None or (v < high if high_open else v <= high)))
  if high is None:
    words = f"must be >= {low:g}"
  else:
    words = f"must be in [{low:g}, {high:g}{')' if high_open else ']'}"
  return test, words + (f": {what}" if what else "")


def _is_regex(text: str) -> bool:
  try:
    re.compile(text)
    return True
  except re.error:
    return False


def _is_image_size(text: str) -> bool:
  try:
    config_lib.parse_image_size(text)
  except ValueError:
    return False
  return True


def _one_of(names) -> Tuple[Callable, str]:
  return (lambda v: v in names), f"must be one of: {', '.join(n or '(empty)' for n in names)}"


# What each flag's value must be, alone: one test and its words per Config field. The CLI's
# parser checks them (pipeline/flags registers each as an absl validator, so a bad value is
# one line before anything loads); the Python API checks the same (check_values).
VALUES: Dict[str, Tuple[Callable, str]] = {
    "color_mode": _one_of(config_lib.COLOR_MODES),
    "image_size": (_is_image_size, "must be two positive integers, height,width (e.g. 96,96)"),
    "validation_split": _range(0.01, 0.5),
    "max_train_examples": _range(0),
    "model": _one_of(config_lib.MODELS),
    "alpha": _range(0.1, 2.0),
    "epochs": _range(1),
    "batch_size": _range(1),
    "learning_rate": _range(0.0),
    "pruning_rate": _range(0.0, 1.0, True, "the fraction of weights removed"),
    "initial_sparsity": _range(0.0, 1.0, True),
    "fine_tune_epochs": _range(0),
    "fine_tune_learning_rate": _range(0.0),
    "schedule": _one_of(config_lib.SCHEDULES),
    "pruning_criterion": _one_of(config_lib.PRUNING_CRITERIA),
    "pruning_scope": _one_of(config_lib.PRUNING_SCOPES),
    "pruning_begin_step": _range(0),
    "pruning_end_step": _range(0),
    "pruning_frequency": _range(1),
    "iterative_rounds": _range(1),
    "pruning_policy": _one_of(("", "xnnpack")),
    "max_accuracy_drop": _range(0.0),
    "budget_epochs": _range(1),
    "target_speedup": ((lambda r: r == 0.0 or r > 1.0),
                       "must be 0 (off) or above 1: how many times faster than the dense file"),
    "structured_rate": _range(0.0, 1.0, True, "the fraction of filters and units removed"),
    "structured_criterion": _one_of(config_lib.STRUCTURED_CRITERIA),
    "structured_scope": _one_of(config_lib.STRUCTURED_SCOPES),
    "structured_fold": _one_of(config_lib.STRUCTURED_FOLDS),
    "structured_steps": _range(1),
    "structured_skip_layers": (_is_regex, "must be a valid regex"),
    "min_channels": _range(1),
    "channel_multiple": _range(1),
    "remove_blocks": _range(0),
    "calibration_examples": _range(1),
    "cluster": ((lambda n: n == 0 or 2 <= n <= 255),
                "must be 0 (off) or 2..255: distinct values per kernel (int8 holds 256)"),
    "cluster_epochs": _range(1),
    "qat_epochs": _range(1),
    "qat_learning_rate": _range(0.0),
    "distill_alpha": _range(0.0, 1.0),
    "distill_temperature": _range(1e-3),
    "export_formats": ((lambda fs: bool(fs) and all(f in config_lib.EXPORT_FORMATS for f in fs)),
                       "must be a comma-separated list from: "
                       f"{', '.join(config_lib.EXPORT_FORMATS)}"),
    "max_int8_accuracy_change": _range(0.0),
    "max_float16_accuracy_change": _range(0.0),
    "benchmark_runs": _range(1),
    "benchmark_warmup_runs": _range(0),
    "arm_examples": _range(1),
    "strategy": _one_of(config_lib.STRATEGIES),
    "backup_every_steps": _range(0),
}


def check_values(cfg: Config) -> None:
  """Raises FlagError for the first field of `cfg` whose value breaks its rule in VALUES (None
  stands for "derived" and passes)."""
  for name, (test, words) in VALUES.items():
    value = getattr(cfg, name)
    if value is not None and not test(value):
      shown = ",".join(value) if isinstance(value, (list, tuple)) else value
      raise FlagError(name, shown, words)


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
  if cfg.initial_sparsity > cfg.pruning_rate:
    raise FlagError("initial_sparsity", cfg.initial_sparsity, "must not exceed "
                    f"--pruning_rate={cfg.pruning_rate:g}")
  if None not in (cfg.pruning_begin_step, cfg.pruning_end_step) and \
      cfg.pruning_begin_step > cfg.pruning_end_step:
    raise FlagError("pruning_begin_step", cfg.pruning_begin_step, "must not exceed "
                    f"--pruning_end_step={cfg.pruning_end_step}")
  _check_needs_prune(cfg)
  if cfg.structured_rate > 0 and cfg.target_speedup:
    raise FlagError("target_speedup", f"{cfg.target_speedup:g}", "chooses the structured rates "
                    f"itself; leave --structured_rate (now {cfg.structured_rate:g}) at 0")
  if cfg.strategy == "multi_worker" and cfg.target_speedup:
    raise FlagError("target_speedup", f"{cfg.target_speedup:g}", "chooses rates by timing "
                    "models, and each worker would time its own; with --strategy=multi_worker "
                    "use --structured_rate (or plan it in a one-worker run first)")
  _check_distill(cfg)
  _check_collab(cfg)
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


def _check_collab(cfg: Config) -> None:
  """Clustering and quantization-aware training flags that do not go together."""
  for flag, needs, what in (("cluster_per_channel", "cluster", "--cluster=N"),
                            ("cluster_epochs", "cluster", "--cluster=N"),
                            ("qat_epochs", "quantize_aware", "--quantize_aware"),
                            ("qat_learning_rate", "quantize_aware", "--quantize_aware")):
    value = getattr(cfg, flag)
    if value != getattr(Config, flag) and not getattr(cfg, needs):
      raise FlagError(flag, f"{value:g}" if isinstance(value, float) else value,
                      f"is read only with {what}; add it")
  if cfg.quantize_aware and "int8" not in cfg.export_formats:
    raise FlagError("quantize_aware", True, "makes the full-int8 file from the "
                    "quantization-aware model; add int8 to --export_formats (now "
                    f"{','.join(cfg.export_formats)})")
  prunes = cfg.prune or cfg.structured_rate > 0 or cfg.target_speedup or cfg.remove_blocks
  for flag in ("cluster", "quantize_aware"):
    if getattr(cfg, flag) and not prunes:
      raise FlagError(flag, getattr(cfg, flag), "works on the pruned model; add --prune, "
                      "--structured_rate, --target_speedup or --remove_blocks")
  if (cfg.cluster or cfg.quantize_aware) and cfg.fine_tune_epochs == 0:
    flag = "cluster" if cfg.cluster else "quantize_aware"
    raise FlagError(flag, getattr(cfg, flag), "fine-tunes the pruned model, which "
                    "--fine_tune_epochs=0 has not trained; give it epochs")


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
