"""Report stage: a row per model and export, as report.json (for tools) and report.md (people)."""

import dataclasses
import json
import os
from typing import List, Optional, Sequence

from export import android
from export import workdir as workdir_lib
from pipeline.report import sections
from pipeline.report.rows import ExportRow
from pipeline.report.sections import pct as _pct, speedup as _speedup


def _points(x: Optional[float]) -> str:
  return "" if x is None else f"{100 * x:+.2f}"


def _macs(effective: Optional[float], total: Optional[int], reference: Optional[int]) -> str:
  """'0.44M of 2.63M (1.00x)': MACs left if zero weights were skipped, of all MACs, and all
  MACs against the reference file's."""
  if effective is None or not total:
    return ""
  ratio = f" ({total / reference:.2f}x)" if reference else ""
  return f"{effective / 1e6:.2f}M of {total / 1e6:.2f}M{ratio}"


def build(cfg, dataset: dict, baseline: dict, pruned: Optional[dict], exports: Sequence[ExportRow],
          benchmark: dict, stage_seconds: dict, workdir: str, arm: Optional[dict] = None,
          keras3: Optional[dict] = None) -> dict:
  """The report as a JSON-ready dict; export paths become relative to the workdir."""
  base_acc = baseline["test_accuracy"]
  rows = []
  for e in exports:
    e = e.to_json()
    e["path"] = os.path.relpath(e["path"], workdir)
    e["accuracy_change"] = e["test_accuracy"] - base_acc
    rows.append(e)
  if pruned is not None:
    pruned = dict(pruned, accuracy_change=pruned["test_accuracy"] - base_acc)
  return {
      "config": dataclasses.asdict(cfg),
      "dataset": dataset,
      "baseline": baseline,
      "pruned": pruned,
      "exports": rows,
      "benchmark": benchmark,
      "stage_seconds": stage_seconds,
      "tensorboard": _event_dirs(workdir),
      "arm": arm,  # pipeline/stages/arm.py's section (--arm_check), else None.
      "keras3": keras3,  # pipeline/stages/keras3.py's Keras 3 file, else None.
  }


def _event_dirs(workdir: str) -> List[str]:
  """The run's TensorBoard directories (those holding event files), relative to it."""
  found = set()
  for root, _, files in os.walk(os.path.join(workdir, "logs")):
    if any(f.startswith("events.out.tfevents") for f in files):
      # Keras writes train/ and validation/ below each fit's directory, TF-MOT metrics/
      # (per-layer sparsity): name the fit.
      rel = os.path.relpath(root, workdir)
      found.add(os.path.dirname(rel) if os.path.basename(rel) in ("train", "validation",
                                                                  "metrics") else rel)
  return sorted(found)


def _data_details(ds: dict) -> str:
  """'; images 96x96x3; 5 classes (circle 120/30/50, ...); image size ...': what the data
  stage chose and why, and the examples per class in train/validation/test."""
  if "image_shape" not in ds:
    return ""
  per = ds.get("per_class", {})
  classes = ds.get("classes", [])
  counts = ", ".join(
      f"{c} {'/'.join(str(per[s][i]) for s in ('train', 'validation', 'test') if s in per)}"
      for i, c in enumerate(classes[:20]))
  more = f", and {len(classes) - 20} more" if len(classes) > 20 else ""
  notes = "; ".join(ds.get("notes", []))
  return (f"; images {'x'.join(map(str, ds['image_shape']))}; {len(classes)} classes "
          f"(train/validation/test per class: {counts}{more})" + (f"; {notes}" if notes else ""))


