"""labelfree.training.quality_control: FreeTumor's keep-or-revert rule, the healthy crop, and main.py --syn_qc."""

from __future__ import annotations

import pytest
import torch

from labelfree.cli import train as train_cli
from labelfree.io.checkpoint import load_checkpoint, save_checkpoint
from labelfree.training.quality_control import SyntheticTumorQC
from labelfree.data.wrappers import HEALTHY_IMAGE_KEY, HEALTHY_LABEL_KEY
from labelfree.config.settings import RunSettings
from labelfree.data.transforms import get_transforms

from labelfree.training.events import read_scalars
from tests.helpers.training import SMALL, data_flags, make_root


class ConstantNet(torch.nn.Module):
    """Predicts class ``c`` everywhere (a real module with a parameter, as a frozen segmentor would be)."""

    def __init__(self, c: int, num_classes: int = 3):
        super().__init__()
        self.c, self.num_classes = c, num_classes
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], self.num_classes, *x.shape[2:])
        logits[:, self.c] = self.scale * 10
        return logits


def _batch():
    """4 crops: synthetic tumor / synthetic tumor / real tumor + synthetic / nothing painted."""
    healthy_label = torch.zeros(4, 1, 8, 8, 8, dtype=torch.uint8)
    healthy_label[:, :, 1:7, 1:7, 1:7] = 1
    healthy_label[2, :, 5:7, 5:7, 5:7] = 2  # a real tumor: never checked
    healthy_image = torch.rand(4, 1, 8, 8, 8)
    label, image = healthy_label.clone(), healthy_image.clone()
    label[:3, :, 2:4, 2:4, 2:4] = 2
    image[:3, :, 2:4, 2:4, 2:4] -= 0.3
    return image, label, healthy_image, healthy_label


def test_a_segmentor_that_sees_tumor_everywhere_keeps_every_synthetic_crop():
    image, label, healthy_image, healthy_label = _batch()
    out_image, out_label, stats = SyntheticTumorQC(ConstantNet(2), [2])(image, label, healthy_image, healthy_label)
    assert (stats.checked, stats.accepted) == (2, 2)
    assert torch.equal(out_image, image) and torch.equal(out_label, label)


def test_a_segmentor_that_sees_no_tumor_reverts_every_synthetic_crop_to_its_healthy_original():
    image, label, healthy_image, healthy_label = _batch()
    out_image, out_label, stats = SyntheticTumorQC(ConstantNet(1), [2])(image, label, healthy_image, healthy_label)
    assert (stats.checked, stats.accepted) == (2, 0) and stats.acceptance_rate == 0.0
    for i in (0, 1):  # reverted: exactly the healthy crop
        assert torch.equal(out_image[i], healthy_image[i]) and torch.equal(out_label[i], healthy_label[i])
    for i in (2, 3):  # a real tumor crop and an unpainted crop are left alone
        assert torch.equal(out_image[i], image[i]) and torch.equal(out_label[i], label[i])
    assert (label[0] == 2).any() and not torch.equal(image[0], healthy_image[0])  # inputs not modified in place


