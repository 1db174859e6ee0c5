"""--target_speedup: the latency table, the allocation path, the measured search, bad input."""

import json

import numpy as np
import pytest

from conftest import assert_message, small_config
from pipeline.planning import latency_table

# Dense file 10 ms. Group "a" (32 channels) saves a lot per cut and its accuracy barely moves;
from pipeline.planning import speed_target
from pipeline.structured import prune as structured
from pipeline.structured import surgery
# "b" (64) saves little and costs much: the path cuts "a" first, all the way down.
TABLE = latency_table.Table(10.0, {
    "a": latency_table.Entry("a", 32, [24, 16, 8], [8.0, 6.0, 4.0], []),
    "b": latency_table.Entry("b", 64, [48, 32, 16], [9.5, 9.0, 8.5], []),
}, "constructed")
LOSSES = {"a": [0.001, 0.002, 0.004], "b": [0.05, 0.10, 0.20]}


def test_the_path_takes_the_least_loss_per_millisecond_first():
  steps = speed_target.path(TABLE, LOSSES)
  assert steps == [{}, {"a": 24}, {"a": 16}, {"a": 8}, {"a": 8, "b": 48}, {"a": 8, "b": 32},
                   {"a": 8, "b": 16}]
  # Predicted: each group's own latency fraction, multiplied (0.4 x 0.95).
  assert speed_target.predicted(TABLE, {"a": 8, "b": 48}) == pytest.approx(1 / 0.38)
  # Without timing, the first allocation predicted to reach the target is kept.
  got = speed_target.plan(None, TABLE, LOSSES, 1.6)
  assert got.counts == {"a": 16} and got.measured is None
  assert got.predicted == pytest.approx(10 / 6)


def test_a_costly_step_before_a_cheap_one_is_not_a_wall():
  # "b"'s first cut costs 0.03 for 0.5 ms; its next, 0 more for 4.5 ms: looking ahead, "b"
  # (0.03 / 5 ms) beats "a" (0.02 / 2 ms).
  table = latency_table.Table(10.0, {
      "a": latency_table.Entry("a", 32, [16], [8.0], []),
      "b": latency_table.Entry("b", 64, [48, 32], [9.5, 5.0], [])}, "constructed")
  steps = speed_target.path(table, {"a": [0.02], "b": [0.03, 0.03]})
  assert steps[1:3] == [{"b": 48}, {"b": 32}]


def test_an_unreachable_target_is_one_line_naming_the_flag():
  with pytest.raises(speed_target.Unreachable) as e:
    speed_target.plan(None, TABLE, LOSSES, 5.0)
  assert_message(str(e.value), "--target_speedup=5:", "2.94x", "a 8, b 16", "--min_channels")
  with pytest.raises(speed_target.Unreachable) as e:
    speed_target.plan(None, latency_table.Table(10.0, {}, "x"), {}, 2.0)
  assert_message(str(e.value), "--target_speedup=2:", "--structured_skip_layers",
                 "--min_channels")


def _two_groups():
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  inp = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(32, 3, activation="relu", name="a")(inp)
  x = keras.layers.Conv2D(64, 3, activation="relu", name="b")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return surgery.analyze(keras.Model(inp, keras.layers.Dense(3, name="out")(x)))


def _timer(ms_of):
  """A stand-in for timing, a known function of the shapes, so the search can be checked."""
  def time_pair(small):
    ka, kb = small.get_layer("a").filters, small.get_layer("b").filters
    return type("Speedup", (), {"paired": 10.0 / ms_of(ka, kb)})()
  return time_pair


def test_the_search_times_allocations_and_keeps_the_first_that_reaches():
  a = _two_groups()
  # The table over-predicts: the layer between a and b shrinks with both.
  timer = _timer(lambda ka, kb: 1.0 + 2.0 * ka / 32 + 7.0 * (ka / 32) * (kb / 64))
  got = speed_target.plan(a, TABLE, LOSSES, 1.9, timer)
  # Path: a24 (1.29x), a16 (1.82x), a8 (3.08x). The first predicted to reach 1.9 is a8 (2.5x
  # predicted): it reaches; bisecting down, a24 does not, a16 does (1.82 >= 0.95 x 1.9).
  assert [t["step"] for t in got.tries] == [3, 1, 2]
  assert got.counts == {"a": 16} and got.reached
  assert got.measured == pytest.approx(10 / 5.5)
  assert [t["kept"] for t in got.tries] == [False, False, True]


