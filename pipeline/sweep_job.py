"""The sweep's stages: baseline once, one run per point (resumable), one timing, one table."""

import dataclasses
import json
import os
import shutil
import time
from typing import List, Sequence, Tuple

from absl import logging

from export import cpu as cpu_lib
from export import timing as timing_lib
from export import console as console_lib
from export import recommend
from pipeline import job
from pipeline.stages import measure as measure_lib
from pipeline.planning import pareto
from pipeline.unstructured import prune as prune_lib
from pipeline.models import safe_load
from export import workdir as workdir_lib
from pipeline.config import Config, FlagError

# Settings that may differ between the runs of one sweep; any other change starts a new one.
_PER_RUN = ("prune", "pruning_rate", "structured_rate", "workdir", "overwrite", "benchmark_runs",
            "verbose")
SWEEP_CONFIG = "sweep_config.json"
_POLL_SECONDS = 5  # How often a shard looks for shard 1's baseline.
_POINT_RUNS = 100  # Each point's own report times its files briefly; the sweep times them all.


def _settings(cfg: Config) -> dict:
  return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _PER_RUN}


def _begin(cfg: Config) -> None:
  """Creates the sweep directory, or checks that the sweep in it used the same settings."""
  path = os.path.join(cfg.workdir, SWEEP_CONFIG)
  mine = json.loads(json.dumps(_settings(cfg)))
  # (".tmp-" files: another shard writing SWEEP_CONFIG right now.)
  entries = [e for e in os.listdir(cfg.workdir) if not e.startswith(".tmp-")] if os.path.isdir(
      cfg.workdir) else []
  if entries and not os.path.exists(path):
    raise FlagError("workdir", cfg.workdir, f"exists and is not a sweep (no {SWEEP_CONFIG}); "
                    "choose another --workdir")
  if os.path.exists(path):
    with open(path) as f:
      theirs = json.load(f)
    changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if changed and not cfg.overwrite:
      raise FlagError("workdir", cfg.workdir, f"holds a sweep with other settings (differs in "
                      f"{', '.join(changed)}); pass --overwrite to start it again, or choose "
                      "another --workdir")
    if changed:  # A sweep of this tool (it holds SWEEP_CONFIG): start it again.
      shutil.rmtree(cfg.workdir)
  workdir_lib.check_writable(cfg.workdir)
  os.makedirs(cfg.workdir, exist_ok=True)
  workdir_lib.atomic_write(path, json.dumps(mine, indent=2) + "\n")


def _finished(path: str):
  """A finished run's report, or None."""
  try:
    with open(os.path.join(path, "report.json")) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def run_sweep(cfg: Config, points: Sequence[Tuple[float, float]], flags_text: str,
              con: console_lib.Console, shard: Tuple[int, int] = (1, 1)) -> dict:
  """Runs the baseline and every point not finished before, then times and tabulates them.

  With `shard` (i, n), runs points i, i+n, ... only (1-based); shards other than the first
  wait for the first one's baseline. The table is written once every point has finished.

  Returns:
    {"rows": one dict per .tflite file, "markdown": sweep.md's text, "paths": files written,
     "finished": points finished}; "markdown" is None while other shards' points are to come.

  Raises:
    ValueError: bad data, model or workdir (one line naming the flag).
    job.StageError: a run failed; finished points stay for the next attempt.
  """
  base_dir = os.path.join(cfg.workdir, "baseline")
  base_cfg = dataclasses.replace(cfg, prune=False, structured_rate=0.0, workdir=base_dir,
                                 distill=False, teacher_path=None,
                                 overwrite=True, export_formats=("float32",),
                                 benchmark_runs=_POINT_RUNS)
  with con.stage("data") as info:
    # Checks every flag the points will use (the most pruning asked), and writes nothing.
    prep = job.preflight(dataclasses.replace(
        base_cfg, distill=cfg.distill, teacher_path=cfg.teacher_path,
        prune=any(u for _, u in points), structured_rate=max(s for s, _ in points),
        layer_rates=cfg.layer_rates if any(u for _, u in points) else "",
        pruning_rate=max(u for _, u in points) or cfg.pruning_rate))
    prep = dataclasses.replace(prep, schedule=None)
    info["summary"] = f"{prep.data.name}: {len(prep.data.train):,} train images"
  _begin(cfg)
  base_report = _finished(base_dir)
  if base_report is None and shard[0] > 1:
    base_report = _wait_for_baseline(base_dir, shard, con)
  if base_report is None:
    con.line(f"== baseline -> {base_dir}")
    base_report = job.run_job(base_cfg, prep, flags_text, con)
  else:
    con.line(f"== baseline: finished before, in {base_dir}")
  baseline_path = os.path.join(base_dir, "baseline.keras")
  baseline = safe_load.load_baseline(baseline_path, prep.data.input_shape,
                                     prep.data.num_classes, trust=cfg.trust_model)
  reports = {}
  for i, (s, u) in enumerate(points):
    name = point_name(s, u)
    pdir = os.path.join(cfg.workdir, name)
    reports[name] = _finished(pdir)
    if i % shard[1] != shard[0] - 1:
      continue  # Another shard's.
    if reports[name] is not None:
      con.line(f"== point {i + 1}/{len(points)}: {_describe(s, u)}: finished before, in {pdir}")
      continue
    con.line(f"== point {i + 1}/{len(points)}: {_describe(s, u)} -> {pdir}")
    reports[name] = _run_point(cfg, prep, baseline, baseline_path, (s, u), pdir, flags_text,
                               con)
  finished = sum(r is not None for r in reports.values())
  if finished < len(points):
    return {"rows": [], "markdown": None, "paths": [], "finished": finished}
  rows = _timed_rows(cfg, base_report, reports, points, con)
  return dict(_write(cfg, base_report, rows, points), finished=finished)


