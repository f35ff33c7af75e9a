"""Protocols as data: grids expand to exactly the right trial set; the evidence read from hand-made rows."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from gradprom.analysis.evidence import analyse, markdown
from gradprom.errors import GradpromError
from gradprom.search_spaces.protocol import load_protocol, protocol_names

STRATEGIES = ["enhancer_only", "joint", "frozen", "gradprom", "gradprom_soft", "pcgrad"]


def test_denoise_is_six_strategies_three_sigmas_two_tasks_five_seeds() -> None:
    p = load_protocol("denoise")
    expected = {(s, f"gaussian:sigma={sigma}", task, seed) for s, sigma, task, seed in
                itertools.product(STRATEGIES, (0.1, 0.2, 0.3), ("classification", "segmentation"), range(5))}
    cells = p.cells()
    assert len(cells) == 180 == len(expected)
    assert {(c["strategy"], c["degradation"], c["task"], c["seed"]) for c in cells} == expected
    assert p.baselines == ["frozen", "joint"] and p.fixed["lam"] == 0.1
    assert len(load_protocol("denoise", seeds=2).cells()) == 72


def test_multi_aux_crosses_strategies_with_one_or_two_auxiliaries() -> None:
    cells = load_protocol("multi_aux").cells()
    expected = {(s, task, aux, seed) for s in ("joint", "frozen", "gradprom") for task, aux in
                (("classification", ""), ("segmentation", ""), ("classification", "segmentation")) for seed in range(5)}
    assert {(c["strategy"], c["task"], c["aux_task"], c["seed"]) for c in cells} == expected and len(cells) == 45


def test_every_shipped_protocol_and_its_quick_form_load() -> None:
    assert set(protocol_names()) >= {"denoise", "multi_aux", "composite", "sr", "cross_domain"}
    for name in protocol_names():
        quick = load_protocol(name, quick=True)
        assert 2 <= len(quick.cells()) <= 10 and quick.seeds == 2  # denoise_fronts: (2 strategies × 2 λ + 1) × 2
    assert {c["degradation"] for c in load_protocol("sr").cells()} == {"downsample:scale=2", "downsample:scale=4"}
    assert load_protocol("cross_domain").needs == ["eval_dataset"]


@pytest.mark.parametrize(("content", "message"), [
    ({"grid": {"strategy": ["nosuch"]}}, "unknown strategy 'nosuch'"),
    ({"grid": {"lam": [0.1]}}, "needs a 'strategy' axis"),
    ({"grid": {"strategy": ["joint"], "colour": [1]}}, "unknown trial setting in protocol"),
    ({"grid": {"strategy": ["joint"]}, "baselines": ["frozen"]}, "baseline frozen is not on the strategy axis"),
    ({"grid": {"strategy": ["joint"]}, "seeds": 0}, "seeds must be a whole number"),
    ({"grid": {"strategy": ["joint"]}, "lambda": 1}, "unknown key of protocol"),
])
def test_a_bad_protocol_file_is_one_line(tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(content))
    with pytest.raises(GradpromError, match=message):
        load_protocol(str(path))


def test_evidence_from_hand_made_rows(tmp_path: Path) -> None:
    """Two strategies on three seeds: means, spreads and the paired test follow the hand computation."""
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"grid": {"strategy": ["frozen", "gradprom"]}, "seeds": 3, "baselines": ["frozen"]}))
    p = load_protocol(str(path))
    psnr = {"frozen": [20.0, 21.0, 22.0], "gradprom": [20.5, 21.7, 22.3]}  # diffs 0.5, 0.7, 0.3
    rows = [{"status": "completed", "strategy": s, "seed": seed, "task": "classification", "test_psnr": psnr[s][seed],
             "test_ssim": 0.5, "test_acc": 0.6, "test_acc_ref": 0.7, "test_acc_ref_clean": 0.9,
             "test_acc_ref_input": 0.4} for s in psnr for seed in range(3)]
    rows.append({**rows[0], "status": "failed", "test_psnr": math.nan})  # never counted
    summary, comparisons, verdicts = analyse(p, rows)
    frozen_psnr = next(r for r in summary if r["strategy"] == "frozen" and r["metric"] == "test_psnr")
    assert frozen_psnr["n"] == 3 and frozen_psnr["mean"] == pytest.approx(21.0) and frozen_psnr["std"] == \
        pytest.approx(1.0)
    test = next(c for c in comparisons if c["metric"] == "test_psnr")
    assert test["mean_diff"] == pytest.approx(0.5)
    assert test["t"] == pytest.approx(0.5 / (0.2 / math.sqrt(3)))  # sd of 0.5, 0.7, 0.3 is 0.2
    assert test["p_wilcoxon"] == pytest.approx(2 / 8)  # all three positive: 2·(1/2³)
    same = next(c for c in comparisons if c["metric"] == "test_acc")
    assert same["mean_diff"] == 0 and same["p_t"] == 1.0
    assert len(verdicts) == 1 and "gradprom vs frozen" in verdicts[0] and "No significant difference in" \
        in verdicts[0] and "psnr +0.5 dB" in verdicts[0] and "cannot go below p=0.25" in verdicts[0]
    text = markdown(p, summary, comparisons, verdicts)
    assert "| gradprom | 3 | 21.5 ± 0.9" in text and "### Verdicts" in text