def to_markdown(report: dict) -> str:
  """A table a person can read: accuracy and what it cost, size and speed against the reference.
  Built section by section from the report dict (as report.json holds it)."""
  lines = _heading(report) + _table(report) + _inputs(report["exports"]) + _gates(report)
  lines += sections.arm_lines(report.get("arm"), report["exports"])
  lines += _sparse_kernels(report["exports"])
  if report["pruned"] is not None:
    lines += _pruned(report, report["baseline"], report["pruned"])
  lines += _pointers(report)
  lines += sections.ship_lines(report, near_chance=report["baseline"]["test_accuracy"]
                               < _chance(report["dataset"]) + 0.05)
  if report.get("device"):  # Added by `python -m export.device --run_dir`: always last.
    lines += ["", android.report_section(report["device"]["markdown"])]
  return "\n".join(lines) + "\n"


def _heading(report: dict) -> List[str]:
  """Title, chance-level warnings, the Keras 3 note, and what was measured on what."""
  b, p, ds, bench = report["baseline"], report["pruned"], report["dataset"], report["benchmark"]
  cfg = report["config"]
  model = os.path.basename((cfg.get("baseline_path") or "").rstrip("/"))
  if model in ("", "baseline.keras"):  # A sweep's points load the sweep's own baseline.
    model = cfg["model"]
  chance = _chance(ds)
  lines = [f"# Pruning report: {model} on {ds['name']}", ""]
  if b["test_accuracy"] < chance + 0.05:
    lines += [f"WARNING: the baseline's test accuracy, {_pct(b['test_accuracy'])}, is near "
              f"chance ({chance:.0%}: always answering the largest class): it has not learned "
              "the task, so nothing below says much; train it longer (--epochs) before "
              "pruning.", ""]
  if p is not None and p["test_accuracy"] < chance + 0.05 <= b["test_accuracy"]:
    lines += [f"WARNING: the pruned model's test accuracy, {_pct(p['test_accuracy'])}, is near "
              f"chance ({chance:.0%}) while the baseline's is {_pct(b['test_accuracy'])}: this "
              "pruning destroyed the model; prune less, or fine-tune longer "
              "(--fine_tune_epochs).", ""]
  return lines + [
      *sections.keras3_lines(b.get("keras3"), report.get("keras3")),
      *sections.head_lines(b, p is not None),
      f"Data: {ds['source']}; {ds['train_examples']:,} train, {ds['validation_examples']:,} "
      f"validation, {ds['test_examples']:,} test images (accuracy is on all test images)"
      + _data_details(ds) + ".",
      *sections.training_lines(b.get("training")),
      f"CPU: {bench.get('cpu_description', 'not recorded')}. Latency and speed-ups belong to "
      "this CPU: another one can differ several-fold (docs/hardware-and-latency.md).",
      f"Latency: {bench['runs']:,} invokes after {bench['warmup_runs']} warm-up, "
      f"{bench['threads']} thread, LiteRT {bench['delegate']} (builtin kernels where it failed), "
      f"files interleaved in one process in {bench['rounds']} rounds, in an order rotated each "
      f"round. Speed-up: the median over rounds of `{bench['reference']}`'s round median over "
      "the file's, with the 10th-90th percentile of those per-round ratios in brackets; best "
      "round (each file's lowest round median) and p50 are secondary. Size ratio: gzip bytes.",
  ]


def _chance(ds: dict) -> float:
  """Test accuracy of always answering the largest class."""
  test_counts = ds.get("per_class", {}).get("test") or [1] * 10
  return max(test_counts) / max(1, sum(test_counts))


