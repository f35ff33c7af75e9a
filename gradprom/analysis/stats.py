"""Statistics over seeds for protocols: means, spreads, confidence intervals and paired tests.

A protocol runs every cell on the same seeds, so strategies compare *paired*: the difference per seed
removes what the seed alone decides (data draw, initialisation). Both a paired t-test and the Wilcoxon
signed-rank test are reported (scipy.stats), with the effect size d_z = mean(diff) / sd(diff). With few
seeds Wilcoxon's exact test has a floor: 5 pairs cannot go below p = 0.0625 two-sided, and the verdicts
say so instead of hiding it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

LEVEL = 0.05  # significance level of the verdicts and the two-sided 95 % confidence intervals
UNITS = {"psnr": " dB"}


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation and the t-based 95 % confidence interval of the mean over seeds."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def spread(values: Sequence[float]) -> Spread:
    """`values` over seeds (NaNs left out); std and interval are NaN below two values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return Spread(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(1 - LEVEL / 2, len(x) - 1)) * std / math.sqrt(len(x))
    return Spread(len(x), mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Paired:
    """A paired comparison of a strategy against a baseline on the same seeds (diff = strategy − baseline)."""

    n: int
    mean_diff: float
    t: float
    p_t: float
    w: float
    p_wilcoxon: float
    d_z: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def significant(self, level: float = LEVEL) -> tuple[bool, bool]:
        """(by the t-test, by Wilcoxon) at `level`; NaN p-values are never significant."""
        return bool(self.p_t < level), bool(self.p_wilcoxon < level)


def paired(strategy: Sequence[float], baseline: Sequence[float]) -> Paired:
    """Paired t-test and Wilcoxon signed-rank test (exact for small samples, two-sided) of strategy vs baseline;
    pairs with a NaN on either side are dropped. Identical samples give p = 1 (no evidence of a difference)."""
    pairs = [(a, b) for a, b in zip(strategy, baseline, strict=True)
             if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    diff = np.asarray([a - b for a, b in pairs], dtype=float)
    n = len(diff)
    if n < 2:
        return Paired(n, float(diff.mean()) if n else math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    if not np.any(diff):
        return Paired(n, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0)
    if sd == 0:  # every seed moved by the same amount: no spread to test against
        t, p_t, d_z = math.copysign(math.inf, mean), 0.0, math.copysign(math.inf, mean)
    else:
        result = stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs])
        t, p_t, d_z = float(result.statistic), float(result.pvalue), mean / sd
    wilcoxon = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
    return Paired(n, mean, t, p_t, float(wilcoxon.statistic), float(wilcoxon.pvalue), d_z)


def wilcoxon_floor(n: int) -> float:
    """The smallest two-sided p the exact Wilcoxon test can give with n pairs (all differences one sign)."""
    return min(1.0, 2.0 / 2**n) if n > 0 else math.nan


def short(metric: str) -> str:
    """A result column as a table or a verdict names it (`test_psnr` → `psnr`)."""
    return metric.removeprefix("test_")


def verdict(strategy: str, baseline: str, group: str, tested: list[tuple[str, Any]]) -> str:
    """One sentence: which differences are significant at LEVEL (paired t; Wilcoxon named when it agrees), in
    which direction, and which are not — including when the strategy does not win."""
    n = max((t.n for _, t in tested), default=0)
    if n < 2:
        return f"{strategy} vs {baseline} ({group}): fewer than 2 paired seeds, no test possible."
    better, worse, neither = [], [], []
    for metric, t in tested:
        sig_t, sig_w = t.significant()
        text = (f"{short(metric)} {t.mean_diff:+.3g}{UNITS.get(short(metric), '')} "
                f"(t p={t.p_t:.3g}, Wilcoxon p={t.p_wilcoxon:.3g})")
        if sig_t or sig_w:
            (better if t.mean_diff > 0 else worse).append(text + ("" if sig_t and sig_w else
                                                                  " [t only]" if sig_t else " [Wilcoxon only]"))
        else:
            neither.append(short(metric))
    parts = [f"{strategy} vs {baseline} ({group}, {n} paired seeds, α={LEVEL:g}):"]
    parts.append(f"significantly higher {'; '.join(better)}." if better else "significantly higher on nothing.")
    if worse:
        parts.append(f"Significantly lower {'; '.join(worse)}.")
    if neither:
        parts.append(f"No significant difference in {', '.join(neither)}.")
    if wilcoxon_floor(n) >= LEVEL:
        parts.append(f"(With {n} pairs Wilcoxon cannot go below p={wilcoxon_floor(n):.3g}.)")
    return " ".join(parts)


def spread_text(r: dict[str, Any], interval: bool = True) -> str:
    """A spread row (`Spread.as_dict`) as tables show it: "mean ± std [ci_low, ci_high]", the mean alone for one
    value, "–" for none."""
    if not r["n"]:
        return "–"
    if r["n"] < 2:
        return f"{r['mean']:.4g}"
    text = f"{r['mean']:.4g} ± {r['std']:.2g}"
    return f"{text} [{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if interval else text


def starred(p: float) -> str:
    """A p-value with a star when it is significant at LEVEL."""
    return f"{p:.3g}" + ("*" if p < LEVEL else "")
