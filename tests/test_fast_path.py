"""The GPU fast path (bf16 autocast, channels-last, torch.compile) and the sync-free NaN checks, on the CPU.

CI has no GPU, so each piece is exercised where the CPU runs it too: CPU autocast to bf16, channels-last
tensors and compiled graphs (aot_eager traces the same graphs inductor would compile, without code
generation). The one CUDA-only property (no host sync inside a step) is tested where a GPU is present.
"""

from __future__ import annotations

import math
import os
import time

import pytest
import torch

from gradprom.cli import main
from gradprom.errors import GradpromError, NonFiniteLossError
from gradprom.trainables.build import build_trial, seeded_generator
from gradprom.trainables.checkpoint import load_checkpoint, save_checkpoint
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.epoch import raise_if_bad
from gradprom.trainables.fastpath import FastPath
from gradprom.trainables.pipeline import train_trial
from gradprom.trainables.state import restore_state, trial_state
from gradprom.trainables.step import train_step
from tests.fixtures.processes import run_isolated
from tests.fixtures.settings import TINY


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """TINY settings with one recognizer cache for the module's tests (overrides conftest's per-test cache): the
    pretrained recognizers are deterministic per cache key, so the isolated processes after the first one load
    the weights they would have trained themselves."""
    return {**TINY, "cache_dir": str(tmp_path_factory.mktemp("cache"))}


def step_update(tiny: dict, **settings: object) -> tuple[list[torch.Tensor], object]:
    """The enhancer update (SGD, lr 1) of one gradprom step on a fixed batch, and the trial."""
    trial = build_trial(TrialConfig.from_dict({**tiny, "strategy": "gradprom", "lam": 0.7, **settings}))
    trial.opt_enhancer = torch.optim.SGD(trial.enhancer.parameters(), lr=1.0)
    x, y = trial.data.train.images[:16], trial.data.train.targets[:16]
    before = [p.detach().clone() for p in trial.enhancer.parameters()]
    train_step(trial, x, y, seeded_generator(x.device, 5))
    return [b - p.detach() for b, p in zip(before, trial.enhancer.parameters(), strict=True)], trial


# The checks below run fast-path kernels in their own process (conftest.run_isolated): a kernel that hangs or
# aborts on some CPU fails its test with the reason instead of taking the test run down.

def layout_and_compile_match_plain(tiny: dict, settings: dict) -> bool:
    """Channels-last weights and a compiled forward give the plain fp32 update (to rounding)."""
    plain, _ = step_update(tiny)
    fast, trial = step_update(tiny, **settings)
    if settings.get("memory_format") == "channels_last":
        conv = next(p for p in trial.enhancer.parameters() if p.dim() == 4 and p.shape[1] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    for a, b in zip(plain, fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    return True


def bf16_keeps_gradients_and_the_cosine_fp32(tiny: dict) -> bool:
    """Under bf16 autocast the forward runs in bf16 (so the update differs from fp32 by bf16 rounding, not
    more), while the parameters, their update and the gate's cosine stay fp32."""
    plain, ref = step_update(tiny)
    fast, trial = step_update(tiny, precision="bf16")
    assert trial.fast.amp_dtype is torch.bfloat16
    seen = []  # the dtype every convolution of the enhancer computes in
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype)) for m in trial.enhancer.modules()
             if isinstance(m, torch.nn.Conv2d)]
    with trial.fast.autocast():
        trial.enhancer(trial.data.train.images[:2])
    for h in hooks:
        h.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype is torch.float32 for p in trial.enhancer.parameters())
    assert all(u.dtype is torch.float32 for u in fast)
    assert trial.strategy.last_cos.dtype is torch.float32
    assert abs(float(trial.strategy.last_cos) - float(ref.strategy.last_cos)) < 0.1
    flat_plain, flat_fast = torch.cat([u.flatten() for u in plain]), torch.cat([u.flatten() for u in fast])
    assert not torch.equal(flat_plain, flat_fast)  # bf16 really ran
    assert torch.nn.functional.cosine_similarity(flat_plain, flat_fast, dim=0) > 0.98
    return True


