"""labelfree/runtime/cli_errors.py: bad input is one line ``error: ...`` and exit status 2, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from labelfree.runtime.cli_errors import exits_on

REPO = Path(__file__).resolve().parents[3]


class BadInput(ValueError):
    pass


@exits_on(BadInput)
def returns_status(fail: bool) -> int:
    if fail:
        raise BadInput("--json_dir data/x.json: not found")
    return 0


@exits_on(BadInput, code=1)
def returns_nothing(error: Exception | None) -> None:
    if error is not None:
        raise error


def test_a_main_that_returns_its_status_returns_the_code_and_prints_one_line(capsys):
    assert returns_status(False) == 0
    assert returns_status(True) == 2
    assert capsys.readouterr().err == "error: --json_dir data/x.json: not found\n"


def test_any_other_main_exits_with_the_code_and_other_errors_keep_their_traceback(capsys):
    with pytest.raises(SystemExit) as info:
        returns_nothing(BadInput("model.pt: truncated"))
    assert info.value.code == 1 and info.value.__cause__ is None
    assert capsys.readouterr().err == "error: model.pt: truncated\n"
    with pytest.raises(KeyError):  # a bug, not bad input: reported with its traceback
        returns_nothing(KeyError("bug"))


def test_only_rank_0_prints(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    assert returns_status(True) == 2
    assert capsys.readouterr().err == ""


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("entry, argv, message", [
    ("validation.py", ["--images", "{missing}", "--checkpoint", "{missing}/model.pt"], "--images {missing}: not a folder"),
    ("syn_train.py", ["--train_dir", "{missing}", "--seg_weight", "0", "--logdir", "{missing}/run"],
     "datalist not found"),
    ("main.py", ["--json_dir", "{missing}/list.json", "--logdir", "{missing}/run"], "datalist not found"),
])
def test_real_entry_points_answer_bad_input_with_one_line_and_status_2(tmp_path, entry, argv, message):
    missing = tmp_path / "nowhere"
    result = run(entry, *[a.format(missing=missing) for a in argv])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert message.format(missing=missing) in lines[0]
    assert not missing.exists()  # nothing written
