"""How sure a difference between two models is: paired bootstrap intervals over items.

Paired: both models answer the same items, so what makes an item easy or hard cancels in the
per-item difference; resampling the differences, not the two scores apart, gives the right
(and much narrower) interval. Stratified: the study's "mean over tasks" weighs each family
equally, so items are resampled *within* each family, every family keeping its size; scipy
does exactly this when each family's differences are passed as a sample of its own with
`paired=False` (each sample is resampled independently). Percentile intervals: checkable by
hand, and defined when every difference is equal (BCa returns nan there). A stratum of one
item has no spread to resample: its interval is None, never a zero-width claim.

RL seeds add a second source of noise that no item resampling sees: `seeds_interval`
resamples the runs as well as the items (a two-level bootstrap with numpy's seeded
Generator, which scipy cannot express: it has no nested resampling); `paired_seeds_interval`
when the two sides' runs are paired by seed (`make claims`: the same SFT and RL seeds).

The seed is fixed (`seed`): the same inputs give the same interval, to the last digit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 9999
"""scipy's default; the 2.5% and 97.5% percentiles move by < 0.1 point between seeds at n = 220."""


@dataclass
class Interval:
    """A difference (percent points, `a - b`) and its `confidence` interval; low/high None
    when a stratum has fewer than 2 items."""

    diff: float
    low: float | None
    high: float | None
    n: int

    @property
    def half_width(self) -> float | None:
        """The smallest difference this comparison can tell from 0 at the observed variance."""
        return None if self.low is None else (self.high - self.low) / 2

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict:
        r = lambda v: None if v is None else round(float(v), 2) + 0.0  # noqa: E731  (+ 0.0: no -0.0)
        return {"diff": r(self.diff), "low": r(self.low), "high": r(self.high),
                "half_width": r(self.half_width), "n": self.n}


def fmt(iv: dict | Interval | None, mark: bool = False) -> str:
    """`+4.1 [+1.2, +7.0]`; with `mark`, bold when the interval excludes 0 (an effect)."""
    if iv is None:
        return "-"
    d = iv.as_dict() if isinstance(iv, Interval) else iv
    if d["low"] is None:
        return f"{d['diff']:+.1f} [n/a]"
    text = f"{d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"
    effect = d["low"] > 0 or d["high"] < 0
    return f"**{text}**" if mark and effect else text


def _mean_of_means(*strata, axis=-1):
    return np.mean([s.mean(axis=axis) for s in strata], axis=0)


def bootstrap(diffs: list[np.ndarray], *, seed: int = 0, confidence: float = CONFIDENCE,
              n_resamples: int = N_RESAMPLES):
    """scipy's bootstrap of the mean over strata of each stratum's mean difference, items
    resampled within their stratum. Every stratum needs >= 2 items."""
    return stats.bootstrap(tuple(np.asarray(d, float) for d in diffs), _mean_of_means, paired=False,
                           vectorized=True, n_resamples=n_resamples, confidence_level=confidence,
                           method="percentile", rng=np.random.default_rng(seed))


def stratified_interval(diffs: list[np.ndarray], *, seed: int = 0, confidence: float = CONFIDENCE,
                        n_resamples: int = N_RESAMPLES) -> Interval:
    """The mean over strata of the mean per-item difference, with its interval. One stratum:
    a plain paired bootstrap (one family, or a task-less comparison)."""
    diffs = [np.asarray(d, float) for d in diffs]
    point = float(_mean_of_means(*diffs))
    n = sum(len(d) for d in diffs)
    if min(len(d) for d in diffs) < 2:
        return Interval(point, None, None, n)
    ci = bootstrap(diffs, seed=seed, confidence=confidence, n_resamples=n_resamples).confidence_interval
    # a constant difference: scipy's percentiles can land a rounding error off the point
    return Interval(point, min(float(ci.low), point), max(float(ci.high), point), n)


def paired(a: dict[str, np.ndarray], b: dict[str, np.ndarray], *, seed: int = 0,
           confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES) -> dict[str, Interval]:
    """`a - b` per stratum and "over tasks" (the mean over strata); `a`, `b`: stratum -> per-item
    scores, items in the same order in both."""
    diffs = {k: np.asarray(a[k], float) - np.asarray(b[k], float) for k in sorted(a)}
    kw = dict(seed=seed, confidence=confidence, n_resamples=n_resamples)
    return {"over tasks": stratified_interval(list(diffs.values()), **kw)} | {
        k: stratified_interval([d], **kw) for k, d in diffs.items()}


def _draw_weights(rng: np.random.Generator, runs: int, n_resamples: int) -> np.ndarray:
    """Runs drawn with replacement, as the weight of each run in the resample's mean."""
    draws = rng.integers(0, runs, (n_resamples, runs))                           # (R, runs)
    return np.stack([(draws == k).sum(axis=1) for k in range(runs)], axis=1) / runs  # (R, runs)


def seeds_interval(a: np.ndarray, b: np.ndarray, strata: np.ndarray, *, seed: int = 0,
                   confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES) -> Interval:
    """`a - b` averaged over runs, then over items within each stratum, then over strata, for
    a: (runs_a, items) and b: (runs_b, items) scores on the same items (b may be one run: the
    SFT model). Each resample draws runs with replacement for a and b independently, and items
    with replacement within each stratum, the same items for every run (they answered the
    same items): the interval holds the spread across RL seeds as well as across items
    (a nested bootstrap, as for clustered data; rliable resamples runs only)."""
    a, b, strata = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float)), np.asarray(strata)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    point = float(np.mean([a[:, g].mean() - b[:, g].mean() for g in groups]))
    if min(len(g) for g in groups) < 2:
        return Interval(point, None, None, a.shape[1])
    rng = np.random.default_rng(seed)
    wa = _draw_weights(rng, len(a), n_resamples)                                 # (R, runs_a)
    wb = _draw_weights(rng, len(b), n_resamples)                                 # (R, runs_b)
    d = wa @ a - wb @ b                                                          # (R, items)
    per = [np.take_along_axis(d[:, g], rng.integers(0, len(g), (n_resamples, len(g))), axis=1).mean(axis=1)
           for g in groups]                                                      # strata x (R,)
    dist = np.mean(per, axis=0)                                                  # (R,)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(dist, [100 * alpha, 100 * (1 - alpha)])
    return Interval(point, min(float(low), point), max(float(high), point), a.shape[1])


def paired_seeds_interval(a: np.ndarray, b: np.ndarray, strata: np.ndarray, *, seed: int = 0,
                          confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES) -> Interval:
    """`a - b` for runs paired by seed, a and b: (seeds, items), row k of both from seed k (the
    same SFT and RL seeds, often the same SFT model). The per-seed differences are resampled as
    runs, and items within strata, as `seeds_interval` does: what the two arms share at a seed
    cancels, as an item's difficulty cancels in `paired`."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape != b.shape:
        raise ValueError(f"paired runs need the same seeds and items, got {a.shape} and {b.shape}")
    return seeds_interval(a - b, np.zeros((1, a.shape[1])), strata, seed=seed, confidence=confidence,
                          n_resamples=n_resamples)
