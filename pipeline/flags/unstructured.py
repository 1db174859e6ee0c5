"""Unstructured pruning: TF-MOT masks weights.

Defined here, read by pipeline/flags/__init__.py (`config_from_flags`) only.
"""

from absl import flags

from pipeline import config as config_lib

TITLE = 'Unstructured pruning: TF-MOT masks weights'

PRUNE = flags.DEFINE_bool("prune", False, "Prune the baseline with TF-MOT and fine-tune it; "
                          "without it (and without --structured_rate) only the dense model is "
                          "trained and exported.")
PRUNING_RATE = flags.DEFINE_float("pruning_rate", 0.5, "Final fraction of weights removed from "
                                  "each pruned layer, 0 <= rate < 1.")
FT_EPOCHS = flags.DEFINE_integer("fine_tune_epochs", 6, "Epochs of fine-tuning while and after "
                                 "pruning (0: none, with --schedule=one_shot).")
FT_LR = flags.DEFINE_float("fine_tune_learning_rate", None, "Adam learning rate for "
                           "fine-tuning (default: 5e-4, or 1e-5 for a model whose BatchNorm "
                           "layers run with training=False, as a transfer-learning base does: "
                           "their frozen statistics break at larger steps).")
SCHEDULE = flags.DEFINE_enum(
    "schedule", "polynomial", config_lib.SCHEDULES, "polynomial: TF-MOT's PolynomialDecay, "
    "sparsity rising over two thirds of fine-tuning; constant: TF-MOT's ConstantSparsity; "
    "one_shot: --pruning_criterion removes it all at once, then fine-tuning holds the mask "
    "(--fine_tune_epochs=0 allowed); iterative: --iterative_rounds rounds of prune a step "
    "further, fine-tune.")
CRITERION = flags.DEFINE_enum(
    "pruning_criterion", "magnitude", config_lib.PRUNING_CRITERIA, "Which weights go (one_shot "
    "and iterative): magnitude per layer; global_magnitude (one threshold over all layers); "
    "gradient |w*dL/dw|; obd (1/2 Fisher w^2); obs (layer-wise Optimal Brain Surgeon: prune "
    "and update the kept weights to make up, on calibration images); random (a control).")
SCOPE = flags.DEFINE_enum("pruning_scope", "inner", config_lib.PRUNING_SCOPES,
                          "inner: every prunable layer but the first and the classifier; "
                          "all: every prunable layer (the TF-MOT tutorial).")
INITIAL_SPARSITY = flags.DEFINE_float("initial_sparsity", 0.0, "Sparsity at the first pruning "
                                      "step of the PolynomialDecay schedule.")
BEGIN_STEP = flags.DEFINE_integer("pruning_begin_step", None, "Fine-tuning step at which "
                                  "pruning starts (default 0).")
END_STEP = flags.DEFINE_integer("pruning_end_step", None, "Step at which the final sparsity is "
                                "reached (default: after two thirds of the fine-tune epochs, "
                                "derived from data size and batch size).")
FREQUENCY = flags.DEFINE_integer("pruning_frequency", None, "Update the masks every this many "
                                 "steps (default: a quarter epoch, at most 100).")
ROUNDS = flags.DEFINE_integer("iterative_rounds", 3, "--schedule=iterative: rounds, each "
                              "keeping the same fraction of what is left.")
M_BY_N = flags.DEFINE_string(
    "sparsity_m_by_n", "", "M,N: TF-MOT's pattern of at least M zeros in every N consecutive "
    "input weights (e.g. 2,4; the rate is then M/N), checked in the exported float32 file.")
BLOCK = flags.DEFINE_string(
    "block_size", "", "R,C: TF-MOT's block sparsity, weights removed in R x C blocks (e.g. "
    "1,4); TF-MOT allows it for Dense layers only, so only those are pruned.")
POLICY = flags.DEFINE_enum(
    "pruning_policy", "", ["", "xnnpack"], "xnnpack: TF-MOT's PruneForLatencyOnXNNPack, which "
    "prunes only the 1x1 convolutions of a graph XNNPACK's sparse inference takes (phones' ARM "
    "cores; --model=sparse_mobilenet qualifies); refused for a graph that does not.")
