"""--target_speedup against uniform structured pruning at the same measured speed (issue #10).

  python -m benchmarks.speed_target --baseline_path=runs/fashion-base/baseline.keras

1. `pipeline.run --target_speedup=3` from the given baseline (Fashion-MNIST small_cnn by
   default: configs/fashion_mnist.flags, 10 fine-tuning epochs), float32 export.
2. The uniform structured rate (the same fraction of every group, kept counts rounded to
   multiples of 8 as the structured stage does) whose float32 file is closest in measured
   speed to what step 1 kept: candidate rates timed together against the dense file.
3. `pipeline.run --structured_rate=<that rate>` from the same baseline, same fine-tuning.
4. Both final float32 files and the baseline's timed together in one process (paired), and a
   Markdown table with the verdicts: within 15% of the target, and accuracy at least uniform's.
Runtime: about 20 minutes on 2 cores.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

RATES = np.round(np.arange(0.20, 0.81, 0.05), 2)


def _run(args, workdir):
  cmd = [sys.executable, "-m", "pipeline.run"] + args + [f"--workdir={workdir}", "--overwrite"]
  print("$ " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
  subprocess.run(cmd, check=True)
  with open(os.path.join(workdir, "report.json")) as f:
    return json.load(f)


def uniform_rate(baseline_path: str, speedup: float, cfg):
  """(rate, its measured speed-up, {rate: speed-up}) of the uniform --structured_rate whose
  float32 file is closest in speed to `speedup`, built as the structured stage builds it
  (cfg's fold, skip regex, --channel_multiple, --min_channels)."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from export import timing  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from pipeline.planning import latency_table
  from pipeline.structured import rounding
  from pipeline.models import safe_load
  from pipeline.planning import speed_target
  from pipeline.structured import prune as structured
  from pipeline.structured import surgery
  model = safe_load.load_baseline(baseline_path)
  a = speed_target.analysis(model, cfg)
  scores = structured.scores(a, "l1", None, None)
  with tempfile.TemporaryDirectory() as tmp:
    files = {"dense": latency_table.export_float32(model, os.path.join(tmp, "dense.tflite"))}
    for r in RATES:
      keep = structured.select(a, scores, r, "per_layer", cfg.min_channels)
      keep, _ = rounding.round_kept(keep, scores, {g: a.groups[g].size for g in keep},
                                    cfg.channel_multiple, cfg.min_channels)
      files[f"{r:.2f}"] = latency_table.export_float32(
          surgery.shrink(a, keep), os.path.join(tmp, f"{r:.2f}.tflite"))
    timings = timing.measure(files, warmup_runs=20, runs=5000, rounds=100)
  ref = timings[0]
  speeds = {r: timing.speedup(ref, t).paired for r, t in zip(RATES, timings[1:])}
  best = min(RATES, key=lambda r: abs(speeds[r] - speedup))
  return float(best), speeds[best], speeds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--baseline_path", required=True, help="the trained baseline (.keras)")
  parser.add_argument("--flagfile", default="configs/fashion_mnist.flags")
  parser.add_argument("--target", type=float, default=3.0, help="--target_speedup")
  parser.add_argument("--workdir", default="bench_out/speed_target")
  args = parser.parse_args()
  common = [f"--flagfile={args.flagfile}", f"--baseline_path={args.baseline_path}", "--noprune",
            "--export_formats=float32"]
  target = _run(common + [f"--target_speedup={args.target:g}"],
                os.path.join(args.workdir, "target"))
  t_file = next(e for e in target["exports"] if e["name"] == "pruned_float32")
  from pipeline import config  # pylint: disable=g-import-not-at-top
  cfg = config.Config(**{k: v for k, v in target["config"].items()
                         if k in config.Config.__dataclass_fields__ and k != "export_formats"})
  rate, speed, speeds = uniform_rate(args.baseline_path, t_file["speedup"], cfg)
  print(f"uniform rates measured: {', '.join(f'{r:.2f}: {s:.2f}x' for r, s in speeds.items())};"
        f" closest to {t_file['speedup']:.2f}x: {rate:.2f} ({speed:.2f}x)", file=sys.stderr)
  uniform = _run(common + [f"--structured_rate={rate:g}"], os.path.join(args.workdir, "uniform"))

  from export import cpu, timing  # pylint: disable=g-import-not-at-top
  files = {"baseline": os.path.join(args.workdir, "target", "tflite", "baseline_float32.tflite"),
           "target": os.path.join(args.workdir, "target", "tflite", "pruned_float32.tflite"),
           "uniform": os.path.join(args.workdir, "uniform", "tflite", "pruned_float32.tflite")}
  ref, *rest = timing.measure(files, warmup_runs=20, runs=20000, rounds=100)
  paired = {t.name: timing.speedup(ref, t) for t in rest}
  rows = ["| variant | channels kept | test accuracy | vs baseline (points) | float32 speed-up "
          "(paired, p10-p90, one process) |", "|---|---|---|---|---|"]
  base_acc = target["baseline"]["test_accuracy"]
  acc = {}
  for name, report in (("target", target), ("uniform", uniform)):
    st = report["pruned"]["structured"]
    kept = ", ".join(f"{g} {s[1]}/{s[0]}" for g, s in st["steps"][-1]["groups"].items())
    acc[name] = st["test_accuracy"]
    label = (f"--target_speedup={args.target:g}" if name == "target" else
             f"uniform --structured_rate={rate:g}")
    rows.append(f"| {label} | {kept} | {100 * acc[name]:.2f}% | "
                f"{100 * (acc[name] - base_acc):+.2f} | {paired[name].describe()} |")
  same = (target["pruned"]["structured"]["steps"][-1]["groups"] ==
          uniform["pruned"]["structured"]["steps"][-1]["groups"])
  off = paired["target"].paired / args.target - 1
  met = lambda ok: "met" if ok else "NOT met"  # pylint: disable=unnecessary-lambda-assignment
  rows += ["", f"CPU: {cpu.read().describe()}. Baseline {100 * base_acc:.2f}%.",
           f"- --target_speedup={args.target:g}: measured {paired['target'].paired:.2f}x, "
           f"{off:+.0%} (issue #10 asks within 15%, the search keeps one within 5% where it "
           f"can: {met(abs(off) <= 0.15)}).",
           f"- accuracy at that speed against uniform ({paired['uniform'].paired:.2f}x): "
           f"{100 * (acc['target'] - acc['uniform']):+.2f} points "
           f"({met(acc['target'] >= acc['uniform'])})"
           + (": the same channel counts in every group, so the same model, fine-tuned twice; "
              "the difference is run-to-run noise." if same else ".")]
  print("\n".join(rows))


if __name__ == "__main__":
  main()
