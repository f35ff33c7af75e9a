"""A cheaper fidelity measured before a scheduler trusts it (`--fidelity-check N`).

An early-stopping scheduler (asha, pareto-asha) decides at its first rung on what a trial shows after a few epochs.
On gradprom's built-in data an early epoch can rank the task metric like noise (Spearman ρ between epoch k and the
last near 0), and then a stopper keeps the wrong trials. `FidelityGate` wraps the scheduler: until N trials have run
their whole budget it stops nothing and records each trial's objectives at the first rung and at the end; then it
measures, per objective, the rank correlation between the two over those trials (`rank_agreement`), and either
hands every later decision to the scheduler (every ρ ≥ `min_rho`) or runs every trial fully from then on. The
decision and the ρ it saw are logged, written to `fidelity-DATASET.json` in the experiment folder (the manifest and
the rows take them from there) and kept with the scheduler's state, so a resumed search keeps its decision.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray.tune.schedulers import TrialScheduler

from gradprom.search.schedulers import PickledState

logger = logging.getLogger(__name__)



def fidelity_file(folder: Path, dataset: str) -> Path:
    """Where a study's fidelity decision is written: OUT/NAME/fidelity-DATASET.json."""
    return Path(folder) / f"fidelity-{dataset}.json"


def fidelity_columns(folder: Path, dataset: str) -> dict[str, Any]:
    """The decision as trial-row columns (`fidelity_decision`, `fidelity_rho` as JSON); empty without a check."""
    path = fidelity_file(folder, dataset)
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    return {"fidelity_decision": record["decision"], "fidelity_rho": json.dumps(record["rho"], sort_keys=True)}


def rank_agreement(early: Sequence[float], final: Sequence[float]) -> float | None:
    """Spearman's ρ between two rankings of the same trials; None where either side does not vary (or has fewer
    than three finite values): no ranking to compare."""
    from scipy.stats import ConstantInputWarning, spearmanr

    pairs = [(a, b) for a, b in zip(early, final, strict=True) if math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        value = float(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)
    return None if math.isnan(value) else value


def values_of(result: dict[str, Any], objectives: Sequence[str]) -> list[float]:
    """A result's objectives as floats (NaN where missing or not a number)."""
    out = []
    for name in objectives:
        v = result.get(name)
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan)
    return out


class FidelityGate(PickledState, TrialScheduler):
    """Wraps a Tune scheduler (public `TrialScheduler` API): it sees every event, but its STOP counts only once the
    first rung has been shown to rank the final objectives (see the module docstring)."""

    def __init__(self, inner: TrialScheduler, objectives: Sequence[str], rung: int, budget: int, probe: int,
                 min_rho: float = 0.5, record: str = "", time_attr: str = "epoch") -> None:
        super().__init__()
        self.inner, self.objectives, self.rung, self.budget = inner, list(objectives), int(rung), int(budget)
        self.probe, self.min_rho, self.record, self.time_attr = int(probe), float(min_rho), record, time_attr
        self.early: dict[str, list[float]] = {}  # trial id -> objectives at the rung
        self.final: dict[str, list[float]] = {}  # trial id -> objectives at the budget
        self.decision = ""  # "" while measuring; then "trusted" or "fallback"
        self.rho: dict[str, float | None] = {}

    # --- what the gate adds -------------------------------------------------------------------------------------
    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        verdict = self.inner.on_trial_result(tune_controller, trial, result)  # the scheduler keeps its own books
        t = result.get(self.time_attr)
        if isinstance(t, (int, float)) and not self.decision:
            if int(t) == self.rung:
                self.early[trial.trial_id] = values_of(result, self.objectives)
            if int(t) >= self.budget and trial.trial_id in self.early:
                self.final[trial.trial_id] = values_of(result, self.objectives)
                if len(self.final) >= self.probe:
                    self.decide()
        return verdict if self.decision == "trusted" else TrialScheduler.CONTINUE

    def decide(self) -> None:
        """ρ per objective over the measured trials; trusted only if every one reaches `min_rho`."""
        ids = sorted(self.final)
        self.rho = {name: rank_agreement([self.early[i][k] for i in ids], [self.final[i][k] for i in ids])
                    for k, name in enumerate(self.objectives)}
        trusted = all(r is not None and r >= self.min_rho for r in self.rho.values())
        self.decision = "trusted" if trusted else "fallback"
        seen = ", ".join(f"{n} {'n/a' if r is None else f'{r:+.2f}'}" for n, r in self.rho.items())
        what = (f"the scheduler stops trials from now on (epoch {self.rung} ranks the final objectives: ρ {seen})"
                if trusted else f"every trial runs its full budget from now on (epoch {self.rung} does not rank "
                f"every final objective: ρ {seen}, each needs ≥ {self.min_rho:g})")
        logger.warning("fidelity check on %d trials: %s", len(ids), what)
        if self.record:
            record = {"decision": self.decision, "rung": self.rung, "trials": len(ids), "min_rho": self.min_rho,
                      "rho": self.rho, "said": what}
            Path(self.record).write_text(json.dumps(record, indent=1) + "\n")

    # --- everything else is the scheduler's ---------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_error(tune_controller, trial)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self.inner.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        return self.inner.choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        return f"FidelityGate({self.decision or 'measuring'}) over {self.inner.debug_string()}"
