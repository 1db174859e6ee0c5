"""`make bench`: the TF-MOT tutorial recipe and this pipeline's recipes side by side, one process.

  python -m benchmarks.compare --flagfile=configs/fashion_mnist.flags --out_dir=bench_out

Takes the pipeline's own flags (data, baseline training, the pruning recipe), trains one
baseline with pipeline.job's baseline stage, prunes copies of it with each recipe through
pipeline.job's pruning stages, exports every file, gates each one through LiteRT and times
them all interleaved. Speed-ups and the "met / NOT met" verdicts use the paired median (see
export/timing.py). Writes compare.md, compare.json and two PNG charts to --out_dir, which is
replaced only once they are complete.
"""

import dataclasses
import json
import logging as py_logging
import math
import os

from absl import flags
from absl import logging

from benchmarks import charts
from benchmarks import records
from export import cli
from pipeline import flags as pipeline_flags  # The pipeline's flags, which this command shares.
from export import shared_flags

_EDGE_STRUCTURED = flags.DEFINE_float("edge_structured_rate", 0.5, "Row 3: fraction of "
                                       "channels removed (the edge recipe of issue #4).")
_EDGE_PRUNING = flags.DEFINE_float("edge_pruning_rate", 0.8, "Row 3: unstructured sparsity on "
                                   "what remains (the edge recipe of issue #4).")
_RECORDS = flags.DEFINE_bool("records", True, "Also run the records' recipes "
                             "(benchmarks/records.py), each with and without --distill.")
_MOBILENET = flags.DEFINE_bool("mobilenet", True, "Also remove half the channels of "
                               "MobileNetV2 (alpha 0.35, 96x96x3, random weights) and time it.")

ALL_FORMATS = ("float32", "float16", "dynamic_int8", "int8")


def tutorial_config(cfg):
  """The TF-MOT pruning tutorial: every layer, PolynomialDecay 0.5 -> 0.8 over 2 fine-tune
  epochs ending on the last mask update, masks every 100 steps, Adam at its default 1e-3."""
  return dataclasses.replace(cfg, prune=True, pruning_scope="all", initial_sparsity=0.5,
                             pruning_rate=0.8, fine_tune_epochs=2, fine_tune_learning_rate=1e-3,
                             pruning_begin_step=0, pruning_frequency=100, pruning_end_step=None)


