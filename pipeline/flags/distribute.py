"""Resume and more machines: runs that survive a crash, and tf.distribute training.

Defined here, read by pipeline/flags/__init__.py (`config_from_flags`) only.
"""

from absl import flags

from pipeline import config as config_lib

TITLE = 'Resume and more machines'

RESTART = flags.DEFINE_bool("restart", False, "Start over: discard an interrupted run in "
                            "--workdir instead of resuming it. Without it, the same command "
                            "resumes an interrupted run (finished stages are kept, the stage "
                            "that was cut off continues from its last backup), and another "
                            "command over it is refused.")
BACKUP_EVERY_STEPS = flags.DEFINE_integer(
    "backup_every_steps", 0, "Back up training (tf_keras BackupAndRestore: weights, optimizer, "
    "pruning step) every N steps as well as every epoch, for epochs too long to lose; 0: every "
    "epoch only.")
STRATEGY = flags.DEFINE_enum(
    "strategy", "one_device", config_lib.STRATEGIES, "tf.distribute strategy for every "
    "training stage: one_device (this process, TensorFlow's default placement), mirrored (all "
    "GPUs of this machine) or multi_worker (MultiWorkerMirroredStrategy over the cluster in "
    "TF_CONFIG, as Kubernetes operators and Vertex AI set it; a Slurm job script writes it; "
    "try it locally with `python -m pipeline.launch --workers=2 -- FLAGS`). --batch_size is "
    "the global batch.")
