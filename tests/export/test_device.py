"""Tests for export/device.py and export/android.py without a phone.

An `adb` stand-in (a script first on PATH) plays the phone: a temporary folder is its
/data/local/tmp, `adb shell` runs the command there, and the pushed "benchmark_model" is a
stand-in that times the file for real with the venv's `litert-benchmark` and prints
benchmark_model's timing line from what litert-benchmark printed.
"""

import json
import os
import sys

import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import REPO, assert_message, run_cli, sample_report
from export import android

ADB = r'''#!{python}
"""adb stand-in: $FAKE_PHONE_TMP is /data/local/tmp; $FAKE_ADB_STATE is what get-state finds;
a push of a file named $FAKE_ADB_FAIL_PUSH fails. Every call is logged to $FAKE_ADB_LOG."""
import json, os, shlex, shutil, subprocess, sys
REMOTE = "/data/local/tmp"
args, serial = sys.argv[1:], None
if args[:1] == ["-s"]:
  serial, args = args[1], args[2:]
with open(os.environ["FAKE_ADB_LOG"], "a") as f:
  f.write(json.dumps({{"serial": serial, "args": args}}) + "\n")
state = os.environ.get("FAKE_ADB_STATE", "device")
errors = {{"none": "error: no devices/emulators found",
          "unauthorized": "error: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is "
                          "not set\nTry 'adb kill-server' if that seems wrong.",
          "several": "error: more than one device/emulator"}}
if state in errors:
  sys.exit(errors[state])

def here(word):  # A path on the phone -> its place here; nothing outside /data/local/tmp.
  key, eq, path = word.rpartition("=") if "=/" in word else ("", "", word)
  if not path.startswith("/"):
    return word
  if path != REMOTE and not path.startswith(REMOTE + "/"):
    sys.exit(f"stand-in: {{path}} is outside {{REMOTE}}")
  return key + eq + os.environ["FAKE_PHONE_TMP"] + path[len(REMOTE):]

if args == ["get-state"]:
  print(state)
elif args[0] == "push":
  if os.path.basename(args[1]) == os.environ.get("FAKE_ADB_FAIL_PUSH"):
    sys.exit(f"adb: error: failed to copy '{{args[1]}}' to '{{args[2]}}': remote No space "
             "left on device")
  shutil.copyfile(args[1], here(args[2]))  # Not the mode bits: chmod must make it run.
  print(f"{{args[1]}}: 1 file pushed, 0 skipped.")
elif args[0] == "shell":
  words = shlex.split(" ".join(args[1:]))  # adb joins the words; the phone's sh splits them.
  if words[0] == "getprop":
    print({{"ro.product.model": "Stand-in Phone", "ro.product.cpu.abi": "arm64-v8a"}}[words[1]])
  else:
    sys.exit(subprocess.run([here(w) for w in words]).returncode)
else:
  sys.exit(f"stand-in: unexpected {{args}}")
'''

