"""Choosing rates: sensitivity, per-layer rates, accuracy budget, speed target.

Defined here, read by pipeline/flags/__init__.py (`config_from_flags`) only.
"""

from absl import flags

TITLE = 'Choosing rates: sensitivity, per-layer rates, accuracy budget, speed target'

SENSITIVITY = flags.DEFINE_bool(
    "sensitivity", False, "Before pruning, prune each layer (and each channel group) of the "
    "baseline alone to 50-95% without fine-tuning and write its validation accuracy curve: "
    "sensitivity.md, .json and .png in the run directory.")
LAYER_RATES = flags.DEFINE_string(
    "layer_rates", "", "Per-layer unstructured rates, LAYER:RATE,... where LAYER is a name or a "
    "regex of whole names (e.g. conv2:0.8,dense.*:0.95); the first match wins, other pruned "
    "layers keep --pruning_rate, 0 leaves a layer dense. auto: chosen from the sensitivity "
    "curves (run first) to reach --pruning_rate overall with the least predicted loss.")
MAX_DROP = flags.DEFINE_float(
    "max_accuracy_drop", None, "An accuracy budget in points on the validation split: after "
    "pruning to --pruning_rate, halve the weights left step by step (90% -> 95% -> 97.5%), "
    "each step a short fine-tune, and keep the last model within the budget.")
BUDGET_EPOCHS = flags.DEFINE_integer("budget_epochs", 2, "Fine-tuning epochs per "
                                     "--max_accuracy_drop step.")
TARGET = flags.DEFINE_float(
    "target_speedup", 0.0, "Choose the structured rates per channel group to make the float32 "
    "export this many times faster than the dense one (e.g. 3), from a latency table timed "
    "here with LiteRT (or --latency_table) and the validation loss of each group's cut; the "
    "final paired speed-up is reported against it. 0: off; replaces --structured_rate.")
LATENCY_TABLE = flags.DEFINE_string(
    "latency_table", "", "--target_speedup: a latency_table.json to use instead of timing one "
    "here (e.g. a run's table with its ms replaced by a phone's timings of the files in that "
    "run's latency_table/).")
