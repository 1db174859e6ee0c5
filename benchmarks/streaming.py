"""Does a folder too big for memory stream? Peak RSS of a short pipeline run on a large folder.

  python -m benchmarks.streaming                     # 40,000 JPEGs at 160x160, about 35 min
  python -m benchmarks.streaming --images=20000      # measured in BUILD.md: 17 min, 2.15 GB
  python -m benchmarks.streaming --images=2000 --size=64 --keep=/tmp/photos   # quick look

Generates coloured shapes (pipeline/data/shapes.py) into a temporary folder, then runs the real
CLI on it (`--dataset=folder`, MobileNetV2 alpha 0.35, one epoch, float32 export, verification
of every test image) in a child process and reads the child's peak resident memory
(getrusage). As float32 arrays the images would take images x size x size x 3 x 4 bytes
(40,000 at 160x160: 12.3 GB); streamed through tf.data they never sit in memory at once.
Prints one Markdown line with the figures and the CPU.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

TARGET_GB = 3.0


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=40_000, help="images in all (5 classes)")
  parser.add_argument("--size", type=int, default=160, help="image height and width")
  parser.add_argument("--keep", default=None, help="write the folder here and keep it "
                      "(default: a temporary folder, removed afterwards)")
  args = parser.parse_args()
  from pipeline.data import shapes  # pylint: disable=g-import-not-at-top
  from export import cpu  # pylint: disable=g-import-not-at-top
  root = args.keep or tempfile.mkdtemp(prefix="streaming-")
  try:
    started = time.monotonic()
    if not os.path.isdir(os.path.join(root, shapes.CLASSES[0])):
      shapes.write_folder(root, shapes.CLASSES[:5], args.images // 5, args.size)
    generated = time.monotonic() - started
    cmd = [sys.executable, "-m", "pipeline.run", "--dataset=folder", f"--data_dir={root}",
           "--model=mobilenet_v2", "--alpha=0.35", "--epochs=1", "--batch_size=64",
           "--export_formats=float32", "--benchmark_runs=20", "--noprune",
           f"--workdir={root}.run", "--overwrite"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    ran = time.monotonic() - started
    if proc.returncode != 0:
      sys.exit(f"error: the pipeline failed on the generated folder:\n{proc.stderr[-2000:]}")
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    arrays_gb = args.images * args.size * args.size * 3 * 4 / 1e9
    verdict = "met" if peak_gb < TARGET_GB else "NOT met"
    print(f"| {args.images:,} JPEG/PNG images at {args.size}x{args.size}x3 | float32 arrays "
          f"would take {arrays_gb:.1f} GB | peak RSS of the run {peak_gb:.2f} GB (target < "
          f"{TARGET_GB:g} GB: {verdict}) | run {ran:.0f} s, generation {generated:.0f} s | "
          f"{cpu.read().describe()} |")
  finally:
    if not args.keep:
      shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(f"{root}.run", ignore_errors=True)


if __name__ == "__main__":
  main()