def _table(report: dict) -> List[str]:
  """One row for each Keras model, then one per exported file."""
  b, p, bench = report["baseline"], report["pruned"], report["benchmark"]
  lines = [
      "",
      "| model | gate | test accuracy | vs baseline (points) | sparsity | bytes | gzip bytes "
      "| gzip ratio | p50 (ms) | speed-up (paired, p10-p90) | best round (ms) | disturbed rounds "
      "| effective MACs of MACs (vs reference) | kernels |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
      f"| baseline (Keras) | | {_pct(b['test_accuracy'])} | | {_pct(b.get('model_sparsity'))} "
      "| | | | | | | | | |",
  ]
  if p is not None:
    lines.append(f"| pruned (Keras) | | {_pct(p['test_accuracy'])} "
                 f"| {_points(p['accuracy_change'])} | {_pct(p['sparsity'])} | | | | | | | | | |")
  ref_macs = next((e.get("macs") for e in report["exports"]
                   if e["name"] == bench["reference"]), None)
  for e in report["exports"]:
    kernels = e["delegate"] + (" (fallback)" if e.get("fallback_reason") else "")
    lines.append(
        f"| {e['name']} | {e['gate']} | {_pct(e['test_accuracy'])} "
        f"| {_points(e['accuracy_change'])} | {_pct(e.get('sparsity'))} | {e['bytes']:,} "
        f"| {e['gzip_bytes']:,} | {e['gzip_ratio']:.2f}x | {e['latency_ms_p50']:.4f} "
        f"| {_speedup(e)} | {e['latency_ms_best_round']:.4f} "
        f"| {e['disturbed_rounds']}/{e['rounds']} "
        f"| {_macs(e.get('effective_macs'), e.get('macs'), ref_macs)} | {kernels} |")
  return lines


def _inputs(exports: Sequence[dict]) -> List[str]:
  specs = {}
  for e in exports:
    if e.get("input_spec"):
      specs.setdefault(e["input_spec"], []).append(e["name"])
  if not specs:
    return []
  return (["", "Input of each file (models scale raw pixels themselves, so a file takes "
           "pixels 0..255 as a camera gives them):"]
          + [f"- {spec}: {', '.join(names)}" for spec, names in specs.items()])


def _gates(report: dict) -> List[str]:
  """The bounds every file is held to, the files that failed them, and delegate fallbacks."""
  cfg = report["config"]
  lines = ["", "Gates (each file against its own Keras model, every test image): float32 "
           "agreement >= 99.9% and outputs within 1e-4 (of the largest |logit|, for raw "
           "logits); float16 accuracy within "
           f"{cfg['max_float16_accuracy_change']:.1f} points; dynamic_int8 and "
           f"int8 within {cfg['max_int8_accuracy_change']:.1f} points of Keras."]
  lines += [f"- FAILED {e['name']}: {e['gate_reason']}" for e in report["exports"]
            if e["gate"] != "ok"]
  fallbacks = [e for e in report["exports"] if e.get("fallback_reason")]
  if fallbacks:
    lines += ["", "Delegate fallbacks:"]
    lines += [f"- {e['name']}: {e['fallback_reason']}" for e in fallbacks]
  return lines


def _sparse_kernels(exports: Sequence[dict]) -> List[str]:
  """Whether any kernel on this machine can skip the zeros of the sparse files, and why not."""
  sparse = [e for e in exports if (e.get("sparsity") or 0) > 0.05]
  if not sparse:
    return []
  skip = [e["name"] for e in sparse if not e.get("sparse_kernel_blockers")]
  lines = ["", "Can any kernel skip the zero weights on this machine? "
           + (f"XNNPACK's sparse kernels can, for {', '.join(skip)}." if skip else
              "No: zeros are multiplied like any other weight, and sparse-encoded tensors are "
              "densified when the model loads, so sparsity buys file size, not speed.")]
  blocked = [e for e in sparse if e.get("sparse_kernel_blockers")]
  if blocked:
    common = [r for r in blocked[0]["sparse_kernel_blockers"]
              if all(r in e["sparse_kernel_blockers"] for e in blocked)]
    lines.append("XNNPACK's sparse inference is ruled out here because: " + "; ".join(common)
                 + ".")
    for e in blocked:
      extra = [r for r in e["sparse_kernel_blockers"] if r not in common]
      if extra:
        lines.append(f"- {e['name']}, also: {'; '.join(extra)}.")
  return lines


