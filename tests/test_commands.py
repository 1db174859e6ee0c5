"""Every command written in README.md, BUILD.md, docs/ and the Makefile runs as written: each
module's --help works and lists every flag the docs pass it. (The e2e tests run the main
commands for real.)"""

import concurrent.futures
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO

_SCRIPTS = {"prune-pipeline": "pipeline.run", "tflite-benchmark": "export.benchmark",
            "prune-sweep": "pipeline.sweep", "train.py": "train.py"}


def _command_lines():
  """(source, command line) for every shell line in a fenced block of the docs, and every
  recipe line of the Makefile; continuation lines joined."""
  found = []
  for path in ["README.md", "BUILD.md", *sorted(glob.glob("docs/*.md", root_dir=REPO))]:
    text = open(os.path.join(REPO, path)).read()
    for block in re.findall(r"```(?:sh|bash|shell|console)?\n(.*?)```", text, re.S):
      for line in block.replace("\\\n", " ").splitlines():
        found.append((path, line.strip()))
  make = open(os.path.join(REPO, "Makefile")).read().replace("\\\n", " ")
  for line in make.splitlines():
    loop = re.search(r"for (\w+) in ([\w ]+); do", line)
    names = loop.group(2).split() if loop else [None]  # `for b in x y; do ... $$b`: each one.
    found += [("Makefile", line.replace(f"$${loop.group(1)}", n) if n else line)
              for n in names if line.startswith("\t")]
  return found


def _invocations():
  """{module or script: {flags the docs pass it}} from every command line."""
  out = {}
  for _, line in _command_lines():
    for part in re.split(r"&&|;|\|", line):
      try:
        words = shlex.split(part, comments=True)
      except ValueError:
        words = part.split()
      target = None
      for i, w in enumerate(words):
        if w == "-m" and i + 1 < len(words) and i > 0 and "python" in words[i - 1].lower() + (
            "python" if words[i - 1] == "$(PY)" else ""):
          target, rest = words[i + 1], words[i + 2:]
          break
        if os.path.basename(w) in _SCRIPTS:
          target, rest = _SCRIPTS[os.path.basename(w)], words[i + 1:]
          break
      if not target or not re.match(r"^(pipeline|export|benchmarks)\.[\w.]+$|^train\.py$",
                                    target):
        continue  # Not ours (pip, venv) or a Makefile loop variable.
      flags = {re.match(r"--([\w]+)", w).group(1) for w in rest if re.match(r"--\w", w)}
      out.setdefault(target, set()).update(flags)
  return out


INVOCATIONS = _invocations()


def test_the_docs_name_the_main_commands():
  assert {"pipeline.run", "pipeline.sweep", "train.py", "export.benchmark", "export.arm",
          "export.device"} <= set(INVOCATIONS)


def _help(target):
  cmd = [sys.executable, target] if target.endswith(".py") else [sys.executable, "-m", target]
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run(cmd + ["--help"], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)


@pytest.fixture(scope="module")
def helps():
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    return dict(zip(INVOCATIONS, pool.map(_help, INVOCATIONS)))


@pytest.mark.parametrize("target", sorted(INVOCATIONS))
def test_every_documented_command_has_help_listing_its_flags(target, helps):
  proc = helps[target]
  assert proc.returncode == 0, f"{target} --help: {proc.stderr[-1500:]}"
  text = proc.stdout + proc.stderr
  missing = [f for f in sorted(INVOCATIONS[target]) if f not in ("help", "flagfile") and not (
      re.search(rf"--(\[no\])?{f}\b", text) or
      (f.startswith("no") and re.search(rf"--\[no\]{f[2:]}\b", text)))]
  assert missing == [], f"{target}: documented flags its --help does not list"


def test_help_groups_the_pipeline_flags_by_topic(helps):
  text = helps["pipeline.run"].stdout
  titles = [l for l in text.splitlines() if l and not l.startswith(" ") and l.endswith(":")]
  assert titles[:3] == ["Data: where the images come from:",
                        "Model: build, load and train the baseline:",
                        "Unstructured pruning: TF-MOT masks weights:"]
  where = [text.index(f"\n  --{f}:") for f in ("dataset", "model", "[no]prune", "structured_rate",
                                                "layer_rates", "export_formats", "workdir")]
  assert where == sorted(where)
