"""Training images/s of gradprom's pipeline against a bare PyTorch loop of the same models (the ceiling).

Both train the same SRResNet + ResNet on the same synthetic batches for the same steps, each its own
trial for consecutive epochs (the first one, warm-up, is not counted; the order alternates); the pipeline
is `train_epoch` (on-device degradation, strategy, telemetry, NaN checks), the bare loop is the textbook
code for the same math with nothing around it. Ratios near 1 mean the pipeline costs nothing extra.
Measured for `joint` (bare: one backward of L_IP + λ·L_VR) and `gradprom` (bare: two full backward
passes, the cosine, the gated sum). Variants (`--variants`): `fp32` (fp32, contiguous), `amp` (bf16
autocast + channels-last, the GPU fast path) and `amp_compile` (that plus `torch.compile`, inductor); the bare
loop runs each variant's forward the same way, so every ratio compares like with like. Default variants: all
three on a GPU, `fp32` on the CPU. Run: `python benchmarks/throughput.py [--quick] [--device cpu|cuda]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import record  # noqa: E402

from gradprom.trainables.config import TrialConfig  # noqa: E402
from gradprom.trainables.loop import Trial, build_trial, ip_loss, seeded_generator, task_loss, train_epoch  # noqa: E402

VARIANTS = {
    "fp32": {"precision": "fp32", "memory_format": "contiguous", "compile": "off"},
    "amp": {"precision": "bf16", "memory_format": "channels_last", "compile": "off"},
    "amp_compile": {"precision": "bf16", "memory_format": "channels_last", "compile": "inductor"},
}


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
        loss_ip, loss_vr = ip_loss(cfg.loss_ip, x_hat, x), task_loss(logits, y)
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
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--variants", default="", help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    variants = args.variants.split(",") if args.variants else \
        (list(VARIANTS) if args.device.startswith("cuda") else ["fp32"])
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant '{unknown[0]}'; variants: {', '.join(VARIANTS)}")
    base = {"dataset": "synthetic", "n_train": 128 if args.quick else 512, "n_val": 16, "n_test": 16,
            "pretrain_epochs": 1, "device": args.device, "cache_dir": str(Path.home() / ".cache" / "gradprom-bench")}
    epochs = 2 if args.quick else 6
    figures: dict[str, float] = {}
    for variant, strategy in ((v, s) for v in variants for s in ("joint", "gradprom")):
        pipeline, bare = [], []
        trials = {which: build_trial(TrialConfig.from_dict({**base, **VARIANTS[variant], "strategy": strategy}))
                  for which in ("pipeline", "bare")}  # one trial each, trained for consecutive epochs
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
        figures[f"{name}_pipeline_img_s"] = round(statistics.median(pipeline), 1)
        figures[f"{name}_bare_img_s"] = round(statistics.median(bare), 1)
        figures[f"{name}_ratio"] = round(statistics.median(pipeline) / statistics.median(bare), 3)
        print({"strategy": name, **{k: v for k, v in figures.items() if k.startswith(name + "_")}})
    cfg = TrialConfig()
    note = (f"{'quick: ' if args.quick else ''}default models (SRResNet {cfg.enhancer_blocks}×{cfg.enhancer_channels}, "
            f"ResNet-10 w{cfg.recognizer_width}), {cfg.image_size}px, batch {cfg.batch_size}, {args.device}, "
            f"torch threads {torch.get_num_threads()}")
    if not args.no_record:
        record("throughput_quick" if args.quick else "throughput", figures, note=note)


if __name__ == "__main__":
    main()
