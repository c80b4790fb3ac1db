"""main.py: the original command line, clear errors before training, end-to-end runs (syn, resume, torchrun).

Runs use tiny volumes (48 x 48 x 32 voxels at 2.5-3 mm, patches of 32^3) with the default
network; the killed-job test and torchrun run as real subprocesses.
"""

import json
import shlex
import signal

import pytest
import torch

from labelfree.cli import train as train_cli
from labelfree.io.checkpoint import load_checkpoint
from labelfree.training.events import read_scalars
from tests.helpers.training import SMALL, data_flags, free_port, make_root, run_cli

ORIGINAL_COMMAND = (
    "python -W ignore main.py --optim_lr=4e-4 --batch_size=2 --lrschedule=warmup_cosine --optim_name=adamw "
    "--model_name=unet --val_every=200 --max_epochs=4000 --save_checkpoint --workers=2 --noamp --distributed "
    "--dist-url=tcp://127.0.0.1:{port} --cache_num=200 --val_overlap=0.5 --syn "
    '--logdir="{logdir}" --train_dir {train} --val_dir {val} --json_dir {json}'
)
CHECKPOINT_KEYS = {"epoch", "best_acc", "global_step", "state_dict", "optimizer", "scheduler", "scaler", "args",
                   "settings"}


# ---------------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    make_root(root)
    return root


# ---------------------------------------------------------------------------------------- parser
def test_parser_accepts_the_original_training_command():
    command = ORIGINAL_COMMAND.format(port=23456, logdir="runs/synt.no_pretrain.unet0", train="/data/train",
                                      val="/data/val", json="datafolds/fold_0.json")
    argv = shlex.split(command)[4:]  # drop "python -W ignore main.py"
    args = train_cli.get_args_parser().parse_args(argv)
    assert (args.optim_lr, args.batch_size, args.lrschedule, args.optim_name) == (4e-4, 2, "warmup_cosine", "adamw")
    assert (args.model_name, args.val_every, args.max_epochs, args.workers) == ("unet", 200, 4000, 2)
    assert args.save_checkpoint and args.noamp and args.distributed and args.syn
    assert (args.dist_url, args.cache_num, args.val_overlap) == ("tcp://127.0.0.1:23456", 200, 0.5)
    assert (args.logdir, args.train_dir, args.val_dir) == ("runs/synt.no_pretrain.unet0", "/data/train", "/data/val")
    assert args.json_dir == "datafolds/fold_0.json"


def test_parser_accepts_every_original_flag():
    argv = [
        "--logdir", "runs/x", "--save_checkpoint", "--val_every", "5", "--max_epochs", "10", "--batch_size", "2",
        "--optim_lr", "1e-3", "--optim_name", "sgd", "--reg_weight", "0", "--lrschedule", "cosine_anneal",
        "--warmup_epochs", "3", "--model_name", "swin_unetrv2", "--swin_type", "base", "--use_pretrained",
        "--checkpoint", "a.pt", "--resume_ckpt", "--pretrained_dir", "b.pt", "--roi_x", "64", "--roi_y", "64",
        "--roi_z", "32", "--in_channels", "1", "--out_channels", "3", "--num_classes", "3", "--workers", "1",
        "--noamp", "--distributed", "--dist-url", "tcp://h:1", "--dist-backend", "gloo", "--world_size", "2",
        "--rank", "1", "--cache_num", "8", "--val_overlap", "0.75", "--syn", "--train_dir", "t", "--val_dir", "v",
        "--json_dir", "j.json",
        # additions
        "--seed", "3", "--device", "cpu", "--organ", "liver", "--a_min", "-100", "--a_max", "200", "--space_x", "2",
        "--space_y", "2", "--space_z", "2.5", "--resume", "c.pt", "--cache_rate", "0.5", "--amp",
        "--sw_batch_size", "4", "--max_steps_per_epoch", "2", "--pretrained_swinvit", "w.pt", "--log_case_indices",
    ]
    args = train_cli.get_args_parser().parse_args(argv)
    assert (args.optim_name, args.swin_type, args.roi_z, args.dist_backend, args.world_size, args.rank) == (
        "sgd", "base", 32, "gloo", 2, 1)
    assert (args.resume, args.space_z, args.sw_batch_size, args.a_min) == ("c.pt", 2.5, 4, -100.0)


