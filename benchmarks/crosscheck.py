"""Cross-check the harness against LiteRT's own `litert-benchmark` on the same file and settings.

  python -m benchmarks.crosscheck --out_dir=bench_out

Exports MobileNetV2 (random weights, 224x224x3, float32; about 10 ms an invoke here, well above
litert-benchmark's 0.01 ms rounding), times it with export.timing and with litert-benchmark
(1 thread, XNNPACK, same warm-up and run counts) alternately for --rounds rounds, so drift in
machine load hits both alike, and fails if the medians of their medians differ by over 25%.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

import pipeline  # noqa: F401  pylint: disable=unused-import  (sets TF_USE_LEGACY_KERAS first)

_OUT_DIR = flags.DEFINE_string("out_dir", "bench_out", "Where crosscheck.json goes.")
_RUNS = flags.DEFINE_integer("runs", 200, "Timed invokes for each tool.", lower_bound=10)
_WARMUP = flags.DEFINE_integer("warmup_runs", 20, "Untimed invokes first.", lower_bound=1)
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds of the two tools.", lower_bound=1)
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
  del argv
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from export import timing, tflite  # pylint: disable=g-import-not-at-top
  from pipeline import workdir  # pylint: disable=g-import-not-at-top

  keras.utils.set_random_seed(0)
  model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classes=1000)
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  path = os.path.join(_OUT_DIR.value, "mobilenet_v2_float32.tflite")
  workdir.atomic_write(path, tflite.convert(model, "float32"))
  import numpy as np  # pylint: disable=g-import-not-at-top
  ours, theirs, delegate = [], [], ""
  for _ in range(_ROUNDS.value):
    t = timing.measure({"mobilenet_v2": path}, warmup_runs=_WARMUP.value, runs=_RUNS.value)[0]
    ours.append(t.p50_ms)
    delegate = t.delegate
    theirs.append(litert_benchmark_median_ms(path, _RUNS.value, _WARMUP.value))
  ratio = float(np.median(ours) / np.median(theirs))
  result = {"file": path, "threads": 1, "delegate": delegate, "runs": _RUNS.value,
            "warmup_runs": _WARMUP.value, "rounds": _ROUNDS.value,
            "harness_medians_ms": ours, "litert_benchmark_medians_ms": theirs,
            "harness_median_ms": float(np.median(ours)),
            "litert_benchmark_median_ms": float(np.median(theirs)), "ratio": ratio,
            "tolerance": TOLERANCE}
  workdir.atomic_write(os.path.join(_OUT_DIR.value, "crosscheck.json"),
                       json.dumps(result, indent=2) + "\n")
  print(f"MobileNetV2 float32, 1 thread, {delegate}, {_RUNS.value} runs x {_ROUNDS.value} rounds: "
        f"harness median {result['harness_median_ms']:.3f} ms, litert-benchmark median "
        f"{result['litert_benchmark_median_ms']:.2f} ms, ratio {ratio:.2f} "
        f"({'within' if abs(ratio - 1) <= TOLERANCE else 'OUTSIDE'} {TOLERANCE:.0%})")
  if abs(ratio - 1) > TOLERANCE:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
