"""trainer + labelfree.data.loaders: Dice rules, unpadded validation shards, per-epoch reseeding, resume state."""

import numpy as np
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from labelfree.training.trainer import Trainer, TrainerConfig, dice_per_class
from labelfree.data.loaders import ShardSampler, build_train_loader, epoch_seed, prepare_epoch
from labelfree.runtime.distributed import DistContext


def numpy_dice(pred, ref, c):
    p, t = pred == c, ref == c
    if p.sum() + t.sum() == 0:
        return 1.0
    return 2.0 * np.logical_and(p, t).sum() / (p.sum() + t.sum())


def test_dice_per_class_matches_numpy():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 3, size=(12, 10, 8))
    ref = rng.integers(0, 3, size=(12, 10, 8))
    got = dice_per_class(torch.from_numpy(pred), torch.from_numpy(ref).float(), num_classes=3)
    assert got == pytest.approx([numpy_dice(pred, ref, 1), numpy_dice(pred, ref, 2)])


def test_dice_empty_reference_rules():
    ref = torch.zeros(6, 6, 6)
    ref[1:4, 1:4, 1:4] = 1  # organ, no tumor
    assert dice_per_class(ref.long(), ref, 3) == [1.0, 1.0]  # no tumor predicted: tumor Dice 1
    pred = ref.long().clone()
    pred[2, 2, 2] = 2  # one false-positive tumor voxel
    organ, tumor = dice_per_class(pred, ref, 3)
    assert tumor == 0.0 and organ == pytest.approx(2 * 26 / (26 + 27))


@pytest.mark.parametrize("n,world", [(5, 2), (2, 3), (7, 7), (0, 2)])
def test_shard_sampler_covers_every_case_once(n, world):
    shards = [list(ShardSampler(n, rank, world)) for rank in range(world)]
    flat = [i for shard in shards for i in shard]
    assert sorted(flat) == list(range(n))  # no padding duplicates, nothing dropped
    assert [len(ShardSampler(n, r, world)) for r in range(world)] == [len(s) for s in shards]


def test_epoch_seed_depends_on_seed_rank_and_epoch_only():
    assert epoch_seed(0, 0, 3) == epoch_seed(0, 0, 3)
    seeds = {epoch_seed(s, r, e) for s in (0, 1) for r in (0, 1) for e in (0, 1, 2)}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)


class RandomItems(torch.utils.data.Dataset):
    """Each item is a random draw of a MONAI-style randomizable (seeded through set_rnd)."""

    def __init__(self, n):
        from monai.transforms import RandomizableTransform

        class Draw(RandomizableTransform):
            def __call__(self, i):
                return {"case_index": i, "noise": float(self.R.uniform())}

        self.n, self.transform = n, Draw()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.transform(i)


def epoch_draws(loader, epoch, seed=0, rank=0):
    prepare_epoch(loader, epoch, seed, rank)
    return [(int(b["case_index"][0]), float(b["noise"][0])) for b in loader]


@pytest.mark.parametrize("workers", [0, 1])
def test_prepare_epoch_makes_each_epoch_reproducible(workers):
    ctx = DistContext()
    loader = build_train_loader(RandomItems(6), batch_size=1, workers=workers, ctx=ctx)
    epoch0, epoch1 = epoch_draws(loader, 0), epoch_draws(loader, 1)
    assert sorted(i for i, _ in epoch0) == list(range(6))
    assert epoch0 != epoch1  # new order and new augmentation each epoch
    # A fresh loader (a resumed run) jumping straight to epoch 1 draws exactly the same.
    fresh = build_train_loader(RandomItems(6), batch_size=1, workers=workers, ctx=ctx)
    assert epoch_draws(fresh, 1) == epoch1


