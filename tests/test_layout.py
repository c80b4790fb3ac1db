"""The package layout: layers by concern, no import cycles, an engine that stands alone.

The import graph is read from the source (every ``import`` statement, function-level ones
included), so the rules hold for code paths no test happens to import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("labelfree", "tumor_synthesis")

#: Layers, lowest first: a module may import its own layer and the ones below, never above.
LAYERS = {
    "tumor_synthesis": 0,
    "labelfree.io": 1, "labelfree.masks": 1, "labelfree.networks": 1, "labelfree.optimizers": 1,
    "labelfree.config": 2, "labelfree.runtime": 2,
    "labelfree.data": 3, "labelfree.phantom": 3,
    "labelfree.inference": 4,
    "labelfree.evaluation": 5,
    "labelfree.training": 6,
    "labelfree.apps": 7,
    "labelfree.cli": 8,
}


def module_files(root: Path = REPO) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that an imported dotted name belongs to (None: not the project's)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from pkg import submodule`` counts the submodule)."""
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(_owner(alias.name, modules) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    deps.add(_owner(full if full in modules else base, modules))
        deps.discard(None)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int | None:
    matches = [k for k in LAYERS if module == k or module.startswith(k + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer by a lower one, as ``a (layer) -> b (layer)``."""
    bad = []
    for a, deps in sorted(graph.items()):
        for b in sorted(deps):
            la, lb = layer_of(a), layer_of(b)
            if la is not None and lb is not None and lb > la:
                bad.append(f"{a} ({la}) -> {b} ({lb})")
    return bad


@pytest.fixture(scope="module")
def graph():
    return import_graph(module_files())


def test_every_module_of_labelfree_belongs_to_a_layer(graph):
    unplaced = [m for m in graph if m.startswith("labelfree.") and layer_of(m) is None]
    assert not unplaced, f"modules outside every layer (add them to a package or to LAYERS): {unplaced}"


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_no_layer_imports_a_higher_one(graph):
    assert upward_imports(graph) == []


def test_the_engine_imports_nothing_from_the_framework(graph):
    leaks = sorted(f"{a} -> {b}" for a, deps in graph.items() if a.startswith("tumor_synthesis")
                   for b in deps if b.split(".")[0] == "labelfree")
    assert leaks == []


def test_the_checks_find_what_they_look_for(tmp_path):
    """The checker itself: a planted cycle, a planted upward import and a planted engine leak are found."""
    for package, files in {
        "tumor_synthesis": {"__init__.py": "", "a.py": "from labelfree.io import atomic\n"},
        "labelfree": {"__init__.py": "", "io/__init__.py": "", "io/atomic.py": "from labelfree.cli import x\n",
                      "cli/__init__.py": "", "cli/x.py": "def f():\n    from labelfree.io import atomic\n"},
    }.items():
        for rel, text in files.items():
            path = tmp_path / package / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    planted = import_graph(module_files(tmp_path))
    assert planted["tumor_synthesis.a"] == {"labelfree.io.atomic"}
    assert cycles(planted) == [["labelfree.cli.x", "labelfree.io.atomic"]]
    assert upward_imports(planted) == ["labelfree.io.atomic (1) -> labelfree.cli.x (8)",
                                       "tumor_synthesis.a (0) -> labelfree.io.atomic (1)"]


@pytest.mark.slow
def test_the_original_top_level_imports_work_from_a_clone(tmp_path):
    """``networks/`` and ``optimizers/`` of the original's layout, for its users' scripts (run from the root)."""
    code = (
        "import torch\n"
        "from optimizers.lr_scheduler import LinearWarmupCosineAnnealingLR\n"
        "from networks.swin3d_unetrv2 import SwinUNETR\n"
        "from networks.unetr import UNETR\n"
        "from labelfree.networks import build_model\n"
        "net = SwinUNETR(in_channels=1, out_channels=3, feature_size=12)\n"
        "ours = build_model('swin_unetrv2', roi_size=(64, 64, 64), swin_type='tiny')\n"
        "assert sorted(net.state_dict()) == sorted(ours.state_dict()), 'not the v2 network main.py builds'\n"
        "opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)\n"
        "s = LinearWarmupCosineAnnealingLR(opt, warmup_epochs=2, max_epochs=10)\n"
        "print(type(s).__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "labelfree.optimizers.lr_scheduler"


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["realism", "preview"])
def test_the_engine_s_tool_names_dispatch_to_the_framework(tool, tmp_path):
    result = subprocess.run([sys.executable, "-m", f"tumor_synthesis.{tool}", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:") and "--out" in result.stdout
