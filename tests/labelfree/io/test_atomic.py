"""Atomic writes: a failed write (disk full, quota, a parent that is a file) is one line naming the
file and the cause, the earlier file stays as it was and no temporary file is left."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from labelfree.io.atomic import (
    OutputWriteError,
    atomic_path,
    save_nifti_atomic,
    save_torch_atomic,
    write_text_atomic,
)
from tests.helpers.file_limits import run_with_file_size_limit

LIMIT = 64 * 1024  # bytes: each write below needs more

#: In the limited child: each writer replaces an earlier file with a larger one and must fail.
CHILD = """
import json, sys
import numpy as np, torch
from labelfree.io.atomic import OutputWriteError, save_nifti_atomic, save_torch_atomic, write_text_atomic
folder = sys.argv[1]
writes = {
    "model_final.pt": lambda p: save_torch_atomic({"w": torch.arange(100_000, dtype=torch.float32)}, p),
    "case.nii.gz": lambda p: save_nifti_atomic(np.random.default_rng(0).random((64, 64, 32)), np.eye(4), p),
    "metrics.csv": lambda p: write_text_atomic(p, "x" * 200_000),
}
messages = {}
for name, write in writes.items():
    try:
        write(f"{folder}/{name}")
        messages[name] = None
    except OutputWriteError as e:
        messages[name] = str(e)
print(json.dumps(messages))
"""


def test_failed_writes_name_the_file_and_cause_and_keep_the_earlier_file(tmp_path):
    earlier = {"w": torch.ones(3)}
    save_torch_atomic(earlier, tmp_path / "model_final.pt")
    save_nifti_atomic(np.ones((4, 4, 4), np.uint8), np.eye(4), tmp_path / "case.nii.gz")
    write_text_atomic(tmp_path / "metrics.csv", "name\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    result = run_with_file_size_limit(["-c", CHILD, str(tmp_path)], LIMIT)
    assert result.returncode == 0, result.stderr[-2000:]
    messages = json.loads(result.stdout.strip().splitlines()[-1])
    for name, message in messages.items():
        assert message == f"cannot write {tmp_path / name}: File too large; the earlier file is kept unchanged"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file left
    loaded = torch.load(tmp_path / "model_final.pt", weights_only=True)
    torch.testing.assert_close(loaded["w"], earlier["w"])
    assert np.asarray(nib.load(tmp_path / "case.nii.gz").dataobj).sum() == 64


def test_a_full_disk_mid_write_is_reported_with_the_os_text(tmp_path):
    with pytest.raises(OutputWriteError) as info, atomic_path(tmp_path / "pred" / "a.nii.gz") as tmp:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(info.value) == f"cannot write {tmp_path / 'pred' / 'a.nii.gz'}: No space left on device"
    assert info.value.path == tmp_path / "pred" / "a.nii.gz"
    assert list((tmp_path / "pred").iterdir()) == []


def test_a_parent_that_is_a_file_is_named(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(OutputWriteError) as info:
        save_torch_atomic({"w": torch.ones(1)}, tmp_path / "runs" / "x" / "model.pt")
    destination = tmp_path / "runs" / "x" / "model.pt"
    assert str(info.value) == f"cannot write {destination}: its parent {tmp_path / 'runs'} is a file"


def test_other_errors_of_the_writer_pass_through(tmp_path):
    with pytest.raises(ValueError, match="not a write failure"), atomic_path(tmp_path / "a.txt"):
        raise ValueError("not a write failure")
    assert list(tmp_path.iterdir()) == []


def test_the_error_survives_a_worker_process():
    import pickle

    error = pickle.loads(pickle.dumps(OutputWriteError("/data/label/a.nii.gz", "cannot write /data/label/a.nii.gz: x")))
    assert (str(error), error.path) == ("cannot write /data/label/a.nii.gz: x", Path("/data/label/a.nii.gz"))
