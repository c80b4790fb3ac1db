"""main.py's synthesis-model flags (``--synthesis``, ``--syn_grid_mm``): checks and the transform they build."""

import numpy as np
import pytest
import torch

from labelfree.cli import train as train_cli
from labelfree.runtime.distributed import DistContext
from tests.helpers.training import SMALL, data_flags, make_root
from tumor_synthesis import TumorGenerated


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    make_root(root, n_train=2, n_val=1)
    return root


@pytest.mark.parametrize("flags, message", [
    (["--synthesis", "growth"], "--synthesis growth chooses how synthetic tumors are made: it needs --syn"),
    (["--syn", "--syn_grid_mm", "1"], "--syn_grid_mm is the growth model's simulation grid"),
    (["--syn", "--synthesis", "growth", "--syn_grid_mm", "0"], "--syn_grid_mm must be a positive spacing"),
    (["--syn", "--synthesis", "growth", "--syn_rim_mm", "3"], "--syn_rim_mm shapes the ellipsoid model"),
    (["--syn", "--synthesis", "growth", "--organ", "lung"], "the growth model has no rules for organ 'lung'"),
    (["--syn_device", "cuda"], "--syn_device cuda moves synthesis to the GPU: it needs --syn"),
    (["--syn", "--syn_device", "cuda", "--device", "cpu"], "--syn_device cuda needs a CUDA training device"),
    (["--syn_preset", "realistic"], "--syn_preset realistic chooses how synthetic tumors look: it needs --syn"),
    (["--syn", "--syn_preset", "realistic", "--organ", "pancreas"], "organ 'pancreas' has no 'realistic'"),
])
def test_inconsistent_synthesis_flags_are_refused(data_root, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main([*data_flags(data_root), *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def _loader(data_root, argv):
    args = train_cli.get_args_parser().parse_args([*data_flags(data_root), "--syn", *SMALL, *argv])
    settings = train_cli.complete_args(args, torch.device("cpu"))
    loader, _ = train_cli.build_loaders(args, settings, train_cli.load_datalists(args), DistContext())
    synthesis = next(getattr(t, "transform", t) for t in loader.dataset.transform.transforms
                         if isinstance(getattr(t, "transform", t), TumorGenerated))  # inside the timing wrapper
    return args, loader, synthesis


def test_growth_flags_reach_the_transform_and_a_batch_is_drawn(data_root):
    _, _, default = _loader(data_root, [])
    assert default.synthesis == "ellipsoid"  # the original stays the default
    args, loader, growth = _loader(data_root, ["--synthesis", "growth", "--syn_grid_mm", "3"])
    assert growth.synthesis == "growth" and growth.growth_grid_mm == 3.0
    assert vars(args)["synthesis"] == "growth"  # saved in the checkpoint's args with the rest
    growth.prob = 1.0
    torch.manual_seed(0)
    batch = next(iter(loader))
    labels = np.unique(batch["label"].numpy())
    assert set(labels.tolist()) <= {0.0, 1.0, 2.0} and batch["image"].shape[-3:] == (32, 32, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_growth_synthesis_on_the_gpu_in_the_training_step(data_root, tmp_path):
    """main.py --syn --synthesis growth --syn_device cuda: samples are painted and augmented on the GPU."""
    args, loader, growth = _loader(data_root, ["--synthesis", "growth", "--syn_device", "cuda", "--device", "cuda"])
    assert growth.device.type == "cuda" and not loader.pin_memory
    batch = next(iter(loader))
    assert batch["image"].device.type == "cuda" and batch["label"].device.type == "cuda"
    with pytest.raises(ValueError, match="needs --workers 0"):
        train_cli.complete_args(train_cli.get_args_parser().parse_args(
            [*data_flags(data_root), "--syn", "--syn_device", "cuda", "--device", "cuda", *SMALL, "--workers", "2"]),
            torch.device("cuda"))
    logdir = tmp_path / "run"
    train_cli.main([*data_flags(data_root), "--syn", "--synthesis", "growth", "--syn_device", "cuda",
                    "--device", "cuda", *SMALL, "--max_epochs", "1", "--val_every", "1", "--logdir", str(logdir),
                    "--save_checkpoint"])
    assert (logdir / "model_final.pt").is_file()



def test_the_preset_flag_reaches_the_transform(data_root):
    _, _, default = _loader(data_root, [])
    assert default.preset == "original"
    args, _, realistic = _loader(data_root, ["--syn_preset", "realistic"])
    assert realistic.preset == "realistic" and realistic.profile.label_visible_edge == 0.5
    assert vars(args)["syn_preset"] == "realistic"
