"""`python -m export.benchmark FILE... [flags]`: time any .tflite files side by side with LiteRT.

Files are opened and warmed up, then timed in interleaved rounds (A B C, B C A, ...) in one
process, timing invoke() alone. A speed-up is paired: the median over rounds of the reference's
round median over the file's, with the 10th-90th percentile of those ratios; best-round and p50
ratios are printed beside it. The CPU (model, cores, ISA features) is printed with the table.
A delegate that fails to prepare is reported, and the file is measured on the builtin kernels
instead. Defaults: --runs=2000 --rounds=40 --warmup_runs=50.
"""

import json
import os

from absl import flags

from export import litert
from export import cli
from export import shared_flags
from export.cli import fail

_THREADS = flags.DEFINE_list("threads", "1", "Thread counts to measure, e.g. 1,2.")
_DELEGATES = flags.DEFINE_list("delegates", "xnnpack", "Kernels to measure, from: "
                               f"{', '.join(litert.DELEGATES)} (builtin = no default delegate).")
SHARED = ("runs", "rounds", "warmup_runs", "reference", "json")

flags.register_validator("threads", lambda ts: bool(ts) and all(t.isdigit() and int(t) > 0
                                                                 for t in ts),
                         "must be a comma-separated list of positive integers")
flags.register_validator("delegates", lambda ds: bool(ds) and all(d in litert.DELEGATES
                                                                  for d in ds),
                         f"must be a comma-separated list from: {', '.join(litert.DELEGATES)}")


def main(argv):
  paths = argv[1:]
  if not paths:
    fail("no .tflite file given; usage: python -m export.benchmark FILE... [--threads=1,2]")
  for p in paths:
    if not os.path.isfile(p):
      fail(f"{p}: no such file")
  names = cli.short_names(paths)
  ref_name = cli.reference_name(shared_flags.REFERENCE.value, paths, names)

  from export import cpu, timing  # pylint: disable=g-import-not-at-top
  from export import console  # pylint: disable=g-import-not-at-top

  rounds = shared_flags.value(shared_flags.ROUNDS, 40)
  progress, bar = console.Console().round_progress("timing", rounds)
  try:
    with console.native_output_to_log("LiteRT"):
      results = timing.measure(dict(zip(names, paths)),
                               threads=[int(t) for t in _THREADS.value],
                               delegates=_DELEGATES.value,
                               warmup_runs=shared_flags.value(shared_flags.WARMUP_RUNS, 50),
                               runs=shared_flags.value(shared_flags.RUNS, 2000), rounds=rounds,
                               progress=progress)
  except ValueError as e:  # LiteRT refuses a file that is not a valid model.
    fail(str(e))
  finally:
    bar.close()
  machine = cpu.read()
  print(f"CPU: {machine.describe()}\n")
  print(timing.to_markdown(results, ref_name))
  work = _work(dict(zip(names, paths)), ref_name)
  print("\n" + "\n".join(work["lines"]))
  if shared_flags.JSON.value:
    from export import workdir  # pylint: disable=g-import-not-at-top
    ref = {(t.delegate_requested, t.threads): t for t in results if t.name == ref_name}
    workdir.atomic_write(shared_flags.JSON.value, json.dumps(
        {"reference": ref_name, "cpu": machine.__dict__, "cpu_description": machine.describe(),
         "results": [dict(r.__dict__, speedup=timing.speedup(
             ref[(r.delegate_requested, r.threads)], r).as_dict()) for r in results],
         "work": work["files"]}, indent=2) + "\n")


def _work(files, ref_name):
  """MACs and effective MACs (zero weights skipped) per file, and whether any kernel here can
  skip zeros: how far a measured speed-up could go, given the work left."""
  from export import cpu, graph  # pylint: disable=g-import-not-at-top
  has_avx = cpu.read().has("AVX")
  info = {}
  for name, path in files.items():
    g = graph.read(path)
    info[name] = {"macs": g.macs, "effective_macs": g.effective_macs,
                  "sparse_kernel_blockers": graph.sparse_inference_blockers(g, has_avx)}
  ref = info[ref_name]["macs"] or 1
  lines = ["| file | MACs | vs reference | effective MACs | can skip zeros here |",
           "|---|---|---|---|---|"]
  for name, w in info.items():
    blockers = w["sparse_kernel_blockers"]
    skip = "no: " + "; ".join(blockers) if blockers else "yes (XNNPACK sparse kernels)"
    lines.append(f"| {name} | {w['macs']:,} | {w['macs'] / ref:.2f}x "
                 f"| {w['effective_macs']:,.0f} | {skip} |")
  return {"files": info, "lines": lines}


def run():
  cli.run(main, __name__, shared=SHARED)


if __name__ == "__main__":
  run()
