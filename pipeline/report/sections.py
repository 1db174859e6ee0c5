"""The report's sections for the stages that run only when asked: structured pruning and its
latency target, block removal, the accuracy budget, the ARM check, distillation, and which
file to ship (markdown.py assembles them)."""

from typing import List, Optional, Sequence

from export import formats
from export import recommend


def pct(x: Optional[float]) -> str:
  return "" if x is None else f"{100 * x:.2f}%"


def speedup(e: dict) -> str:
  """'4.21x (3.90-4.48)': the paired median, and the p10-p90 of the per-round ratios."""
  return f"{e['speedup']:.2f}x ({e['speedup_p10']:.2f}-{e['speedup_p90']:.2f})"


def structured_lines(st: dict, exports: Sequence[dict] = ()) -> List[str]:
  """What structured pruning removed, group by group, as measured (not as requested)."""
  diffs = max(step["max_abs_diff_vs_masked"] for step in st["steps"])
  before = {g: sizes[0] for g, sizes in st["steps"][0]["groups"].items()}
  after = dict(before)
  for step in st["steps"]:
    for g, (_, kept) in step["groups"].items():
      after[g] = kept
  total_before, total_after = sum(before.values()), sum(after.values())
  how = ("the same fraction of every prunable group" if st["scope"] == "per_layer" else
         "one threshold over channel scores normalised by their group's mean, so groups lose "
         "different fractions")
  approx = sorted({g for step in st["steps"] for g in step.get("approximate_groups", [])})
  pruned = sum(1 for g in before if after[g] < before[g])
  if approx:
    check = (f"folding was approximate ({st.get('fold_reason', '')}): {len(approx)} group(s) "
             "had a BatchNorm constant that meets zero padding folded as in the image's "
             f"interior, so before fine-tuning the smaller model deviated from the masked "
             f"original by up to {diffs:.1e} (at image borders); fine-tuning absorbs it")
  else:
    check = (f"before fine-tuning, the smaller model matched the masked original to "
             f"{diffs:.1e}" + (f" (fold: {st['fold']}, {st['fold_reason']})"
                               if st.get("fold_reason") else ""))
  if st.get("channel_multiple", 1) > 1:
    how += (f"; kept counts rounded to the nearest multiple of {st['channel_multiple']}, the "
            "channel tile of XNNPACK's float kernels")
  target = st.get("target")
  if target:
    how = (f"--target_speedup={target['target']:g}: kept counts per group chosen from the "
           "latency table and each group's validation loss")
  asked = (f"for {target['target']:g}x" if target else f"asked {st['rate']:.0%}")
  scope = "" if target else f", {st['scope']}"
  lines = [f"Structured pruning ({st['criterion']}{scope}: {how}; {len(st['steps'])} "
           f"step(s)) removed {total_before - total_after:,} of {total_before:,} channels "
           f"({1 - total_after / max(1, total_before):.0%}; {asked}); "
           f"{pruned} group(s) pruned, {len(st['skipped'])} producer(s) left whole; {check}. "
           "Channels kept per group: " + ", ".join(
               f"{g} {after[g]}/{before[g]}" for g in before) + "."]
  if "test_accuracy" in st:
    lines.append(f"After structured pruning and its fine-tuning, before anything else: test "
                 f"accuracy {pct(st['test_accuracy'])}.")
  lines += [f"- left whole: {layer}: {reason}" for layer, reason in sorted(st["skipped"].items())]
  return lines + target_lines(target, exports)


