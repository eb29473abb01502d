"""`python -m vrlib.choose` (recipe choices on val): the grid of variants, params checked as
params.yaml is, the ranking and its intervals against the committed row. Hand-made records:
nothing trains here.

Run: `.venv/bin/pytest tests/test_choose.py`
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vrlib import choose
from vrlib.config import ParamsError

ROOT = Path(__file__).resolve().parents[1]


def test_the_grid_is_the_product_of_the_axes_read_as_yaml():
    grid = choose.variants(["sft.lr=0.001,0.003", "sft.families=[grounding],[]"])
    assert grid == [{"sft.lr": 0.001, "sft.families": ["grounding"]}, {"sft.lr": 0.001, "sft.families": []},
                    {"sft.lr": 0.003, "sft.families": ["grounding"]}, {"sft.lr": 0.003, "sft.families": []}]
    assert choose.variants(["sft.splits=[sft],[sft,rl]"]) == [{"sft.splits": ["sft"]}, {"sft.splits": ["sft", "rl"]}]
    with pytest.raises(SystemExit, match="section.key"):
        choose.axes(["lr=0.1"])


def test_a_variant_is_checked_like_params_yaml():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = choose.with_sets(raw, {"sft.lr": 0.01, "rft.temperature": 1.0})
    assert params.sft.lr == 0.01 and params.rft.temperature == 1.0
    assert params.sft.steps == raw["sft"]["steps"]  # the rest is the committed file
    with pytest.raises(ParamsError, match="known keys"):
        choose.with_sets(raw, {"sft.lrr": 0.01})


def test_at_a_real_scale_a_variant_overrides_the_scales_preset():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    scale = next(iter(raw["presets"]))
    params = choose.with_sets(raw | {"scale": scale}, {"sft.lr": 0.0123})
    assert params.sft.lr == 0.0123


def test_an_sft_adapter_is_keyed_by_everything_it_depends_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/sft.jsonl").write_text("{}\n")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    key = choose.sft_key(choose.with_sets(raw, {}))
    assert choose.sft_key(choose.with_sets(raw, {"rft.lr": 0.5})) == key  # RL variants share their SFT
    for sets in ({"sft.lr": 0.5}, {"base.dtype": "bfloat16"}, {"data.n_sft": 7}):
        assert choose.sft_key(choose.with_sets(raw, sets)) != key, sets
    assert choose.sft_key(choose.with_sets(raw | {"seed": 5}, {})) != key
    (tmp_path / "data/sft.jsonl").write_text("{}\n{}\n")
    assert choose.sft_key(choose.with_sets(raw, {})) != key  # new data, new adapter


def _record(sets: dict, per_task: dict[str, list[float]]) -> dict:
    metrics = {t: {"accuracy": 100 * sum(v) / len(v), "format": 100.0, "problem_type": "multiple choice",
                   "n": len(v)} for t, v in per_task.items()}
    items = {t: {f"val_{t}_{i}": 100.0 * x for i, x in enumerate(v)} for t, v in per_task.items()}
    return {"sets": sets, "metrics": metrics, "items": items, "minutes": 1.0}


def test_variants_are_ranked_on_val_with_their_difference_from_the_committed_row():
    committed = _record({}, {"a": [0, 0, 1, 0], "b": [0, 1, 0, 0]})
    better = _record({"sft.lr": 0.01}, {"a": [1, 1, 1, 0], "b": [1, 1, 0, 1]})
    worse = _record({"sft.lr": 0.0001}, {"a": [0, 0, 0, 0], "b": [0, 0, 0, 0]})
    result = choose.summarize("sft", [committed, better, worse])
    assert result["split"] == "val" and result["chosen"] == "sft.lr=0.01"
    rows = {r["variant"]: r for r in result["variants"]}
    assert [r["variant"] for r in result["variants"]] == ["sft.lr=0.01", "committed", "sft.lr=0.0001"]
    assert rows["committed"]["val"] == 25.0 and "minus committed" not in rows["committed"]
    d = rows["sft.lr=0.01"]["minus committed"]
    assert d["diff"] == 50.0 and d["low"] <= d["diff"] <= d["high"]
    assert rows["sft.lr=0.0001"]["minus committed"]["diff"] == -25.0


def test_a_new_base_never_reuses_a_variant_trained_on_the_old_one(tmp_path, monkeypatch):
    monkeypatch.setattr(choose, "BASE", str(tmp_path))
    (tmp_path / "pointer.json").write_text('{"path": "a", "sha256": "1"}')
    first = choose.base_id()
    (tmp_path / "pointer.json").write_text('{"path": "a", "sha256": "2"}')
    assert choose.base_id() != first