def _pruned(report: dict, b: dict, p: dict) -> List[str]:
  """What the pruning did: size, the structured/blocks/pattern sections, rates per layer."""
  lines = ["", f"Parameters: baseline {b['params']:,}, pruned {p['params']:,} "
           f"({p['params'] / b['params']:.2f}x); MACs per inference: baseline "
           f"{b['macs'] / 1e6:.2f}M, pruned {p['macs'] / 1e6:.2f}M "
           f"({p['macs'] / b['macs']:.2f}x)."]
  if p.get("structured"):
    lines += sections.structured_lines(p["structured"], report["exports"])
  if p.get("blocks"):
    lines += sections.blocks_lines(p["blocks"])
  if p.get("pattern"):
    lines.append(f"Sparsity pattern {p['pattern']}.")
  graph = p.get("xnnpack_sparse_graph")
  if graph:
    lines.append("XNNPACK sparse inference (phones' ARM cores; never on x86 with AVX): the "
                 "graph " + ("qualifies (TF-MOT's PruneForLatencyOnXNNPack accepts it)."
                             if graph["qualifies"] else f"does not qualify: {graph['reason']}."))
  return lines + _rates(report["config"], p) + sections.budget_lines(p.get("budget")) + (
      _unstructured(report["config"], p)) + sections.collab_lines(p, report["exports"]) + (
          sections.distill_lines(p))


def _rates(cfg: dict, p: dict) -> List[str]:
  if not (p.get("layer_rates") and cfg.get("layer_rates")):
    return []
  how = (f"auto, chosen from the sensitivity curves to reach {cfg['pruning_rate']:.0%} over "
         "these layers with the least predicted loss" if cfg["layer_rates"] == "auto" else
         cfg["layer_rates"])
  return [f"Per-layer rates asked (--layer_rates={how}): "
          + ", ".join(f"{n} {100 * r:.4g}% (reached {_pct(p['layer_sparsity'].get(n))})"
                      for n, r in p["layer_rates"].items()) + "."]


def _unstructured(cfg: dict, p: dict) -> List[str]:
  lines = []
  if p.get("layer_rates") and cfg.get("prune"):
    how = {"polynomial": "TF-MOT PolynomialDecay (magnitude)",
           "constant": "TF-MOT ConstantSparsity (magnitude)",
           "one_shot": f"one-shot by {cfg.get('pruning_criterion')}, then the mask held by "
                       "TF-MOT",
           "iterative": f"{cfg.get('iterative_rounds')} iterative rounds by "
                        f"{cfg.get('pruning_criterion')}, each fine-tuned with the mask held"
           }.get(cfg.get("schedule", "polynomial"), cfg.get("schedule"))
    lines.append(f"Unstructured pruning: {how}; per layer: " + ", ".join(
        f"{n} {_pct(p['layer_sparsity'].get(n))}" for n in p["layer_rates"]) + ".")
  if p["pruned_layers"]:
    lines.append(f"Sparsity = zeros among the kernels of the pruned layers "
                 f"({', '.join(p['pruned_layers'])}); over all weights: "
                 f"{_pct(p['model_sparsity'])}.")
  return lines


def _pointers(report: dict) -> List[str]:
  """Where the training curves and the sensitivity analysis are."""
  lines = []
  if report.get("tensorboard"):
    lines += ["", "Training curves (`tensorboard --logdir logs` in the run directory; loss and "
              "accuracy per epoch, and per-layer sparsity per step while TF-MOT prunes): "
              + ", ".join(report["tensorboard"]) + "."]
  if report["config"].get("sensitivity"):
    lines += ["", "Sensitivity of each layer of the baseline, pruned alone without fine-tuning: "
              "sensitivity.md and sensitivity.png."]
  return lines


def write(report: dict, workdir: str) -> List[str]:
  """Writes report.json and report.md atomically; returns their paths."""
  paths = [workdir_lib.atomic_write(os.path.join(workdir, "report.json"),
                                    json.dumps(report, indent=2) + "\n"),
           workdir_lib.atomic_write(os.path.join(workdir, "report.md"), to_markdown(report))]
  return paths
