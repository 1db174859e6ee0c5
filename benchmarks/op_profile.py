"""Why is full int8 slower than float32 here? The camera recipe's files profiled per operator.

  python -m benchmarks.op_profile                     # the recipe's model; about 3 minutes
  python -m benchmarks.op_profile --run_dir=RUN       # a finished run's own .tflite files

By default builds the camera recipe's model (configs/camera_folder.flags: MobileNetV2 alpha
0.35, 96x96x3, 5 classes, pipeline/models/architectures.py) with half the channels of every
prunable group removed (the recipe's structured stage), and converts it as the pipeline does:
float32, full int8 with uint8 input and output (--int8_io, as the recipe ships it), full int8
with float input and output, and full int8 calibrated per tensor instead of per channel. Speed
does not depend on the trained weights' values, so untrained weights time the same operators.
Each operator is timed by difference of cut graphs (export/op_profile.py), every cut of every
file interleaved in one process, 1 thread, XNNPACK. Prints per-operator-type sums, and the
whole files' paired speed-ups, with the CPU.
"""

import argparse
import glob
import os
import tempfile

from export import cli  # pylint: disable=g-bad-import-order

cli.command_environment()  # Before TensorFlow loads.


def _recipe_files(d: str) -> dict:
  """The camera recipe's model, half its channels removed, in the formats compared."""
  # pylint: disable=g-import-not-at-top
  import numpy as np
  import tensorflow as tf
  import tf_keras as keras
  from export import tflite
  from pipeline.config import Config
  from pipeline.models import architectures
  from pipeline.structured import prune as structured
  from pipeline.structured import rounding
  from pipeline.structured import surgery
  keras.utils.set_random_seed(0)
  model = architectures.build_model(Config(model="mobilenet_v2", alpha=0.35), (96, 96, 3), 5)
  a = surgery.analyze(model)
  scores = structured.scores(a, "l1", None, None)
  keep, _ = rounding.round_kept(structured.select(a, scores, 0.5, "per_layer", 4), scores,
                                {g: a.groups[g].size for g in scores}, 8, 4)  # As the recipe.
  small = surgery.shrink(a, keep)
  rep = np.random.default_rng(0).uniform(0, 255, (64, 96, 96, 3)).astype(np.float32)
  contents = {"pruned_float32": tflite.convert(small, "float32"),
              "pruned_int8_uint8_io": tflite.convert(small, "int8", representative=rep,
                                                     int8_io=True),
              "pruned_int8_float_io": tflite.convert(small, "int8", representative=rep)}
  converter = tf.lite.TFLiteConverter.from_keras_model(small)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = lambda: ([x[None]] for x in rep)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  converter.inference_input_type = converter.inference_output_type = tf.uint8
  converter._experimental_disable_per_channel = True  # pylint: disable=protected-access
  contents["pruned_int8_per_tensor"] = converter.convert()
  paths = {}
  for name, content in contents.items():
    paths[name] = os.path.join(d, name + ".tflite")
    with open(paths[name], "wb") as f:
      f.write(content)
  return paths


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--run_dir", help="Profile this run's tflite/*.tflite files instead.")
  parser.add_argument("--runs", type=int, default=400, help="Timed invokes per cut graph.")
  args = parser.parse_args()
  # pylint: disable=g-import-not-at-top
  from export import cpu, op_profile, timing
  with tempfile.TemporaryDirectory() as d:
    if args.run_dir:
      files = {os.path.basename(p)[:-len(".tflite")]: p
               for p in sorted(glob.glob(os.path.join(args.run_dir, "tflite", "*.tflite")))}
    else:
      files = _recipe_files(d)
    result = op_profile.profile(files, runs=args.runs)
    whole = timing.measure(files, runs=4000, rounds=40)
  ref = whole[0]
  print(f"CPU: {cpu.read().describe()}\n")
  print(op_profile.to_markdown(result))
  print("\nWhole files, interleaved (paired speed-up against the first):\n")
  for t in whole:
    s = timing.speedup(ref, t)
    print(f"- {t.name}: p50 {t.p50_ms:.3f} ms, {s.paired:.2f}x ({s.p10:.2f}-{s.p90:.2f}), "
          f"kernels {t.delegate}")


if __name__ == "__main__":
  main()
