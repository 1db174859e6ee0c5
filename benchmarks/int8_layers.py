"""Why full-integer int8 is slow here: each small_cnn-sized layer alone, float32 vs int8 variants.

  python -m benchmarks.int8_layers

Builds one-layer tf_keras models shaped like the layers of a half-width small_cnn, exports each
as float32, dynamic-range int8 and full-integer int8, and times them all interleaved (1 thread,
XNNPACK). Prints a table of p50 latencies, with the CPU that measured them.
"""

import os
import tempfile

from export import cli


LAYERS = {  # name: (layer factory, input shape)
    "conv 3x3, 1 -> 16 channels, 28x28": (lambda k: k.layers.Conv2D(16, 3, activation="relu"),
                                          (28, 28, 1)),
    "conv 3x3, 16 -> 32 channels, 13x13": (lambda k: k.layers.Conv2D(32, 3, activation="relu"),
                                           (13, 13, 16)),
    "dense 800 -> 64": (lambda k: k.layers.Dense(64, activation="relu"), (800,)),
}
FORMATS = ("float32", "dynamic_int8", "int8")


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from export import cpu, timing, tflite  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  files = {}
  with tempfile.TemporaryDirectory() as d:
    for i, (name, (make, shape)) in enumerate(LAYERS.items()):
      keras.utils.set_random_seed(i)
      model = keras.Sequential([keras.layers.InputLayer(input_shape=shape), make(keras)])
      rep = rng.random((50,) + shape, np.float32)
      for fmt in FORMATS:
        path = os.path.join(d, f"{i}_{fmt}.tflite")
        with open(path, "wb") as f:
          f.write(tflite.convert(model, fmt, representative=rep))
        files[(name, fmt)] = path
    results = timing.measure({f"{n}|{f}": p for (n, f), p in files.items()}, runs=4000,
                             warmup_runs=200, rounds=40)
  p50 = {tuple(t.name.split("|")): t.p50_ms * 1000 for t in results}
  print(f"CPU: {cpu.read().describe()}; 1 thread, XNNPACK, 4,000 invokes a file in 40 "
        "interleaved rounds.\n")
  print("| layer | " + " | ".join(f"{f} p50 (us)" for f in FORMATS) + " |")
  print("|---|" + "---|" * len(FORMATS))
  for name in LAYERS:
    print(f"| {name} | " + " | ".join(f"{p50[(name, f)]:.1f}" for f in FORMATS) + " |")


if __name__ == "__main__":
  cli.run(main, __name__)