def test_a_step_that_jumps_over_the_target_is_retried_in_smaller_steps_elsewhere():
  a = _two_groups()
  # a: 24 -> 1.1x, 16 -> 1.3x, 8 -> 5x; b helps a little.
  timer = _timer(lambda ka, kb: {32: 10.0, 24: 9.0, 16: 7.7, 8: 2.0}[ka] * (0.6 + 0.4 * kb / 64))
  got = speed_target.plan(a, TABLE, LOSSES, 1.65, timer)
  # Main path: a16 measures 1.30x, a8 5x (far over): the side path holds a at 16 and cuts b
  # (b48 1.44x, b32 1.62x: within 5% below 1.65).
  assert got.counts == {"a": 16, "b": 32} and got.reached
  assert got.measured == pytest.approx(10 / (7.7 * 0.8))
  assert {t["path"] for t in got.tries} == {"main", "side 1"}
  assert [t["counts"] for t in got.tries if t["kept"]] == [{"a": 16, "b": 32}]


def test_a_side_path_that_falls_short_does_not_replace_an_overshoot():
  a = _two_groups()
  # As above, but b saves nothing: the side path cannot reach 1.65x; a8's 5x is kept.
  timer = _timer(lambda ka, kb: {32: 10.0, 24: 9.0, 16: 7.7, 8: 2.0}[ka])
  got = speed_target.plan(a, TABLE, LOSSES, 1.65, timer)
  assert got.counts == {"a": 8} and got.reached and got.measured == pytest.approx(5.0)


def test_side_paths_go_on_holding_each_group_that_jumps_over():
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  inp = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(32, 3, activation="relu", name="a")(inp)
  x = keras.layers.Conv2D(64, 3, activation="relu", name="b")(x)
  x = keras.layers.Dense(32, activation="relu", name="c")(keras.layers.GlobalAveragePooling2D()(x))
  a = surgery.analyze(keras.Model(inp, keras.layers.Dense(3, name="out")(x)))
  table = latency_table.Table(10.0, {
      "a": latency_table.Entry("a", 32, [24, 16, 8], [8.0, 6.0, 4.0], []),
      "b": latency_table.Entry("b", 64, [48, 32, 16], [9.0, 8.0, 7.0], []),
      "c": latency_table.Entry("c", 32, [24, 16, 8], [9.8, 9.6, 9.4], [])}, "constructed")
  losses = {"a": [0.001, 0.002, 0.004], "b": [0.01, 0.02, 0.03], "c": [0.05, 0.1, 0.2]}
  fa, fb = {32: 1, 24: 0.9, 16: 0.77, 8: 0.2}, {64: 1, 48: 0.97, 32: 0.93, 16: 0.5}
  fc = {32: 1, 24: 0.97, 16: 0.94, 8: 0.9}

  def time_pair(small):
    ms = 10 * (fa[small.get_layer("a").filters] * fb[small.get_layer("b").filters]
               * fc[small.get_layer("c").units])
    return type("Speedup", (), {"paired": 10.0 / ms})()

  got = speed_target.plan(a, table, losses, 1.5, time_pair)
  # a16 1.30x short, a8 5x over; holding a: b32 1.40x short, b16 2.60x over; holding a and b:
  # c24 1.44x, within 5% below 1.5.
  assert got.counts == {"a": 16, "b": 32, "c": 24} and got.reached
  assert got.measured == pytest.approx(1 / (0.77 * 0.93 * 0.97))
  assert [t["counts"] for t in got.tries if t["kept"]] == [{"a": 16, "b": 32, "c": 24}]
  counts = [tuple(sorted(t["counts"].items())) for t in got.tries]
  assert len(counts) == len(set(counts))  # Nothing timed twice.


