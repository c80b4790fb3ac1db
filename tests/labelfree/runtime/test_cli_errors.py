"""labelfree/runtime/cli_errors.py: bad input is one line ``error: ...`` and exit status 2, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from labelfree.io.atomic import OutputWriteError
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


def test_a_failed_write_takes_the_same_path_without_being_named(capsys):
    with pytest.raises(SystemExit) as info:
        returns_nothing(OutputWriteError("runs/x/model.pt", "cannot write runs/x/model.pt: File too large"))
    assert info.value.code == 1
    assert capsys.readouterr().err == "error: cannot write runs/x/model.pt: File too large\n"


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


# ------------------------------------------------------------------ output folders, checked before the work
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from tests.helpers.evaluation import write_checkpoint
    from tests.helpers.training import make_root

    root = tmp_path_factory.mktemp("inputs")
    make_root(root / "data", n_train=1, n_val=1, shape=(24, 24, 16))
    write_checkpoint(root / "run" / "model.pt")
    (root / "realism").mkdir()
    (root / "realism" / "realism.json").write_text("{}")
    (root / "blocker").write_text("a file where a folder should be")
    return root


def _entry_points():
    from labelfree.apps import experiment, preview
    from labelfree.apps.offline import generate
    from labelfree.apps.realism import cli as realism
    from labelfree.apps.realism import table as realism_table
    from labelfree.cli import check_data, score, syn_train, train, validate
    from labelfree.data import make_datafolds, sample_ct
    from labelfree.evaluation import comparison
    from labelfree.phantom import cli as phantom

    data = ["--json_dir", "{d}/datalist.json", "--train_dir", "{d}", "--val_dir", "{d}"]
    train_data, val_data = data[:4], [*data[:2], *data[4:]]
    scan = ["--image", "{d}/img/train0.nii.gz", "--label", "{d}/label/train0.nii.gz"]
    return {  # name: (main, argv, the output flag, its value under the blocking file)
        "main.py": (train.main, [*data, "--logdir", "{b}/run"], "--logdir", "run"),
        "validation.py": (validate.cli, [*val_data, "--checkpoint", "{r}/run/model.pt", "--save_dir", "{b}/outs"],
                          "--save_dir", "outs/run/0.5/pred"),
        "syn_train.py": (syn_train.main, [*train_data, "--seg_weight", "0", "--logdir", "{b}/gen"], "--logdir", "gen"),
        "labelfree-score": (score.main, [*val_data, "--pred_dir", "{d}/label", "--out", "{b}/scores"], "--out",
                            "scores"),
        "labelfree-check-data": (check_data.main, [*data, "--report", "{b}/report.json"], "--report", "report.json"),
        "labelfree-datafolds": (make_datafolds.main, ["--data_root", "{d}", "--out_dir", "{b}/folds"], "--out_dir",
                                "folds"),
        "labelfree-fetch-sample-ct": (sample_ct.main, ["--out", "{b}/real"], "--out", "real"),
        "labelfree-synthesize": (generate.main, [*train_data, "--out", "{b}/syn"], "--out", "syn"),
        "labelfree-preview": (preview.main, [*scan, "--out", "{b}/p.png"], "--out", "p.png"),
        "labelfree-preview --montage": (preview.main, [*scan, "--out", "{r}/p.png", "--montage", "{b}/m.png"],
                                        "--montage", "m.png"),
        "labelfree-realism": (realism.main, ["--real_json", "{d}/datalist.json", "--healthy_json",
                                             "{d}/datalist.json", "--data_dir", "{d}", "--out", "{b}/realism"],
                              "--out", "realism"),
        "realism_table.py": (realism_table.main, ["a={r}/realism", "--out", "{b}/t.md"], "--out", "t.md"),
        "labelfree-phantom": (phantom.cli, ["--out", "{b}/phantom"], "--out", "phantom"),
        "make_report.py": (comparison.main, ["--arm", "a={r}/realism", "--out", "{b}/report"], "--out", "report"),
        "run_experiment.py": (experiment.main, ["--data_root", "{r}/exp", "--out", "{b}/exp"], "--out", "exp"),
    }


@pytest.mark.parametrize("name", list(_entry_points()))
def test_every_output_folder_is_checked_before_the_work(inputs, name, capsys):
    main, argv, flag, value = _entry_points()[name]
    blocker = inputs / "blocker"
    argv = [a.format(d=inputs / "data", r=inputs, b=blocker) for a in argv]
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(err) == 1, err
    if value.endswith((".png", ".md", ".json")):
        assert err[0] == f"error: {flag} {blocker / value}: cannot create folder {blocker}: it is a file"
    else:
        assert err[0] == f"error: {flag} {blocker / value}: cannot create folder: its parent {blocker} is a file"
    assert sorted(p.name for p in inputs.iterdir()) == ["blocker", "data", "realism", "run"]  # nothing written