def test_parser_defaults_are_the_originals():
    args = train_cli.get_args_parser().parse_args([])
    assert (args.max_epochs, args.batch_size, args.optim_lr, args.optim_name, args.reg_weight) == (
        5000, 1, 1e-4, "adamw", 1e-5)
    assert (args.lrschedule, args.warmup_epochs, args.val_every, args.val_overlap, args.workers) == (
        "warmup_cosine", 100, 1, 0.5, 4)
    assert (args.model_name, args.swin_type, args.cache_num, args.in_channels, args.out_channels) == (
        "unet", "tiny", 500, 1, 3)
    assert (args.roi_x, args.roi_y, args.roi_z, args.space_x, args.dist_backend) == (96, 96, 96, 1.0, "nccl")
    assert args.dist_url == "tcp://127.0.0.1:23456" and args.logdir is None and not args.syn


def test_resume_without_path_means_logdir_final_checkpoint():
    args = train_cli.get_args_parser().parse_args(["--resume", "--logdir", "runs/x"])
    assert args.resume == "auto"


def test_help_documents_amp_precedence(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--noamp wins over it" in text and "CPU always runs in fp32" in text


# ---------------------------------------------------------------------------------------- errors
def test_missing_files_are_listed_before_training(tmp_path, data_root, capsys):
    datalist = json.loads((data_root / "datalist.json").read_text())
    datalist["training"].append({"image": "img/absent1.nii.gz", "label": "label/absent1.nii.gz"})
    datalist["validation"].append({"image": "img/val0.nii.gz", "label": "label/absent2.nii.gz"})
    (tmp_path / "broken.json").write_text(json.dumps(datalist))
    logdir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["--json_dir", str(tmp_path / "broken.json"), "--train_dir", str(data_root), "--val_dir",
                        str(data_root), "--logdir", str(logdir), "--save_checkpoint", *SMALL])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for name in ("img/absent1.nii.gz", "label/absent1.nii.gz", "label/absent2.nii.gz"):
        assert str(data_root / name) in err
    assert "Traceback" not in err and not logdir.exists()  # nothing started


