"""labelfree.io.checkpoint: weights-only round trip, corrupt files, crash-safe saving, prefix stripping."""

import pytest
import torch

from labelfree.io.checkpoint import CheckpointError, load_checkpoint, load_model_weights, save_checkpoint, strip_prefixes


def small_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), torch.nn.InstanceNorm3d(4), torch.nn.Conv3d(4, 2, 1))


def full_state(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 1, 5, 5, 5)).sum().backward()
    optimizer.step()
    return {
        "epoch": 3,
        "best_acc": torch.tensor(0.5).numpy().item(),
        "global_step": 7,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None,
        "scaler": {},
        "args": {"logdir": "runs/x", "roi": (96, 96, 96), "syn": True, "checkpoint": None},
    }


def test_round_trip_loads_with_weights_only(tmp_path):
    model = small_model()
    state = full_state(model)
    path = save_checkpoint(tmp_path / "model_final.pt", **state)
    loaded = torch.load(path, weights_only=True)  # no pickled classes needed
    assert loaded["epoch"] == 3 and loaded["global_step"] == 7 and loaded["best_acc"] == 0.5
    assert loaded["args"]["roi"] == (96, 96, 96) and loaded["args"]["syn"] is True
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["state_dict"][key], value)
    restored = torch.optim.AdamW(small_model(1).parameters(), lr=1e-3)
    restored.load_state_dict(loaded["optimizer"])
    assert float(restored.state_dict()["state"][0]["step"]) == 1.0
    assert restored.param_groups[0]["betas"] == (0.9, 0.999)


def test_numpy_values_become_plain(tmp_path):
    import numpy as np

    save_checkpoint(tmp_path / "c.pt", best_acc=np.float64(0.25), epoch=np.int64(2))
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded == {"best_acc": 0.25, "epoch": 2} and type(loaded["best_acc"]) is float


@pytest.mark.parametrize("content", [b"garbage, not a checkpoint", b""])
def test_corrupt_file_gives_clear_error(tmp_path, content):
    path = tmp_path / "model_final.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"model_final\.pt cannot be read") as info:
        load_checkpoint(path)
    # torch's advice to retry with weights_only=False is wrong for a corrupt file: not passed on.
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


def test_truncated_file_gives_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", **full_state(small_model()))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.pt cannot be read"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_crash_while_saving_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model_final.pt"
    save_checkpoint(path, **full_state(small_model()))
    good = path.read_bytes()

    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)  # half-written file (f: the open temporary file), then the "crash"
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, **{**full_state(small_model(2)), "epoch": 4})
    monkeypatch.undo()

    assert path.read_bytes() == good
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["model_final.pt"]  # no temp file left


def test_strip_prefixes():
    assert strip_prefixes("module.backbone.conv.weight") == "conv.weight"
    assert strip_prefixes("backbone.module.0.bias") == "0.bias"
    assert strip_prefixes("model.0.bias") == "model.0.bias"


@pytest.mark.parametrize("prefix", ["module.", "backbone.", "module.backbone."])
def test_load_model_weights_strips_prefixes(tmp_path, prefix):
    source = small_model(seed=1)
    weights = {prefix + k: v for k, v in source.state_dict().items()}
    torch.save({"state_dict": weights, "epoch": 9}, tmp_path / "ckpt.pt")
    target = small_model(seed=2)
    checkpoint = load_model_weights(target, tmp_path / "ckpt.pt")
    assert checkpoint["epoch"] == 9
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_load_model_weights_reports_mismatch(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3), torch.nn.InstanceNorm3d(8), torch.nn.Conv3d(8, 2, 1))
    torch.save({"state_dict": other.state_dict()}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt do not match.*shape mismatch: 0\.weight"):
        load_model_weights(small_model(), tmp_path / "other.pt")
    torch.save({"state_dict": {"extra.weight": torch.zeros(1)}}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="missing: .*unexpected: extra.weight"):
        load_model_weights(small_model(), tmp_path / "extra.pt")


def test_the_fit_rule_compares_what_both_sides_record():
    from labelfree.io.checkpoint import CheckpointUse, check_fit, flag_differences

    saved = {"model_name": "unet", "swin_type": "tiny", "organ": "Liver", "optim_lr": 1e-4, "syn_qc": None,
             "gen_channels": [16, 32]}
    run = {"model_name": "unet", "swin_type": "base", "organ": "liver", "optim_lr": 1e-4 * (1 + 1e-12),
           "syn_qc": "qc.pt", "gen_channels": (16, 64), "seed": 3}
    # Swin size of a UNet, case of a name, float noise, a flag the checkpoint never recorded: no difference.
    assert flag_differences(saved, run, ("swin_type", "organ", "optim_lr", "seed")) == []
    assert flag_differences(saved, run, ("syn_qc", "gen_channels")) == [
        "--syn_qc None (this run: qc.pt)", "--gen_channels 16 32 (this run: 16 64)"]
    # validation.py's --model is training's --model_name; the Swin size counts between two Swin-UNETRs.
    swin = {"model_name": "swin_unetrv2", "swin_type": "tiny"}
    assert flag_differences(swin, {"model": "unet"}, ("model",)) == ["--model swin_unetrv2 (this run: unet)"]
    assert flag_differences(swin, {"swin_type": "base"}, ("swin_type",)) == ["--swin_type tiny (this run: base)"]

    use = CheckpointUse("--thing", refused=("organ",), noted=("syn_qc",), advice="fix it", note="fine")
    assert check_fit(saved, "a.pt", use, run) == ["note: --thing a.pt was saved with --syn_qc None (this run: qc.pt); fine"]
    with pytest.raises(CheckpointError, match=r"^--thing a\.pt was saved with --organ Liver \(this run: kidney\); fix it$"):
        check_fit(saved, "a.pt", use, {"organ": "kidney"})
    assert check_fit(None, "a.pt", use, run) == []  # nothing recorded: nothing to compare


def test_every_torch_load_of_the_project_is_the_weights_only_one():
    """One loading path (``load_checkpoint``): every other file loads through it, so every tool refuses
    an unsafe pickle with its message. Scans the sources, so a new ``torch.load`` anywhere fails here."""
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    sources = [p for folder in ("labelfree", "tumor_synthesis", "scripts", "benchmarks", "docs")
               for p in (repo / folder).rglob("*.py")] + list(repo.glob("*.py"))
    calls = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                weights_only = [k.value for k in node.keywords if k.arg == "weights_only"]
                calls.append((path.relative_to(repo).as_posix(),
                              isinstance(weights_only[0], ast.Constant) and weights_only[0].value is True
                              if weights_only else False))
    assert calls == [("labelfree/io/checkpoint.py", True)]