def recipes(cfg, train_examples, edge_structured_rate, edge_pruning_rate):
  """{model name: (label, Config)} for every pruned row of the table."""
  tut = tutorial_config(cfg)
  total = math.ceil(train_examples / tut.batch_size) * tut.fine_tune_epochs
  # The tutorial ends on the last step; TF-MOT reaches the final sparsity only on a mask
  # update (steps 1..total, every `frequency`), so it ends on the last such update. In a run
  # of under 100 steps (a smoke test) a frequency of 100 would never prune.
  freq = min(100, max(1, total // 8))
  tut = dataclasses.replace(tut, pruning_end_step=total // freq * freq, pruning_frequency=freq)
  ours = dataclasses.replace(cfg, prune=True)
  edge = dataclasses.replace(cfg, prune=True, structured_rate=edge_structured_rate,
                             pruning_rate=edge_pruning_rate)
  return {
      "tfmot_tutorial": ("1. TF-MOT tutorial recipe", tut),
      "pruned": (f"2. this pipeline, unstructured {cfg.pruning_rate:.0%}", ours),
      "edge": (f"3. this pipeline, structured {edge.structured_rate:.0%} + unstructured "
               f"{edge.pruning_rate:.0%}", edge),
  }


def to_markdown(result) -> str:
  ds, rows = result["dataset"], result["rows"]
  lines = [
      f"CPU: {result['cpu_description']}.",
      "",
      f"Data: {ds['name']} from {ds['source']}; {ds['train_examples']} train, "
      f"{ds['test_examples']} test images. One baseline ({result['baseline_accuracy']:.2%}), "
      f"every file timed interleaved in one process: {result['runs']} invokes in "
      f"{result['rounds']} rounds (order rotated each round), 1 thread, LiteRT XNNPACK "
      "(builtin kernels where it fails). Speed-up: the median over rounds of the dense float32 "
      "baseline's round median over the file's, with the 10th-90th percentile of the per-round "
      "ratios; best-round and p50 ratios are secondary. A disturbed round's median is over "
      "1.1x the file's best.",
      "",
      "| recipe | file | gate | test accuracy | vs baseline (points) | sparsity | gzip bytes "
      "| gzip ratio | p50 ms | speed-up (paired, p10-p90) | speed-up (best round) "
      "| speed-up (p50) | disturbed rounds | MACs vs baseline | effective MACs | kernels |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  ref_macs = next(r["macs"] for r in rows if r["model"] == "baseline")
  for r in rows:
    kernels = r["delegate"] + (" (fallback)" if r["fallback_reason"] else "")
    lines.append(
        f"| {r['recipe']} | {r['name']} | {r['gate']} | {r['test_accuracy']:.2%} "
        f"| {100 * (r['test_accuracy'] - result['baseline_accuracy']):+.2f} | {r['sparsity']:.1%} "
        f"| {r['gzip_bytes']:,} | {r['gzip_ratio']:.2f}x | {r['latency_ms_p50']:.4f} "
        f"| {r['speedup']:.2f}x ({r['speedup_p10']:.2f}-{r['speedup_p90']:.2f}) "
        f"| {r['speedup_best_round']:.2f}x | {r['speedup_p50']:.2f}x "
        f"| {r['disturbed_rounds']}/{r['rounds']} | {r['macs'] / ref_macs:.2f}x "
        f"| {r['effective_macs'] / 1e6:.2f}M of {r['macs'] / 1e6:.2f}M "
        f"| {kernels} |")
  lines += [f"- FAILED {r['name']}: {r['gate_reason']}" for r in rows if r["gate"] != "ok"]
  lines += ["", *(f"- {v}" for v in result["verdicts"])]
  if result.get("record_verdicts"):
    lines += ["", "Records (benchmarks/records.py; each recipe with and without --distill, its "
              "best file within the accuracy bound):", "",
              *(f"- {v}" for v in result["record_verdicts"])]
  mb = result.get("mobilenet_v2")
  if mb:
    lines += ["", f"MobileNetV2 (alpha 0.35, 96x96x3, 10 classes, random weights), half the "
              f"channels of every prunable group removed ({mb['criterion']}, per layer): MACs "
              f"{mb['macs_before'] / 1e6:.1f}M -> {mb['macs_after'] / 1e6:.1f}M "
              f"({mb['macs_ratio']:.2f}x), parameters {mb['params_before']:,} -> "
              f"{mb['params_after']:,}, float32 latency p50 {mb['p50_before_ms']:.3f} -> "
              f"{mb['p50_after_ms']:.3f} ms: {mb['speedup']:.2f}x lower, paired "
              f"(p10-p90 {mb['speedup_p10']:.2f}-{mb['speedup_p90']:.2f}; best round "
              f"{mb['speedup_best_round']:.2f}x), smaller model equals "
              f"the masked original to {mb['max_abs_diff_vs_masked']:.1e}; "
              f"{mb['coupled_groups']} coupled residual groups.", "",
              "- " + mobilenet_verdict(mb)]
  return "\n".join(lines) + "\n"


# Row 3's targets: latency ratio (paired median), gzip ratio, accuracy change (points).
EDGE_TARGETS = {"speedup": 4.0, "gzip_ratio": 25.0, "points": -1.0}
# MobileNetV2 with half its prunable channels removed: MAC ratio, float32 latency ratio.
MOBILENET_TARGETS = {"macs_ratio": 0.55, "speedup": 1.6, "max_abs_diff": 1e-5}


def _met(ok: bool) -> str:
  return "met" if ok else "NOT met"


def verdicts(rows, baseline_accuracy=None):
  """Plain statements: row 2 against row 1 at the tutorial's own format (float32), and each
  int8 file of row 3 against EDGE_TARGETS."""
  by = {r["name"]: r for r in rows}
  out = []
  tut, ours = by.get("tfmot_tutorial_float32"), by.get("pruned_float32")
  if tut and ours:
    acc = "beats" if ours["test_accuracy"] > tut["test_accuracy"] else "does NOT beat"
    size = "smaller" if ours["gzip_bytes"] < tut["gzip_bytes"] else "NOT smaller"
    out.append(f"Row 2 (pruned_float32) {acc} row 1 on accuracy ({ours['test_accuracy']:.2%} vs "
               f"{tut['test_accuracy']:.2%}) and its gzip file is {size} "
               f"({ours['gzip_bytes']:,} vs {tut['gzip_bytes']:,} bytes).")
  if baseline_accuracy is None:
    return out
  t = EDGE_TARGETS
  for r in rows:
    if r["model"] != "edge" or "int8" not in r["format"]:
      continue
    points = 100 * (r["test_accuracy"] - baseline_accuracy)
    out.append(
        f"Row 3 ({r['name']}): {r['speedup']:.2f}x lower latency (paired median, p10-p90 "
        f"{r['speedup_p10']:.2f}-{r['speedup_p90']:.2f}x; best round {r['speedup_best_round']:.2f}x, "
        f"p50 {r['speedup_p50']:.2f}x) against >= {t['speedup']:.0f}x: "
        f"{_met(r['speedup'] >= t['speedup'])}; gzip {r['gzip_ratio']:.1f}x smaller against "
        f">= {t['gzip_ratio']:.0f}x: {_met(r['gzip_ratio'] >= t['gzip_ratio'])}; accuracy "
        f"{points:+.2f} points against >= {t['points']:+.1f}: {_met(points >= t['points'])}.")
  return out


def mobilenet_verdict(mb) -> str:
  t = MOBILENET_TARGETS
  return (f"MobileNetV2 half channels: MACs {mb['macs_ratio']:.2f}x against <= "
          f"{t['macs_ratio']}x: {_met(mb['macs_ratio'] <= t['macs_ratio'])}; latency "
          f"{mb['speedup']:.2f}x lower (paired median) against >= {t['speedup']}x: "
          f"{_met(mb['speedup'] >= t['speedup'])}; equals the masked original to "
          f"{mb['max_abs_diff_vs_masked']:.1e} against < {t['max_abs_diff']:.0e}: "
          f"{_met(mb['max_abs_diff_vs_masked'] < t['max_abs_diff'])}.")


def mobilenet_check(out_dir, runs, warmup_runs) -> dict:
  """Removes half the channels of MobileNetV2 and times both float32 files side by side."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from export import timing, tflite  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from pipeline.models import macs
  from pipeline.stages import measure
  from pipeline.structured import prune as structured
  from pipeline.structured import surgery
  from export import workdir
  keras.utils.set_random_seed(0)
  model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3),
                                         classes=10)
  a = surgery.analyze(model)
  keep = structured.select(a, structured.scores(a, "l1", None, None), 0.5, "per_layer", 1)
  small = surgery.shrink(a, keep)
  x = np.random.default_rng(0).random((8, 96, 96, 3), np.float32)
  diff = surgery.max_output_difference(a, keep, small, x)
  files = {}
  for name, m in (("mobilenet_v2", model), ("mobilenet_v2_half", small)):
    files[name] = workdir.atomic_write(os.path.join(out_dir, name + ".tflite"),
                                       tflite.convert(m, "float32"))
  before, after = timing.measure(files, warmup_runs=warmup_runs, runs=runs,
                                 rounds=measure.TIMING_ROUNDS)
  s = timing.speedup(before, after)
  return {"criterion": "l1", "macs_before": macs.count(model), "macs_after": macs.count(small),
          "macs_ratio": macs.count(small) / macs.count(model),
          "params_before": model.count_params(), "params_after": small.count_params(),
          "best_before_ms": before.best_round_ms, "best_after_ms": after.best_round_ms,
          "p50_before_ms": before.p50_ms, "p50_after_ms": after.p50_ms,
          "speedup": s.paired, "speedup_p10": s.p10, "speedup_p90": s.p90,
          "speedup_best_round": s.best_round, "speedup_p50": s.p50,
          "max_abs_diff_vs_masked": diff,
          "coupled_groups": sum(len(g.producers) > 1 for g in a.prunable()),
          "skipped": a.skipped()}


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  out_path = shared_flags.OUT_DIR.value
  cfg = dataclasses.replace(pipeline_flags.config_from_flags(), workdir=out_path, overwrite=True)
  from export import console  # pylint: disable=g-import-not-at-top
  console.quiet(detail=flags.FLAGS["verbosity"].present)
  con = console.Console()
  with console.native_output_to_log("TensorFlow's import"):
    # pylint: disable-next=g-import-not-at-top
    from pipeline import data as data_lib
    from pipeline import job
    from pipeline.stages import baseline as baseline_stage
    from pipeline.stages import measure
    from pipeline.stages import pruning
    from pipeline.stages import training
    from pipeline.planning import speed_target
    from export import workdir
    from export import cpu  # pylint: disable=g-import-not-at-top
    from export import verify
    from pipeline.models import heads
    from pipeline.collab import qat as qat_lib
  try:
    with con.stage("data"):
      prep = job.preflight(dataclasses.replace(cfg, prune=False))
    out_dir, notes = workdir.begin(out_path, overwrite=True)
  except ValueError as e:
    cli.fail(str(e))
  handler = console.log_to(os.path.join(out_dir, job.LOG_FILE))
  for note in notes:
    logging.warning("%s", note)
  data = prep.data
  workdir.atomic_write(os.path.join(out_dir, workdir.MARKER), flags.FLAGS.flags_into_string())
  logging.info("Comparing on %s from %s.", data.name, data.source)

  seconds = {}
  baseline, _ = baseline_stage.stage(cfg, prep.data, prep.baseline, prep.fresh, out_dir, con,
                                     seconds)
  built = {"baseline": baseline}
  labels = {"baseline": "0. baseline (dense)"}
  pruned_layers = {}
  plans = recipes(cfg, len(data.train), _EDGE_STRUCTURED.value, _EDGE_PRUNING.value)
  record_plans = records.variants(cfg) if _RECORDS.value else {}
  for name, (label, rcfg, *_) in {**plans, **record_plans}.items():
    stage_seconds, wd = {}, os.path.join(out_dir, name)
    taught = training.taught(rcfg, data, baseline)
    target = (speed_target.stage(baseline, taught, rcfg, wd, con, stage_seconds)
              if rcfg.target_speedup else None)
    built[name], _, pruned_layers[name] = pruning.run(baseline, taught, rcfg, wd, con,
                                                      stage_seconds, plan=target)
    seconds[name] = round(sum(stage_seconds.values()), 2)
    labels[name] = label
    if rcfg.quantize_aware:  # Its quantization-aware copy: the int8 files beside PTQ's.
      built[f"{name}_qat"] = qat_lib.load(built[name], os.path.join(wd, qat_lib.WEIGHTS),
                                          bool(pruned_layers[name]), bool(rcfg.cluster))
      pruned_layers[f"{name}_qat"] = qat_lib.wrapped_names(pruned_layers[name])
      labels[f"{name}_qat"] = f"{label} (quantization-aware int8)"
  outputs = {n: data_lib.predict(m, data.test) for n, m in built.items()}
  plan = {"baseline": (("float32",), False), "tfmot_tutorial": (("float32",), False),
          "pruned": (ALL_FORMATS, True), "edge": (("float32", "dynamic_int8", "int8"), False),
          **{n: (c.export_formats, c.prune) for n, (_, c, _) in record_plans.items()},
          **{f"{n}_qat": (("int8",), c.prune) for n, (_, c, _) in record_plans.items()
             if c.quantize_aware}}
  rows = [r.to_json() for r in measure.export_and_measure(
      built, plan, outputs, pruned_layers, data, os.path.join(out_dir, "tflite"),
      head=heads.read(built["baseline"]), int8_io=cfg.int8_io, runs=cfg.benchmark_runs,
      warmup_runs=cfg.benchmark_warmup_runs, bounds=job.bounds_of(cfg), console=con,
      seconds=seconds)]
  for r in rows:
    r["recipe"] = labels[r["model"]]
    r["path"] = os.path.relpath(r["path"], out_dir)
  baseline_accuracy = verify.top1_accuracy(outputs["baseline"], data.test.labels,
                                           heads.read(built["baseline"]))
  machine = cpu.read()
  result = {
      "cpu": dataclasses.asdict(machine), "cpu_description": machine.describe(),
      "dataset": data.summary(), "runs": cfg.benchmark_runs, "rounds": measure.TIMING_ROUNDS,
      "stage_seconds": seconds, "baseline_accuracy": baseline_accuracy,
      "recipes": {n: dataclasses.asdict(c) for n, (_, c, *_) in {**plans,
                                                                  **record_plans}.items()},
      "rows": rows, "verdicts": verdicts(rows, baseline_accuracy),
      "record_verdicts": records.verdicts(record_plans, rows, baseline_accuracy)}
  if _MOBILENET.value:
    with con.stage("mobilenet_v2", seconds):
      result["mobilenet_v2"] = mobilenet_check(os.path.join(out_dir, "mobilenet"),
                                               cfg.benchmark_runs, cfg.benchmark_warmup_runs)
  md = to_markdown(result)
  workdir.atomic_write(os.path.join(out_dir, "compare.json"), json.dumps(result, indent=2) + "\n")
  workdir.atomic_write(os.path.join(out_dir, "compare.md"), md)
  pngs = charts.accuracy_charts(rows, out_dir)
  py_logging.getLogger().removeHandler(handler)
  handler.close()
  workdir.finish(out_dir, out_path)
  print(md)
  charts_written = ", ".join(os.path.basename(p) for p in pngs)
  print(f"Written: {out_path}/compare.md, compare.json, {charts_written}")
  failed = [r for r in rows if r["gate"] != "ok"]
  if failed:
    cli.fail(f"{len(failed)} exported file(s) outside their bounds: "
             + "; ".join(f"{r['name']}: {r['gate_reason']}" for r in failed), status=1)


if __name__ == "__main__":
  cli.run(main, __name__, shared=("out_dir",), topics=pipeline_flags.TOPICS)