def test_when_nothing_reaches_the_target_the_fastest_is_kept_and_flagged():
  a = _two_groups()
  timer = _timer(lambda ka, kb: 9.0 + ka / 32 + kb / 64)  # At most 10 / 9.375 = 1.07x.
  got = speed_target.plan(a, TABLE, LOSSES, 2.0, timer)
  assert not got.reached and got.counts == {"a": 8, "b": 16}
  assert got.measured == pytest.approx(10 / 9.5)


def test_candidates_are_multiples_descending_and_few():
  assert latency_table.candidates(32, 8, 4) == [24, 16, 8]
  assert latency_table.candidates(32, 8, 12) == [24, 16]
  big = latency_table.candidates(512, 8, 4)
  assert len(big) == latency_table.MAX_CANDIDATES and big == sorted(big, reverse=True)
  assert all(k % 8 == 0 and 8 <= k < 512 for k in big) and big[0] == 504 and big[-1] == 8
  assert latency_table.candidates(8, 8, 4) == []


def test_a_table_round_trips_and_bad_tables_are_one_line(tmp_path):
  a = _two_groups()
  latency_table.write(TABLE, str(tmp_path))
  path = str(tmp_path / latency_table.FILE)
  back = latency_table.load(path, a)
  assert back.entries == TABLE.entries and back.reference_ms == 10.0
  assert back.source == f"read from {path}: constructed"
  body = json.loads(open(path).read())
  body["entries"][1]["channels"] = 60
  (tmp_path / "wrong.json").write_text(json.dumps(body))
  body["entries"][1]["group"] = "c"
  (tmp_path / "unknown.json").write_text(json.dumps(body))
  (tmp_path / "junk.json").write_text("{")
  cases = {
      "wrong.json": ("b (60, model 64)",),
      "unknown.json": ("group(s) c", "a, b"),
      "junk.json": ("not a latency table", "JSONDecodeError"),
      "missing.json": ("No such file or directory",),
  }
  for name, facts in cases.items():
    with pytest.raises(ValueError) as e:
      latency_table.load(str(tmp_path / name), a)
    assert_message(str(e.value), f"--latency_table={tmp_path / name}:", *facts)
  body = json.loads(open(path).read())
  body["entries"][0]["kept"] = [16, 24, 8]
  (tmp_path / "order.json").write_text(json.dumps(body))
  with pytest.raises(ValueError) as e:
    latency_table.load(str(tmp_path / "order.json"), a)
  assert_message(str(e.value), f"--latency_table={tmp_path / 'order.json'}:", "group a",
                 "[16, 24, 8]", "1 and 31")


def test_the_structured_stage_keeps_the_counts_in_equal_fractions_per_step():
  a = _two_groups()
  scores = {g.id: np.arange(g.size, dtype=float) for g in a.prunable()}
  half = structured.toward(a, scores, {"a": 8}, {"a": 32}, 0.5)
  assert {len(k) for k in half.values()} == {16}  # 32 * (8 / 32) ** 0.5
  full = structured.toward(a, scores, {"a": 8}, {"a": 32}, 1.0)
  assert [list(k) for k in full.values()] == [list(range(24, 32))]  # The best-scored 8.


def test_target_and_structured_rate_together_are_refused():
  from pipeline import job  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError) as e:
    job.preflight(small_config(target_speedup=3, structured_rate=0.3))
  assert_message(str(e.value), "--target_speedup=3:", "--structured_rate", "0.3")
  with pytest.raises(ValueError) as e:
    job.preflight(small_config(latency_table="t.json"))
  assert_message(str(e.value), "--latency_table=t.json:", "--target_speedup")


def _smoke_table(path, ms_conv1=(0.20, 0.15, 0.10)):
  """A device-style table for the smoke model's groups (conv1 32, conv2 64, dense1 128)."""
  table = latency_table.Table(0.25, {
      "conv1": latency_table.Entry("conv1", 32, [24, 16, 8], list(ms_conv1), []),
      "conv2": latency_table.Entry("conv2", 64, [32], [0.2], []),
      "dense1": latency_table.Entry("dense1", 128, [64], [0.24], [])}, "a phone (constructed)")
  latency_table.write(table, str(path))
  return str(path / latency_table.FILE)


