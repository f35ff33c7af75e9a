"""Every gradient path of the step gives the figures it gave before the strategies took it over.

`tests/data/trial_pins.json` was written by `tests/fixtures/pins.py` at commit fa9cc9a, when `train_step`
still held every strategy's special case; each case here runs the same small trial with today's code and must
reproduce every pinned figure of every epoch bit for bit (floats compared as exact hex strings) on the CPU.
Bits depend on the CPU's kernels, so the file holds one set per machine fingerprint (CPU model, ISA, torch). On
a machine without its own figures for a case they are held to the first set that has them, within what two
known machines differ by (at most 2e-3 absolute, on cosines; 5e-6 relative on PSNR), with margin: a changed
gate, λ or path moves them far more (a test below checks both sides). Columns added since a case was pinned
(a new metric) are not held; a pinned one that is missing fails. The cases with a segmentation task were
re-pinned when the built-in segmentation masks and its task metric (foreground Dice) changed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.fixtures.pins import SMALL, figures, fingerprint, run_case

PINS = json.loads((Path(__file__).parent / "data" / "trial_pins.json").read_text())


def pinned(name: str) -> tuple[list[dict], bool]:
    """(the case's pinned epochs, whether bit for bit): this machine's own when its set has the case, else the first
    set that has it (compared with tolerance)."""
    own = PINS["machines"].get(fingerprint(), {})
    if name in own:
        return own[name], True
    return next(cases[name] for cases in PINS["machines"].values() if name in cases), False


def close(got: object, want: object) -> bool:
    """Equal, or (floats as hex strings, or lists of them) within 5e-3 absolute or 1e-4 relative; NaN = NaN."""
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(close, got, want))
    if not isinstance(want, str):
        return got == want
    x, y = (float("nan") if v == "nan" else float.fromhex(v) for v in (got, want))
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-4, abs_tol=5e-3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One recognizer cache for every case, as `tests/fixtures/pins.py` wrote the pins (its cases share one)."""
    return str(tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("name", sorted(PINS["cases"]))
def test_the_trial_gives_its_pinned_figures(name: str, cache: str) -> None:
    assert PINS["small"] == json.loads(json.dumps(SMALL))
    got = run_case(PINS["cases"][name], cache)
    want, exact = pinned(name)
    assert len(got) == len(want)
    for epoch, (g, w) in enumerate(zip(got, want, strict=True), start=1):
        assert set(w) <= set(g), f"epoch {epoch}: pinned columns not reported: {sorted(set(w) - set(g))}"
        differ = {k: (g[k], w[k]) for k in w if (g[k] != w[k] if exact else not close(g[k], w[k]))}
        assert not differ, f"epoch {epoch} ({'bit for bit' if exact else 'within tolerance'}): {differ}"


def test_the_tolerance_tells_known_machines_apart_from_a_change() -> None:
    """The two pinned machines agree within it; a 1 % change of a figure near 1 or a flipped cosine does not."""
    sets = list(PINS["machines"].values())
    assert len(sets) >= 2
    shared = [name for name in PINS["cases"] if name in sets[0] and name in sets[1]]
    assert len(shared) >= 6  # most paths are pinned on both machines
    for name in shared:
        for a, b in zip(sets[0][name], sets[1][name], strict=True):
            assert all(close(a[k], b[k]) for k in a), name
    assert not close((0.99).hex(), (1.0).hex()) and not close((-0.3).hex(), (0.3).hex())
    assert not close((20.01).hex(), (20.0).hex())  # PSNR: 0.01 dB is 5e-4 relative


def test_the_pins_cover_every_gradient_path() -> None:
    """L_IP alone, one backward, the exact two VJPs (global, per tensor, batched), the cheap gates, PCGrad,
    the EMA, and a second auxiliary on the exact, one-backward and cheap paths."""
    cases = PINS["cases"].values()
    assert {c["strategy"] for c in cases} >= {"enhancer_only", "joint", "frozen", "gradprom", "gradprom_soft",
                                             "pcgrad", "threshold"}
    assert any(c.get("gate_every", 1) > 1 for c in cases) and any(c.get("gate_on") == "head" for c in cases)
    assert sum("aux_task" in c for c in cases) >= 3
    assert figures({"x": 0.1, "y": float("nan"), "time_eval_s": 1.0}) == {"x": (0.1).hex(), "y": "nan"}