BENCHMARK_MODEL = r'''#!{python}
"""benchmark_model stand-in: times --graph with litert-benchmark (whose flags differ) and
prints benchmark_model's lines from its results. --use_xnnpack has no litert-benchmark twin:
its CPU accelerator is XNNPACK. With $FAKE_BENCHMARK_SAYS set, prints that and succeeds."""
import os, re, subprocess, sys
if "FAKE_BENCHMARK_SAYS" in os.environ:
  print(os.environ["FAKE_BENCHMARK_SAYS"])
  sys.exit(0)
opts = dict(a[2:].split("=", 1) for a in sys.argv[1:])
cmd = ["{litert}", "--model", opts["graph"], "--num_threads", opts["num_threads"],
       "--num_runs", opts["num_runs"], "--warmup_runs", opts["warmup_runs"]]
cmd += ["--use_gpu"] if opts.get("use_gpu") == "true" else []
proc = subprocess.run(cmd, capture_output=True, text=True)
sys.stdout.write(proc.stdout)
sys.stderr.write(proc.stderr)
if proc.returncode:
  sys.exit(proc.returncode)
us = {{k: float(v) * 1e3 for k, v in re.findall(r"^([A-Za-z ()]+?):\s+([\d.]+) ms", proc.stdout,
                                              re.M)}}
print(f"INFO: count={{opts['num_runs']}} first={{us['Warmup (first)']:g}} "
      f"curr={{us['Inference (median)']:g}} min={{us['Inference (min)']:g}} "
      f"max={{us['Inference (max)']:g}} avg={{us['Inference (avg)']:g}} "
      f"std={{us['Inference (std)']:g}}")
print(f"INFO: Inference timings in us: Init: {{us['Model initialization']:g}}, "
      f"First inference: {{us['Warmup (first)']:g}}, Warmup (avg): {{us['Warmup (avg)']:g}}, "
      f"Inference (avg): {{us['Inference (avg)']:g}}")
'''


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """Two small real .tflite files (a convolution, so an invoke takes well over 10 us, the
  resolution litert-benchmark prints) and one that is not a model."""
  d = tmp_path_factory.mktemp("models")
  keras.utils.set_random_seed(0)
  for name, filters in (("wide", 32), ("narrow", 8)):
    model = keras.Sequential([keras.layers.InputLayer(input_shape=(32, 32, 3)),
                              keras.layers.Conv2D(filters, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    (d / f"{name}.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
  (d / "junk.tflite").write_bytes(b"not a flatbuffer")
  return d


@pytest.fixture
def phone(tmp_path, monkeypatch):
  """The stand-ins, with `adb` first on PATH; returns (the phone's /data/local/tmp, adb's log)."""
  bindir, remote, log = tmp_path / "bin", tmp_path / "phone_tmp", tmp_path / "adb.log"
  bindir.mkdir()
  remote.mkdir()
  litert = os.path.join(os.path.dirname(sys.executable), "litert-benchmark")
  for name, text in (("adb", ADB), ("benchmark_model", BENCHMARK_MODEL)):
    (bindir / name).write_text(text.format(python=sys.executable, litert=litert))
    (bindir / name).chmod(0o755)
  env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "FAKE_PHONE_TMP": str(remote),
         "FAKE_ADB_LOG": str(log)}
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  return remote, log


def _calls(log):
  return [json.loads(l)["args"] for l in log.read_text().splitlines()]


def _benchmark_runs(log):
  return [a[1:] for a in _calls(log) if a[0] == "shell" and a[1].endswith("/benchmark_model")]


@pytest.mark.e2e
def test_cli_times_each_file_on_the_phone_and_cleans_up(models, phone, tmp_path):
  remote, log = phone
  out = tmp_path / "device.json"
  proc = run_cli([str(models / "wide.tflite"), str(models / "narrow.tflite"),
                  f"--benchmark_binary={tmp_path / 'bin' / 'benchmark_model'}",
                  "--adb_serial=R5CT1", "--num_threads=2", "--num_runs=20", "--warmup_runs=2",
                  f"--json={out}"], cwd=REPO, module="export.device")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert os.listdir(remote) == []  # The remote folder is gone.
  assert proc.stdout.startswith("Device: Stand-in Phone (arm64-v8a), serial R5CT1; "
                                "benchmark_model, XNNPACK, 2 thread(s)")
  assert "| speed-up vs wide (ratio of averages; files run one after another, not paired) |" \
      in proc.stdout
  result = json.loads(out.read_text())
  assert (result["model"], result["abi"], result["serial"]) == ("Stand-in Phone", "arm64-v8a",
                                                                "R5CT1")
  rows = result["rows"]
  assert [r["name"] for r in rows] == ["wide", "narrow"]
  for r in rows:
    assert r["error"] is None and r["avg_ms"] > 0 and r["init_ms"] > 0 and r["runs"] == 20
    assert r["bytes"] == os.path.getsize(r["path"])
    assert f"| {r['name']} | {r['bytes']:,} B | {r['avg_ms']:.3f} |" in proc.stdout
  assert rows[0]["speedup"] == 1.0
  assert rows[1]["speedup"] == pytest.approx(rows[0]["avg_ms"] / rows[1]["avg_ms"])
  assert {json.loads(l)["serial"] for l in log.read_text().splitlines()} == {"R5CT1"}
  runs = _benchmark_runs(log)
  folder = os.path.dirname(runs[0][0])
  assert folder.startswith("/data/local/tmp/prune_")
  assert runs == [[f"{folder}/benchmark_model", f"--graph={folder}/{i}_{n}.tflite",
                   "--num_threads=2", "--num_runs=20", "--warmup_runs=2", "--use_xnnpack=true"]
                  for i, n in enumerate(["wide", "narrow"])]
  assert ["shell", "chmod", "755", f"{folder}/benchmark_model"] in _calls(log)
  assert _calls(log)[-1] == ["shell", "rm", "-rf", folder]


@pytest.mark.e2e
def test_cli_adds_the_phone_to_a_run_report(models, phone, tmp_path):
  from pipeline import report as report_lib  # pylint: disable=g-import-not-at-top
  run = tmp_path / "run"
  (run / "tflite").mkdir(parents=True)
  (run / "tflite" / "p.tflite").write_bytes((models / "wide.tflite").read_bytes())
  report_lib.write(sample_report(run), str(run))
  proc = run_cli([f"--run_dir={run}", f"--benchmark_binary={tmp_path / 'bin' / 'benchmark_model'}",
                  "--num_runs=5", "--warmup_runs=1"], cwd=REPO, module="export.device")
  assert proc.returncode == 0, proc.stderr[-2000:]
  saved = json.loads((run / "report.json").read_text())
  row = saved["device"]["rows"][0]
  assert row["name"] == "p" and row["avg_ms"] > 0 and row["path"] == str(run / "tflite/p.tflite")
  md = (run / "report.md").read_text()
  assert "On a phone (`python -m export.device`):" in md
  assert f"| p | {row['bytes']:,} B | {row['avg_ms']:.3f} |" in md
  # The phone's own recommendation: the report's accuracy (-1.80 points), the phone's speed.
  assert "- none qualifies: the most accurate, pruned_int8_sparse, is -1.80 points" in md
  assert md.rindex("Which file to ship, on ") > md.index("On a phone")
  assert md == report_lib.to_markdown(saved)  # The section the report renders, in its place.
  again = run_cli([f"--run_dir={run}", f"--benchmark_binary={tmp_path / 'bin' / 'benchmark_model'}",
                   "--num_runs=5", "--warmup_runs=1"], cwd=REPO, module="export.device")
  assert again.returncode == 0 and (run / "report.md").read_text().count("On a phone") == 1


def test_measure_reports_a_failed_file_and_runs_the_others(models, phone, tmp_path):
  remote, _ = phone
  paths = [str(models / n) for n in ("wide.tflite", "junk.tflite", "narrow.tflite")]
  result = android.measure(paths, str(tmp_path / "bin" / "benchmark_model"), num_runs=10,
                           warmup_runs=1, delegate="none")
  assert os.listdir(remote) == []
  wide, junk, narrow = result.rows
  assert wide.avg_ms > 0 and narrow.avg_ms > 0 and narrow.speedup > 0
  assert junk.avg_ms is None and junk.speedup is None
  # Its first error line, not the teardown logs after it.
  assert junk.error.startswith("benchmark_model failed (exit 1): ERROR: Model provided has ")
  assert len(junk.error.splitlines()) == 1
  table = android.to_markdown(result)
  assert f"| junk | 16 B | failed: {junk.error} |" in table


def test_measure_reports_a_run_without_timings(models, phone, tmp_path, monkeypatch):
  remote, _ = phone
  monkeypatch.setenv("FAKE_BENCHMARK_SAYS", "INFO: STARTING!\nINFO: Graph: [x]\nAborted")
  result = android.measure([str(models / "wide.tflite")], str(tmp_path / "bin" /
                                                             "benchmark_model"))
  assert [r.error for r in result.rows] == ["benchmark_model printed no timings: Aborted"]
  assert os.listdir(remote) == []


@pytest.mark.parametrize("delegate,flag", [("xnnpack", "--use_xnnpack=true"),
                                           ("none", "--use_xnnpack=false"),
                                           ("gpu", "--use_gpu=true")])
def test_command_maps_the_delegate(delegate, flag):
  assert android.command("/d/bm", "/d/a.tflite", 4, delegate, 30, 3) == [
      "/d/bm", "--graph=/d/a.tflite", "--num_threads=4", "--num_runs=30", "--warmup_runs=3", flag]
  with pytest.raises(ValueError, match=r"^delegate=nnapi: unknown; valid: xnnpack, gpu, none$"):
    android.command("/d/bm", "/d/a.tflite", 4, "nnapi", 30, 3)


MODERN = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [1]
INFO: Graph: [/data/local/tmp/mobilenet_v2.tflite]
INFO: Loaded model /data/local/tmp/mobilenet_v2.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 13.9786
INFO: Initialized session in 2.305ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if \
exceeding 150 seconds.
INFO: count=63 first=9112 curr=7960 min=7901 max=9112 avg=8054.2 std=180

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if \
exceeding 150 seconds.
INFO: count=126 first=7950 curr=7921 min=7880 max=8301 avg=7941.87 std=61

INFO: Inference timings in us: Init: 2305, First inference: 9112, Warmup (avg): 8054.2, \
Inference (avg): 7941.87
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only \
APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at \
your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=15.1 overall=22.4
"""

OLD = """\
STARTING!
Num runs: [50]
Graph: [mobilenet_v1_1.0_224_quant.tflite]
Initialized session in 4.452ms
Running benchmark for 1 iterations
count=1 curr=146161

Running benchmark for 50 iterations
count=50 first=137789 curr=137254 min=137079 max=143416 avg=137722 std=896

no stats: 137722
Average inference timings in us: Warmup: 146161, Init: 4452, no stats: 137722
"""


def test_parse_modern_output():
  assert android.parse(MODERN) == android.Timings(
      avg_us=7941.87, init_us=2305, first_us=9112, warmup_avg_us=8054.2, std_us=61, runs=126)


def test_parse_older_outputs():
  assert android.parse(OLD) == android.Timings(
      avg_us=137722, init_us=4452, warmup_avg_us=146161, std_us=896, runs=50)
  app = "tflite  : Average inference timings in us: Warmup: 91471, Init: 4108, Inference: 80660.1"
  assert android.parse(app) == android.Timings(avg_us=80660.1, init_us=4108,
                                               warmup_avg_us=91471)


@pytest.mark.parametrize("prefix", ["", "INFO: ",
                                    "I1123 12:00:00.000123  4567 benchmark_model.cc:123] "])
def test_parse_scientific_notation_after_any_prefix(prefix):
  t = android.parse(f"{prefix}Inference timings in us: Init: 2.305e+06, First inference: "
                    f"1.5e6, Warmup (avg): 1.3E+06, Inference (avg): 1.23457e+06\n")
  assert (t.init_us, t.first_us, t.warmup_avg_us, t.avg_us) == (2.305e6, 1.5e6, 1.3e6,
                                                                1.23457e6)


def test_parse_takes_the_last_timing_line():
  text = ("INFO: Inference timings in us: Init: 1, First inference: 2, Warmup (avg): 3, "
          "Inference (avg): 4\nINFO: count=9 first=1 curr=1 min=1 max=1 avg=1 std=0.5\n"
          "INFO: Inference timings in us: Init: 10, First inference: 20, Warmup (avg): 30, "
          "Inference (avg): 40\n")
  assert android.parse(text) == android.Timings(avg_us=40, init_us=10, first_us=20,
                                                warmup_avg_us=30, std_us=0.5, runs=9)


@pytest.mark.parametrize("text", ["", "ERROR: Could not open 'x.tflite'.\nAborted\n",
                                  "INFO: Inference timings in us: Init: 2305\n"])
def test_parse_garbage_raises(text):
  with pytest.raises(ValueError, match=r"^no 'Inference timings in us' line"):
    android.parse(text)


def _error(proc):
  assert "Traceback" not in proc.stderr
  return proc.returncode, proc.stderr.splitlines()[-1]


@pytest.mark.e2e
def test_cli_missing_adb(models, tmp_path, monkeypatch):
  binary = tmp_path / "benchmark_model"
  binary.write_text("")
  monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # The venv's bin: no adb there.
  proc = run_cli([str(models / "wide.tflite"), f"--benchmark_binary={binary}"], cwd=tmp_path,
                 module="export.device")
  rc, line = _error(proc)
  assert rc == 2
  assert_message(line, "error: adb not found", "--adb=adb", "platform-tools", "--adb=/path")


@pytest.mark.e2e
@pytest.mark.parametrize("state,args,expected", [
    ("none", [], ("error:", "no devices/emulators found", "USB debugging")),
    ("unknown", ["--adb_serial=R5CT1"],
     ("error: --adb_serial=R5CT1:", "adb get-state: unknown", "USB debugging")),
    ("unauthorized", [], ("error:", "device unauthorized.)", "Allow USB debugging")),
    ("several", [], ("error:", "more than one device/emulator", "--adb_serial=SERIAL")),
])
def test_cli_no_ready_device_one_line(models, phone, tmp_path, monkeypatch, state, args,
                                      expected):
  _, log = phone
  monkeypatch.setenv("FAKE_ADB_STATE", state)
  proc = run_cli([str(models / "wide.tflite"),
                  f"--benchmark_binary={tmp_path / 'bin' / 'benchmark_model'}"] + args,
                 cwd=tmp_path, module="export.device")
  rc, line = _error(proc)
  assert rc == 2
  assert_message(line, *expected)
  assert _calls(log) == [["get-state"]]  # Nothing pushed.


@pytest.mark.e2e
def test_cli_failing_push_one_line_and_cleans_up(models, phone, tmp_path, monkeypatch):
  remote, log = phone
  monkeypatch.setenv("FAKE_ADB_FAIL_PUSH", "narrow.tflite")
  narrow = models / "narrow.tflite"
  proc = run_cli([str(models / "wide.tflite"), str(narrow),
                  f"--benchmark_binary={tmp_path / 'bin' / 'benchmark_model'}"],
                 cwd=tmp_path, module="export.device")
  rc, line = _error(proc)
  folder = next(a[3] for a in _calls(log) if a[:3] == ["shell", "mkdir", "-p"])
  assert rc == 1
  assert_message(line, f"error: adb push {narrow} to {folder}/1_narrow.tflite failed:",
                 "No space left on device")
  assert os.listdir(remote) == []
  assert _calls(log)[-1] == ["shell", "rm", "-rf", folder]
  assert not _benchmark_runs(log)  # The push failed before anything ran.


@pytest.mark.e2e
@pytest.mark.parametrize("args,expected", [
    (["a.tflite"], ("error: flag --benchmark_binary=None:", "required", "benchmark_model")),
    (["a.tflite", "--benchmark_binary=missing"],
     ("error: flag --benchmark_binary=missing:", "no such file")),
    (["--benchmark_binary=/bin/sh"], ("error:", "no .tflite file", "python -m export.device")),
    (["missing.tflite", "--benchmark_binary=/bin/sh"], ("error: missing.tflite:", "no such file")),
    (["a.tflite", "--benchmark_binary=/bin/sh", "--delegate=nnapi"],
     ("error: flag --delegate=nnapi:", "xnnpack|gpu|none")),
])
def test_cli_bad_flags_one_line(tmp_path, args, expected):
  rc, line = _error(run_cli(args, cwd=tmp_path, module="export.device"))
  assert rc == 2
  assert_message(line, *expected)
