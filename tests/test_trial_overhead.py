"""A trial's fixed cost before its first step: what is computed once per process, not once per trial."""

from __future__ import annotations

import gradprom.trainables.evaluate as evaluate
from gradprom.trainables import train_trial


def test_reference_levels_are_scored_once_per_process(tiny: dict, monkeypatch) -> None:
    """Two trials on the same data, degradation and seed score the reference's clean/input levels once (val and
    test), with the very figures a fresh process computes; another degradation is scored anew."""
    monkeypatch.setattr(evaluate, "_LEVELS", {})
    calls: list[tuple[str, ...]] = []
    real = evaluate.score

    def counting(t, images, inputs, heads, views=("",), intervals=False):
        calls.append(views)
        return real(t, images, inputs, heads, views, intervals)

    monkeypatch.setattr(evaluate, "score", counting)
    first = train_trial({**tiny, "lam": 0.5})
    levels = [c for c in calls if c == ("_clean", "_input")]
    assert len(levels) == 2  # val and test
    second = train_trial({**tiny, "lam": 0.2})
    assert [c for c in calls if c == ("_clean", "_input")] == levels  # no new level scoring
    for key in ("acc_ref_clean", "acc_ref_input", "test_acc_ref_clean", "test_acc_ref_input"):
        assert second[key] == first[key]
    monkeypatch.setattr(evaluate, "_LEVELS", {})  # a fresh process: the same figures, computed again
    assert train_trial({**tiny, "lam": 0.2})["test_acc_ref_input"] == second["test_acc_ref_input"]
    train_trial({**tiny, "lam": 0.2, "degradation": "gaussian:sigma=0.3"})
    assert len([c for c in calls if c == ("_clean", "_input")]) == 6