def test_missing_datalist_json(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_cli.main(["--json_dir", str(tmp_path / "nope.json"), "--train_dir", str(tmp_path)])
    assert f"datalist not found: {tmp_path / 'nope.json'}" in capsys.readouterr().err


def test_corrupt_checkpoint_is_reported_and_left_alone(tmp_path, data_root, capsys):
    logdir = tmp_path / "run"
    logdir.mkdir()
    final = logdir / "model_final.pt"
    final.write_bytes(b"\x80\x02 truncated garbage")
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main([*data_flags(data_root), "--logdir", str(logdir), "--save_checkpoint", "--resume",
                        "--max_epochs", "1", *SMALL])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"checkpoint {final} cannot be read" in err and "Traceback" not in err
    assert final.read_bytes() == b"\x80\x02 truncated garbage"


def test_mismatched_out_channels_is_rejected(data_root, capsys):
    with pytest.raises(SystemExit):
        train_cli.main([*data_flags(data_root), "--out_channels", "4"])
    assert "--out_channels (4) and --num_classes (3) must agree" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--syn_rim_mm", "3"], "--syn_rim_mm shapes synthetic tumors: it needs --syn"),
    (["--syn", "--syn_rim_mm", "-1"], "--syn_rim_mm must be a thickness >= 0 mm, got -1.0"),
])
def test_syn_rim_needs_syn_and_a_thickness(data_root, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main([*data_flags(data_root), *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_syn_rim_reaches_the_synthesis_transform(data_root):
    from tumor_synthesis import TumorGenerated
    from labelfree.runtime.distributed import DistContext

    def synthesis(argv):
        args = train_cli.get_args_parser().parse_args([*data_flags(data_root), "--syn", "--workers", "0", *SMALL,
                                                       *argv])
        settings = train_cli.complete_args(args, torch.device("cpu"))
        loader, _ = train_cli.build_loaders(args, settings, train_cli.load_datalists(args), DistContext())
        return next(getattr(t, "transform", t) for t in loader.dataset.transform.transforms
                         if isinstance(getattr(t, "transform", t), TumorGenerated))  # inside the timing wrapper

    assert synthesis([]).profile.surface_rim_mm == 0.0  # the original's clipping by default
    assert synthesis(["--syn_rim_mm", "3"]).profile.surface_rim_mm == 3.0
    assert synthesis([]).label_visible_edge is None  # the original's label by default
    assert synthesis(["--syn_label_edge", "0.2"]).label_visible_edge == 0.2


@pytest.mark.parametrize("flags", [["--syn_label_edge", "0.2"], ["--syn", "--syn_label_edge", "1.5"]])
def test_syn_label_edge_needs_syn_and_a_fraction(data_root, capsys, flags):
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main([*data_flags(data_root), *flags])
    assert exit_info.value.code == 2 and "--syn_label_edge needs --syn and a fraction in (0, 1)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def small_phantom_root(tmp_path_factory):
    """A phantom data root in the original layout (2 healthy abdomens, 1 tumor case) at 3 mm.

    Smaller than conftest's shared ``phantom_root``, so the original command (96^3 patches)
    stays quick.
    """
    from labelfree.phantom import make_phantom_dataset

    root = tmp_path_factory.mktemp("phantom")
    make_phantom_dataset(root, n_healthy=2, n_tumor=1, n_chest_healthy=0, n_chest_nodule=0, seed=0,
                         spacing=(3.0, 3.0, 3.0), previews=False, progress=False, overwrite=True)
    return root


@pytest.mark.slow
def test_original_syn_command_on_a_phantom_root(tmp_path, small_phantom_root, capsys):
    phantom_root = small_phantom_root
    logdir = tmp_path / "runs" / "synt.no_pretrain.unet0"
    command = ORIGINAL_COMMAND.format(port=free_port(), logdir=logdir, train=phantom_root, val=phantom_root,
                                      json=phantom_root / "datafolds" / "healthy.json")
    # Only the length of the run and the resampling (the phantom is stored at 3 mm) change.
    argv = shlex.split(command)[4:] + ["--max_epochs", "1", "--space_x", "3", "--space_y", "3", "--space_z", "3"]
    train_cli.main(argv)

    # Where the time went: data wait vs compute, throughput, synthesis and peak memory, printed and logged.
    epoch_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 0: train_loss"))
    for part in ("data ", "s/step (", "compute ", "samples/s", "synthesis ", "ms/sample in the loader", "peak rss"):
        assert part in epoch_line
    scalars = read_scalars(logdir)
    assert {"train_loss", "lr", "val_loss", "val_mean_dice", "val_liver_dice", "val_tumor_dice"} <= set(scalars)
    timing = {tag: values[0][1] for tag, values in scalars.items() if tag.startswith(("time/", "memory/"))}
    assert set(timing) == {"time/data_wait_s_per_step", "time/compute_s_per_step", "time/data_wait_fraction",
                           "time/samples_per_s", "time/synthesis_s_per_sample", "memory/peak_rss_gib"}
    assert 0.0 <= timing["time/data_wait_fraction"] <= 1.0 and timing["time/compute_s_per_step"] > 0
    assert timing["time/synthesis_s_per_sample"] > 0 and timing["memory/peak_rss_gib"] > 0.1
    assert [step for step, _ in scalars["train_loss"]] == [0]
    assert scalars["lr"][0][1] == 0.0  # warmup_cosine starts at 0, as the original
    mean = scalars["val_mean_dice"][0][1]
    assert mean == pytest.approx((scalars["val_liver_dice"][0][1] + scalars["val_tumor_dice"][0][1]) / 2, abs=1e-6)
    for name in ("model.pt", "model_final.pt"):
        state = torch.load(logdir / name, map_location="cpu", weights_only=True)
        assert set(state) == CHECKPOINT_KEYS
        assert state["epoch"] == 0 and state["best_acc"] == pytest.approx(mean, abs=1e-6)
        assert state["args"]["syn"] is True and state["args"]["json_dir"].endswith("healthy.json")
        assert not any(k.startswith("module.") for k in state["state_dict"])  # unwrapped from DDP
        assert state["scheduler"]["last_epoch"] == 1 and state["scaler"] == {}
        assert state["settings"]["organ"] == "liver" and state["settings"]["spacing"] == [3.0, 3.0, 3.0]
        assert state["settings"]["model"] == {"name": "unet", "swin_type": "tiny", "feature_size": None}


@pytest.mark.slow
def test_checkpoint_flag_loads_prefixed_weights(tmp_path, data_root):
    from labelfree.networks import build_model

    torch.manual_seed(123)
    source = build_model("unet", roi_size=(32, 32, 32))
    prefixed = {"backbone." + k: v for k, v in source.state_dict().items()}
    torch.save({"state_dict": prefixed, "epoch": 50}, tmp_path / "pretrained.pt")
    logdir = tmp_path / "run"
    train_cli.main([*data_flags(data_root), "--logdir", str(logdir), "--save_checkpoint", "--max_epochs", "1",
                    "--checkpoint", str(tmp_path / "pretrained.pt"), "--optim_lr", "0", "--lrschedule", "none",
                    "--max_steps_per_epoch", "1", *SMALL])
    saved = load_checkpoint(logdir / "model_final.pt")
    assert saved["epoch"] == 0  # weights only: the epoch count starts afresh
    for key, value in source.state_dict().items():  # lr 0: the loaded weights are unchanged
        torch.testing.assert_close(saved["state_dict"][key], value)


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_state(tmp_path, data_root):
    common = [*data_flags(data_root), "--save_checkpoint", "--max_epochs", "2", "--batch_size", "2", *SMALL,
              "--warmup_epochs", "2", "--val_every", "2", "--max_steps_per_epoch", "1"]
    killed = run_cli(["main.py", *common, "--logdir", str(tmp_path / "resumed")],
                     # the same thread count as the in-process runs below: float sums depend on it
                     env_extra={"TUMORSEG_KILL_AFTER_EPOCHS": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert load_checkpoint(tmp_path / "resumed" / "model_final.pt")["epoch"] == 0

    train_cli.main([*common, "--logdir", str(tmp_path / "resumed"), "--resume"])
    train_cli.main([*common, "--logdir", str(tmp_path / "straight")])

    resumed = load_checkpoint(tmp_path / "resumed" / "model_final.pt")
    straight = load_checkpoint(tmp_path / "straight" / "model_final.pt")
    assert resumed["epoch"] == straight["epoch"] == 1
    assert resumed["global_step"] == straight["global_step"] == 2  # 2 epochs x 1 step
    assert resumed["scheduler"] == straight["scheduler"]  # same LR position (last_epoch, last lr)
    for state in (resumed, straight):
        assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {2.0}
    assert resumed["optimizer"]["param_groups"] == straight["optimizer"]["param_groups"]
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=1e-5, atol=1e-6)
    # The killed run logged epoch 0 and the resumed one epoch 1, into the same logdir: together
    # the train_loss curve of the uninterrupted run.
    losses = {}
    for run in ("resumed", "straight"):
        for step, value in read_scalars(tmp_path / run)["train_loss"]:
            losses.setdefault(run, {})[step] = value
    assert sorted(losses["resumed"]) == [0, 1]
    assert losses["resumed"] == pytest.approx(losses["straight"], rel=1e-5)


@pytest.mark.slow
def test_torchrun_two_ranks_train_on_different_cases(tmp_path):
    root = tmp_path / "root"
    make_root(root, n_train=4, n_val=3)
    logdir = tmp_path / "run"
    result = run_cli(
        ["-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}", "main.py",
         *data_flags(root), "--logdir", str(logdir), "--save_checkpoint", "--max_epochs", "2", "--batch_size", "1",
         "--log_case_indices", *SMALL],
        env_extra={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (logdir / "case_indices.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [0, 1]
    for entry in log:
        rank0, rank1 = entry["cases_by_rank"]
        assert len(rank0) == len(rank1) == 2 and not set(rank0) & set(rank1)
        assert sorted(rank0 + rank1) == [0, 1, 2, 3]
    assert log[0]["cases_by_rank"] != log[1]["cases_by_rank"]  # reshuffled per epoch
    assert result.stdout.count("training done") == 1  # only rank 0 prints

    # Validation over 2 ranks (3 cases: an uneven split) equals single-process validation.
    final = load_checkpoint(logdir / "model_final.pt")
    assert not any(k.startswith("module.") for k in final["state_dict"])  # unwrapped from DDP
    logged = {tag: values[-1][1] for tag, values in read_scalars(logdir).items()}
    recomputed = validate_single_process(root, final["state_dict"])
    for tag in ("val_mean_dice", "val_liver_dice", "val_tumor_dice", "val_loss"):
        assert logged[tag] == pytest.approx(recomputed[tag], abs=1e-4), tag


def validate_single_process(root, state_dict):
    from monai.losses import DiceCELoss

    from labelfree.inference.roi import DEFAULT_ROI_MODE, build_inferer

    from labelfree.networks import build_model
    from labelfree.training.trainer import Trainer, TrainerConfig
    from labelfree.data.loaders import build_val_loader, with_case_index
    from labelfree.data.datalist import load_datalist
    from labelfree.runtime.distributed import DistContext
    from labelfree.data.transforms import get_transforms

    ctx = DistContext()
    model = build_model("unet", roi_size=(32, 32, 32))
    model.load_state_dict(state_dict)
    items = with_case_index(load_datalist(root / "datalist.json", "validation", root))
    val_loader = build_val_loader(items, get_transforms("val", a_min=-21, a_max=189, space=(3, 3, 3)), 0, ctx)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0), None,
                      DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0, smooth_dr=1e-6),
                      None, val_loader, build_inferer((32, 32, 32), 0.5, 1, DEFAULT_ROI_MODE, (-21, 189), "cpu"), ctx,
                      TrainerConfig(max_epochs=1, val_every=1, class_tags=["val_liver_dice", "val_tumor_dice"]))
    return trainer.validate(epoch=0)


# ---------------------------------------------------------------------------------------- launch plans
def test_launch_plans(monkeypatch):
    from labelfree.runtime import distributed

    for var in distributed.TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    assert distributed.plan_launch(False, "cpu", 1, 0, "tcp://h:1").mode == "single"
    cpu = distributed.plan_launch(True, "cpu", 1, 0, "tcp://h:1")  # no GPU: one gloo process per node
    assert (cpu.mode, cpu.procs_per_node, cpu.world_size, cpu.init_method) == ("spawn", 1, 1, "tcp://h:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    gpus = distributed.plan_launch(True, "cuda", 2, 1, "tcp://h:1")  # the original: 4 GPUs x 2 nodes
    assert (gpus.procs_per_node, gpus.world_size, gpus.node_rank) == (4, 8, 1)

    calls = []
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: calls.append(kw))
    ctx = distributed.init_distributed(cpu, 0, torch.device("cpu"), backend="nccl")
    assert calls[-1]["backend"] == "gloo" and calls[-1]["init_method"] == "tcp://h:1"  # NCCL needs GPUs
    assert (ctx.rank, ctx.world_size, ctx.distributed) == (0, 1, True)

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    plan = distributed.plan_launch(False, "cpu", 1, 0, "tcp://h:1")
    assert plan.mode == "torchrun"  # torchrun wins, with or without --distributed
    ctx = distributed.init_distributed(plan, 1, torch.device("cpu"), backend="gloo")
    assert calls[-1]["init_method"] == "env://" and (ctx.rank, ctx.world_size, ctx.local_rank) == (3, 4, 1)
    assert not ctx.is_main


def test_class_tags_follow_the_organ_profile():
    from labelfree.config.settings import RunSettings

    assert RunSettings.create("liver").class_tags == ["val_liver_dice", "val_tumor_dice"]  # the original's tags
    assert RunSettings.create("liver", num_classes=4).class_tags == ["val_class1_dice", "val_class2_dice",
                                                                      "val_class3_dice"]


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_is_one_line_and_the_earlier_one_survives(tmp_path):
    from labelfree.io.checkpoint import save_checkpoint
    from tests.helpers.file_limits import run_with_file_size_limit

    make_root(tmp_path / "root", n_train=1, n_val=0, shape=(32, 32, 32))
    logdir = tmp_path / "run"
    earlier = {"epoch": 6, "best_acc": 0.5, "state_dict": {"w": torch.arange(5.0)}}
    final = save_checkpoint(logdir / "model_final.pt", **earlier)
    before = final.read_bytes()
    # The UNet's weights alone take ~19 MB: its checkpoint cannot be written under 8 MB.
    result = run_with_file_size_limit(
        ["main.py", *data_flags(tmp_path / "root"), "--logdir", str(logdir), "--save_checkpoint", "--max_epochs", "1",
         "--max_steps_per_epoch", "1", *SMALL, "--device", "cpu"], n_bytes=8 * 2**20)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert errors == [f"error: cannot write {final}: File too large; the earlier file is kept unchanged; epoch 0 is "
                      f"not saved (make room, then continue from {final} with the same command and --resume)"]
    assert final.read_bytes() == before
    loaded = torch.load(final, weights_only=True)
    assert loaded["epoch"] == 6 and torch.equal(loaded["state_dict"]["w"], earlier["state_dict"]["w"])
    assert not [p.name for p in logdir.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_logdir_that_cannot_be_created_is_refused_before_the_datalist_is_read(tmp_path, capsys):
    (tmp_path / "runs").write_text("a file")
    datalist = tmp_path / "list.json"  # its images do not exist: the folder is checked first
    datalist.write_text(json.dumps({"training": [{"image": "img/absent.nii.gz", "label": "label/absent.nii.gz"}]}))
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["--json_dir", str(datalist), "--train_dir", str(tmp_path), "--logdir",
                        str(tmp_path / "runs" / "x"), *SMALL])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: --logdir {tmp_path / 'runs' / 'x'}: cannot create folder: its parent "
                                       f"{tmp_path / 'runs'} is a file\n")
