"""The ARM check on the files users ship (issue #12): which prepare on arm64 XNNPACK, how close
their outputs are to x86's, and what XNNPACK's sparse path does, emulated.

  python -m benchmarks.arm            # `make arm`: about 10 minutes on 2 cores

1. small_cnn on the MNIST subset, unstructured 90% (configs/mnist.flags), float32 and int8.
2. sparse_mobilenet (the built-in model XNNPACK's sparse rules accept) on a generated RGB
   folder (5 classes x 200 coloured shapes, 48x48): the baseline trained once, then
   unstructured 80% and 90% of its 1x1 convolutions (--pruning_policy=xnnpack), float32.
Each run has --arm_check; the summary gives, per exported file: x86 test accuracy and paired
speed-up, and on emulated arm64 whether XNNPACK prepares it, max |diff| against x86, and the
emulated speed-up against the dense baseline file. The emulated figure says whether the sparse
path runs and bounds its gain; it is not a phone latency (BUILD.md).
"""

import argparse
import json
import os
import subprocess
import sys


def _run(args, workdir):
  cmd = [sys.executable, "-m", "pipeline.run"] + args + [f"--workdir={workdir}", "--overwrite"]
  print("$ python " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
  subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
  with open(os.path.join(workdir, "report.json")) as f:
    return json.load(f)


def summarize(reports) -> str:
  """Markdown: one row per exported file of each (label, report)."""
  from export import formats  # pylint: disable=g-import-not-at-top
  rows = ["| run | file | x86: test accuracy | x86: speed-up (paired) | ARM: prepares | "
          "ARM: max \\|diff\\| | ARM emulated speed-up (p10-p90) |",
          "|---|---|---|---|---|---|---|"]
  cpu = ""
  for label, report in reports:
    cpu = report["benchmark"].get("cpu_description", "?")
    if (report.get("arm") or {}).get("skipped") or not report.get("arm"):
      why = (report.get("arm") or {}).get("skipped") or "no ARM section"
      rows.append(f"| {label} | ARM check skipped: {why} | | | | | |")
      continue
    for e in report["exports"]:
      a = e["arm"]
      s = a["speedup"]
      speed = ("1.00x (reference)" if e["name"] == formats.REFERENCE else
               f"{s['paired']:.2f}x ({s['p10']:.2f}-{s['p90']:.2f})" if s else "-")
      outside = f" (outside: {a['outside']})" if a["outside"] else ""
      rows.append(f"| {label} | {e['name']} | {100 * e['test_accuracy']:.2f}% | "
                  f"{e['speedup']:.2f}x | {'yes' if a['prepares'] else 'NO: ' + a['error']} | "
                  f"{a['max_abs_diff']:.1e}{outside} | {speed} |")
  arm = next((r["arm"] for _, r in reports if (r.get("arm") or {}).get("runtime")), {})
  rows += ["", f"x86: {cpu}. ARM: {arm.get('runtime') or 'skipped'}; outputs on "
           f"{arm.get('examples', '?')} test images against x86's."]
  return "\n".join(rows)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="bench_out/arm")
  parser.add_argument("--per_class", type=int, default=200, help="generated images per class")
  args = parser.parse_args()
  from export import emulator  # pylint: disable=g-import-not-at-top
  try:
    emulator.prepare()
  except emulator.Unavailable as e:
    sys.exit(f"error: {e}")
  from pipeline.data import shapes  # pylint: disable=g-import-not-at-top
  folder = os.path.join(args.workdir, f"shapes_{args.per_class}")
  if not os.path.isdir(folder):
    shapes.write_folder(folder + ".tmp", per_class=args.per_class, size=48)
    os.replace(folder + ".tmp", folder)
  reports = [("small_cnn 90%", _run(["--flagfile=configs/mnist.flags",
                                     "--export_formats=float32,int8", "--arm_check"],
                                    os.path.join(args.workdir, "small_cnn_90")))]
  mb = ["--flagfile=configs/mnist.flags", "--dataset=folder", f"--data_dir={folder}",
        "--model=sparse_mobilenet", "--export_formats=float32", "--batch_size=32"]
  base = os.path.join(args.workdir, "sparse_mobilenet_base")
  _run(mb + ["--noprune", "--epochs=15"], base)
  for rate in (0.8, 0.9):
    reports.append((f"sparse_mobilenet {rate:.0%}", _run(
        mb + [f"--baseline_path={base}/baseline.keras", f"--pruning_rate={rate}",
              "--pruning_policy=xnnpack", "--fine_tune_epochs=4", "--arm_check"],
        os.path.join(args.workdir, f"sparse_mobilenet_{int(rate * 100)}"))))
  print(summarize(reports))


if __name__ == "__main__":
  main()
