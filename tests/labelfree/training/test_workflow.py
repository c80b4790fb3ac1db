"""labelfree/training/workflow.py: one skeleton for every training run; resume under the one fit rule."""

import time

import pytest
import torch

from labelfree.data.loaders import build_train_loader
from labelfree.io.checkpoint import USES, CheckpointError, load_checkpoint
from labelfree.runtime.distributed import DistContext
from labelfree.training.events import read_scalars
from labelfree.training.trainer import Trainer, TrainerConfig
from labelfree.training.workflow import StepResult, Workflow

ARGS = {"model_name": "unet", "swin_type": "tiny", "num_classes": 3, "out_channels": 3, "organ": "liver",
        "roi_x": 4, "roi_y": 4, "roi_z": 4, "max_epochs": 2, "seed": 0, "optim_lr": 1e-2, "syn_qc": None}


def tiny_trainer(logdir, epochs=2, **args):
    torch.manual_seed(0)
    model = torch.nn.Conv3d(1, 3, 1)
    items = [{"image": torch.randn(1, 4, 4, 4), "label": torch.randint(0, 3, (1, 4, 4, 4)).float(), "case_index": i}
             for i in range(4)]
    config = TrainerConfig(max_epochs=epochs, val_every=1, class_tags=["val_liver_dice", "val_tumor_dice"],
                           logdir=logdir, save_checkpoint=True, args={**ARGS, **args})

    def loss_fn(logits, label):
        return torch.nn.functional.cross_entropy(logits, label[:, 0].long())

    return Trainer(model, torch.optim.SGD(model.parameters(), lr=1e-2), None, loss_fn,
                   build_train_loader(items, batch_size=2, workers=0, ctx=DistContext()),
                   torch.utils.data.DataLoader(items[:2], batch_size=1), lambda x, m: m(x), DistContext(), config)


def test_resume_notes_a_changed_flag_in_the_one_format(tmp_path, capsys):
    tiny_trainer(tmp_path, epochs=1).run_training()
    path = tmp_path / "model_final.pt"
    resumed = tiny_trainer(tmp_path, max_epochs=2, optim_lr=0.5, syn_qc="qc.pt")
    resumed.resume(path, USES["resume"], resumed.config.args)
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if line.startswith("note:"))
    assert note == (f"note: --resume checkpoint {path} was saved with --optim_lr 0.01 (this run: 0.5), "
                    "--syn_qc None (this run: qc.pt); the optimizer and learning-rate schedule state, including base "
                    "LR and schedule length, come from the checkpoint")
    assert f"resumed from {path}: continuing at epoch 1" in out
    assert resumed.start_epoch == 1 and resumed.global_step == 2


@pytest.mark.parametrize("flag, value", [("organ", "pancreas"), ("model_name", "swin_unetrv2"), ("roi_x", 8)])
def test_resume_refuses_a_changed_network_or_data_flag(tmp_path, flag, value):
    tiny_trainer(tmp_path, epochs=1).run_training()
    path = tmp_path / "model_final.pt"
    resumed = tiny_trainer(tmp_path, **{flag: value})
    with pytest.raises(CheckpointError) as info:
        resumed.resume(path, USES["resume"], resumed.config.args)
    assert str(info.value) == (f"--resume checkpoint {path} was saved with --{flag} {ARGS[flag]} (this run: {value}); "
                               "give the checkpoint's values or another checkpoint")
    assert resumed.start_epoch == 0  # nothing restored


def test_every_flag_of_the_one_rule_is_a_flag_of_its_program():
    """A list that names a flag its program does not have compares nothing: drift would go unnoticed."""
    from labelfree.cli import syn_train, train, validate
    from labelfree.config.settings import RunSettings

    def dests(parser):
        return {action.dest for action in parser._actions}

    main_flags, syn_flags, val_flags = (dests(m.get_args_parser()) for m in (train, syn_train, validate))
    for name in ("resume", "weights"):
        assert set(USES[name].refused + USES[name].noted) <= main_flags, name
    assert set(USES["generator_resume"].refused + USES["generator_resume"].noted) <= syn_flags
    assert set(USES["evaluation"].refused + USES["evaluation"].noted) <= val_flags
    settings = set(RunSettings.create().flat())
    for name in ("qc_segmentor", "generator", "evaluation"):
        assert set(USES[name].refused + USES[name].noted) <= settings, name
    # The resume lists are the rule's only copy: the programs keep none of their own.
    assert not hasattr(train, "RESUME_SENSITIVE_FLAGS") and not hasattr(syn_train, "RESUME_SENSITIVE_FLAGS")


class CountingRun(Workflow):
    """The smallest run: a scalar parameter moved by a fixed step per batch."""

    checkpoint_name = "count.pt"

    def __init__(self, logdir, epochs):
        super().__init__(DistContext(), amp=False, logdir=logdir, save=True)
        self.epochs, self.weight = epochs, torch.zeros(())

    @property
    def max_epochs(self):
        return self.epochs

    def run_epoch(self, epoch):
        sums, timing = self.train_epoch(epoch, [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}], 3, ("total", "steps"))
        assert timing.steps == 3
        return {"mean_x": sums["total"] / sums["steps"]}, False

    def train_step(self, batch, epoch):
        self.weight += batch["x"]
        return StepResult(loss=float(self.weight), samples=1, sums={"total": batch["x"], "steps": 1.0})

    def network_state(self):
        return {"weight": self.weight.clone()}

    def restore_networks(self, checkpoint):
        self.weight = checkpoint["weight"].clone()


def test_the_skeleton_saves_restores_and_logs_every_epoch_once(tmp_path):
    CountingRun(tmp_path / "straight", 3).run()
    CountingRun(tmp_path / "split", 2).run()
    time.sleep(1.1)  # event file names hold the second and the process id: a resumed run is a new file
    resumed = CountingRun(tmp_path / "split", 3)
    resumed.restore(load_checkpoint(tmp_path / "split" / "count.pt"))
    assert (resumed.start_epoch, resumed.global_step, float(resumed.weight)) == (2, 6, 12.0)
    resumed.run()
    a, b = load_checkpoint(tmp_path / "straight" / "count.pt"), load_checkpoint(tmp_path / "split" / "count.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"] == 9
    assert float(a["weight"]) == float(b["weight"]) == 18.0  # 3 epochs x (1 + 2 + 3)
    assert "best_acc" not in a  # only runs that track a best metric record one
    assert [step for step, _ in read_scalars(tmp_path / "split")["mean_x"]] == [0, 1, 2]
    assert read_scalars(tmp_path / "split")["mean_x"] == read_scalars(tmp_path / "straight")["mean_x"]
