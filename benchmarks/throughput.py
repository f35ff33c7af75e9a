"""Training images/s of gradprom's pipeline against a bare PyTorch loop of the same models (the ceiling).

Both train the same SRResNet + ResNet on the same synthetic batches for the same steps, each its own
trial for consecutive epochs (the first one, warm-up, is not counted; the order alternates); the pipeline
is `train_epoch` (on-device degradation, strategy, telemetry, NaN checks), the bare loop is the textbook
code for the same math with nothing around it. Ratios near 1 mean the pipeline costs nothing extra.
Measured for `joint` (bare: one backward of L_IP + λ·L_VR) and `gradprom` (bare: two full backward
passes, the cosine, the gated sum). Variants (`--variants`): `fp32` (fp32, contiguous), `amp` (bf16
autocast, channels-last on CUDA: the GPU fast path) and `amp_compile` (that plus `torch.compile`, inductor); the
bare loop runs each variant's forward the same way, so every ratio compares like with like. Channels-last is
used on CUDA only: on the CPU the amp variants run contiguous (the trainer refuses channels-last there, since
torch 2.13's channels-last convolution backward hangs or aborts on some CPUs); each row says which ran
(`memory_format`). Default variants: all three on a GPU, `fp32` on the CPU.

Prints one JSON object per line: one per strategy and variant, then the summary (`"benchmark": ...`);
`--record` also adds the summary as a row to benchmarks/README.md (or `--readme PATH`).
Run: `python benchmarks/throughput.py [--quick] [--device cpu|cuda] [--variants fp32,amp] [--record]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`
from benchmarks.record import emit, parse, record  # noqa: E402
from gradprom.trainables.build import Trial, build_trial, seeded_generator  # noqa: E402
from gradprom.trainables.config import TrialConfig  # noqa: E402
from gradprom.trainables.epoch import train_epoch  # noqa: E402
from gradprom.trainables.image_loss import supervised  # noqa: E402
from gradprom.trainables.reference import task_loss  # noqa: E402

VARIANTS = {  # name -> trial settings; the layout comes from memory_format()
    "fp32": {"precision": "fp32", "compile": "off"},
    "amp": {"precision": "bf16", "compile": "off"},
    "amp_compile": {"precision": "bf16", "compile": "inductor"},
}


def memory_format(variant: str, device: str) -> str:
    """fp32 runs contiguous; the amp variants channels-last on CUDA and contiguous on the CPU, where the trainer
    refuses channels-last (torch 2.13's channels-last convolution backward hangs or aborts on some CPUs)."""
    return "channels_last" if variant != "fp32" and torch.device(device).type == "cuda" else "contiguous"


def bare_epoch(t: Trial, epoch: int, gated: bool) -> float:
    """The same steps written plainly; returns images/s."""
    cfg, data = t.cfg, t.data.train
    order = torch.randperm(len(data), generator=seeded_generator(torch.device("cpu"), cfg.seed, epoch)).to(t.device)
    steps = len(data) // cfg.batch_size
    gen = seeded_generator(t.device, cfg.seed, epoch)
    theta = list(t.enhancer.parameters())
    t.enhancer.train()
    t.recognizer.train()  # as the pipeline trains it (BatchNorm in training mode)
    start = time.perf_counter()
    for k in range(steps):
        idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size]
        x, y = data.images[idx], data.targets[idx]
        with t.fast.autocast():  # the variant's precision and layout (a no-op for fp32)
            x_hat = t.enhancer(t.fast.layout(t.degradation(x, gen))).float()
            logits = t.recognizer(x_hat).float()
        loss_ip, loss_vr = supervised(cfg.loss_ip, x_hat, x), task_loss(logits, y)
        t.opt_enhancer.zero_grad(set_to_none=True)
        t.opt_recognizer.zero_grad(set_to_none=True)
        if not gated:
            (loss_ip + cfg.lam * loss_vr).backward()
        else:
            g_ip = torch.autograd.grad(loss_ip, theta, retain_graph=True)
            loss_vr.backward(inputs=theta + list(t.recognizer.parameters()))
            g_vr = [p.grad for p in theta]
            dot = sum((a * b).sum() for a, b in zip(g_ip, g_vr, strict=True))
            w = (dot >= 0).float()
            for p, a, b in zip(theta, g_ip, g_vr, strict=True):
                p.grad = a + cfg.lam * w * b
        t.opt_enhancer.step()
        t.opt_recognizer.step()
    if t.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="128 training images and 2 timed epochs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default="", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--n-train", type=int, default=0, help="training images (default 128 with --quick, else 512)")
    parser.add_argument("--epochs", type=int, default=0,
                        help="timed epochs, after a warm-up epoch (default 2 with --quick, else 6)")
    args = parse(parser)
    cfg = TrialConfig()  # the default trial models and batch the figures are for
    if args.epochs < 0 or (args.n_train and args.n_train < cfg.batch_size):
        parser.error(f"--epochs must not be negative and --n-train must be at least a batch ({cfg.batch_size})")
    variants = args.variants.split(",") if args.variants else \
        (list(VARIANTS) if args.device.startswith("cuda") else ["fp32"])
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant '{unknown[0]}'; variants: {', '.join(VARIANTS)}")
    n_train = args.n_train or (128 if args.quick else 512)
    base = {"dataset": "synthetic", "n_train": n_train, "n_val": 16, "n_test": 16,
            "pretrain_epochs": 1, "device": args.device, "cache_dir": str(Path.home() / ".cache" / "gradprom-bench")}
    epochs = args.epochs or (2 if args.quick else 6)
    figures: dict[str, float | str] = {}
    for variant, strategy in ((v, s) for v in variants for s in ("joint", "gradprom")):
        pipeline, bare = [], []
        settings = {**base, **VARIANTS[variant], "memory_format": memory_format(variant, args.device),
                    "strategy": strategy}
        trials = {which: build_trial(TrialConfig.from_dict(settings))
                  for which in ("pipeline", "bare")}  # one trial each, trained for consecutive epochs
        ran = trials["pipeline"].fast.describe()["run_memory_format"]
        if variant != "fp32":  # fp32 rows keep their earlier keys (always contiguous)
            figures[f"{variant}_memory_format"] = ran
        for epoch in range(1, epochs + 2):  # the first epoch of each is warm-up; the order alternates
            runs = {}
            for which in (("pipeline", "bare") if epoch % 2 else ("bare", "pipeline")):
                t = trials[which]
                runs[which] = train_epoch(t, epoch)["images_per_s"] if which == "pipeline" else \
                    bare_epoch(t, epoch, gated=strategy == "gradprom")
            if epoch > 1:
                pipeline.append(runs["pipeline"])
                bare.append(runs["bare"])
        name = strategy if variant == "fp32" else f"{strategy}_{variant}"  # fp32 keys as in earlier rows
        found = {f"{name}_pipeline_img_s": round(statistics.median(pipeline), 1),
                 f"{name}_bare_img_s": round(statistics.median(bare), 1),
                 f"{name}_ratio": round(statistics.median(pipeline) / statistics.median(bare), 3)}
        emit({"strategy": name, "memory_format": ran, **found})
        figures.update(found)
    note = (f"{'quick: ' if args.quick else ''}default models (SRResNet {cfg.enhancer_blocks}×{cfg.enhancer_channels}, "
            f"ResNet-10 w{cfg.recognizer_width}), {cfg.image_size}px, batch {cfg.batch_size}, {args.device}, "
            f"torch threads {torch.get_num_threads()}"
            f"{f', {n_train} training images' if args.n_train else ''}{f', {epochs} epochs' if args.epochs else ''}")
    record("throughput_quick" if args.quick else "throughput", figures, args, note=note)


if __name__ == "__main__":
    main()