def target_lines(target: Optional[dict], exports: Sequence[dict]) -> List[str]:
  """--target_speedup: the allocations timed on the way, the one kept, and the final file's
  paired speed-up against the target."""
  if not target:
    return []
  band = f"{target.get('tolerance', 0.05):.0%}"
  final = next((e for e in exports if e["name"] == "pruned_float32"), None)
  if not target["tries"]:  # A table from elsewhere: nothing was timed here.
    lines = [f"Latency target {target['target']:g}x (table {target['source']}; "
             f"latency_table.md): kept the first allocation predicted to reach it "
             f"({target['predicted']:.2f}x predicted, not timed here)."]
    if final:
      lines.append(f"On this CPU, not the table's device: pruned_float32 is {speedup(final)} "
                   "faster than baseline_float32.")
  else:
    tries = "; ".join(
        f"{t['path'].replace('side', 'side path')}{' path' if t['path'] == 'main' else ''} "
        f"step {t['step']}: predicted {t['predicted']:.2f}x, measured "
        f"{t['measured']:.2f}x{' (kept)' if t['kept'] else ''}" for t in target["tries"])
    verdict = ""
    if final:
      off = final["speedup"] / target["target"] - 1
      verdict = (f" Final: pruned_float32 is {speedup(final)} faster than baseline_float32, "
                 f"{off:+.0%} against the target.")
    lines = [f"Latency target {target['target']:g}x (table {target['source']}; "
             f"latency_table.md){'' if target['reached'] else ': NOT reached'}. Allocations "
             f"timed on the way (kept: one reaching within {band} below the target, preferably "
             f"within {band} above it): {tries}.{verdict}"]
  if target.get("untimed_groups"):
    lines.append("Left whole, not in the table: " + ", ".join(target["untimed_groups"]) + ".")
  return lines


def blocks_lines(row: dict) -> List[str]:
  """What --remove_blocks removed, how exactly, and the accuracy before and after fine-tuning."""
  removed = ", ".join(f"{b['block']} ({b['layers']} layers, validation loss "
                      f"{b['validation_loss_increase']:+.3f}{'' if b['exact'] else ', not exact'})"
                      for b in row["removed"])
  check = ("" if row["max_abs_diff_vs_zeroed"] is None else
           f"; before fine-tuning the smaller model equals the original with those residual "
           f"branches zeroed to {row['max_abs_diff_vs_zeroed']:.1e}")
  return [f"Blocks removed (--remove_blocks={row['asked']}, the cheapest of "
          f"{row['candidates']} by validation loss when each is removed alone): {removed}"
          f"{check}. Test accuracy {pct(row['test_accuracy_before_fine_tuning'])} before "
          f"fine-tuning, {pct(row['test_accuracy_after_fine_tuning'])} after."]


def budget_lines(row: Optional[dict]) -> List[str]:
  """What --max_accuracy_drop tried, step by step, and what it kept."""
  if not row:
    return []
  steps = "; ".join(f"{100 * p['rate']:.2f}%: {100 * p['val_accuracy']:.2f}% "
                    f"({-p['drop_points']:+.2f}{'' if p['within'] else ', over'})"
                    for p in row["path"])
  return [f"Accuracy budget (--max_accuracy_drop={row['max_drop']:g} points on validation, "
          f"baseline {100 * row['baseline_val_accuracy']:.2f}%): kept {100 * row['rate']:.2f}% "
          f"sparsity; {row['stopped']}. Path (sparsity: validation accuracy, change in "
          f"points): {steps}."]


def keras3_lines(translated_in: Optional[dict], written: Optional[dict]) -> List[str]:
  """How a Keras 3 baseline was carried into tf_keras, and the Keras 3 file the run wrote."""
  lines = []
  if translated_in:
    mixed = translated_in.get("mixed_precision")
    how = (f"; a {mixed} model against its float32 copy, so checked to "
           f"{translated_in['tolerance']:g}" if mixed else "")
    lines.append(f"Keras 3 model translated: {translated_in['layers']} layers, max |diff| "
                 f"{translated_in['max_diff']:.1e} (tf_keras copy against the Keras 3 file, "
                 f"{translated_in['images']} validation images, same top-1{how}).")
  if written:
    lines.append(f"Keras 3 file: {written['path']} ({written['of']} rebuilt in Keras 3, "
                 f"reloaded with safe_mode=True: max |diff| {written['max_diff']:.1e} on "
                 f"{written['images']} test images, same top-1).")
  return lines + [""] if lines else []


