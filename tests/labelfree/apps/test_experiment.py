"""labelfree.apps.experiment (scripts/experiment.py): the arms' datalists and commands."""

from __future__ import annotations

import json
import math

import pytest

from labelfree.apps import experiment


def _fake_root(tmp_path, n_healthy=3, n_tumor=5):
    root = tmp_path / "exp_root"
    (root / "datafolds").mkdir(parents=True)
    healthy = [{"image": f"h/img{i}.nii.gz", "label": f"h/lab{i}.nii.gz"} for i in range(n_healthy)]
    tumors = [{"image": f"t/liver_{i}.nii.gz", "label": f"t/lab_{i}.nii.gz"} for i in range(n_tumor)]
    (root / "datafolds" / "healthy.json").write_text(json.dumps({"training": healthy, "validation": tumors}))
    (root / "datafolds" / "lits.json").write_text(json.dumps({"training": tumors, "validation": tumors}))
    return root, healthy, tumors


def test_experiment_datalists_share_one_held_out_set_disjoint_from_training(tmp_path):
    root, healthy, tumors = _fake_root(tmp_path)
    args = experiment.get_args_parser().parse_args(["--data_root", str(root), "--n_real_train", "2"])
    paths = experiment.build_datalists(args, tmp_path / "lists")
    lists = {arm: json.loads(p.read_text()) for arm, p in paths.items()}
    assert set(lists) == set(experiment.ARMS)
    held_out = tumors[2:]
    for arm, datalist in lists.items():
        assert datalist["validation"] == held_out, arm
        assert not any(item in held_out for item in datalist["training"]), arm
    assert lists["real"]["training"] == tumors[:2]
    assert lists["synthetic"]["training"] == healthy
    assert lists["mixed"]["training"] == healthy + tumors[:2]
    assert lists["synthetic_no_rim"]["training"] == healthy
    for arm in ("growth", "handcrafted_qc", "gan", "gan_qc"):
        assert lists[arm]["training"] == healthy, arm


def test_experiment_arms_get_the_same_number_of_steps(tmp_path):
    args = experiment.get_args_parser().parse_args(["--steps", "600", "--batch_size", "2"])
    plans = {}
    for arm, n_train in (("real", 4), ("synthetic", 8), ("mixed", 12), ("synthetic_no_rim", 8), ("growth", 8),
                         ("handcrafted_qc", 8), ("gan", 8), ("gan_qc", 8)):
        command = experiment.train_command(args, arm, tmp_path / f"{arm}.json", n_train, tmp_path / arm)
        flags = dict(c.split("=", 1) for c in command if c.startswith("--") and "=" in c)
        epochs = int(flags["--max_epochs"])
        plans[arm] = (epochs * math.ceil(n_train / 2), "--syn" in command, flags["--val_every"] == str(epochs),
                      flags.get("--syn_rim_mm"))
        if arm == "growth":
            assert command[command.index("--synthesis") + 1] == "growth"
        # the QC and generator arms use the real arm's final model and the generator syn_train.py writes
        segmentor = str(experiment.segmentor_path(args))
        qc = command[command.index("--syn_qc") + 1] if "--syn_qc" in command else None
        assert (qc == segmentor) == (arm in ("handcrafted_qc", "gan_qc")), arm
        if arm in ("gan", "gan_qc"):
            assert command[command.index("--synthesis") + 1] == "gan"
            assert command[command.index("--syn_generator") + 1] == str(experiment.generator_path(args))
        else:
            assert "--syn_generator" not in command
    assert plans == {"real": (600, False, True, None), "synthetic": (600, True, True, "3.0"),
                     "mixed": (600, True, True, "3.0"), "synthetic_no_rim": (600, True, True, "0.0"),
                     "growth": (600, True, True, None), "handcrafted_qc": (600, True, True, "3.0"),
                     "gan": (600, True, True, "3.0"), "gan_qc": (600, True, True, "3.0")}
    generator = experiment.generator_command(args, {"real": tmp_path / "real.json",
                                                        "synthetic": tmp_path / "synthetic.json"})
    assert generator[1] == "syn_train.py" and generator[generator.index("--segmentor") + 1] == segmentor
    assert generator[generator.index("--json_dir") + 1] == str(tmp_path / "real.json")  # never the held-out cases


def test_experiment_rejects_a_split_without_held_out_cases(tmp_path):
    root, _, _ = _fake_root(tmp_path, n_tumor=3)
    args = experiment.get_args_parser().parse_args(["--data_root", str(root), "--n_real_train", "3"])
    with pytest.raises(SystemExit, match="must leave held-out cases"):
        experiment.build_datalists(args, tmp_path / "lists")


def test_realistic_arms_repeat_their_original_arm_with_the_realistic_preset(tmp_path):
    args = experiment.get_args_parser().parse_args(["--steps", "400", "--batch_size", "2"])
    for arm in experiment.REALISTIC_ARMS:
        original = arm.removesuffix("_realistic")
        assert original in experiment.ARMS and arm in experiment.SYN_ARMS
        command = experiment.train_command(args, arm, tmp_path / "healthy.json", 8, tmp_path / arm)
        base = experiment.train_command(args, original, tmp_path / "healthy.json", 8, tmp_path / arm)
        assert command == base + ["--syn_preset", "realistic"]  # same budget, data, held-out cases and flags
    root, healthy, _ = _fake_root(tmp_path)
    args = experiment.get_args_parser().parse_args(["--data_root", str(root), "--n_real_train", "2"])
    lists = {arm: json.loads(p.read_text()) for arm, p in experiment.build_datalists(args, tmp_path / "l").items()}
    assert all(lists[arm] == {**lists[arm.removesuffix("_realistic")], "description": lists[arm]["description"]}
               for arm in experiment.REALISTIC_ARMS)
