"""`python -m vrlib.choose` (recipe choices on val): the grid of variants, params checked as
params.yaml is, the ranking and its intervals against the committed row. Hand-made records:
nothing trains here.

Run: `.venv/bin/pytest tests/test_choose.py`
"""
from __future__ import annotations

import json
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


def _seed_record(sets: dict, seed: int, per_task: dict[str, list[float]]) -> dict:
    return _record(sets, per_task) | {"seed": seed, "format": 100.0}


def test_with_seeds_a_variant_is_chosen_only_where_its_seeds_x_items_interval_lies_above_0():
    both = lambda x: {"a": x, "b": x}  # noqa: E731
    ones, zeros = [1] * 20, [0] * 20
    half = [1] * 10 + [0] * 10
    committed = [_seed_record({}, k, both(half)) for k in range(3)]
    steady = [_seed_record({"rft.lr": 0.001}, k, both(ones)) for k in range(3)]  # +50 at every seed
    lucky = [_seed_record({"rft.lr": 0.01}, k, both(x)) for k, x in enumerate([ones, zeros, ones])]
    result = choose.summarize_seeds("rft", {"committed": committed, "rft.lr=0.001": steady, "rft.lr=0.01": lucky})
    rows = {r["variant"]: r for r in result["variants"]}
    assert [r["variant"] for r in result["variants"]] == ["rft.lr=0.001", "rft.lr=0.01", "committed"]
    steady_d = rows["rft.lr=0.001"]["minus committed"]
    assert steady_d["diff"] == 50.0 and 0 < steady_d["low"] < 50.0 < steady_d["high"]  # the items' noise
    assert rows["rft.lr=0.01"]["minus committed per seed"] == [50.0, -50.0, 50.0]
    lucky_d = rows["rft.lr=0.01"]["minus committed"]
    assert lucky_d["low"] < 0 < lucky_d["high"]  # one bad seed of three: not told from 0
    assert rows["committed"]["per_seed"] == [50.0] * 3 and result["chosen"] == "rft.lr=0.001"
    result = choose.summarize_seeds("rft", {"committed": committed, "rft.lr=0.01": lucky})
    assert result["chosen"] == "committed"  # its mean is higher (+16.7), its interval holds 0
    with pytest.raises(ValueError, match="seeds"):
        choose.summarize_seeds("rft", {"committed": committed, "rft.lr=0.01": lucky[:2]})


def test_with_seeds_each_run_sets_the_compared_models_training_seeds():
    assert choose.seeded("sft", {"sft.lr": 0.01}, 2) == {"sft.lr": 0.01, "sft.seed": 2}
    assert choose.seeded("rft", {}, 1) == {"sft.seed": 1, "rft.seed": 1}


def test_the_committed_row_of_a_seed_is_read_from_make_claims_only_on_the_same_study(tmp_path, monkeypatch):
    from vrlib import claims

    monkeypatch.setattr(claims, "RUNS", tmp_path)
    monkeypatch.setattr(claims, "study_key", lambda: "this study")
    (tmp_path / "committed").mkdir()
    items = {"val": {"sft": {"a": {"val_a_0": 0.0}}, "rft": {"a": {"val_a_0": 100.0}}}}
    record = {"set": [], "seed": 1, "key": "this study", "log": {"group/frac_zero_std": 0.25},
              "format": {"val": {"sft": 90.0, "rft": 95.0}}, "scores": items}
    path = tmp_path / "committed" / "seed1.json"
    path.write_text(json.dumps(record))
    row = choose.from_claims("rft", 1)
    assert row["items"] == {"a": {"val_a_0": 100.0}} and row["format"] == 95.0 and row["groups_with_signal"] == 0.75
    assert row["sets"] == {} and row["seed"] == 1
    assert choose.from_claims("sft", 1)["items"] == {"a": {"val_a_0": 0.0}}
    assert choose.from_claims("rft", 0) is None  # no record of that seed
    path.write_text(json.dumps(record | {"key": "another study"}))
    assert choose.from_claims("rft", 1) is None


def test_choose_with_seeds_runs_every_variant_at_every_seed_and_writes_its_ranking(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.setattr(choose, "OUT", tmp_path / "choices")
    ran = []

    def fake_run(stage, raw, sets, label):
        ran.append(sets)
        right = [1] * 20 if sets.get("rft.lr") == 0.001 else [1] * 10 + [0] * 10
        return _record(sets, {"a": right, "b": right})

    monkeypatch.setattr(choose, "run_variant", fake_run)
    monkeypatch.setattr(choose, "from_claims", lambda stage, seed: None)  # no `make claims` records
    monkeypatch.setattr(choose, "variant_key", lambda raw, sets, params: choose.digest(sets))  # no splits here
    choose.main(["rft", "rft.lr=0.001", "--seeds", "2"])
    assert ran == [{"sft.seed": 0, "rft.seed": 0}, {"sft.seed": 1, "rft.seed": 1},
                   {"rft.lr": 0.001, "sft.seed": 0, "rft.seed": 0}, {"rft.lr": 0.001, "sft.seed": 1, "rft.seed": 1}]
    result = json.loads((tmp_path / "choices" / "rft-seeds.json").read_text())
    assert result["chosen"] == "rft.lr=0.001" and [r["seeds"] for r in result["variants"]] == [[0, 1], [0, 1]]
    assert result["committed"]["rft"]["lr"] == yaml.safe_load((ROOT / "params.yaml").read_text())["rft"]["lr"]

    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())  # an earlier grid's seeded runs, on disk
    for k in range(2):
        sets = choose.seeded("rft", {"rft.lr": 0.001}, k)
        record = choose.ROOT / "rft" / choose.variant_key(raw, sets, choose.with_sets(raw, sets)) / "record.json"
        record.parent.mkdir(parents=True)
        record.write_text(json.dumps(_record(sets, {"a": [1] * 20, "b": [1] * 20})))
    ran.clear()
    choose.main(["rft", "rft.temperature=1.0", "--seeds", "2"])
    assert [s.get("rft.temperature") for s in ran] == [None, None, 1.0, 1.0]
    result = json.loads((tmp_path / "choices" / "rft-seeds.json").read_text())
    assert sorted(r["variant"] for r in result["variants"]) == ["committed", "rft.lr=0.001", "rft.temperature=1.0"]