def head_lines(baseline: dict, pruned: bool) -> List[str]:
  """What the model outputs and how it was trained and scored (pipeline/models/heads.py),
  what its outputs on validation images said against that, if anything, and the fine-tuning
  learning rate chosen for it when something was pruned."""
  head, lr = baseline.get("head"), baseline.get("fine_tune_learning_rate")
  out = []
  if head:
    check = f" WARNING: {head['check']}." if head.get("check") else ""
    out.append(f"Head: {head['describe']}; exported files keep it, and accuracy reads a class "
               f"from it as the model does.{check}")
  if lr and pruned:
    out.append(f"Fine-tuning learning rate: {lr['value']:g} ({lr['why']}).")
  return out


def arm_lines(section: Optional[dict], exports: Sequence[dict]) -> List[str]:
  """The report's ARM table (empty without --arm_check)."""
  if not section:
    return []
  if section.get("skipped"):
    return ["", f"--arm_check skipped: {section['skipped']}."]
  from export import arm_check  # pylint: disable=g-import-not-at-top
  out = ["", f"ARM check ({section['runtime']}; outputs on {section['examples']} test images "
         "against x86's, one at a time; emulated times interleaved in one process):", "",
         "| file | format | ARM: prepares | ARM: max \\|diff\\| | ARM emulated speed-up "
         "(p10-p90) | emulated ms |", "|---|---|---|---|---|---|"]
  arm = {e["name"]: e["arm"] for e in exports if e.get("arm")}
  ref_prepares = arm.get(formats.REFERENCE, {}).get("prepares", False)
  for e in exports:
    a = arm.get(e["name"])
    if not a:
      continue
    prepares = "yes" if a["prepares"] else f"**NO**: {a['error']}"
    diff = f"{a['max_abs_diff']:.1e}" + (f" (**outside**: {a['outside']})" if a["outside"] else "")
    s = a["speedup"]
    speed = arm_check.speed_text(e["name"], formats.REFERENCE, a["prepares"], ref_prepares,
                                 f"{s['paired']:.2f}x ({s['p10']:.2f}-{s['p90']:.2f})" if s
                                 else None)
    ms = "-" if a["emulated_ms"] is None else f"{a['emulated_ms']:.1f}"
    out.append(f"| {e['name']} | {a['format']} | {prepares} | {diff} | {speed} | {ms} |")
  return out + [""] + arm_check.notes([n for n, a in arm.items() if not a["prepares"]],
                                      [n for n, a in arm.items() if a["outside"]])


def training_lines(t: Optional[dict]) -> List[str]:
  """How training was spread: one line when more than one worker or replica trained."""
  if not t or (t["workers"] == 1 and t["replicas"] == 1):
    return []
  return [f"Training: --strategy={t['strategy']}, {t['workers']} workers, {t['replicas']} "
          f"replicas; global batch {t['global_batch']}, {t['per_replica_batch']} per replica; "
          f"each worker reads its share of the data ({t['sharding']}). Only the chief wrote "
          f"this run; final weights sha256 {t['final_weights_sha256'][:16]}... (each worker "
          "logs its own: they match).", ""]


def distill_lines(p: dict) -> List[str]:
  """Whether the pruned model's fine-tuning learned from a teacher (--distill), and how."""
  d = p.get("distill")
  if not d:
    return ["Distillation: not used (--distill lets the baseline teach every fine-tuning)."]
  teacher = "the baseline" if d["teacher"] == "baseline" else f"--teacher_path={d['teacher']}"
  acc = d.get("val_accuracy")
  if acc is not None and acc == acc:  # Not NaN.
    teacher += f" ({100 * acc:.2f}% on the validation split)"
  return [f"Distillation (--distill): every fine-tuning learned from {teacher}, loss = "
          f"{d['alpha']:g} * T^2 * KL(teacher/T || student/T) + {1 - d['alpha']:g} * "
          f"cross-entropy, T = {d['temperature']:g}; teacher outputs: {d['teacher_outputs']}. "
          "TensorBoard has both parts of the training loss (distill_loss = T^2 * KL, "
          "student_loss = cross-entropy) beside their weighted sum (loss); val_loss is the "
          "cross-entropy on validation images, as without --distill."]


