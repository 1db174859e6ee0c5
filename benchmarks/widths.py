"""Does removing more channels keep paying? small_cnn at several widths, MACs against latency.

  python -m benchmarks.widths

Builds small_cnn (28x28x1, random weights) at the full width and at narrower widths, exports the
full one as float32 and each narrow one as float32 and dynamic-range int8, times them all
interleaved (1 thread, XNNPACK) and prints MACs, p50 latency and the paired speed-up against
the full float32 model, with the CPU that measured them. Below the CPU's vector width, fewer channels stop buying time.
"""

import os
import tempfile

from export import cli


FULL = (32, 64, 128)
# Each removes half of the 224 filters and units, spread differently.
NARROW = ((16, 32, 64), (16, 24, 72), (12, 20, 80), (8, 24, 80), (8, 40, 64))


def main(argv):
  del argv
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from export import cpu, timing, tflite  # pylint: disable=g-import-not-at-top
  from pipeline.models import macs  # pylint: disable=g-import-not-at-top
  from pipeline.models import architectures as models
  full, files, work = "-".join(map(str, FULL)), {}, {}
  with tempfile.TemporaryDirectory() as d:
    for widths in (FULL,) + NARROW:
      keras.utils.set_random_seed(0)
      model = models.small_cnn((28, 28, 1), 10, widths)
      name = "-".join(map(str, widths))
      work[name] = macs.count(model)
      for fmt in ("float32",) if widths == FULL else ("float32", "dynamic_int8"):
        path = os.path.join(d, f"{name}_{fmt}.tflite")
        with open(path, "wb") as f:
          f.write(tflite.convert(model, fmt))
        files[f"{name}|{fmt}"] = path
    results = {t.name: t for t in timing.measure(files, runs=10000, warmup_runs=200, rounds=100)}
  ref = results[full + "|float32"]
  print(f"CPU: {cpu.read().describe()}; 1 thread, XNNPACK, 10,000 invokes a file in 100 "
        "interleaved rounds; speed-up = paired median (p10-p90).\n")
  print("| conv1-conv2-dense1 | MACs vs full | float32 p50 (us) | speed-up "
        "| dynamic_int8 p50 (us) | speed-up |")
  print("|---|---|---|---|---|---|")
  for name, n in work.items():
    cells = []
    for fmt in ("float32", "dynamic_int8"):
      t = results.get(f"{name}|{fmt}")
      cells += ([f"{t.p50_ms * 1000:.1f}", timing.speedup(ref, t).describe()] if t
                else ["", ""])
    print(f"| {name} | {n / work[full]:.2f}x | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  cli.run(main, __name__)
