"""labelfree-realism --syn_generator refuses an unsafe pickle with the project's one line, before any work."""

from __future__ import annotations

import os

import pytest
import torch

from labelfree.apps.realism import cli as realism


class RunsCode:
    """Unpickling this calls os.system: what a malicious "generator.pt" does."""

    def __reduce__(self):
        return (os.system, ("touch ran-code",))


@pytest.mark.parametrize("synthesis", ["gan", "diffusion"])
def test_an_unsafe_generator_is_refused_in_one_line(tmp_path, capsys, monkeypatch, synthesis):
    monkeypatch.chdir(tmp_path)
    unsafe = tmp_path / "generator.pt"
    torch.save({"kind": synthesis, "hook": RunsCode()}, unsafe)
    status = realism.main(["--real_json", "real.json", "--healthy_json", "healthy.json", "--data_dir", ".",
                           "--out", str(tmp_path / "out"), "--synthesis", synthesis, "--syn_generator", str(unsafe)])
    assert status == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only=False" not in err
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(err.splitlines()) == 1
    assert f"checkpoint {unsafe} refused: it is not a plain weights file" in err
    assert not (tmp_path / "ran-code").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
