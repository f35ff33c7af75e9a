"""Write tests/data/trial_pins.json: the figures of a few small trials, for `test_trial_pins.py`.

Run once before a change to the training step that must not change any figure (it was run at commit
fa9cc9a, before the strategies took over their gradient paths); the test then holds every later version
to those figures bit for bit. Float results depend on the CPU's kernels (MKL and oneDNN pick AVX2 or
AVX-512 code), so the file holds one set per machine fingerprint; `python tests/make_trial_pins.py`, run
from a checkout of the reference commit (with today's `tests/make_trial_pins.py` and `benchmarks/record.py`
copied in), adds or replaces this machine's set.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

SMALL = {"image_size": 32, "n_train": 48, "n_val": 16, "n_test": 16, "enhancer_blocks": 1, "enhancer_channels": 8,
         "recognizer_width": 4, "batch_size": 16, "pretrain_epochs": 1, "epochs": 2, "threads": 1, "device": "cpu",
         "lam": 0.5}
#: one trial per gradient path of the step: L_IP alone, one backward (joint/frozen), the exact two VJPs, the
#: cheap gates, PCGrad, the soft gate with an EMA, and a second auxiliary on the exact and the cheap paths
CASES = {
    "enhancer_only": {"strategy": "enhancer_only"},
    "joint": {"strategy": "joint"},
    "frozen_aux": {"strategy": "frozen", "aux_task": "segmentation"},
    "gradprom": {"strategy": "gradprom"},
    "gradprom_tensor": {"strategy": "gradprom", "granularity": "tensor"},
    "gradprom_every3": {"strategy": "gradprom", "gate_every": 3},
    "gradprom_head": {"strategy": "gradprom", "gate_on": "head"},
    "soft_ema": {"strategy": "gradprom_soft", "ema": 0.5},
    "pcgrad": {"strategy": "pcgrad", "symmetric": True},
    "threshold_aux": {"strategy": "threshold", "threshold": 0.1, "aux_task": "segmentation"},
    "gradprom_head_aux": {"strategy": "gradprom", "gate_on": "head", "aux_task": "segmentation"},
    "gradprom_batched": {"strategy": "gradprom", "vjp": "batched", "task": "segmentation"},
}
#: figures that depend on the machine or the clock, not on the computation
SKIP = ("time_", "wall_s", "step_ms", "images_per_s", "run_", "torch_version", "gradprom_version", "git_",
        "python_version", "host", "device_name", "numpy_version", "cuda_version", "data_fingerprint")


def figures(report: dict) -> dict:
    """The report's computed values, floats as exact hex strings (NaN as 'nan')."""
    out = {}
    for key, value in sorted(report.items()):
        if any(key.startswith(s) for s in SKIP) or isinstance(value, str):
            continue
        if isinstance(value, float):
            out[key] = "nan" if math.isnan(value) else value.hex()
        elif isinstance(value, int | bool):
            out[key] = value
        elif isinstance(value, list):
            out[key] = ["nan" if math.isnan(v) else float(v).hex() for v in value]
    return out


def fingerprint() -> str:
    """What the figures depend on besides the code: the CPU model, the kernels' ISA, the torch version."""
    import torch

    from benchmarks.record import cpu_model

    return f"{cpu_model()} | {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__}"


def run_case(settings: dict, cache_dir: str) -> list[dict]:
    from gradprom.trainables import train_trial

    reports: list[dict] = []
    train_trial({**SMALL, **settings, "cache_dir": cache_dir}, lambda m, _c: reports.append(figures(m)))
    return reports


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`

    with tempfile.TemporaryDirectory() as cache:
        pins = {name: run_case(settings, cache) for name, settings in CASES.items()}
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data" / "trial_pins.json"
    machines = json.loads(path.read_text())["machines"] if path.exists() else {}
    machines[fingerprint()] = pins
    path.write_text(json.dumps({"small": SMALL, "cases": CASES, "machines": machines}, indent=1, sort_keys=True)
                    + "\n")
    print(f"wrote {path} ({len(pins)} trials for {fingerprint()})", file=sys.stderr)
