"""Every gradient path of the step gives the figures it gave before the strategies took it over.

`tests/data/trial_pins.json` was written by `tests/make_trial_pins.py` at commit fa9cc9a, when `train_step`
still held every strategy's special case; each case here runs the same small trial with today's code and must
reproduce every figure of every epoch bit for bit (floats compared as exact hex strings) on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.make_trial_pins import figures, run_case

PINS = json.loads((Path(__file__).parent / "data" / "trial_pins.json").read_text())


@pytest.mark.parametrize("name", sorted(PINS["cases"]))
def test_the_trial_gives_its_pinned_figures(name: str, tmp_path: Path) -> None:
    assert PINS["small"] == json.loads(json.dumps(__import__("tests.make_trial_pins").make_trial_pins.SMALL))
    got = run_case(PINS["cases"][name], str(tmp_path))
    want = PINS["pins"][name]
    assert len(got) == len(want)
    for epoch, (g, w) in enumerate(zip(got, want, strict=True), start=1):
        assert sorted(g) == sorted(w), f"epoch {epoch}: columns differ"
        differ = {k: (g[k], w[k]) for k in w if g[k] != w[k]}
        assert not differ, f"epoch {epoch}: {differ}"


def test_the_pins_cover_every_gradient_path() -> None:
    """L_IP alone, one backward, the exact two VJPs (global, per tensor, batched), the cheap gates, PCGrad,
    the EMA, and a second auxiliary on the exact, one-backward and cheap paths."""
    cases = PINS["cases"].values()
    assert {c["strategy"] for c in cases} >= {"enhancer_only", "joint", "frozen", "gradprom", "gradprom_soft",
                                             "pcgrad", "threshold"}
    assert any(c.get("gate_every", 1) > 1 for c in cases) and any(c.get("gate_on") == "head" for c in cases)
    assert sum("aux_task" in c for c in cases) >= 3
    assert figures({"x": 0.1, "y": float("nan"), "time_eval_s": 1.0}) == {"x": (0.1).hex(), "y": "nan"}