def _x86_candidates(report: dict) -> List[recommend.Candidate]:
  return [recommend.Candidate(e["name"], e["accuracy_change"], e.get("speedup"),
                              e["gzip_ratio"], e["gate"] == "ok") for e in report["exports"]]


def ship_choice(report: dict):
  """(fastest, smallest) file names on this CPU within the accuracy budget (None where no
  file other than the reference qualifies), as ship_lines words them."""
  ref = report["benchmark"]["reference"]
  drop = report["config"].get("max_accuracy_drop")
  fastest, smallest = recommend.choose(
      [c for c in _x86_candidates(report) if c.name != ref],
      recommend.DEFAULT_MAX_DROP if drop is None else drop)
  return (fastest.name if fastest and fastest.speedup > 1 else None,
          smallest.name if smallest else None)


def ship_lines(report: dict, near_chance: bool = False) -> List[str]:
  """Which file to ship on each target this run measured: this CPU, and emulated ARM where
  --arm_check ran (export/recommend.py); with a caveat when the baseline is near chance."""
  cfg, bench = report["config"], report["benchmark"]
  ref, drop = bench["reference"], cfg.get("max_accuracy_drop")
  x86 = _x86_candidates(report)
  out = [""] + recommend.lines(x86, f"on this CPU ({bench.get('cpu_description', '?')})", ref,
                               drop)
  arm = report.get("arm")
  if arm and not arm.get("skipped"):
    cands = [recommend.Candidate(
        e["name"], e["accuracy_change"], (e["arm"].get("speedup") or {}).get("paired"),
        e["gzip_ratio"], e["gate"] == "ok" and e["arm"]["prepares"] and not e["arm"]["outside"])
             for e in report["exports"] if e.get("arm")]
    out += [""] + recommend.lines(cands, f"on ARM ({arm['runtime']}; emulated speed-ups)", ref,
                                  drop)
  if near_chance and len(out) > 1:
    out.append("(The baseline is near chance, see the warning at the top: files within a point "
               "of it are no better, so this recommendation means little.)")
  return out


def collab_lines(p: dict, exports: Sequence[dict]) -> List[str]:
  """Clustering's values and zeros per layer, and quantization-aware training's int8 file
  beside the post-training one from the same float model (pipeline/collab/)."""
  out = []
  c = p.get("cluster")
  if c:
    per = "output channel" if c["per_channel"] else "kernel"
    out.append(f"Clustering (TF-MOT, k-means++, zeros kept): {c['clusters']} values per {per}; "
               + ", ".join(f"{n} {v['distinct']} distinct, {pct(v['zeros'])} zeros"
                           for n, v in c["layers"].items())
               + f"; test accuracy after it {pct(c['test_accuracy'])}"
               + "".join(f"; left whole: {n}: {why}" for n, why in c["skipped"].items()) + ".")
  q = p.get("qat")
  if q:
    by_name = {e["name"]: e for e in exports}
    both = [n for n in ("qat_int8", "pruned_int8") if n in by_name]
    side = " against ".join(f"{n} {pct(by_name[n]['test_accuracy'])} "
                            f"({by_name[n]['gzip_ratio']:.1f}x smaller)" for n in both)
    out.append(f"Quantization-aware training ({q['scheme']}, {q['epochs']} epoch(s) at "
               f"{q['learning_rate']:g}): the Keras model it left {pct(q['test_accuracy'])}; "
               f"int8 files: {side} (qat_int8 from it, pruned_int8 quantized after training "
               "from the float model). The quantization-aware model stays in tf_keras (qat.keras;"
               " its quantize wrappers have no Keras 3 counterpart): a Keras 3 file, where "
               "written, is the float model.")
    for n, why in q["output_only"].items():
      out.append(f"- only the output quantized: {n}: {why}")
  return out