def _run_point(cfg: Config, prep, baseline, baseline_path: str, point: Tuple[float, float],
               pdir: str, flags_text: str, con) -> dict:
  """One point's run (resumed, if a run of it was cut off) from the sweep's baseline."""
  s, u = point
  pcfg = dataclasses.replace(cfg, prune=u > 0, pruning_rate=u or cfg.pruning_rate,
                             layer_rates=cfg.layer_rates if u > 0 else "",
                             sensitivity=False,  # The baseline's run has it, once.
                             structured_rate=s, baseline_path=baseline_path, workdir=pdir,
                             overwrite=True, benchmark_runs=_POINT_RUNS,
                             # A Keras 3 user gets each point's model back in Keras 3 too.
                             keras3_output=cfg.keras3_output or prep.keras3 is not None,
                             distill=cfg.distill and (s > 0 or u > 0),
                             teacher_path=cfg.teacher_path if s > 0 or u > 0 else None)
  schedule = prune_lib.schedule_steps(pcfg, len(prep.data.train)) if pcfg.prune else None
  pprep = job.Prepared(prep.data, baseline, None, schedule, teacher=prep.teacher)
  return job.run_job(pcfg, pprep, _point_flags(flags_text, pcfg), con)


def _wait_for_baseline(base_dir: str, shard: Tuple[int, int], con) -> dict:
  """The baseline's report, once shard 1 (or the unsharded sweep) has written it."""
  con.line(f"== shard {shard[0]}/{shard[1]}: waiting for the baseline in {base_dir} (shard "
           f"1/{shard[1]} trains it)")
  while True:
    report = _finished(base_dir)
    if report is not None:
      return report
    time.sleep(_POLL_SECONDS)


def _point_flags(flags_text: str, pcfg: Config) -> str:
  """The point's flags.txt: `python -m pipeline.run --flagfile=<point>/flags.txt` runs it."""
  kept = [l for l in flags_text.splitlines()
          if not l.startswith(("--rates=", "--structured_rates="))]
  return "\n".join(kept + [
      "--prune" if pcfg.prune else "--noprune", f"--pruning_rate={pcfg.pruning_rate}",
      f"--structured_rate={pcfg.structured_rate}", f"--layer_rates={pcfg.layer_rates}",
      f"--baseline_path={pcfg.baseline_path}", f"--workdir={pcfg.workdir}",
      f"--benchmark_runs={pcfg.benchmark_runs}"]
      + (["--keras3_output"] if pcfg.keras3_output else [])) + "\n"


def point_name(structured: float, unstructured: float) -> str:
  """'s0_u0.975': the rates as given, so no two points share a directory."""
  return f"s{structured:g}_u{unstructured:g}"


def _pct(r: float) -> str:
  return f"{100 * r:g}%"


def _describe(s: float, u: float) -> str:
  return " + ".join(p for p in (f"structured {_pct(s)}" if s else "",
                                f"unstructured {_pct(u)}" if u else "") if p)


def _timed_rows(cfg: Config, base_report: dict, reports: dict,
                points: Sequence[Tuple[float, float]], con) -> List[dict]:
  """Every point's files and the baseline's float32, timed interleaved in this process."""
  ref = next(e for e in base_report["exports"] if e["name"] == "baseline_float32")
  entries = [("baseline", 0.0, 0.0, ref, base_report["baseline"])]
  for s, u in points:
    r = reports[point_name(s, u)]
    entries += [(point_name(s, u), s, u, e, r["pruned"]) for e in r["exports"]
                if e["model"] in ("pruned", "qat")]  # qat: --quantize_aware's int8 files.
  # Report paths are relative to their run directory.
  files = {f"{p}/{e['name']}": os.path.join(cfg.workdir, p, e["path"])
           for p, _, _, e, _ in entries}
  with con.stage("benchmark") as info:
    progress, bar = con.round_progress("benchmark", measure_lib.TIMING_ROUNDS)
    try:
      with console_lib.native_output_to_log("LiteRT"):
        timings = timing_lib.measure(files, warmup_runs=cfg.benchmark_warmup_runs,
                                     runs=cfg.benchmark_runs, rounds=measure_lib.TIMING_ROUNDS,
                                     progress=progress)
    finally:
      bar.close()
    info["summary"] = (f"{len(files)} files x "
                       f"{timing_lib.invokes(cfg.benchmark_runs, measure_lib.TIMING_ROUNDS):,} "
                       "invokes in "
                       f"{measure_lib.TIMING_ROUNDS} interleaved rounds, 1 thread")
  by = {t.name: t for t in timings}
  ref_t = by["baseline/baseline_float32"]
  rows = []
  for (p, s, u, e, model_row), key in zip(entries, files):
    sp = timing_lib.speedup(ref_t, by[key])
    rows.append({
        "point": p, "structured_rate": s, "pruning_rate": u, "name": e["name"],
        "path": os.path.join(p, e["path"]), "format": e["format"], "sparse": e["sparse"],
        "test_accuracy": e["test_accuracy"], "gate": e["gate"],
        "gate_reason": e.get("gate_reason", ""), "sparsity": e["sparsity"],
        "macs_ratio": model_row["macs"] / base_report["baseline"]["macs"],
        "gzip_bytes": e["gzip_bytes"], "gzip_ratio": ref["gzip_bytes"] / e["gzip_bytes"],
        "latency_ms_p50": by[key].p50_ms, "speedup": sp.paired, "speedup_p10": sp.p10,
        "speedup_p90": sp.p90, "label": "baseline" if p == "baseline" else
        f"{_short(s, u)} {e['name'].replace('pruned_', '')}"})
  return rows


