"""Distillation: the dense baseline teaches the pruned model while it fine-tunes.

Defined here, read by pipeline/flags/__init__.py (`config_from_flags`) only.
"""

from absl import flags

TITLE = 'Distillation: a teacher guides the pruned model while it fine-tunes'

DISTILL = flags.DEFINE_bool(
    "distill", False, "Every fine-tuning of a pruned model (structured steps, TF-MOT pruning, "
    "budget steps, iterative rounds, block removal, sweep points) learns from a teacher's "
    "softened outputs as well as the labels (Hinton et al. 2015): loss = alpha * T^2 * "
    "KL(teacher/T || student/T) + (1 - alpha) * cross-entropy. The teacher is the baseline, "
    "or --teacher_path.")
TEACHER_PATH = flags.DEFINE_string(
    "teacher_path", None, "With --distill: a trained classifier (.keras, Keras 3 or tf_keras, "
    "as --baseline_path takes) to learn from instead of the baseline, e.g. a larger model of "
    "the same classes. Like the baseline it takes raw pixels (0..255) shaped like the data and "
    "ends in a softmax over the data's classes; the report gives its validation accuracy.")
ALPHA = flags.DEFINE_float("distill_alpha", 0.5, "With --distill: weight of the teacher's "
                           "term; 1 - alpha weighs the labels' cross-entropy.")
TEMPERATURE = flags.DEFINE_float("distill_temperature", 1.0, "With --distill: softmax "
                                 "temperature T of both outputs (higher: softer targets that "
                                 "show more of the teacher's view of wrong classes).")
