"""The documentation: the MkDocs site builds with --strict, the README stays short, the records are linked.

`mkdocs build --strict` fails on a link to a missing page or anchor and on a page left out of the navigation,
so a moved file or a renamed heading breaks this test, not the published site.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README_MAX_LINES = 220
#: Words about how the project was made rather than about the software. Whole words only: "lent to"
#: must not match "equivalent to".
PROCESS_WORDS = re.compile(r"\bsessions?\b|\blent to\b|\bthis task\b", re.IGNORECASE)
DATED_RECORD = re.compile(r"^\d{4}-\d{2}-\d{2}-[a-z0-9-]+\.md$")


def _text_files(*roots: Path):
    """Every file under ``roots`` that decodes as UTF-8 (PNGs and other binaries are skipped)."""
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def _own_pipeline_example(text: str) -> str:
    """The ```python block after the own-pipeline marker (what tests/test_readme.py runs)."""
    marker = text.index("<!-- example: own-pipeline")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)


def test_site_builds_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "results" / "index.html").is_file()


def test_readme_is_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details into docs/"


def test_no_words_about_the_making_of_the_project():
    hits = []
    for path, text in _text_files(REPO / "README.md", DOCS, REPO / "results"):
        for number, line in enumerate(text.splitlines(), 1):
            if PROCESS_WORDS.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    assert not hits, "\n".join(hits)


def test_process_words_pattern_spares_ordinary_words():
    # The check above must be able to fail, and must not fire on words that merely contain the phrases.
    assert PROCESS_WORDS.search("measured in session 2")
    assert PROCESS_WORDS.search("no GPU was lent to it")
    assert not PROCESS_WORDS.search("exactly equivalent to the whole scan")
    assert not PROCESS_WORDS.search("label maps of the TotalSegmentator `total` task")


def test_every_dated_record_is_linked_from_the_results_index():
    records = sorted(p.name for p in (DOCS / "results").glob("*.md") if DATED_RECORD.match(p.name))
    assert records, "no dated records in docs/results/"
    index = (DOCS / "results" / "index.md").read_text()
    missing = [name for name in records if f"]({name})" not in index]
    assert not missing, f"docs/results/index.md does not link {missing}"


def test_getting_started_example_is_the_tested_readme_example():
    readme = _own_pipeline_example((REPO / "README.md").read_text())
    start = (DOCS / "getting-started.md").read_text()
    docs_block = re.search(r"```python\n(from pathlib import Path\n.*?)```", start, re.S).group(1)
    assert docs_block == readme, "docs/getting-started.md's pipeline example differs from the README's"


@pytest.mark.slow
def test_cli_reference_matches_every_tools_help():
    # Runs every CLI's --help (about 13 interpreters); regenerate with: python docs/cli_reference.py
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "cli_reference.py")
    cli_reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli_reference)
    expected = cli_reference.render()
    actual = cli_reference.PAGE.read_text()
    diff = "".join(difflib.unified_diff(actual.splitlines(True), expected.splitlines(True), "docs/reference/cli.md",
                                        "--help now", n=1))
    assert actual == expected, f"docs/reference/cli.md is out of date (python docs/cli_reference.py):\n{diff[:4000]}"
