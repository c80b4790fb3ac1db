"""labelfree.config.settings: settings resolved once, stored in checkpoints, rebuilt by evaluation."""

from __future__ import annotations


import pytest
import torch

from labelfree.cli import train as train_cli
from labelfree.cli import validate
from labelfree.io.checkpoint import load_checkpoint, save_checkpoint
from labelfree.config.settings import DEFAULTS, RunSettings, SettingsError


def _flags(**given):
    return {name: given.get(name) for name in validate.SETTING_FLAGS}


def test_one_default_per_flag_across_the_entry_points():
    train = train_cli.get_args_parser().parse_args(["--json_dir", "x.json"])
    assert (train.organ, train.model_name, train.swin_type) == (DEFAULTS["organ"], DEFAULTS["model"], DEFAULTS["swin_type"])
    assert (train.space_x, train.roi_z) == (DEFAULTS["space"], DEFAULTS["roi"])
    # validation.py without a checkpoint's settings falls back to the same defaults
    settings, sources, _ = RunSettings.for_evaluation(_flags(), checkpoint=None)
    assert settings.model.swin_type == DEFAULTS["swin_type"] == "tiny"
    assert settings.organ == "liver" and settings.window == (-21.0, 189.0) and settings.roi == (96, 96, 96)
    assert set(sources.values()) == {"default"}


def test_settings_round_trip_through_a_weights_only_checkpoint(tmp_path):
    settings = RunSettings.create("kidney", spacing=(1.5, 1.5, 2.0), roi=(64, 64, 32), model="swin_unetrv2",
                                  swin_type="small")
    path = save_checkpoint(tmp_path / "model.pt", state_dict={"w": torch.zeros(1)}, settings=settings.to_dict())
    assert RunSettings.from_checkpoint(load_checkpoint(path)) == settings
    assert settings.window == (-175.0, 250.0) and settings.class_names == ("background", "kidney", "tumor")
    assert settings.label_pairs == (("kidney", 1, "tumor", 2),)


def test_multi_organ_settings_carry_the_freetumor_label_table():
    settings = RunSettings.create("multi")
    assert settings.num_classes == 7
    assert settings.label_pairs == (("liver", 1, "liver_tumor", 2), ("pancreas", 3, "pancreas_tumor", 4),
                                    ("kidney", 5, "kidney_tumor", 6))


def test_main_resolves_the_settings_it_stores(tmp_path):
    args = train_cli.get_args_parser().parse_args(["--json_dir", "x.json", "--organ", "lung", "--roi_x", "64",
                                                   "--space_z", "2.5"])
    settings = train_cli.complete_args(args, torch.device("cpu"))
    assert settings.window == (-1000.0, 500.0) and (args.a_min, args.a_max) == settings.window
    assert settings.roi == (64, 96, 96) and settings.spacing == (1.0, 1.0, 2.5)
    assert settings.class_tags == ["val_lung_dice", "val_nodule_dice"]
    # an older checkpoint with only the command line rebuilds the same settings
    assert RunSettings.from_train_args(vars(args)) == settings


def test_evaluation_takes_the_checkpoint_and_notes_overrides():
    trained = RunSettings.create("pancreas", spacing=(2.0, 2.0, 2.0), roi=(64, 64, 64))
    checkpoint = {"settings": trained.to_dict()}
    settings, sources, notes = RunSettings.for_evaluation(_flags(), checkpoint)
    assert settings == trained and sources["organ"] == "checkpoint"
    assert notes == []
    settings, sources, notes = RunSettings.for_evaluation(_flags(space_x=1.0, a_min=-100.0), checkpoint, "run/model.pt")
    assert settings.spacing == (1.0, 2.0, 2.0) and settings.window == (-100.0, 250.0)
    assert sources["space_x"] == "flag" and sources["space_y"] == "checkpoint"
    # One note naming the file and each overriding flag, saved -> given (the pancreas window is -175..250 HU).
    assert notes == ["note: checkpoint run/model.pt was saved with --a_min -175.0 (this run: -100.0), "
                     "--space_x 2.0 (this run: 1.0); using the flag"]


@pytest.mark.parametrize("flag, value, stored", [("organ", "liver", "pancreas"), ("num_classes", 4, 3),
                                                 ("model", "swin_unetrv2", "unet")])
def test_evaluation_refuses_a_flag_that_contradicts_the_trained_network(flag, value, stored):
    checkpoint = {"settings": RunSettings.create("pancreas").to_dict()}
    with pytest.raises(SettingsError, match=f"^checkpoint model.pt was saved with --{flag} {stored} \\(this run: {value}\\); "
                                            "leave the flags out"):
        RunSettings.for_evaluation(_flags(**{flag: value}), checkpoint, "model.pt")


def test_a_swin_size_flag_is_harmless_for_a_unet_checkpoint():
    checkpoint = {"settings": RunSettings.create("liver").to_dict()}
    settings, _, _ = RunSettings.for_evaluation(_flags(swin_type="base"), checkpoint)
    assert settings.model.name == "unet"


def test_evaluation_of_an_old_checkpoint_with_args_only():
    args = {"model_name": "unet", "swin_type": "tiny", "out_channels": 3, "num_classes": 3, "organ": "lung",
            "a_min": None, "a_max": None, "space_x": 2.0, "space_y": 2.0, "space_z": 2.0,
            "roi_x": 32, "roi_y": 32, "roi_z": 32}
    settings, sources, _ = RunSettings.for_evaluation(_flags(), {"args": args})
    assert settings.organ == "lung" and settings.window == (-1000.0, 500.0) and settings.roi == (32, 32, 32)
    assert sources["roi_x"] == "checkpoint"


def test_invalid_settings_are_refused_with_the_flag_named():
    with pytest.raises(SettingsError, match="--a_min < --a_max"):
        RunSettings.create("liver", a_min=100.0, a_max=0.0)
    with pytest.raises(SettingsError, match="--organ spleen"):
        RunSettings.create("spleen")
    with pytest.raises(SettingsError, match="--space_x/y/z"):
        RunSettings.create("liver", spacing=(1.0, 0.0, 1.0))
