"""Cross-check the harness against LiteRT's own `litert-benchmark` on the same file and settings.

  python -m benchmarks.crosscheck --out_dir=bench_out

Exports MobileNetV2 (random weights, 224x224x3, float32; about 10 ms an invoke here, well above
litert-benchmark's 0.01 ms rounding), times it with export.timing and with litert-benchmark
(1 thread, XNNPACK, same warm-up and run counts) alternately for --rounds rounds, so drift in
machine load hits both alike, and fails if the medians of their medians differ by over 25%.
Defaults: --runs=200 --warmup_runs=20 --rounds=3 --out_dir=bench_out.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from export import cli
from export import shared_flags

TOLERANCE = 0.25


def litert_benchmark_median_ms(path: str, runs: int, warmup_runs: int) -> float:
  """Median latency reported by LiteRT's litert-benchmark (installed with ai-edge-litert)."""
  tool = shutil.which("litert-benchmark") or os.path.join(os.path.dirname(sys.executable),
                                                         "litert-benchmark")
  with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "result.json")
    subprocess.run([tool, "--model", path, "--num_threads", "1", "--num_runs", str(runs),
                    "--warmup_runs", str(warmup_runs), "--result_json", out],
                   check=True, capture_output=True, text=True)
    with open(out) as f:
      return float(json.load(f)["latency"]["median_ms"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  out_dir = shared_flags.OUT_DIR.value
  runs = shared_flags.value(shared_flags.RUNS, 200)
  warmup = max(1, shared_flags.value(shared_flags.WARMUP_RUNS, 20))
  rounds = shared_flags.value(shared_flags.ROUNDS, 3)
  if runs < 10:
    cli.fail(f"--runs={runs}: litert-benchmark needs at least 10 runs")
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from export import cpu, timing, tflite  # pylint: disable=g-import-not-at-top
  from export import workdir  # pylint: disable=g-import-not-at-top

  keras.utils.set_random_seed(0)
  model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classes=1000)
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "mobilenet_v2_float32.tflite")
  workdir.atomic_write(path, tflite.convert(model, "float32"))
  import numpy as np  # pylint: disable=g-import-not-at-top
  ours, theirs, delegate = [], [], ""
  for _ in range(rounds):
    t = timing.measure({"mobilenet_v2": path}, warmup_runs=warmup, runs=runs)[0]
    ours.append(t.p50_ms)
    delegate = t.delegate
    theirs.append(litert_benchmark_median_ms(path, runs, warmup))
  ratio = float(np.median(ours) / np.median(theirs))
  machine = cpu.read()
  result = {"cpu": machine.__dict__, "cpu_description": machine.describe(),
            "file": path, "threads": 1, "delegate": delegate, "runs": runs,
            "warmup_runs": warmup, "rounds": rounds,
            "harness_medians_ms": ours, "litert_benchmark_medians_ms": theirs,
            "harness_median_ms": float(np.median(ours)),
            "litert_benchmark_median_ms": float(np.median(theirs)), "ratio": ratio,
            "tolerance": TOLERANCE}
  workdir.atomic_write(os.path.join(out_dir, "crosscheck.json"),
                       json.dumps(result, indent=2) + "\n")
  print(f"CPU: {machine.describe()}")
  print(f"MobileNetV2 float32, 1 thread, {delegate}, {runs} runs x {rounds} rounds: "
        f"harness median {result['harness_median_ms']:.3f} ms, litert-benchmark median "
        f"{result['litert_benchmark_median_ms']:.2f} ms, ratio {ratio:.2f} "
        f"({'within' if abs(ratio - 1) <= TOLERANCE else 'OUTSIDE'} {TOLERANCE:.0%})")
  if abs(ratio - 1) > TOLERANCE:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main, __name__, shared=("out_dir", "runs", "rounds", "warmup_runs"))
