"""The "keras3" stage: the run's result written back as a Keras 3 .keras file, checked.

Runs when the baseline came in as a Keras 3 file (the user goes on in Keras 3) or with
--keras3_output. The TFLite files do not depend on it: they come from the tf_keras model.
"""

import dataclasses
import os

from pipeline import data as data_lib
from pipeline.models import keras3 as keras3_lib
from pipeline.models import keras3_translate as translate_lib

# Images (drawn at random, seeded) a Keras 3 copy is checked on: validation images for the
# baseline's tf_keras copy, test images for the Keras 3 file written at the end.
CHECK_IMAGES = 64


def wanted(cfg, translated_in) -> bool:
  """Whether the run writes a Keras 3 file: asked for, or the baseline was Keras 3."""
  return bool(cfg.keras3_output or translated_in is not None)


def preflight(model, images, cfg) -> None:
  """Before any training: the model can be written back in Keras 3 (the pruned model has the
  same kinds of layers), so a layer that does not carry back fails now, not after the run.

  Raises:
    ValueError: one line naming the flag that asked for the Keras 3 file.
  """
  flag = f"--baseline_path={cfg.baseline_path}" if cfg.baseline_path else "--keras3_output"
  try:
    keras3_lib.agree(translate_lib.to_keras3(model), model, images)
  except ValueError as e:  # Untranslatable, Disagreement.
    raise ValueError(f"{flag}: the result cannot be written back as Keras 3: {e}") from None


def stage(model, name: str, data: data_lib.Dataset, cfg, wd: str, con, seconds: dict) -> dict:
  """Writes `<name>_keras3.keras` into `wd`; returns the report's "keras3" output section.

  Raises:
    ValueError: a layer with no Keras 3 equivalent, or a copy that does not agree.
  """
  with con.stage("keras3", seconds) as info:
    images, _ = data_lib.sample(data.test, CHECK_IMAGES, cfg.seed)
    path = os.path.join(wd, f"{name}_keras3.keras")
    agreement = keras3_lib.write(model, path, images)
    info["summary"] = (f"{os.path.basename(path)}: reloaded by Keras 3 with safe_mode=True, "
                       f"{agreement.describe()} against {name}.keras")
  return dict(dataclasses.asdict(agreement), path=os.path.basename(path), of=f"{name}.keras")
