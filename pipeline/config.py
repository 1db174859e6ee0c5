"""The run's configuration: one frozen dataclass built from flags in run.py, read by every stage."""

import dataclasses
from typing import Optional

from export import formats

# Built-in sources; any other --dataset is a TFDS name.
DATASETS = ("mnist", "fashion_mnist", "folder")
COLOR_MODES = ("", "rgb", "grayscale")
MODELS = ("small_cnn", "lenet5", "mobilenet_v2", "mobilenet_v3_small", "sparse_mobilenet")
PRUNING_SCOPES = ("inner", "all")
SCHEDULES = ("polynomial", "constant", "one_shot", "iterative")
PRUNING_CRITERIA = ("magnitude", "global_magnitude", "gradient", "obd", "obs", "random")
EXPORT_FORMATS = formats.FORMATS
STRUCTURED_CRITERIA = ("l1", "l2", "apoz", "mean_activation", "taylor", "bn_gamma")
STRUCTURED_SCOPES = ("per_layer", "global")
STRUCTURED_FOLDS = ("auto", "exact", "approximate")
STRATEGIES = ("one_device", "mirrored", "multi_worker")  # pipeline/distribute.py.
# Flags that may change between a crash and the same command that resumes it.
RESUME_MAY_DIFFER = ("restart", "overwrite", "backup_every_steps", "strategy")


SENSITIVITY_RATES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)  # 0.98: room above 95% for layer_rates=auto.


class FlagError(ValueError):
  """Bad input, named by the flag and the value at fault. Library code raises it; entry points
  print str(e), `--flag=value: why`, as the command's one error line."""

  def __init__(self, flag: str, value, why: str):
    super().__init__(f"--{flag}={value}: {why}")
    self.flag, self.value, self.why = flag, value, why


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run needs; defaults match `configs/mnist.flags` minus pruning."""

  # Data.
  dataset: str = "mnist"
  data_dir: Optional[str] = None
  seed: int = 0
  validation_split: float = 0.1
  max_train_examples: int = 0  # 0 = all; smaller for smoke tests.
  image_size: str = ""  # "H,W"; "" = the data's own (a folder: its first image's).
  color_mode: str = ""  # "rgb" or "grayscale"; "" = the data's own (a folder: rgb).
  augment: bool = False  # Random flip, translation and zoom of training batches.

  # Model and baseline training.
  model: str = "small_cnn"
  baseline_path: Optional[str] = None
  trust_model: bool = False  # Allow .h5 / SavedModel baselines, which can run code on load.
  keras3_output: bool = False  # Also write the result as Keras 3 (always for a Keras 3 baseline).
  alpha: float = 1.0  # MobileNet width multiplier.
  weights: Optional[str] = None  # MobileNet backbone weights file (include_top=False).
  epochs: int = 10
  batch_size: int = 128
  learning_rate: float = 1e-3

  # Unstructured pruning (TF-MOT).
  prune: bool = False
  pruning_rate: float = 0.5
  initial_sparsity: float = 0.0
  pruning_begin_step: Optional[int] = None  # None = derived, see prune.schedule_steps.
  pruning_end_step: Optional[int] = None
  pruning_frequency: Optional[int] = None
  pruning_scope: str = "inner"
  schedule: str = "polynomial"  # polynomial, constant, one_shot, iterative (schedules.py).
  iterative_rounds: int = 3
  pruning_criterion: str = "magnitude"  # See pipeline/unstructured/criteria.py.
  sparsity_m_by_n: str = ""  # "2,4": TF-MOT's M:N pattern (pipeline/unstructured/patterns.py).
  block_size: str = ""  # "1,4": TF-MOT's block sparsity, Dense layers only.
  pruning_policy: str = ""  # "xnnpack": TF-MOT's PruneForLatencyOnXNNPack (1x1 convs only).
  max_accuracy_drop: Optional[float] = None  # Points on validation; None = no budget search.
  budget_epochs: int = 2  # Fine-tuning epochs per budget step.
  layer_rates: str = ""  # "conv2:0.8,dense.*:0.95": per-layer rates (planning/layer_rates.py).
  fine_tune_epochs: int = 6
  # None: 5e-4, or 1e-5 for a model whose BatchNorm statistics stay frozen while it trains
  # (pipeline/models/train.py fine_tune_learning_rate).
  fine_tune_learning_rate: Optional[float] = None

  # Distillation (pipeline/models/distill.py): the teacher guides every fine-tuning.
  distill: bool = False
  teacher_path: Optional[str] = None  # None: the baseline teaches.
  distill_alpha: float = 0.5
  distill_temperature: float = 1.0

  # Clustering and quantization-aware training (pipeline/collab/).
  cluster: int = 0  # Distinct values per clustered kernel (TF-MOT cluster_weights); 0 = off.
  cluster_per_channel: bool = False  # N values per output channel instead of per kernel.
  cluster_epochs: int = 2  # Fine-tuning epochs of the centroids.
  quantize_aware: bool = False  # A last quantization-aware fine-tune; int8 files come from it.
  qat_epochs: int = 2
  qat_learning_rate: float = 1e-5

  # Analysis.
  sensitivity: bool = False  # Per-layer pruning curves of the baseline (planning/sensitivity.py).

  # Structured pruning (channels and units removed for real).
  structured_rate: float = 0.0  # Fraction of filters/units removed; 0 = off.
  structured_criterion: str = "l1"
  structured_scope: str = "per_layer"
  min_channels: int = 4  # No layer keeps fewer channels than this.
  channel_multiple: int = 8  # Kept channels rounded to a multiple of this (see rounding.py).
  structured_steps: int = 1
  structured_skip_layers: str = ""  # Regex of producer layer names left whole.
  structured_fold: str = "auto"  # exact, approximate, or auto (see structured.choose_fold).
  remove_blocks: int = 0  # Whole residual blocks removed first (pipeline/structured/blocks.py).
  target_speedup: float = 0.0  # Structured rates chosen to reach it (speed_target.py); 0 = off.
  latency_table: str = ""  # A latency table to use instead of timing one here.
  calibration_examples: int = 512  # Training images for activation-based criteria.

  # Export and benchmark.
  export_formats: tuple = ("float32", "int8")
  int8_io: bool = False
  benchmark_runs: int = 5000
  benchmark_warmup_runs: int = 20
  arm_check: bool = False  # Run every file on the emulated arm64 LiteRT (pipeline/stages/arm.py).
  arm_examples: int = 20  # Test images compared against x86 there, one invoke each.

  # Gates (export/gates.py): allowed accuracy change of a file against its Keras model, points.
  max_int8_accuracy_change: float = 1.0
  max_float16_accuracy_change: float = 0.2

  # Output.
  workdir: str = "runs/default"
  overwrite: bool = False
  restart: bool = False  # Start over instead of resuming an interrupted run of another command.

  # Resume and multi-worker training (pipeline/distribute.py, pipeline/stages/progress.py).
  strategy: str = "one_device"
  backup_every_steps: int = 0  # BackupAndRestore also every N steps; 0 = every epoch only.
  verbose: int = 0  # Keras' own fit output (0: none; the console shows one bar a fit).


def parse_image_size(text: str):
  """'96,96' or '96x96' -> (96, 96); '' -> None.

  Raises:
    ValueError: not two positive integers.
  """
  if not text:
    return None
  parts = text.replace("x", ",").split(",")
  try:
    size = tuple(int(p) for p in parts)
  except ValueError:
    size = ()
  if len(size) != 2 or min(size) < 1:
    raise ValueError(f"--image_size={text}: must be two positive integers, height,width "
                     "(e.g. 96,96)")
  return size
