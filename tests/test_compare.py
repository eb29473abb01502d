"""vrlib.compare: two runs' traces compared item by item, with the intervals vrlib.stats gives."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vrlib import compare, stats

# per-item headline scores (0..1) of two families: count is scored by accuracy, distance by MRA
BASE = {"count": [1, 0, 0, 1, 0], "distance": [0.5, 0.2, 0.9]}
EXP = {"count": [1, 1, 0, 1, 1], "distance": [0.6, 0.2, 0.7]}
KIND = {"count": "numerical", "distance": "regression"}


def write(folder, scores, model="rft"):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"model": model, "problem_id": f"{task}-{i}", "task": task, "problem_type": KIND[task],
             "accuracy": 0.0 if KIND[task] == "regression" else v, "mra": v if KIND[task] == "regression" else 0.0}
            for task, values in scores.items() for i, v in enumerate(values)]
    (folder / f"{model}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]))  # any order
    return str(folder)


def test_the_command_prints_the_intervals_vrlib_stats_gives(tmp_path, capsys):
    base, exp = write(tmp_path / "base", BASE), write(tmp_path / "exp", EXP)
    compare.main([base, exp])
    out = capsys.readouterr().out
    want = stats.paired({t: 100 * np.array(EXP[t], float) for t in EXP},
                        {t: 100 * np.array(BASE[t], float) for t in BASE})
    assert f"| count | 5 | 40.0 | 80.0 | {stats.fmt(want['count'], mark=True)} |" in out
    assert f"| distance | 3 | 53.3 | 50.0 | {stats.fmt(want['distance'], mark=True)} |" in out
    assert f"| **over tasks** | 8 | 46.7 | 65.0 | {stats.fmt(want['over tasks'], mark=True)} |" in out
    assert "one RL run per side" in out and "seeds x items 95%" not in out
    assert want["over tasks"].diff == pytest.approx((40 - 3.33333) / 2, abs=1e-3)


def test_several_rl_seeds_a_side_add_the_seeds_x_items_interval(tmp_path):
    shifted = {t: [min(1.0, v + 0.1) for v in vs] for t, vs in EXP.items()}
    base = [compare.read_run(write(tmp_path / f"b{k}", BASE)) for k in range(2)]
    exp = [compare.read_run(write(tmp_path / "e0", EXP)), compare.read_run(write(tmp_path / "e1", shifted))]
    result = compare.compare(base, exp)
    a = {t: np.array([EXP[t], shifted[t]], float) * 100 for t in EXP}
    b = {t: np.array([BASE[t], BASE[t]], float) * 100 for t in BASE}
    strata = np.array(["count"] * 5 + ["distance"] * 3)
    want = stats.seeds_interval(np.hstack([a["count"], a["distance"]]), np.hstack([b["count"], b["distance"]]), strata)
    assert result["seeds"]["over tasks"] == want
    assert result["seeds"]["count"] == stats.seeds_interval(a["count"], b["count"], np.array(["count"] * 5))
    assert result["items"]["over tasks"] == stats.paired({t: a[t].mean(0) for t in a}, {t: b[t].mean(0) for t in b})["over tasks"]
    assert "seeds x items 95%" in compare.table(result)


def test_runs_on_other_items_are_refused(tmp_path):
    base = compare.read_run(write(tmp_path / "b", BASE))
    other = compare.read_run(write(tmp_path / "e", {"count": [1, 1, 1, 1], "distance": [0.5, 0.2, 0.9]}))
    with pytest.raises(ValueError, match="same items"):
        compare.compare([base], [other])


def test_a_revision_without_traces_here_says_to_run_the_baseline_on_this_machine(tmp_path):
    with pytest.raises(SystemExit, match="dvc exp run -n baseline"):
        compare.read_run("no-such-experiment-or-revision", root=".")


def test_the_docs_noise_numbers_follow_the_params():
    """docs/change-a-reward.md's items per family and points per item are the params' (eval's
    split, weighted families), so they cannot go stale."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((root / "params.yaml").read_text())["data"]
    n = data["n_eval"] / sum(data["families"].values())  # every family weighs 1 in the study
    assert set(data["families"].values()) == {1}, "weighted families: write the doc's numbers per family"
    doc = " ".join((root / "docs/change-a-reward.md").read_text().split())
    assert f"`eval` has {n:.0f} items per task family" in doc
    assert f"by {100 / n:.1f} points" in doc
