"""The project installs as a package: console scripts and imports work outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]


def _requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-"))]


def test_pyproject_dependencies_are_requirements_txt():
    assert sorted(PYPROJECT["project"]["dependencies"]) == sorted(_requirements())
    assert "torch==2.13.0" in PYPROJECT["project"]["dependencies"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install .`` (not editable; dependencies are this environment's) into a fresh target folder."""
    import shutil

    # Built from a copy of what the distribution is made of (setuptools builds in the source tree).
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("labelfree", "tumor_synthesis"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-cache-dir",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0 and "setuptools" in result.stderr and "No module named" in result.stderr:
        pytest.skip("setuptools is not installed in this environment: cannot build without network isolation")
    assert result.returncode == 0, result.stderr[-3000:]
    return target


def _run_outside(installed: Path, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # The installed copy comes first on the path (an editable install's finder is consulted only
    # after the path); the repository is not on it.
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_installed_package_has_no_generic_top_level_names(installed):
    tops = {p.name for p in installed.iterdir() if (p / "__init__.py").is_file()}
    assert tops == {"labelfree", "tumor_synthesis"}


@pytest.mark.slow
def test_tumor_generated_imports_from_the_installed_package(installed, tmp_path):
    code = ("import tumor_synthesis, labelfree; from tumor_synthesis import TumorGenerated; "
            "print(tumor_synthesis.__file__); print(labelfree.__file__)")
    result = _run_outside(installed, ["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(line.startswith(str(installed)) for line in result.stdout.split())


#: Leaves out this environment's editable install of the project (a meta-path finder that would
#: find ``labelfree`` anywhere), so that only the copy on PYTHONPATH is importable.
WITHOUT_EDITABLE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
"""

ENGINE_ALONE = WITHOUT_EDITABLE + """
import numpy as np, importlib.util
assert importlib.util.find_spec("labelfree") is None, "labelfree is importable"
from tumor_synthesis import TumorGenerated
image = np.full((1, 48, 48, 40), 100.0, dtype=np.float32)
label = np.zeros((1, 48, 48, 40), dtype=np.uint8)
label[0, 8:40, 8:40, 6:34] = 1
t = TumorGenerated(keys=["image", "label"], prob=1.0, tumor_prob=[0, 0, 1, 0, 0]).set_random_state(0)
out = t({"image": image, "label": label})
tumor = np.asarray(out["label"])[0] == 2
changed = np.asarray(out["image"])[0] != image[0]
assert tumor.any(), "no tumor painted"
assert not (changed & (label[0] == 0)).any(), "voxels outside the organ changed"
print(int(tumor.sum()))
"""


@pytest.mark.slow
def test_the_engine_works_installed_without_the_framework(installed, tmp_path):
    """``tumor_synthesis`` alone (the framework's folder removed from the installed copy) paints tumors,
    and its ``python -m`` tool names say in one line that the framework is missing."""
    import shutil

    alone = tmp_path / "site"
    shutil.copytree(installed / "tumor_synthesis", alone / "tumor_synthesis")
    result = _run_outside(alone, ["-c", ENGINE_ALONE], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 0
    dispatch = WITHOUT_EDITABLE + "import runpy; sys.argv = ['x', '--help']; runpy.run_module('tumor_synthesis.realism', run_name='__main__')"
    tool = _run_outside(alone, ["-c", dispatch], tmp_path)
    assert tool.returncode != 0
    assert tool.stderr.strip().splitlines() == [
        "error: labelfree.apps.realism.cli is part of the labelfree framework, which is not installed "
        "(pip install labelfree-tumor, or run from a clone of the project)"]


HELP_ALL = """
import contextlib, importlib, io, json, sys
results = {}
for name, target in json.loads(sys.argv[1]).items():
    module, function = target.split(":")
    top = importlib.import_module(module.split(".")[0])
    assert top.__file__.startswith(sys.argv[2]), top.__file__
    out = io.StringIO()
    sys.argv[0] = name
    with contextlib.redirect_stdout(out):
        try:
            getattr(importlib.import_module(module), function)(["--help"])
            code = 0
        except SystemExit as e:
            code = e.code
    results[name] = [code, out.getvalue()]
print(json.dumps(results))
"""


@pytest.mark.slow
def test_every_console_script_answers_help_from_another_directory(installed, tmp_path):
    import json

    # One interpreter for all of them: importing torch and MONAI once keeps this fast.
    result = _run_outside(installed, ["-c", HELP_ALL, json.dumps(SCRIPTS), str(installed)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.splitlines()[-1])
    assert set(answers) == set(SCRIPTS)
    for name, (code, text) in answers.items():
        assert code in (0, None), (name, code)
        assert "usage:" in text and "--" in text, name
