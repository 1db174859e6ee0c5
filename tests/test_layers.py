"""The import graph stays a stack of layers: no cycles, and no module imports a higher layer.

Read with `ast` from the source (no imports run), so the test is fast and names the offending
import. BUILD.md ("Layout") draws the same stack.
"""

import ast
import os
import pathlib

import pytest

from conftest import REPO

# Lowest first. A module may import its own layer and those below it; prefixes match whole
# dotted components, and the longest prefix decides (pipeline.run before pipeline).
LAYERS = (
    ("export",),
    ("pipeline.config", "pipeline.rules", "pipeline.distribute"),
    ("pipeline.data",),
    ("pipeline.models",),
    ("pipeline.structured", "pipeline.unstructured"),
    ("pipeline.collab",),
    ("pipeline.planning",),
    ("pipeline.report",),
    ("pipeline.stages",),
    ("pipeline.job", "pipeline.sweep_job"),
    ("pipeline.flags",),
    ("pipeline.run", "pipeline.sweep", "pipeline.launch", "pipeline.api", "pipeline"),
)
# Peers in one layer that must not import each other.
INDEPENDENT = (("pipeline.structured", "pipeline.unstructured"),)


def _modules():
  out = {}
  for pkg in ("export", "pipeline"):
    for path in pathlib.Path(REPO, pkg).rglob("*.py"):
      name = ".".join(path.relative_to(REPO).with_suffix("").parts)
      out[name.removesuffix(".__init__")] = path
  return out


def _imports(path, modules):
  """The project modules `path` imports (any depth in the file), with line numbers."""
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
               else node.module for a in node.names]
    else:
      continue
    found += [(n, node.lineno) for n in names if n.split(".")[0] in ("export", "pipeline")]
  return found


def _prefix(name):
  best = None
  for layer, prefixes in enumerate(LAYERS):
    for p in prefixes:
      if (name == p or name.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
        best = (layer, p)
  return best


MODULES = _modules()
EDGES = {m: _imports(p, MODULES) for m, p in MODULES.items()}


def test_every_module_has_a_layer():
  assert [m for m in MODULES if _prefix(m) is None] == []


def _wrong(edges):
  """'file:line imports X (why)' for each import of a higher layer or of an independent peer."""
  wrong = []
  for m, imports in edges.items():
    (layer, own), path = _prefix(m), os.path.relpath(MODULES[m], REPO)
    for target, line in imports:
      to_layer, to_prefix = _prefix(target)
      if to_layer > layer:
        wrong.append(f"{path}:{line} imports {target} (layer {LAYERS[to_layer]} is above "
                     f"{LAYERS[layer]})")
      elif {own, to_prefix} in [set(pair) for pair in INDEPENDENT]:
        wrong.append(f"{path}:{line} imports {target} (peers stay independent)")
  return wrong


def test_no_module_imports_a_higher_layer_or_a_peer_it_must_not():
  assert _wrong(EDGES) == []


def test_no_import_cycles():
  graph = {m: {t for t, _ in imports if t in MODULES and t != m} for m, imports in EDGES.items()}
  state, cycles = {}, []

  def visit(m, stack):
    state[m] = "open"
    for t in sorted(graph[m]):
      if state.get(t) == "open":
        cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
      elif t not in state:
        visit(t, stack + [t])
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m, [m])
  assert cycles == []


@pytest.mark.parametrize("module, target", [
    ("pipeline.data.core", "pipeline.job"),  # Data reaching up to orchestration.
    ("export.timing", "pipeline.config"),  # export/ below every pipeline module.
    ("pipeline.unstructured.obs", "pipeline.structured.surgery"),  # Peers stay apart.
])
def test_the_checker_reports_a_back_import(module, target):
  """The check itself can fail: an import added against the layers is reported."""
  assert len(_wrong({module: [(target, 7)]})) == 1
  assert _wrong({"pipeline.job": [(module, 7)]}) == []  # Importing downward is allowed.


def test_no_function_is_longer_than_sixty_lines():
  long = []
  for m, path in MODULES.items():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = node.end_lineno - node.lineno + 1
        if n > 60:
          long.append(f"{os.path.relpath(path, REPO)}:{node.lineno} {node.name} ({n} lines)")
  assert long == []
