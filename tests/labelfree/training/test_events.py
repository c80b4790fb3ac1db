"""labelfree/training/events.py: TensorBoard scalars written and read back; a failed write is one line."""

import pytest

from labelfree.io.atomic import OutputWriteError
from labelfree.training.events import ScalarWriter, read_scalars


def test_scalars_are_read_back(tmp_path):
    writer = ScalarWriter(tmp_path / "run")
    writer.add_scalars({"train_loss": 0.5, "lr": 1e-4}, step=0)
    writer.add_scalars({"train_loss": 0.25}, step=1)
    writer.close()
    assert read_scalars(tmp_path / "run") == {"train_loss": [(0, 0.5), (1, 0.25)], "lr": [(0, pytest.approx(1e-4))]}


def test_a_failed_write_names_the_folder_and_the_cause(tmp_path):
    (tmp_path / "runs").write_text("a file")
    with pytest.raises(OutputWriteError) as info:
        ScalarWriter(tmp_path / "runs" / "x").add_scalars({"train_loss": 0.5}, step=0)
    assert str(info.value) == f"cannot write {tmp_path / 'runs' / 'x'}: its parent {tmp_path / 'runs'} is a file"
