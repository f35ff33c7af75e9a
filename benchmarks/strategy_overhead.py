"""What each gradient strategy costs per training step, relative to plain joint training, and how often
the cheap gates agree with the exact one.

Every variant trains the same models on the same batches (SRResNet 8×32 + ResNet-10 width 16, 64×64
synthetic images, batch 16 by default). Steps are timed interleaved (round r times one step of every
variant in turn, the order rotated each round, since the first step of a round measured up to 30 %
slower), after warm-up, and the median per variant is divided by joint's. The `floor` row is a
joint step plus one more VJP through the enhancer: the least an exact GradProm step can cost.
Agreement: a cheap-gated trial trains for a few steps while the exact gate (from both full gradients,
computed aside) is evaluated on the same batch; the share of equal decisions is reported.

Prints one JSON object per line: one per variant, then the summary (`"benchmark": ...`); `--record` also adds
the summary as a row to benchmarks/README.md (or `--readme PATH`).
Run: `python benchmarks/strategy_overhead.py [--quick] [--device cpu|cuda] [--warmup N] [--image-size PX] [--record]`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`
from benchmarks.record import emit, parse, record  # noqa: E402
from gradprom.strategies import Strategy  # noqa: E402
from gradprom.trainables.build import Trial, build_trial, seeded_generator  # noqa: E402
from gradprom.trainables.config import TrialConfig  # noqa: E402
from gradprom.trainables.image_loss import supervised  # noqa: E402
from gradprom.trainables.reference import task_loss  # noqa: E402
from gradprom.trainables.step import train_step, vjp_at  # noqa: E402

VARIANTS = {  # name -> trial settings on top of the base
    "joint": {"strategy": "joint"},
    "floor": {"strategy": "joint"},  # timed with floor_step below
    "enhancer_only": {"strategy": "enhancer_only"},
    "frozen": {"strategy": "frozen"},
    "gradprom": {"strategy": "gradprom"},
    "gradprom_batched_vjp": {"strategy": "gradprom", "vjp": "batched"},
    "gradprom_tensor": {"strategy": "gradprom", "granularity": "tensor"},
    "threshold": {"strategy": "threshold", "threshold": 0.1},
    "gradprom_soft": {"strategy": "gradprom_soft"},
    "pcgrad": {"strategy": "pcgrad"},
    "gradprom_ema": {"strategy": "gradprom", "ema": 0.9},
    "gradprom_gate_every_4": {"strategy": "gradprom", "gate_every": 4},
    "gradprom_gate_on_head": {"strategy": "gradprom", "gate_on": "head"},
    "gradprom_gate_every_4_ema": {"strategy": "gradprom", "gate_every": 4, "ema": 0.9},
}
CHEAP = ("gradprom_gate_every_4", "gradprom_gate_on_head", "gradprom_gate_every_4_ema")


def floor_step(t: Trial, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> None:
    """Joint training's step plus one more VJP through the enhancer (discarded)."""
    theta = [p for p in t.enhancer.parameters() if p.requires_grad]
    phi = [p for p in t.recognizer.parameters() if p.requires_grad]
    with t.fast.autocast():  # the trial's forward passes, as train_step runs them
        x_hat = t.enhancer(t.fast.layout(t.degradation(x, gen))).float()
        logits = t.recognizer(x_hat).float()
    loss_ip, loss_vr = supervised(t.cfg.loss_ip, x_hat, x), task_loss(logits, y)
    grads = torch.autograd.grad(loss_ip + t.cfg.lam * loss_vr, [*theta, *phi], retain_graph=True)
    (u_ip,) = torch.autograd.grad(loss_ip, x_hat, retain_graph=True)  # cheap: no recognizer in it
    vjp_at(x_hat, theta, [u_ip])  # the extra backward through the enhancer exact GradProm needs
    for p, g in zip([*theta, *phi], grads, strict=True):
        p.grad = g
    t.opt_enhancer.step()
    t.opt_recognizer.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def exact_decision(t: Trial, exact: Strategy, x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    """The exact gate's weight on this batch, from both full gradients (computed on copies, untimed)."""
    enhancer, recognizer = copy.deepcopy(t.enhancer), copy.deepcopy(t.recognizer)
    with t.fast.autocast():
        x_hat = enhancer(t.fast.layout(t.degradation(x, seeded_generator(x.device, seed)))).float()
        logits = recognizer(x_hat).float()
    theta = list(enhancer.parameters())
    g_ip = torch.autograd.grad(supervised(t.cfg.loss_ip, x_hat, x), theta, retain_graph=True)
    g_vr = torch.autograd.grad(task_loss(logits, y), theta)
    exact.combine(list(g_ip), list(g_vr))
    return float(exact.last_weight)


def agreement(base: dict, variant: str, steps: int) -> tuple[float, float]:
    """Share of steps where the cheap gate's decision equals the exact gate's (the same gate, EMA included,
    measuring every step over all parameters) on the same batch, along one training run; and the exact gate's
    own persistence over the cheap gate's interval: the share of steps whose exact decision equals the exact
    decision at the last step a `gate_every=k` gate would have measured. Reusing decisions cannot agree much
    more often than the decisions themselves persist."""
    t = build_trial(TrialConfig.from_dict({**base, **VARIANTS[variant]}))
    exact = TrialConfig.from_dict({**t.cfg.to_dict(), "gate_every": 1, "gate_on": "all"}).build_strategy()
    batch = t.cfg.batch_size
    agree = 0
    decisions = []
    for k in range(steps):
        start = (k * batch) % (len(t.data.train) - batch)
        x, y = t.data.train.images[start:start + batch], t.data.train.targets[start:start + batch]
        exact_w = exact_decision(t, exact, x, y, seed=k)
        train_step(t, x, y, seeded_generator(x.device, k))
        agree += float(t.strategy.last_weight) == exact_w
        decisions.append(exact_w)
    every = t.cfg.gate_every
    persistence = sum(d == decisions[k - k % every] for k, d in enumerate(decisions)) / steps
    return agree / steps, persistence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small models (SRResNet 2×16, ResNet-10 w8, 32 px), 24 agreement steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds, after the warm-up rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up rounds before them (default 3)")
    parser.add_argument("--image-size", type=int, default=0, help="image size in px (default 32 with --quick, else 64)")
    parser.add_argument("--agreement-steps", type=int, default=0,
                        help="training steps per cheap gate's agreement run (default 24 with --quick, else 60)")
    args = parse(parser)
    if args.rounds < 1 or args.agreement_steps < 0 or args.warmup < 0 or args.image_size < 0:
        parser.error("--rounds must be at least 1, --agreement-steps, --warmup and --image-size at least 0")
    quick = args.quick
    base = {"dataset": "synthetic", "image_size": args.image_size or (32 if quick else 64),
            "n_train": 128 if quick else 256,
            "n_val": 16, "n_test": 16, "enhancer_blocks": 2 if quick else 8, "enhancer_channels": 16 if quick else 32,
            "recognizer_width": 8 if quick else 16, "batch_size": 16, "pretrain_epochs": 1, "device": args.device,
            "threads": 0, "lam": 1.0, "cache_dir": str(Path.home() / ".cache" / "gradprom-bench")}
    rounds = args.rounds
    torch.manual_seed(0)
    trials = {name: build_trial(TrialConfig.from_dict({**base, **settings})) for name, settings in VARIANTS.items()}
    device = next(iter(trials.values())).device
    data = next(iter(trials.values())).data.train
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    warmup = args.warmup
    for r in range(rounds + warmup):  # the first `warmup` rounds are not timed
        start = (r * 16) % (len(data) - 16)
        x, y = data.images[start:start + 16], data.targets[start:start + 16]
        names = list(trials)
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotated: no variant always runs first
            t = trials[name]
            gen = seeded_generator(device, r)
            sync(device)
            tic = time.perf_counter()
            (floor_step if name == "floor" else train_step)(t, x, y, gen)
            sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - tic)
    joint = statistics.median(times["joint"])
    steps = args.agreement_steps or (24 if quick else 60)
    found = {name: agreement(base, name, steps) for name in CHEAP}
    agreements = {name: a for name, (a, _) in found.items()}
    floor_ratio = statistics.median(times["floor"]) / joint
    figures = {}
    for name in VARIANTS:
        ratio = statistics.median(times[name]) / joint
        row = {"strategy": name, "ratio_vs_joint": round(ratio, 3), "median_ms": round(1000 * statistics.median(
            times[name]), 2)}
        if name in agreements:
            row["agreement_with_exact"] = round(agreements[name], 3)
            if "every" in name:
                row["exact_gate_persistence"] = round(found[name][1], 3)
        emit(row)
        figures[name] = round(ratio, 3)
    figures["gradprom_vs_floor"] = round(figures["gradprom"] / floor_ratio, 3)
    figures.update({f"{k}_agreement": round(v, 3) for k, v in agreements.items()})
    figures.update({f"{k}_persistence": round(p, 3) for k, (_, p) in found.items() if "every" in k})
    figures["joint_ms"] = round(1000 * joint, 2)
    shape = (f"{'quick: ' if quick else ''}SRResNet {base['enhancer_blocks']}×{base['enhancer_channels']}, ResNet-10 "
             f"w{base['recognizer_width']}, {base['image_size']}px, batch 16, {rounds} rounds, {device.type}"
             f"{f', {steps} agreement steps' if args.agreement_steps else ''}"
             f"{f', {warmup} warm-up rounds' if warmup != 3 else ''}")
    record("strategy_overhead_quick" if quick else "strategy_overhead", figures, args, note=shape)


if __name__ == "__main__":
    main()
