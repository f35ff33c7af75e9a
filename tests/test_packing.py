"""Packing small trials on a GPU: fractional GPU shares in the trial's Ray resources, and each packed trial's
memory bounded to its share (the bound itself needs CUDA; it is checked where a GPU is)."""

from __future__ import annotations

import pytest
import torch

from gradprom.errors import GradpromError
from gradprom.search.request import SearchRequest, plan
from gradprom.search.study import placement_of
from gradprom.trainables.build import trial_device
from gradprom.trainables.config import TrialConfig
from tests.fixtures.processes import run_isolated
from tests.fixtures.settings import TINY


def test_a_quarter_gpu_is_the_trials_share_and_its_memory_bound() -> None:
    req = SearchRequest(space="lambda_threshold", datasets=["synthetic"], gpus_per_trial=0.25, device="cpu")
    assert placement_of(req).trial_resources() == {"CPU": 1.0, "GPU": 0.25}  # four trials fit one GPU
    (study,) = plan(req)
    assert study.base["gpu_memory_fraction"] == 0.25


def test_train_workers_hold_the_shares_and_the_train_driver_none() -> None:
    req = SearchRequest(space="lambda_threshold", datasets=["synthetic"], gpus_per_trial=0.5, workers_per_trial=2,
                        cpus_per_trial=2, device="cpu")
    placement = placement_of(req)
    assert placement.worker_resources() == {"CPU": 2.0, "GPU": 0.5}
    assert "GPU" not in placement.trial_resources() and placement.trial_resources()["CPU"] == 0


def test_whole_gpus_and_cpu_trials_get_no_bound_and_a_user_bound_wins() -> None:
    for gpus in (0.0, 1.0, 2.0):
        (study,) = plan(SearchRequest(space="lambda_threshold", datasets=["synthetic"], gpus_per_trial=gpus,
                                      device="cpu"))
        assert "gpu_memory_fraction" not in study.base
    (study,) = plan(SearchRequest(space="lambda_threshold", datasets=["synthetic"], gpus_per_trial=0.25, device="cpu",
                                  params=["gpu_memory_fraction=0.2"]))
    assert study.base["gpu_memory_fraction"] == 0.2


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_a_fraction_outside_0_1_is_refused(fraction: float) -> None:
    with pytest.raises(GradpromError, match=r"gpu_memory_fraction must be in \[0, 1\]"):
        TrialConfig.from_dict({**TINY, "gpu_memory_fraction": fraction})


def test_on_the_cpu_the_bound_changes_nothing() -> None:
    before = torch.get_num_threads()  # trial_device sets TINY's one thread for the whole process
    try:
        assert trial_device(TrialConfig.from_dict({**TINY, "gpu_memory_fraction": 0.25})).type == "cpu"
    finally:
        torch.set_num_threads(before)


def allocate_past_the_bound(fraction: float) -> tuple[bool, bool]:
    """In a fresh process: under the bound an allocation of half the share succeeds; one of twice the share
    raises CUDA's out-of-memory error."""
    device = trial_device(TrialConfig.from_dict({**TINY, "device": "cuda", "gpu_memory_fraction": fraction}))
    share = int(torch.cuda.get_device_properties(device).total_memory * fraction)
    small = torch.empty(share // 2, dtype=torch.uint8, device=device)
    del small
    try:
        torch.empty(2 * share, dtype=torch.uint8, device=device)
    except torch.OutOfMemoryError:
        return True, True
    return True, False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the memory bound is CUDA's; no GPU here")
def test_a_packed_trial_cannot_allocate_past_its_share() -> None:
    assert run_isolated(allocate_past_the_bound, 0.1) == (True, True)
