"""vrlib.stats: paired bootstrap intervals against a direct computation on tiny tables."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from vrlib.stats import Interval, fmt, paired, seeds_interval, stratified_interval


def exact_interval(strata: list[list[float]], confidence: float = 0.95) -> tuple[float, float]:
    """The bootstrap by enumeration: every resample of every stratum, equally likely; the
    interval is the distribution's 2.5% and 97.5% quantiles. The levels must sit well away
    from a jump of the CDF, so a Monte Carlo bootstrap lands on the same values."""
    means = [[np.mean(r) for r in itertools.product(d, repeat=len(d))] for d in strata]
    dist = np.sort([np.mean(c) for c in itertools.product(*means)])
    values, counts = np.unique(dist, return_counts=True)
    cdf = np.cumsum(counts) / len(dist)
    alpha = (1 - confidence) / 2
    for level in (alpha, 1 - alpha):
        assert np.min(np.abs(cdf - level)) > 0.01, "a level too close to a jump: pick another table"
    return float(values[np.argmax(cdf >= alpha)]), float(values[np.argmax(cdf >= 1 - alpha)])


def test_paired_bootstrap_matches_the_direct_computation():
    # per-item scores of two models on the same 4 items (percent): one item differs by 50
    a = np.array([75.0, 100.0, 0.0, 50.0])
    b = np.array([25.0, 100.0, 0.0, 50.0])
    iv = stratified_interval([a - b])
    # the resampled mean is 50 k / 4 with k ~ Binomial(4, 1/4): P(k = 0) = 0.32 > 2.5%,
    # P(k <= 2) = 0.949 < 97.5% <= P(k <= 3) = 0.996, so the interval is [0, 37.5]
    assert (iv.diff, iv.low, iv.high, iv.n) == (12.5, 0.0, 37.5, 4)
    assert (iv.low, iv.high) == exact_interval([a - b])


def test_stratified_bootstrap_resamples_within_each_family():
    fam_a, fam_b = [100.0, 0.0], [0.0, 0.0, 0.0, 100.0]
    iv = stratified_interval([fam_a, fam_b])
    assert iv.diff == (50 + 25) / 2 and iv.n == 6  # each family weighs the same, not each item
    assert (iv.low, iv.high) == exact_interval([fam_a, fam_b]) == (0.0, 75.0)


def test_one_flipped_item_in_20_is_not_an_effect():
    b = np.zeros(20)
    a = b.copy()
    a[7] = 100.0  # one item the new model fixes
    iv = stratified_interval([a - b])
    assert iv.diff == 5.0 and iv.low <= 0 <= iv.high and not iv.excludes_zero
    assert fmt(iv, mark=True) == fmt(iv) and not fmt(iv).startswith("**")


def test_intervals_are_reproducible_and_seeded():
    d = np.random.default_rng(1).normal(3, 20, 60)
    assert stratified_interval([d]) == stratified_interval([d])
    assert stratified_interval([d], seed=1) != stratified_interval([d], seed=2)
    s = np.repeat([0, 1, 2], 20)
    assert seeds_interval(d[None], np.zeros((1, 60)), s) == seeds_interval(d[None], np.zeros((1, 60)), s)


def test_degenerate_cases():
    assert stratified_interval([np.full(10, 5.0)]) == Interval(5.0, 5.0, 5.0, 10)  # every item moved by 5
    one = stratified_interval([[1.0, 2.0], [4.0]])  # a family of one item has no spread to resample
    assert one.low is None and one.half_width is None and fmt(one) == "+2.8 [n/a]"


def test_paired_gives_over_tasks_and_per_family():
    a = {"order": np.array([100.0, 0, 100, 0]), "count": np.array([50.0, 50, 50, 50])}
    b = {"order": np.array([0.0, 0, 100, 0]), "count": np.array([50.0, 50, 50, 50])}
    out = paired(a, b)
    assert list(out) == ["over tasks", "count", "order"]
    assert out["order"].diff == 25.0 and out["count"].as_dict() == {
        "diff": 0.0, "low": 0.0, "high": 0.0, "half_width": 0.0, "n": 4}
    assert out["over tasks"].diff == 12.5 and out["over tasks"].n == 8


def test_seeds_interval_holds_the_spread_across_runs():
    rng = np.random.default_rng(0)
    strata = np.repeat(np.arange(4), 30)
    sft = rng.integers(0, 2, 120) * 100.0
    one_run = np.where(rng.random(120) < 0.1, 100.0 - sft, sft)  # (items,)
    # with one run each, it is the stratified item bootstrap (another random stream: close)
    nested, items = seeds_interval(one_run[None], sft[None], strata), stratified_interval(
        [one_run[strata == s] - sft[strata == s] for s in range(4)])
    assert nested.diff == pytest.approx(items.diff)
    assert nested.low == pytest.approx(items.low, abs=1.5) and nested.high == pytest.approx(items.high, abs=1.5)
    # three runs that disagree: the same mean, a wider interval than pretending one run
    runs = np.stack([one_run, np.roll(one_run, 1), np.roll(one_run, 2)])  # (3, items)
    spread = seeds_interval(runs, sft[None], strata)
    assert spread.half_width > seeds_interval(runs.mean(0)[None], sft[None], strata).half_width


def test_fmt():
    assert fmt({"diff": 4.14, "low": 1.2, "high": 7.0}) == "+4.1 [+1.2, +7.0]"
    assert fmt({"diff": -4.14, "low": -7.0, "high": -1.2}, mark=True) == "**-4.1 [-7.0, -1.2]**"
    assert fmt(None) == "-"