def test_cli_with_a_device_table_keeps_the_predicted_allocation_and_refuses_the_unreachable(
    tmp_path):
  from conftest import REPO, run_cli  # pylint: disable=g-import-not-at-top
  table = _smoke_table(tmp_path)
  args = ["--flagfile=configs/smoke.flags", "--noprune", "--export_formats=float32",
          f"--latency_table={table}"]
  proc = run_cli(args + ["--target_speedup=50", f"--workdir={tmp_path}/far"], cwd=REPO)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert_message("\n".join(errors), "error: --target_speedup=50:", "3.26x",
                 "conv1 8, conv2 32, dense1 64")
  assert "Traceback" not in proc.stderr
  # A device table is judged before anything is trained or written.
  assert not [l for l in proc.stderr.splitlines() if l.startswith("baseline")]
  assert not (tmp_path / "far").exists() and not (tmp_path / "far.incomplete").exists()
  wd = tmp_path / "run"
  proc = run_cli(args + ["--target_speedup=2", f"--workdir={wd}"], cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((wd / "report.json").read_text())
  target = report["pruned"]["structured"]["target"]
  # What the plan chose is what the stage removed; nothing was timed here.
  kept = report["pruned"]["structured"]["steps"][-1]["groups"]
  assert {g: kept[g][1] for g in target["counts"]} == target["counts"]
  assert target["measured"] is None and target["predicted"] >= 2 and target["tries"] == []
  assert target["source"] == f"read from {table}: a phone (constructed)"
  assert "kept the first allocation predicted to reach it" in (wd / "report.md").read_text()
  assert "On this CPU, not the table's device" in (wd / "report.md").read_text()
  assert json.loads((wd / latency_table.FILE).read_text())["reference_ms"] == 0.25


def test_cli_measures_a_table_here_and_times_what_it_keeps(tmp_path):
  from conftest import REPO, run_cli  # pylint: disable=g-import-not-at-top
  wd = tmp_path / "run"
  proc = run_cli(["--flagfile=configs/smoke.flags", "--noprune", "--export_formats=float32",
                  "--target_speedup=2", f"--workdir={wd}"], cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((wd / "report.json").read_text())
  target = report["pruned"]["structured"]["target"]
  table = latency_table.load(str(wd / latency_table.FILE))
  assert set(table.entries) == {"conv1", "conv2", "dense1"}
  for e in table.entries.values():  # Every candidate file is kept, for timing on a device.
    assert all((wd / f).is_file() for f in e.files)
    assert e.kept == latency_table.candidates(e.channels, 8, 4)
  assert (wd / table.reference_file).is_file()
  kept = report["pruned"]["structured"]["steps"][-1]["groups"]
  assert {g: kept[g][1] for g in target["counts"]} == target["counts"]
  # What it kept was timed, and is the try marked kept.
  assert [t["counts"] for t in target["tries"] if t["kept"]] == [target["counts"]]
  assert target["measured"] == next(t["measured"] for t in target["tries"] if t["kept"])
  stages = [l.split()[0] for l in proc.stderr.splitlines() if not l.startswith(("WARNING:",
                                                                                 "warning:"))]
  assert stages == ["data", "baseline", "latency", "structured", "export", "verify",
                    "benchmark", "report"]
  assert "Latency target 2x" in (wd / "report.md").read_text()


def test_planned_counts_are_kept_exactly_after_two_steps(trained_cnn, mnist_small, tmp_path):
  cfg = small_config(structured_steps=2, fine_tune_epochs=2)
  result = structured.prune_structures(trained_cnn, mnist_small, cfg, str(tmp_path),
                                       counts={"conv1": 16, "conv2": 32})
  first, last = (s["groups"] for s in result.steps)
  assert first["conv1"] == [32, 23] and first["conv2"] == [64, 45]  # sqrt of the cut, each.
  assert last["conv1"] == [23, 16] and last["conv2"] == [45, 32] and last["dense1"] == [128, 128]
  assert result.model.get_layer("conv1").filters == 16
  with pytest.raises(RuntimeError) as e:
    structured.prune_structures(trained_cnn, mnist_small, cfg, str(tmp_path / "x"),
                                counts={"nope": 8})
  assert_message(str(e.value), "--target_speedup", "nope")
