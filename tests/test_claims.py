"""`make claims` (vrlib.claims): the runs it plans, the configurations that make them, intervals
paired by seed, verdicts decided on `val`, metrics/claims.json, resuming after a kill. Hand-made
run records and traces: nothing trains here.

Run: `.venv/bin/pytest tests/test_claims.py`
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from vrlib import ablations, claims, config, stats
from vrlib.config import ParamsError, SFTParams
from vrlib.evaluate import item_scores

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"name", "diff", "low", "high", "seeds", "items", "split"}


def _scores(split: str, per_task: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """task -> {problem_id: score}, ids numbered through the split as the data stage names them."""
    out, i = {}, 0
    for task, values in per_task.items():
        out[task] = {}
        for v in values:
            out[task][f"{split}_{i:05d}"] = float(v)
            i += 1
    return out


def _record(name: str, seed: int, sft: dict, rft: dict, val: tuple[dict, dict] | None = None) -> dict:
    """A run record as `ablations.run_record` writes it; `val` gives val its own (sft, rft)."""
    vs, vr = val or (sft, rft)
    return {"set": claims.CONFIGS[name][1], "seed": seed, "key": "k", "log": {},
            "scores": {"eval": {"sft": _scores("eval", sft), "rft": _scores("eval", rft)},
                       "val": {"sft": _scores("val", vs), "rft": _scores("val", vr)}}}


def _same(value: float) -> dict[str, list[float]]:
    return {t: [value, value] for t in ("count", "grounding", "order")}


def _runs(eval_rft_sft: float = 10.0) -> dict[str, list[dict]]:
    """Every configuration at seeds 0, 1, 2; items: count, grounding, order, 2 each. The SFT model
    scores 10 * seed on every item: what a seed shares, which pairing by seed cancels."""
    runs = {}
    for k in range(3):
        sft = _same(10.0 * k)
        committed = {t: [v + eval_rft_sft for v in vs] for t, vs in sft.items()}  # eval: RL + 10
        rows = {
            "committed": (sft, committed, (sft, {t: [v + 10 for v in vs] for t, vs in sft.items()})),
            # the same on order; 20 more on count, the same on grounding: -10 over the other families
            "grpo": (sft, {**committed, "count": [v + 20 for v in committed["count"]]}, None),
            # +40 over grpo on count and order, whose items are the KIM items (below)
            "relative": (sft, {**committed, "count": [v + 20 + 40 for v in committed["count"]],
                               "order": [v + 40 for v in committed["order"]]}, None),
            "rl from base": (sft, _same(0.0), None),  # below the committed RL (10 + 10k): as the paper says
            "grounding": (sft, {"count": [0, 0], "grounding": [50, 50], "order": [0, 0]}, None),
            "grounding sft": ({"count": [5, 5], "grounding": [20, 20], "order": [5, 5]}, _same(99.0), None),
        }
        for name, (s, r, val) in rows.items():
            runs.setdefault(name, []).append(_record(name, k, s, r, val))
    return runs


KIM = {split: {f"{split}_{i:05d}" for i in (0, 1, 4, 5)} for split in ("eval", "val")}  # count and order


# ----------------------------------------------------------------------------- the plan
def test_plan_runs_each_configuration_the_claims_need_seed_by_seed():
    todo = claims.plan()
    assert len(todo) == len(claims.CONFIGS) * 3
    assert [s for _, _, s in todo] == [0] * 6 + [1] * 6 + [2] * 6  # a seed's runs share its SFT model
    assert [name for name, _, _ in todo[:6]] == list(claims.CONFIGS)
    assert {name for name, _, _ in claims.plan(only=["forgetting"])} == {"grounding", "grounding sft"}
    assert claims.plan(only=["rft - sft"]) == claims.plan(only=["rft-sft"]) == [("committed", [], s) for s in range(3)]
    with pytest.raises(ValueError, match="unknown claim 'rft'; known: rft-sft, "):
        claims.plan(only=["rft"])
    for c in claims.CLAIMS:  # every arm is a configuration that runs
        assert c.a[0] in claims.CONFIGS and c.b[0] in claims.CONFIGS and c.sign in (1, -1)
    assert set(claims.MINUTES) == set(claims.CONFIGS)


def test_each_run_varies_the_sft_and_rl_seeds_and_keeps_the_data():
    """Every run's overrides on params.yaml are valid params: the SFT and RL seeds are k, the
    study's `seed` (the data's) is the committed one, SFT trains on sft/rl only."""
    from vrlib.choose import with_sets

    committed = config.load(ROOT / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, sets, seed in claims.plan(seeds=(0, 2)):
        p = with_sets(raw, claims.as_sets(claims.overrides(sets, seed)))
        assert (p.sft.seed, p.rft.seed, p.seed, p.data) == (seed, seed, committed.seed, committed.data)
        assert set(p.sft.splits) <= {"sft", "rl"} and not p.evaluation.tcr and not p.evaluation.shuffled
        assert p.rft.steps == committed.rft.steps
    assert claims.overrides(["rft.algo=grpo"], 1)[-3:] == ["sft.seed=1", "rft.seed=1", "rft.algo=grpo"]
    assert claims.as_sets(["sft.splits=[sft,rl]", "rft.relative=true"]) == {"sft.splits": ["sft", "rl"],
                                                                           "rft.relative": True}
    assert claims.models_of("committed") == ["rft", "sft"] and claims.models_of("grpo") == ["rft"]
    assert claims.models_of("grounding sft") == ["sft"]  # its RL model is read by no claim: none trains


def test_sft_and_rft_train_on_the_families_and_splits_they_are_given(tmp_path):
    from vrlib import tasks
    from vrlib.data import build_split, load_split, write_jsonl

    with pytest.raises(ParamsError, match="never trained on"):
        SFTParams(splits=["sft", "eval"])
    assert (SFTParams().seed, SFTParams().splits, SFTParams().families) == (0, ["sft"], [])
    records = build_split(tmp_path, "sft", 0, 6, families={"grounding": 1, "count": 1, "image": 1},
                          spec=tasks.WorldSpec())
    write_jsonl(tmp_path / "sft.jsonl", records)
    kw = dict(fps=2.0, min_frames=4, max_frames=16)
    samples, clips = load_split(tmp_path / "sft.jsonl", families=["grounding"], **kw)
    assert [s.data_source.split("/")[1] for s in samples] == ["grounding"] * 2 and len(clips) == 2
    assert len(load_split(tmp_path / "sft.jsonl", **kw)[0]) == 6  # no families: every record
    with pytest.raises(ValueError, match=r"no record of the families \['groundin'\]"):
        load_split(tmp_path / "sft.jsonl", families=["groundin"], **kw)


def test_the_sft_notebook_seeds_its_run_with_sft_seed():
    cells = json.loads((ROOT / "notebooks/03_sft_cold_start.ipynb").read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "seed=seed" not in code and "manual_seed(seed)" not in code
    assert "run(dcfg, bcfg, cfg" in code and "examples(dcfg, cfg)" in code  # vrlib.sft.run seeds with cfg.seed
    sft_code = (ROOT / "vrlib/sft.py").read_text()
    assert "torch.manual_seed(cfg.seed)" in sft_code and sft_code.count("seed=cfg.seed") == 2
    assert "cfg.splits" in sft_code and "families=cfg.families" in sft_code
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["sft"]
    assert "seed" not in stage["params"] and "sft" in stage["params"]


# ----------------------------------------------------------------------------- intervals
def test_pairing_by_seed_cancels_what_the_two_arms_of_a_seed_share():
    strata = np.array(["a", "a", "b", "b"])
    b = np.array([[0, 10, 20, 30], [40, 50, 60, 70], [80, 90, 100, 110.0]])  # (seeds, items): seeds differ
    a = b + 5
    paired = stats.paired_seeds_interval(a, b, strata)
    assert (paired.diff, paired.low, paired.high, paired.n) == (5.0, 5.0, 5.0, 4)
    apart = stats.seeds_interval(a, b, strata)  # runs drawn apart: the seeds' spread stays in
    assert apart.diff == 5.0 and apart.low < 0 < 10 < apart.high
    with pytest.raises(ValueError, match="same seeds and items"):
        stats.paired_seeds_interval(a, b[:2], strata)


def test_claims_by_hand():
    result = claims.summarize(_runs(), KIM)
    rows = {(r["name"], r["split"]): r for r in result["claims"]}
    assert [r["split"] for r in result["claims"]] == ["eval", "val"] * len(claims.CLAIMS)
    assert all(KEYS <= set(r) and r["seeds"] == 3 for r in result["claims"])
    got = lambda name: {k: rows[(name, "eval")][k] for k in ("diff", "low", "high", "items", "verdict")}  # noqa: E731
    # RL + 10 on every item of every seed: +10, exactly, whatever the seeds' own level
    assert got("rft - sft") == {"diff": 10.0, "low": 10.0, "high": 10.0, "items": 6, "verdict": "holds"}
    assert rows[("rft - sft", "eval")]["per_seed"] == [10.0, 10.0, 10.0]
    assert (rows[("rft - sft", "eval")]["a_mean"], rows[("rft - sft", "eval")]["b_mean"]) == (20.0, 10.0)
    # the grounding arms: 50 - 20 on grounding; on the other families 0 - 5
    assert got("grpo - sft on grounding") == {"diff": 30.0, "low": 30.0, "high": 30.0, "items": 2, "verdict": "holds"}
    assert got("forgetting") == {"diff": -5.0, "low": -5.0, "high": -5.0, "items": 4, "verdict": "reversed"}
    assert rows[("forgetting", "eval")]["families"] == ["count", "order"]
    # T-GRPO and GRPO equal on order: a zero-width interval at 0 is not shown, never "holds"
    assert got("t-grpo - grpo on order") == {"diff": 0.0, "low": 0.0, "high": 0.0, "items": 2, "verdict": "not shown"}
    assert got("t-grpo - grpo on the other families")["diff"] == -10.0  # (-20 on count + 0 on grounding) / 2
    # the KIM items only: +40 on each of the four
    assert got("relative reward - grpo on kim items") == {"diff": 40.0, "low": 40.0, "high": 40.0, "items": 4,
                                                           "verdict": "holds"}
    # a claim of a < b: RL from the base 10 + 10k below the committed RL
    assert got("no sft cold start")["verdict"] == "holds" and got("no sft cold start")["diff"] == -20.0
    assert rows[("no sft cold start", "eval")]["expected"] == "a < b"
    json.dumps(result)  # what atomic_write_json writes


def test_a_noisy_claim_has_the_seeds_in_its_interval():
    runs = _runs()
    for k, r in enumerate(runs["committed"]):  # RL + 0, + 10, + 20 at seeds 0, 1, 2
        r["scores"]["eval"]["rft"] = _scores("eval", {t: [v + 10 * k for v in vs]
                                                      for t, vs in _same(10.0 * k).items()})
    row = next(r for r in claims.summarize(runs, KIM)["claims"] if r["name"] == "rft - sft" and r["split"] == "eval")
    assert row["diff"] == 10.0 and row["per_seed"] == [0.0, 10.0, 20.0]
    assert row["low"] < 10.0 < row["high"] and row["verdict"] in ("holds", "not shown")


def test_verdicts_are_decided_on_val_and_eval_only_reports():
    runs = _runs()
    for r in runs["committed"]:  # val: RL = SFT; eval still + 10
        r["scores"]["val"]["rft"] = r["scores"]["val"]["sft"]
    result = claims.summarize(runs, KIM)
    rows = {(r["name"], r["split"]): r for r in result["claims"]}
    assert rows[("rft - sft", "eval")]["verdict"] == "holds" and rows[("rft - sft", "val")]["verdict"] == "not shown"
    line = next(x for x in claims.table(result).splitlines() if x.startswith("| rft - sft |"))
    assert "| not shown |" in line and "does not hold: not told from 0 on `val`, on `eval` it holds." in line
    assert "| **+10.0 [+10.0, +10.0]** | 3 x 6 | +0.0 [+0.0, +0.0] |" in line
    for r in runs["committed"]:  # another test split: the same verdict
        r["scores"]["eval"]["rft"] = r["scores"]["eval"]["sft"]
    again = {(r["name"], r["split"]): r for r in claims.summarize(runs, KIM)["claims"]}
    assert again[("rft - sft", "val")] == rows[("rft - sft", "val")]
    assert result["decided_on"] == "val"


def test_runs_on_other_items_are_an_error():
    runs = _runs()
    runs["grpo"][1]["scores"]["eval"]["rft"]["order"].pop("eval_00004")
    with pytest.raises(ValueError, match="t-grpo - grpo on order: the runs were not evaluated on the same eval items"):
        claims.summarize(runs, KIM)


def test_kim_items_are_those_the_data_stage_gives_a_kim_copy(tmp_path):
    """The rl split's KIM copies (data.build_split) and `claims.kim_items`, drawn again from
    (seed, split, index) for a split without copies, agree item for item."""
    from vrlib import tasks
    from vrlib.data import build_split, family

    spec = tasks.WorldSpec()
    records = build_split(tmp_path, "eval", 3, 9, families={"grounding": 1, "order": 1, "image": 1}, spec=spec,
                          kim=True)
    dcfg = SimpleNamespace(duration=spec.duration, render_fps=spec.fps, size=spec.size, track_boxes=spec.track_boxes)
    found = claims.kim_items("eval", [(family(s), s.problem_id) for s in records], dcfg, 3)
    assert found == {s.problem_id for s in records if s.kim_path}
    assert 0 < len(found) < len(records)  # the images have none
    assert claims.kim_items("eval", [("charades", "v_123")], dcfg, 3) == set()  # imported data: none


# ----------------------------------------------------------------------------- the runs
def _fake_runs(calls: list, monkeypatch) -> None:
    """Each run scores both splits as the decoder would: RL scores 100 * seed more than SFT on
    the first item of each family."""
    def fake_run_one(name, sets, seed, raw, key):
        calls.append((name, seed, claims.overrides(sets, seed)))
        scores = {}
        for split in claims.SPLITS:
            rows = {m: [{"task": task, "problem_type": "multiple choice", "problem_id": f"{split}_{i:05d}",
                         "accuracy": float(m == "rft" and i < 2 and seed > 0), "mra": 0.0}
                        for i, task in enumerate(["order", "grounding", "order", "grounding"])]
                    for m in claims.models_of(name)}
            scores[split] = {m: item_scores(r) for m, r in rows.items()}
        return {"set": sets, "seed": seed, "key": key, "log": {}, "minutes": 0.0, "scores": scores}

    monkeypatch.setattr(claims, "run_one", fake_run_one)
    monkeypatch.setattr(claims, "kim_items", lambda split, items, dcfg, seed: set())


def test_make_claims_writes_claims_json_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "dvc.lock").write_text("stages: {}\n")
    calls = []
    _fake_runs(calls, monkeypatch)
    claims.main(["--only", "rft-sft"])
    assert [(name, seed) for name, seed, _ in calls] == [("committed", k) for k in range(3)]
    for k, (_, _, sets) in enumerate(calls):  # the SFT and RL seeds of a run are the same k
        assert [s for s in sets if "seed=" in s] == [f"sft.seed={k}", f"rft.seed={k}"]
    assert sorted(p.name for p in (claims.RUNS / "committed").iterdir()) == ["seed0.json", "seed1.json", "seed2.json"]
    out = json.loads(claims.OUT.read_text())
    assert [(r["name"], r["split"], r["seeds"], r["items"]) for r in out["claims"]] == [
        ("rft - sft", "eval", 3, 4), ("rft - sft", "val", 3, 4)]
    assert out["claims"][0]["per_seed"] == [0.0, 50.0, 50.0]
    assert out["configurations"]["committed"]["minutes"] == [0.0, 0.0, 0.0]  # each seed's, as measured
    assert claims.FIGURE.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the claims at a glance

    calls.clear()  # a kill after the grounding runs of seed 0: they are kept
    claims.main(["--only", "forgetting"])
    assert len(calls) == 6
    (claims.RUNS / ablations.slug("grounding sft") / "seed2.json").unlink()
    calls.clear()
    claims.main(["--only", "forgetting"])
    assert [(name, seed) for name, seed, _ in calls] == [("grounding sft", 2)] and "sft.splits=[sft,rl]" in calls[0][2]
    names = [r["name"] for r in json.loads(claims.OUT.read_text())["claims"]]
    assert names == ["rft - sft"] * 2 + ["grpo - sft on grounding"] * 2 + ["forgetting"] * 2  # measured before: kept

    calls.clear()
    claims.main(["--only", "rft-sft", "forgetting"])  # everything done: nothing reruns
    assert not calls
    record = json.loads((claims.RUNS / "committed" / "seed0.json").read_text())
    record["set"] = ["rft.beta=0.0"]  # a record of other overrides is not this configuration's
    (claims.RUNS / "committed" / "seed0.json").write_text(json.dumps(record))
    calls.clear()
    claims.main(["--only", "rft-sft"])
    assert len(calls) == 1


def test_a_finished_seed_writes_claims_json_before_the_next_seed_runs(tmp_path, monkeypatch):
    """A session cut off mid-way keeps a claims.json of the seeds finished so far."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "dvc.lock").write_text("stages: {}\n")
    calls, seen = [], []
    _fake_runs(calls, monkeypatch)
    real = claims.run_one

    def watching(name, sets, seed, raw, key):
        if claims.OUT.is_file():
            seen.append((seed, json.loads(claims.OUT.read_text())["seeds"]))
        return real(name, sets, seed, raw, key)

    monkeypatch.setattr(claims, "run_one", watching)
    claims.main(["--only", "rft-sft"])
    assert seen == [(1, [0]), (2, [0, 1])]