class HalfNet(torch.nn.Module):
    """Predicts tumor on the first ``k`` of the 8 voxels of the synthetic 2x2x2 tumor, background elsewhere."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 3, *x.shape[2:])
        logits[:, 0] = 1
        tumor = torch.zeros(8, dtype=torch.bool)
        tumor[: self.k] = True
        logits[:, 2, 2:4, 2:4, 2:4] = tumor.reshape(2, 2, 2) * 10.0
        return logits


@pytest.mark.parametrize("k, kept", [(6, 2), (5, 0)])
def test_the_ratio_must_exceed_the_threshold(k, kept):
    """r = 6/8 = 0.75 > 0.7 keeps; r = 5/8 = 0.625 reverts."""
    image, label, healthy_image, healthy_label = _batch()
    _, _, stats = SyntheticTumorQC(HalfNet(k), [2], threshold=0.7)(image, label, healthy_image, healthy_label)
    assert (stats.checked, stats.accepted) == (2, kept)


def test_the_pipeline_carries_the_healthy_crop_beside_the_synthetic_one(tmp_path):
    make_root(tmp_path, n_train=1, n_val=0)
    case = {"image": str(tmp_path / "img/train0.nii.gz"), "label": str(tmp_path / "label/train0.nii.gz")}
    pipeline = get_transforms("train", a_min=-21, a_max=189, space=(3.0, 3.0, 3.0), roi_size=(24, 24, 24), syn=True,
                              syn_prob=1.0, keep_healthy=True)
    pipeline.set_random_state(seed=1)
    painted = 0
    for _ in range(6):
        out = pipeline(dict(case))[0]
        image, label = out["image"], out["label"]
        healthy_image, healthy_label = out[HEALTHY_IMAGE_KEY], out[HEALTHY_LABEL_KEY]
        assert image.shape == healthy_image.shape == label.shape == healthy_label.shape == (1, 24, 24, 24)
        assert set(torch.unique(healthy_label).tolist()) <= {0, 1}
        outside = healthy_label == 0  # only organ voxels change: same crop, same augmentation
        assert torch.equal(image[outside], healthy_image[outside]) and torch.equal(label[outside], healthy_label[outside])
        painted += int((label == 2).any())
    assert painted >= 3


def _qc_checkpoint(path, settings: RunSettings, c: int):
    """A main.py-style checkpoint of a UNet whose output bias makes it predict class ``c`` everywhere."""
    torch.manual_seed(0)
    model = settings.build_model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.zero_()
        last_bias = [p for n, p in model.named_parameters() if n.endswith("bias")][-1]
        last_bias[c] = 10.0
    save_checkpoint(path, state_dict=model.state_dict(), settings=settings.to_dict(), epoch=0)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("c, expected_rate", [(2, 1.0), (1, 0.0)])
def test_main_trains_with_quality_control_and_logs_the_acceptance_rate(tmp_path, c, expected_rate, capsys):
    root = tmp_path / "root"
    make_root(root, n_train=2, n_val=1)
    settings = RunSettings.create("liver", spacing=(3.0, 3.0, 3.0), roi=(32, 32, 32))
    ckpt = _qc_checkpoint(tmp_path / "qc.pt", settings, c)
    logdir = tmp_path / "run"
    train_cli.main([*data_flags(root), *SMALL, "--syn", "--syn_qc", str(ckpt), "--max_epochs", "1", "--batch_size",
                    "2", "--logdir", str(logdir), "--save_checkpoint", "--device", "cpu"])
    scalars = read_scalars(logdir)
    checked = scalars["qc/checked_crops"][0][1]
    assert checked >= 1
    assert scalars["qc/acceptance_rate"][0][1] == expected_rate
    assert "qc kept" in capsys.readouterr().out
    saved = load_checkpoint(logdir / "model_final.pt")["args"]
    assert saved["syn_qc"] == str(ckpt) and saved["syn_qc_threshold"] == 0.7


@pytest.mark.parametrize("flags, message", [
    (["--syn_qc", "{qc}"], "--syn_qc / --syn_qc_threshold check synthetic tumors: they need --syn"),
    (["--syn", "--syn_qc", "{missing}"], "--syn_qc file not found"),
    (["--syn", "--syn_qc", "{other}"], "lung.pt was saved with --organ lung (this run: liver), --a_min -1000.0 "
                                      "(this run: -21.0), --a_max 500.0 (this run: 189.0); the segmentor must be"),
    (["--syn", "--syn_qc", "{qc}", "--syn_qc_threshold", "1.5"], "--syn_qc_threshold must be in [0, 1)"),
])
def test_quality_control_flags_are_checked_before_any_work(tmp_path, capsys, flags, message):
    root = tmp_path / "root"
    make_root(root, n_train=1, n_val=0)
    liver = RunSettings.create("liver", spacing=(3.0, 3.0, 3.0), roi=(32, 32, 32))
    paths = {"qc": _qc_checkpoint(tmp_path / "qc.pt", liver, 2), "missing": tmp_path / "nope.pt",
             "other": _qc_checkpoint(tmp_path / "lung.pt", RunSettings.create("lung", spacing=(3.0, 3.0, 3.0)), 2)}
    with pytest.raises(SystemExit) as e:
        train_cli.main([*data_flags(root), *SMALL, "--logdir", str(tmp_path / "run"),
                        *[f.format(**paths) for f in flags]])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