def fast_trial_trains_reports_and_checkpoints(cfg: dict, tiny: dict, folder: str) -> bool:
    """A fast trial end to end: finite figures, the resolved settings as columns, and a checkpoint with the
    plain module's keys that a plain trial loads."""
    final = train_trial(cfg)
    assert (final["run_precision"], final["run_memory_format"], final["run_compile"]) == \
        (cfg["precision"], cfg["memory_format"], cfg["compile"])
    assert all(math.isfinite(final[k]) for k in ("psnr", "ssim", "acc", "test_psnr", "loss_ip", "cos_mean"))
    trial = build_trial(TrialConfig.from_dict(cfg))
    path = save_checkpoint(folder, trial_state(trial, 1, {}))
    assert all(not k.startswith("_orig_mod") for k in trial_state(trial, 1, {})["enhancer"])
    plain = build_trial(TrialConfig.from_dict(tiny))
    assert restore_state(plain, load_checkpoint(path.parent)) == 1
    return True


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="channels-last runs on CUDA only; no GPU here")


@pytest.mark.parametrize("settings", [
    {"compile": "aot_eager"},
    pytest.param({"memory_format": "channels_last", "device": "cuda"}, marks=needs_cuda),
    pytest.param({"memory_format": "channels_last", "compile": "aot_eager", "device": "cuda"}, marks=needs_cuda)])
def test_layout_and_compile_do_not_change_the_update(tiny: dict, settings: dict) -> None:
    device = {"device": settings["device"]} if "device" in settings else {}
    assert run_isolated(layout_and_compile_match_plain, {**tiny, **device}, settings)


def test_bf16_forward_keeps_gradients_and_the_cosine_fp32(tiny: dict) -> None:
    assert run_isolated(bf16_keeps_gradients_and_the_cosine_fp32, tiny)


@pytest.mark.parametrize("fast", [
    {"precision": "bf16", "memory_format": "contiguous", "compile": "aot_eager"},
    pytest.param({"precision": "bf16", "memory_format": "channels_last", "compile": "aot_eager", "device": "cuda"},
                 marks=needs_cuda)])
def test_a_fast_trial_trains_reports_and_checkpoints(tiny: dict, fast: dict, tmp_path) -> None:  # noqa: ANN001
    cfg = {**tiny, "strategy": "gradprom", "epochs": 1, **fast}
    assert run_isolated(fast_trial_trains_reports_and_checkpoints, cfg, tiny, str(tmp_path))


def test_channels_last_is_refused_on_the_cpu_in_one_line(tiny: dict) -> None:
    """The CPU's channels-last backward can hang or abort the process: refused before any kernel runs."""
    with pytest.raises(GradpromError, match="channels_last runs on a CUDA GPU only"):
        TrialConfig.from_dict({**tiny, "memory_format": "channels_last"})  # device=cpu: refused with the config
    with pytest.raises(GradpromError, match="channels_last runs on a CUDA GPU only"):
        FastPath.resolve("bf16", "channels_last", "off", torch.device("cpu"))
    assert main(["train", "--device", "cpu", "--set", "memory_format=channels_last", "--epochs", "1"]) == 2


def test_a_crash_or_hang_in_isolation_is_one_failed_test() -> None:
    """What the isolation promises: an abort is reported with its signal, a hang after the timeout."""
    with pytest.raises(pytest.fail.Exception, match="killed its process with signal SIGABRT"):
        run_isolated(os.abort)
    with pytest.raises(pytest.fail.Exception, match="sleep hung: no result after 1 s"):
        run_isolated(time.sleep, 600, timeout=1)


def test_compile_refuses_batched_vjps() -> None:
    with pytest.raises(GradpromError, match="vjp=batched cannot run through torch.compile"):
        TrialConfig.from_dict({"compile": "inductor", "vjp": "batched"})
    with pytest.raises(GradpromError, match="precision must be one of auto, fp32, bf16"):
        TrialConfig.from_dict({"precision": "fp16"})


def test_nan_flags_are_read_late_but_name_the_first_bad_step() -> None:
    ok, bad_loss, bad_grad = (torch.tensor(v) for v in ([False, False], [True, True], [False, True]))
    raise_if_bad([ok, ok], 1, 1)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch 3 step 19"):
        raise_if_bad([ok, ok, bad_loss, bad_grad], 17, 3)
    with pytest.raises(NonFiniteLossError, match="non-finite gradient at epoch 1 step 2"):
        raise_if_bad([ok, bad_grad, bad_loss], 1, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host syncs are a CUDA matter; no GPU here")
def test_no_host_sync_inside_a_cuda_step(tiny: dict) -> None:
    trial = build_trial(TrialConfig.from_dict({**tiny, "strategy": "gradprom", "device": "cuda"}))
    x, y = trial.data.train.images[:16], trial.data.train.targets[:16]
    gen = seeded_generator(x.device, 5)
    train_step(trial, x, y, gen)  # warm-up (lazy CUDA init may sync)
    torch.cuda.set_sync_debug_mode("error")
    try:
        train_step(trial, x, y, gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