def test_a_seed_trains_its_sft_model_once_and_only_the_models_its_claims_read(tmp_path, monkeypatch):
    """grpo, relative and the committed recipe of one seed stack their RL adapter on one SFT
    model, trained once; `grounding sft` trains no RL; RL from the base stacks no SFT."""
    from vrlib import rft, sft
    from vrlib.choose import with_sets

    monkeypatch.chdir(tmp_path)
    for split in ("sft", "rl", "val"):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / f"{split}.jsonl").write_text(f"{split}\n")
    trained = []

    def fake_sft(dcfg, bcfg, cfg, *, base, out, on_step=None):
        trained.append(("sft", cfg.families, cfg.splits, cfg.seed))
        Path(out).mkdir(parents=True)
        (Path(out) / "adapter_model.safetensors").write_text("w")

    def fake_rft(seed, dcfg, cfg, bcfg, *, base, sft, out, checkpoint_dir, live_dir):
        trained.append(("rft", cfg.algo, cfg.init, seed))
        Path(out).mkdir(parents=True)
        (Path(out) / "history.json").write_text("[]")

    monkeypatch.setattr(sft, "run", fake_sft)
    monkeypatch.setattr(rft, "run", fake_rft)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    adapters = {}
    for name, sets, seed in claims.plan(seeds=(1,)):
        params = with_sets(raw, claims.as_sets(claims.overrides(sets, seed)))
        adapters[name] = claims.train(name, params, tmp_path / name)
    assert [t for t in trained if t[0] == "sft"] == [("sft", [], ["sft"], 1), ("sft", ["grounding"], ["sft"], 1),
                                                     ("sft", ["grounding"], ["sft", "rl"], 1)]
    assert len([t for t in trained if t[0] == "rft"]) == 5 and all(t[3] == 1 for t in trained)
    committed_sft = adapters["committed"]["sft"]
    assert adapters["grpo"]["rft"][0] == adapters["relative"]["rft"][0] == committed_sft[0]
    assert set(adapters["grounding sft"]) == {"sft"} and len(adapters["rl from base"]["rft"]) == 1
    trained.clear()  # done: nothing trains again
    params = with_sets(raw, claims.as_sets(claims.overrides([], 1)))
    assert claims.train("committed", params, tmp_path / "committed") == adapters["committed"] and not trained


