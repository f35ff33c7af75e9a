"""Data parallel with 2 CPU workers (gloo): averaged per-loss gradients keep the replicas identical."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gradprom.trainables.build import build_trial
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.epoch import train_epoch


def _worker(rank: int, rendezvous: str, settings: dict, out: str) -> None:
    # a file to meet at, not a TCP port picked in advance: another process of the test run may take that port
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        trial = build_trial(TrialConfig.from_dict(settings))
        start = torch.cat([p.detach().flatten().clone() for p in trial.enhancer.parameters()])
        stats = [train_epoch(trial, epoch) for epoch in (1, 2)]
        torch.save({
            "start": start,
            "enhancer": torch.cat([p.detach().flatten() for p in trial.enhancer.parameters()]),
            "recognizer": torch.cat([p.detach().flatten() for p in trial.recognizer.parameters()]),
            "cos": [s["cos_mean"] for s in stats], "promoted": [s["promoted_frac"] for s in stats],
            "loss_ip": [s["loss_ip"] for s in stats],
        }, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("models", [{}, {"enhancer": "monai:BasicUNet", "enhancer_channels": 4}],
                         ids=["gradprom-models", "monai-enhancer"])
def test_replicas_stay_identical_under_gradprom(models: dict, tiny: dict, tmp_path: Path) -> None:
    settings = {**tiny, **models, "strategy": "gradprom", "lam": 2.0, "batch_size": 16, "max_steps_per_epoch": 3}
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), settings, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(r0["start"], r0["enhancer"]), "the enhancer must have trained"
    assert r0["loss_ip"] != r1["loss_ip"], "each worker must see its own shard of the data"
    assert torch.equal(r0["enhancer"], r1["enhancer"]), "enhancer replicas diverged"
    assert torch.equal(r0["recognizer"], r1["recognizer"]), "recognizer replicas diverged"
    assert r0["cos"] == r1["cos"] and r0["promoted"] == r1["promoted"], "replicas took different gate branches"