def test_distributed_sampler_splits_and_reshuffles():
    dataset = RandomItems(8)
    ranks = [DistContext(rank=r, world_size=2, distributed=True) for r in range(2)]
    loaders = [build_train_loader(dataset, 1, 0, ctx, seed=0) for ctx in ranks]
    assert all(isinstance(loader.sampler, DistributedSampler) for loader in loaders)
    per_epoch = []
    for epoch in range(2):
        cases = [[i for i, _ in epoch_draws(loader, epoch, rank=r)] for r, loader in enumerate(loaders)]
        assert not set(cases[0]) & set(cases[1]) and sorted(cases[0] + cases[1]) == list(range(8))
        per_epoch.append(cases)
    assert per_epoch[0] != per_epoch[1]


def tiny_trainer(tmp_path, epochs=3):
    torch.manual_seed(0)
    model = torch.nn.Conv3d(1, 3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    from labelfree.optimizers import build_scheduler

    scheduler = build_scheduler(optimizer, "warmup_cosine", 1, epochs)
    items = [{"image": torch.randn(1, 4, 4, 4), "label": torch.randint(0, 3, (1, 4, 4, 4)).float(), "case_index": i}
             for i in range(4)]
    loader = build_train_loader(items, batch_size=2, workers=0, ctx=DistContext())
    val_loader = torch.utils.data.DataLoader(items[:2], batch_size=1)

    def loss_fn(logits, label):
        return torch.nn.functional.cross_entropy(logits, label[:, 0].long())

    config = TrainerConfig(max_epochs=epochs, val_every=1, class_tags=["val_liver_dice", "val_tumor_dice"],
                           logdir=tmp_path, save_checkpoint=True)
    return Trainer(model, optimizer, scheduler, loss_fn, loader, val_loader, lambda x, m: m(x), DistContext(), config)


def test_validate_reports_per_class_and_mean(tmp_path):
    trainer = tiny_trainer(tmp_path)
    metrics = trainer.validate(epoch=0)
    assert set(metrics) == {"val_loss", "val_mean_dice", "val_liver_dice", "val_tumor_dice"}
    assert metrics["val_mean_dice"] == pytest.approx((metrics["val_liver_dice"] + metrics["val_tumor_dice"]) / 2)
    # Recompute independently from the model's argmax on the two validation cases.
    per_case = []
    with torch.no_grad():
        for item in list(trainer.val_loader.dataset):
            pred = trainer.model(item["image"][None]).argmax(1)[0].numpy()
            per_case.append([numpy_dice(pred, item["label"][0].numpy(), c) for c in (1, 2)])
    assert metrics["val_liver_dice"] == pytest.approx(np.mean([c[0] for c in per_case]))
    assert metrics["val_tumor_dice"] == pytest.approx(np.mean([c[1] for c in per_case]))


def test_restore_continues_like_an_uninterrupted_run(tmp_path):
    from labelfree.io.checkpoint import load_checkpoint

    full = tiny_trainer(tmp_path / "full")
    full.run_training()

    first = tiny_trainer(tmp_path / "split", epochs=3)
    first.config.max_epochs = 1  # the loop stops after epoch 0, as a job killed then would
    first.run_training()
    resumed = tiny_trainer(tmp_path / "split")
    resumed.restore(load_checkpoint(tmp_path / "split" / "model_final.pt"))
    assert resumed.start_epoch == 1 and resumed.global_step == 2
    resumed.run_training()

    a = load_checkpoint(tmp_path / "full" / "model_final.pt")
    b = load_checkpoint(tmp_path / "split" / "model_final.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"] == 6
    assert a["scheduler"] == b["scheduler"] and a["best_acc"] == b["best_acc"]
    assert float(a["optimizer"]["state"][0]["step"]) == float(b["optimizer"]["state"][0]["step"]) == 6
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key])


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    trainer = tiny_trainer(tmp_path, epochs=2)
    trainer.start_epoch, trainer.best_acc = 2, 0.4
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.run_training() == 0.4
    assert trainer.global_step == 0 and not (tmp_path / "model_final.pt").exists()
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key])