def test_plan_prints_the_runs_and_their_time_and_runs_nothing(capsys, monkeypatch):
    monkeypatch.setattr(claims, "run_one", lambda *a: pytest.fail(f"ran {a}"))
    claims.main(["--plan"])
    out = capsys.readouterr().out
    assert out.startswith("18 runs (6 configurations x 3 seeds), about ")
    assert "grounding sft, seed 2: evaluation.tcr=false evaluation.shuffled=false sft.seed=2 rft.seed=2 " \
           "sft.families=[grounding] sft.splits=[sft,rl] sft.steps=240 (trains and decodes sft)" in out


# ----------------------------------------------------------------------------- documented
def test_the_docs_show_the_claims_first_and_how_their_runs_are_made():
    from vrlib.tables import committed

    read = committed(ROOT)
    try:
        result = json.loads(read(str(claims.OUT)))
    except FileNotFoundError:
        result = None  # not yet run: every claim says so
    readme, results = read("README.md"), read("docs/results.md")
    assert claims.table(result) in readme and claims.table(result) in results
    assert readme.index(claims.table(result)) < readme.index("| task | metric | n | base |")  # claims first
    assert claims.configs_table() in results
    assert "make claims" in readme and "make claims" in results
    make = (ROOT / "Makefile").read_text()
    assert "\nclaims: env" in make and "\tpython -m vrlib.claims\n" in make


