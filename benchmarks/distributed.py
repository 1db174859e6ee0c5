"""What a crash costs, and what a second worker gives, measured side by side on this machine.

  python -m benchmarks.distributed              # about 5 minutes on 2 cores; make bench-distributed
  python -m benchmarks.distributed --out_dir=/tmp/dist   # keep the runs and their consoles

1. Resume: configs/mnist.flags run whole, then the same command killed (SIGKILL) at 60% of the
   whole run's time and run again: total time of the two against the whole run, and whether
   the resumed run ends with the same weights (sha256) and accuracy.
2. Workers: Fashion-MNIST (Debian's full copy, else the embedded MNIST subset), baseline only,
   2 epochs, trained by one process and by two local workers (`pipeline.launch`): examples a
   second through the baseline stage (training and validation), and test accuracy.
Prints Markdown with the CPU named.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

EXPORT = ["--export_formats=float32", "--benchmark_runs=200"]


def _run(module, args, out_path, extra=()):
  """Runs `python -m module args` to completion; returns its wall seconds."""
  started = time.monotonic()
  with open(out_path, "w") as out:
    subprocess.run([sys.executable, "-m", module, *extra, *args], stdout=out,
                   stderr=subprocess.STDOUT, check=True)
  return time.monotonic() - started


def resume(root: str) -> dict:
  flags = ["--flagfile=configs/mnist.flags", *EXPORT]
  whole = _run("pipeline.run", flags + [f"--workdir={root}/whole"], f"{root}/whole.out")
  started = time.monotonic()
  proc = subprocess.Popen([sys.executable, "-m", "pipeline.run", *flags,
                           f"--workdir={root}/killed"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  time.sleep(0.6 * whole)
  proc.kill()
  proc.wait()
  first = time.monotonic() - started
  second = _run("pipeline.run", flags + [f"--workdir={root}/killed"], f"{root}/resumed.out")
  line = next((l for l in open(f"{root}/resumed.out") if l.startswith("resuming:")), "-")
  reports = [json.load(open(f"{root}/{d}/report.json")) for d in ("whole", "killed")]
  return {"whole": whole, "first": first, "second": second, "line": line.strip(),
          "same_weights": len({r["baseline"]["training"]["final_weights_sha256"]
                               for r in reports}) == 1,
          "accuracy": [r["pruned"]["test_accuracy"] for r in reports]}


def workers(root: str, fashion_dir: str) -> list:
  data = (["--flagfile=configs/fashion_mnist.flags"] if os.path.isdir(fashion_dir)
          else ["--flagfile=configs/mnist.flags"])
  flags = data + ["--epochs=2", "--noprune", *EXPORT]
  rows = []
  for n in (1, 2):
    wd = f"{root}/workers{n}"
    if n == 1:
      _run("pipeline.run", flags + [f"--workdir={wd}"], f"{wd}.out")
    else:
      _run("pipeline.launch", ["--", *flags, f"--workdir={wd}"], f"{wd}.out",
           extra=[f"--workers={n}"])
    r = json.load(open(f"{wd}/report.json"))
    seconds = r["stage_seconds"]["baseline"]
    examples = 2 * r["dataset"]["train_examples"]
    rows.append({"workers": n, "seconds": seconds, "examples_per_s": examples / seconds,
                 "per_worker": examples / seconds / n, "dataset": r["dataset"]["name"],
                 "accuracy": r["baseline"]["test_accuracy"],
                 "batch": r["baseline"]["training"]["per_replica_batch"]})
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--fashion_dir", default="/usr/share/datasets/fashion-mnist",
                      help="where Debian's Fashion-MNIST is (absent: the embedded MNIST subset)")
  parser.add_argument("--out_dir", default=None, help="keep the runs here (default: removed)")
  args = parser.parse_args()
  from export import cpu  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(prefix="distributed-") as tmp:
    root = args.out_dir or tmp
    os.makedirs(root, exist_ok=True)
    r, w = resume(root), workers(root, args.fashion_dir)
  print(f"CPU: {cpu.read().describe()}\n")
  print(f"Resume ({r['line']}): whole run {r['whole']:.1f} s; killed at 60% ({r['first']:.1f} s) "
        f"+ resumed {r['second']:.1f} s = {r['first'] + r['second']:.1f} s "
        f"({(r['first'] + r['second']) / r['whole']:.2f}x); same final weights: "
        f"{'yes' if r['same_weights'] else 'no'}; pruned test accuracy whole "
        f"{100 * r['accuracy'][0]:.2f}%, resumed {100 * r['accuracy'][1]:.2f}%.\n")
  print(f"| workers | per-replica batch | baseline stage (2 epochs of {w[0]['dataset']}) | "
        "examples/s | per worker | test accuracy |\n|---|---|---|---|---|---|")
  for row in w:
    print(f"| {row['workers']} | {row['batch']} | {row['seconds']:.1f} s | "
          f"{row['examples_per_s']:,.0f} | {row['per_worker']:,.0f} | "
          f"{100 * row['accuracy']:.2f}% |")


if __name__ == "__main__":
  main()