def _short(s: float, u: float) -> str:
  return "+".join(x for x in (f"s{_pct(s)}" if s else "", f"u{_pct(u)}" if u else "") if x)


def _write(cfg: Config, base_report: dict, rows: List[dict],
           points: Sequence[Tuple[float, float]]) -> dict:
  """sweep.json, sweep.md and the two charts, written atomically into the sweep directory."""
  cpu = cpu_lib.read().describe()
  on_size = set(pareto.frontier([r["gzip_bytes"] for r in rows],
                                [r["test_accuracy"] for r in rows]))
  on_speed = set(pareto.frontier([-r["speedup"] for r in rows],
                                 [r["test_accuracy"] for r in rows]))
  for i, r in enumerate(rows):
    r["pareto_size"], r["pareto_speed"] = i in on_size, i in on_speed
  base_acc = base_report["baseline"]["test_accuracy"]
  lines = [f"Sweep of {len(points)} point(s) on {base_report['dataset']['name']} "
           f"({cfg.model if not cfg.baseline_path else cfg.baseline_path}); baseline test "
           f"accuracy {100 * base_acc:.2f}%.",
           f"CPU: {cpu}. Speed-ups are paired against baseline_float32: every file timed in "
           f"the same process, {cfg.benchmark_runs:,} invokes each in "
           f"{measure_lib.TIMING_ROUNDS} interleaved rounds "
           "(median of the per-round ratios, p10-p90 in brackets). Pareto: * = no file is both "
           "smaller (gzip) and more accurate; + = none both faster and more accurate.", "",
           "| point | file | sparsity | MACs | test accuracy | vs baseline | gzip | "
           "speed-up (paired) | gate | Pareto |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['point']} | {r['name']} | {r['sparsity']:.1%} | {r['macs_ratio']:.2f}x | "
        f"{100 * r['test_accuracy']:.2f}% | {100 * (r['test_accuracy'] - base_acc):+.2f} | "
        f"{r['gzip_bytes'] / 1024:.1f} KB ({r['gzip_ratio']:.1f}x) | {r['speedup']:.2f}x "
        f"({r['speedup_p10']:.2f}-{r['speedup_p90']:.2f}) | {r['gate']} | "
        f"{'*' if r['pareto_size'] else ''}{'+' if r['pareto_speed'] else ''} |")
  lines += ["", "Charts: accuracy_vs_gzip.png, accuracy_vs_latency.png (Pareto frontier "
            "joined). Each point's own report, <point>/report.md, has its accuracy checks; its "
            f"latencies come from a brief {_POINT_RUNS}-invoke timing, so use this table's."]
  lines += [""] + recommend.lines(
      [recommend.Candidate(f"{r['point']}/{r['name']}", r["test_accuracy"] - base_acc,
                           r["speedup"], r["gzip_ratio"], r["gate"] == "ok") for r in rows],
      f"on this CPU ({cpu})", "baseline/baseline_float32", cfg.max_accuracy_drop)
  md = "\n".join(lines) + "\n"
  paths = [pareto.chart(rows, "gzip_bytes", "gzip size (bytes), log scale",
                        os.path.join(cfg.workdir, "accuracy_vs_gzip.png"), log_x=True),
           pareto.chart([dict(r, slowdown=1 / r["speedup"]) for r in rows], "slowdown",
                        "latency / baseline float32 latency (paired, 1 thread)",
                        os.path.join(cfg.workdir, "accuracy_vs_latency.png"),
                        title=f"CPU: {cpu}")]
  paths += [workdir_lib.atomic_write(os.path.join(cfg.workdir, "sweep.json"), json.dumps(
                {"cpu_description": cpu, "points": [list(p) for p in points], "rows": rows},
                indent=2) + "\n"),
            workdir_lib.atomic_write(os.path.join(cfg.workdir, "sweep.md"), md)]
  logging.info("Sweep written: %s", ", ".join(paths))
  return {"rows": rows, "markdown": md, "paths": paths}