def test_format_shares_are_kept_per_seed():
    assert claims.format_rate([{"format": 1.0}, {"format": 0.0}, {"format": 1.0}]) == 66.7
    records = [{"format": {"val": {"sft": 80.0, "rft": 90.0}, "eval": {"sft": 70.0, "rft": 75.5}}}, {}]  # {}: older
    shares = claims.formats(records)
    assert shares == {"val": {"rft": [90.0, None], "sft": [80.0, None]}, "eval": {"rft": [75.5, None], "sft": [70.0, None]}}
    table = claims.formats_table({"configurations": {"committed": {"format": shares}}})
    assert "| committed | sft | 70.0 / - |" in table and "| committed | rft | 75.5 / - |" in table


def test_the_records_are_keyed_by_what_the_runs_read_of_the_study_not_by_its_trained_models(tmp_path, monkeypatch):
    """A rerun of the study on another CPU kind trains other SFT and RL models from the same
    inputs: the claims records stay; new code, params, splits or base do not keep them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    stages = {"data": {"deps": [{"path": "vrlib/data.py", "md5": "a"}], "outs": [{"path": "data", "md5": "d.dir"}]},
              "base": {"deps": [{"path": "models/tiny-base", "md5": "t.dir"}],
                       "outs": [{"path": "models/base", "md5": "b.dir"}]},
              "sft": {"deps": [{"path": "data", "md5": "d.dir"}, {"path": "vrlib/sft.py", "md5": "s"}],
                      "outs": [{"path": "models/sft", "md5": "m.dir"}]}}

    def key(**changes) -> str:
        lock = json.loads(json.dumps(stages))
        for (stage, kind, i), md5 in changes.get("md5", {}).items():
            lock[stage][kind][i]["md5"] = md5
        (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": lock}))
        return claims.study_key()

    first = key()
    assert key(md5={("sft", "outs", 0): "other SFT model"}) == first  # the study's own training: kept
    for where in [("sft", "deps", 1), ("data", "outs", 0), ("base", "outs", 0), ("base", "deps", 0)]:
        assert key(md5={where: "changed"}) != first, where  # code, splits, base: rerun
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    assert key() != first
