"""Light augmentation for training batches: Keras preprocessing layers, never in the model."""

from typing import Optional

import tf_keras as keras

from pipeline.config import Config


def augmentation(cfg: Config) -> Optional[keras.Sequential]:
  """Random horizontal flip, translation and zoom up to 10%, or None without --augment.

  It is applied to training batches in the tf.data pipeline (data.batches), so the trained
  and exported models hold no augmentation layers.
  """
  if not cfg.augment:
    return None
  return keras.Sequential([
      keras.layers.RandomFlip("horizontal", seed=cfg.seed),
      keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=cfg.seed),
      keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=cfg.seed),
  ], name="augmentation")
