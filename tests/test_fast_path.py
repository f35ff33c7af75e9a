"""The GPU fast path (bf16 autocast, channels-last, torch.compile) and the sync-free NaN checks, on the CPU.

CI has no GPU, so each piece is exercised where the CPU runs it too: CPU autocast to bf16, channels-last
tensors and compiled graphs (aot_eager traces the same graphs inductor would compile, without code
generation). The one CUDA-only property (no host sync inside a step) is tested where a GPU is present.
"""

from __future__ import annotations

import math

import pytest
import torch

from gradprom.errors import GradpromError, NonFiniteLossError
from gradprom.trainables.checkpoint import load_checkpoint, save_checkpoint
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.fastpath import FastPath
from gradprom.trainables.loop import (
    build_trial,
    raise_if_bad,
    restore_state,
    seeded_generator,
    train_step,
    train_trial,
    trial_state,
)


def step_update(tiny: dict, **settings: object) -> tuple[list[torch.Tensor], object]:
    """The enhancer update (SGD, lr 1) of one gradprom step on a fixed batch, and the trial."""
    trial = build_trial(TrialConfig.from_dict({**tiny, "strategy": "gradprom", "lam": 0.7, **settings}))
    trial.opt_enhancer = torch.optim.SGD(trial.enhancer.parameters(), lr=1.0)
    x, y = trial.data.train.images[:16], trial.data.train.targets[:16]
    before = [p.detach().clone() for p in trial.enhancer.parameters()]
    train_step(trial, x, y, seeded_generator(x.device, 5))
    return [b - p.detach() for b, p in zip(before, trial.enhancer.parameters(), strict=True)], trial


def test_auto_is_plain_fp32_on_the_cpu() -> None:
    fast = FastPath.resolve("auto", "auto", "off", torch.device("cpu"))
    assert fast == FastPath("cpu", None, False, "off")
    assert fast.describe() == {"run_precision": "fp32", "run_memory_format": "contiguous", "run_compile": "off"}
    assert FastPath.resolve("bf16", "channels_last", "inductor", torch.device("cpu")).describe() == {
        "run_precision": "bf16", "run_memory_format": "channels_last", "run_compile": "inductor"}


@pytest.mark.parametrize("settings", [{"memory_format": "channels_last"}, {"compile": "aot_eager"},
                                      {"memory_format": "channels_last", "compile": "aot_eager"}])
def test_layout_and_compile_do_not_change_the_update(tiny: dict, settings: dict) -> None:
    """Channels-last weights and a compiled forward give the plain fp32 update (to rounding)."""
    plain, _ = step_update(tiny)
    fast, trial = step_update(tiny, **settings)
    if settings.get("memory_format") == "channels_last":
        conv = next(p for p in trial.enhancer.parameters() if p.dim() == 4 and p.shape[1] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    for a, b in zip(plain, fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_bf16_forward_keeps_gradients_and_the_cosine_fp32(tiny: dict) -> None:
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


def test_a_fast_trial_trains_reports_and_checkpoints(tiny: dict, tmp_path) -> None:  # noqa: ANN001
    """bf16 + channels-last + compile end to end: finite figures, the resolved settings as columns, and a
    checkpoint with the plain module's keys that a plain trial loads."""
    cfg = {**tiny, "strategy": "gradprom", "epochs": 1, "precision": "bf16", "memory_format": "channels_last",
           "compile": "aot_eager"}
    final = train_trial(cfg)
    assert (final["run_precision"], final["run_memory_format"], final["run_compile"]) == \
        ("bf16", "channels_last", "aot_eager")
    assert all(math.isfinite(final[k]) for k in ("psnr", "ssim", "acc", "test_psnr", "loss_ip", "cos_mean"))
    trial = build_trial(TrialConfig.from_dict(cfg))
    path = save_checkpoint(tmp_path, trial_state(trial, 1, {}))
    assert all(not k.startswith("_orig_mod") for k in trial_state(trial, 1, {})["enhancer"])
    plain = build_trial(TrialConfig.from_dict(tiny))
    assert restore_state(plain, load_checkpoint(path.parent)) == 1


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
