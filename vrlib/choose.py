"""Recipe choices on `val`: train each variant of a grid, score it on `val`, keep the best.

    python -m vrlib.choose sft sft.lr=0.001,0.003 sft.steps=120,240
    python -m vrlib.choose rft rft.temperature=0.2,1.0 rft.lr=0.0001,0.0003
    python -m vrlib.choose rft rft.lr=0.001 --seeds 3

The first word says which model is compared (`sft`, or `rft`, the SFT model of the committed
params under each RL variant); each `key=v1,v2` is one axis, the variants are their product,
every other key is params.yaml's. Each variant trains in this process as its stage does
(`vrlib.sft.run`, `vrlib.rft.run`), under `checkpoints/choose/<variant>/`, is decoded greedily
on `val` by the eval stage's driver (`evaluate.run_model`) and leaves a record there, so a killed
run resumes after the last finished variant. The summary, `metrics/choices/<stage>.json`, ranks
the variants of this grid and of earlier grids on the same params and base by their mean over
tasks on `val`, with each one's interval against the committed params (items resampled within
each task; one training run per variant, so the interval holds no training noise). With
`--seeds N` every variant, the committed params included, trains at `sft.seed` (and for `rft`
`rft.seed`) = 0 .. N-1, as `make claims` pairs its runs: `metrics/choices/<stage>-seeds.json`
ranks the variants by their mean over seeds, each against the committed params with a seeds x
items interval, and chooses a variant only where that interval lies above 0. The committed
row of a seed is read from `make claims`' record of the same study where there is one (the
same SFT and RL runs). The test split is never read here.

Why not `dvc exp run`: each would rerun the evaluation of every model on both splits (5 min);
a variant here costs its training plus 30 s of decoding on `val`.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from vrlib import config, stats
from vrlib.data import atomic_write_json, digest

VAL = "data/val.jsonl"
BASE = "models/base"
ROOT = Path("checkpoints/choose")
OUT = Path("metrics/choices")
STAGES = ("sft", "rft")
SEED_KEYS = {"sft": ("sft.seed",), "rft": ("sft.seed", "rft.seed")}
"""What `--seeds` sets to k in each run of seed k: the compared model's training runs."""


def axes(specs: list[str]) -> list[tuple[str, list]]:
    """["sft.lr=0.001,0.003"] -> [("sft.lr", [0.001, 0.003])], each value read as YAML."""
    out = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"choose: {spec!r} is not section.key=v1,v2")
        out.append((key, yaml.safe_load(f"[{values}]")))  # a value may be a list: [sft],[sft,rl]
    return out


def variants(specs: list[str]) -> list[dict[str, object]]:
    """Every combination of the axes' values, as {dotted key: value}."""
    ax = axes(specs)
    return [dict(zip([k for k, _ in ax], combo)) for combo in itertools.product(*[v for _, v in ax])]


def with_sets(raw: dict, sets: dict[str, object]) -> config.Params:
    """params.yaml's dict with `sets` applied, checked as `config.load` checks the file. At a
    scale other than tiny the sets go into that scale's preset, which would override them."""
    raw = copy.deepcopy(raw)
    scale = raw.get("scale", "tiny")
    for key, value in sets.items():
        section, name = key.split(".", 1)
        where = raw if scale == "tiny" else raw.setdefault("presets", {}).setdefault(scale, {})
        if where.get(section) is None:
            where[section] = {}
        where[section][name] = value
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(raw, f)
    try:
        return config.load(f.name)
    finally:
        Path(f.name).unlink()


def base_id() -> str:
    """What names the base's weights (the base stage's pointer, with their sha256): a new base
    never reuses a variant trained on the old one."""
    pointer = Path(BASE) / "pointer.json"
    return pointer.read_text() if pointer.is_file() else str(Path(BASE).resolve())


def name_of(sets: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in sets.items()) or "committed"


def load_items(params: config.Params, items: str = VAL) -> tuple[dict, list, list]:
    """The eval stage's settings for `params` (`evaluate.settings`) and the samples and clips of
    the split `items`, sampled as they say: what `decode` takes, once for every model decoded."""
    from vrlib.data import load_split
    from vrlib.evaluate import settings

    setup = settings(params.data, params.evaluation)
    samples, clips = load_split(items, fps=setup["fps"], min_frames=setup["min_frames"],
                                max_frames=setup["max_frames"])
    return setup, samples, clips


def decode(params: config.Params, adapters: list[str], loaded: tuple[dict, list, list], items: str, name: str,
           partial_dir: Path, traces_path: Path) -> list:
    """Greedy decodes of the `loaded` items of `items` by the eval stage's driver
    (`evaluate.run_model`) on the base plus `adapters`: the traces, also written to `traces_path`."""
    from vrlib.data import video_path
    from vrlib.evaluate import run_model

    setup, samples, clips = loaded
    return run_model(name, samples, [video_path(s, items) for s in samples], setup, model_dir=BASE,
                     adapters=adapters, bcfg=params.base, items=items, partial_dir=partial_dir, clips=clips,
                     traces_path=traces_path).traces


def evaluate_val(params: config.Params, adapters: list[str], folder: Path, name: str) -> dict:
    """Greedy decodes of `val` by the eval stage's driver: {task: metrics} and per-item scores."""
    from vrlib.evaluate import item_scores, task_metrics

    traces = decode(params, adapters, load_items(params), VAL, name, folder / "decode", folder / "val.jsonl")
    return {"metrics": task_metrics(traces, params.evaluation.recalls), "items": item_scores(traces)}


def train(stage: str, params: config.Params, folder: Path) -> list[str]:
    """Train the variant's models in `folder`; the adapters the compared model stacks on the base."""
    from vrlib import rft, sft
    from vrlib.logs import progress

    sft_dir = ROOT / "sft" / sft_key(params)
    needed = stage == "sft" or params.rft.init == "sft"
    if needed and not (sft_dir / "adapter_model.safetensors").is_file():  # shared by the RL variants of one SFT
        sft.run(params.data, params.base, params.sft, base=BASE, out=str(sft_dir),
                on_step=progress("choose sft", params.sft.steps))
    if stage == "sft":
        return [str(sft_dir)]
    out = folder / "rft"
    rft.run(params.rft.seed, params.data, params.rft, params.base, base=BASE, sft=str(sft_dir), out=str(out),
            checkpoint_dir=str(folder / "rft-checkpoints"), live_dir=None)
    return [*([str(sft_dir)] if params.rft.init == "sft" else []), str(out)]


def sft_key(params: config.Params) -> str:
    """What an SFT adapter depends on: the sft, data and base sections, the study's seed, the
    base's weights and the bytes of the splits it trains on (a variant never reuses another's)."""
    return digest({"sft": params.sft.__dict__, "data": params.data.__dict__, "base_cfg": params.base.__dict__,
                   "seed": params.seed, "base": base_id()}, files=[f"data/{s}.jsonl" for s in params.sft.splits])


def variant_key(raw: dict, sets: dict, params: config.Params) -> str:
    """A variant's folder: its sets on these params, the base's weights, the val and rl splits' bytes."""
    return digest({"sets": sets, "params": raw, "base": base_id()},
                  files=[VAL, "data/rl.jsonl", *[f"data/{s}.jsonl" for s in params.sft.splits]])


def signal(folder: Path) -> dict:
    """An RL variant's share of groups whose rewards differ (a non-zero advantage), mean over steps."""
    history = folder / "rft" / "history.json"
    if not history.is_file():
        return {}
    steps = json.loads(history.read_text())
    return {"groups_with_signal": round(1 - sum(h["group/frac_zero_std"] for h in steps) / len(steps), 3)}


def over_tasks(metrics: dict) -> float:
    from vrlib.evaluate import headline

    return float(np.mean([headline(m) for m in metrics.values()]))


def summarize(stage: str, records: list[dict], seed: int = 0) -> dict:
    """The variants ranked by their mean over tasks on `val`, each with its difference from the
    committed params' row (items resampled within each task), and the one chosen: the best."""
    from vrlib.evaluate import headline

    ref = next((r for r in records if not r["sets"]), None)
    ids = {t: sorted(items) for t, items in ref["items"].items()} if ref else {}
    scores = lambda r: {t: np.array([r["items"][t][i] for i in ids[t]]) for t in ids}  # noqa: E731
    rows = []
    for r in records:
        per_task = {t: float(headline(m)) for t, m in r["metrics"].items()}
        row = {"variant": name_of(r["sets"]), "sets": r["sets"],
               "val": round(float(np.mean(list(per_task.values()))), 2),
               "format": round(float(np.mean([m["format"] for m in r["metrics"].values()])), 1),
               "per_task": {t: round(v, 2) for t, v in per_task.items()},
               **{k: r[k] for k in ("minutes", "groups_with_signal") if k in r}}
        if ref is not None and r is not ref:  # the eval stage's paired intervals (evaluate.differences)
            row["minus committed"] = stats.paired(scores(r), scores(ref), seed=seed)["over tasks"].as_dict()
        rows.append(row)
    rows.sort(key=lambda row: -row["val"])
    return {"stage": stage, "split": "val", "metric": "mean over tasks of each task's headline metric",
            "variants": rows, "chosen": rows[0]["variant"] if rows else None}


def seeded(stage: str, sets: dict[str, object], seed: int) -> dict[str, object]:
    """A variant's sets at training seed `seed` (`SEED_KEYS`; the data keep the study's seed)."""
    return sets | {key: seed for key in SEED_KEYS[stage]}


def from_claims(stage: str, seed: int) -> dict | None:
    """The committed row at `seed` as `make claims` measured it on this same study, or None: its
    `committed` configuration overrides the evaluation stage only (no TCR, no shuffled frames),
    so it trained these SFT and RL runs and decoded `val` greedily as `decode` does."""
    from vrlib import claims

    path = claims.RUNS / "committed" / f"seed{seed}.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    if record.get("key") != claims.study_key() or record.get("set") != [] or stage not in record["scores"]["val"]:
        return None
    zero = record["log"].get("group/frac_zero_std") if stage == "rft" else None
    return {"sets": {}, "seed": seed, "items": record["scores"]["val"][stage],
            "format": record["format"]["val"][stage], "read from": str(path)} | (
        {} if zero is None else {"groups_with_signal": round(1 - zero, 3)})


def summarize_seeds(stage: str, runs: dict[str, list[dict]], seed: int = 0) -> dict:
    """The variants (name -> one record per seed, seeds in the same order) ranked by their mean
    over seeds of the mean over tasks on `val`, each against the committed row with a seeds x
    items interval (`stats.paired_seeds_interval`: the runs paired by seed). Chosen: the best
    variant whose interval lies above 0; else the committed params stay."""
    ref = runs["committed"]
    keys = [(t, i) for t in sorted(ref[0]["items"]) for i in sorted(ref[0]["items"][t])]
    strata = np.array([t for t, _ in keys])
    arm = lambda records: np.array([[r["items"][t][i] for t, i in keys] for r in records])  # noqa: E731
    over = lambda row: float(np.mean([row[strata == t].mean() for t in np.unique(strata)]))  # noqa: E731
    rows, committed = [], arm(ref)
    for name, records in runs.items():
        if [r["seed"] for r in records] != [r["seed"] for r in ref]:
            raise ValueError(f"choose: {name} ran seeds {[r['seed'] for r in records]}, the committed row "
                             f"{[r['seed'] for r in ref]}")
        scores = arm(records)
        row = {"variant": name, "sets": records[0]["sets"], "seeds": [r["seed"] for r in records],
               "val": round(float(np.mean([over(x) for x in scores])), 2),
               "per_seed": [round(over(x), 2) for x in scores], "format": [r["format"] for r in records],
               "minutes": [r.get("minutes") for r in records]}
        if all("groups_with_signal" in r for r in records):
            row["groups_with_signal"] = [r["groups_with_signal"] for r in records]
        if records is not ref:
            row["minus committed"] = stats.paired_seeds_interval(scores, committed, strata, seed=seed).as_dict()
            row["minus committed per seed"] = [round(over(x), 2) + 0.0 for x in scores - committed]
        rows.append(row)
    rows.sort(key=lambda row: -row["val"])
    better = [r for r in rows if r.get("minus committed", {}).get("low", 0) > 0]
    return {"stage": stage, "split": "val", "metric": "mean over tasks of each task's headline metric, mean over seeds",
            "seed_keys": list(SEED_KEYS[stage]), "method": "runs paired by seed; percentile bootstrap resampling "
            "the per-seed differences and, within each task, items (vrlib.stats.paired_seeds_interval)",
            "variants": rows, "chosen": better[0]["variant"] if better else "committed"}


def run_variant(stage: str, raw: dict, sets: dict[str, object], label: str) -> dict:
    """One variant trained and decoded on `val` under its folder, or its record from before."""
    params = with_sets(raw, sets)
    folder = ROOT / stage / variant_key(raw, sets, params)
    record = folder / "record.json"
    if record.is_file():
        print(f"choose: {name_of(sets)}: done before ({record})", flush=True)
        return json.loads(record.read_text())
    print(f"choose: {label}: {name_of(sets)}", flush=True)
    t0 = time.time()
    adapters = train(stage, params, folder)
    val = evaluate_val(params, adapters, folder, name_of(sets))
    out = {"sets": sets, **val, "minutes": round((time.time() - t0) / 60, 1)} | signal(folder)
    atomic_write_json(record, out)
    print(f"choose: {name_of(sets)}: val {over_tasks(val['metrics']):.1f} over tasks ({out['minutes']} min)",
          flush=True)
    return out


def main_seeds(stage: str, raw: dict, todo: list[dict], n: int) -> None:
    """`--seeds n`: every variant of `todo` at seeds 0 .. n-1, and each variant an earlier grid
    ran at all of them on the same params and base -> metrics/choices/<stage>-seeds.json."""
    runs = {}
    for i, sets in enumerate(todo):
        for k in range(n):
            record = from_claims(stage, k) if not sets else None
            if record is None:
                record = unseeded(stage, run_variant(stage, raw, seeded(stage, sets, k),
                                                     f"variant {i + 1}/{len(todo)}, seed {k}"))
            else:
                print(f"choose: committed, seed {k}: read from {record['read from']}", flush=True)
            runs.setdefault(name_of(sets), []).append(record)
    earlier = {}
    for r in kept(stage, raw):
        seeds = {r["sets"].get(key) for key in SEED_KEYS[stage]}
        if len(seeds) == 1 and None not in seeds:  # a run of one seed, every seed key set to it
            r = unseeded(stage, r)
            earlier.setdefault(name_of(r["sets"]), {})[r["seed"]] = r
    for name, by_seed in earlier.items():
        if name not in runs and all(k in by_seed for k in range(n)):
            runs[name] = [by_seed[k] for k in range(n)]
    report(stage, raw, summarize_seeds(stage, runs), f"{stage}-seeds", lambda row: f"per seed {row['per_seed']}")


def kept(stage: str, raw: dict) -> list[dict]:
    """Every variant record of `stage` on disk that was trained on these params and base (its
    folder is still its `variant_key`): what earlier grids add to a ranking."""
    out = []
    for path in sorted((ROOT / stage).glob("*/record.json")):
        r = json.loads(path.read_text())
        if path.parent.name == variant_key(raw, r["sets"], with_sets(raw, r["sets"])):
            out.append(r)
    return out


def unseeded(stage: str, record: dict) -> dict:
    """A seeded run's record as `summarize_seeds` reads it: its variant's sets, its seed, its
    share of well-formed answers."""
    sets = {k: v for k, v in record["sets"].items() if k not in SEED_KEYS[stage]}
    return {**record, "sets": sets, "seed": record["sets"][SEED_KEYS[stage][0]],
            "format": round(float(np.mean([m["format"] for m in record["metrics"].values()])), 1)}


def report(stage: str, raw: dict, result: dict, name: str, column) -> None:
    """`result` and the committed sections it was measured on -> metrics/choices/<name>.json; its
    ranking printed, `column(row)` beside each variant's mean on `val`."""
    result = result | {"committed": {k: raw[k] for k in STAGES[:STAGES.index(stage) + 1]}}
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / f"{name}.json", result)
    for row in result["variants"]:
        d = row.get("minus committed")
        print(f"{row['val']:6.1f}  {column(row)}  {row['variant']}" + (f"   - committed: {stats.fmt(d)}" if d else ""))
    print(f"choose: chosen on val: {result['chosen']} ({OUT / (name + '.json')})")


def main(argv: list[str] | None = None) -> None:
    from vrlib.stage import quiet

    ap = argparse.ArgumentParser(description="choose a recipe on val: train each variant, decode val, rank")
    ap.add_argument("stage", choices=STAGES, help="the model compared: sft, or rft on the committed SFT recipe")
    ap.add_argument("axes", nargs="+", help="section.key=v1,v2 (the committed value is added to each axis)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per variant (0, 1, ...; > 1: "
                    "metrics/choices/<stage>-seeds.json, seeds x items intervals)")
    args = ap.parse_args(argv)
    quiet()
    raw = yaml.safe_load(Path(args.params).read_text())
    committed = config.load(args.params)
    todo = [{}] + [s for s in variants(args.axes) if any(  # the committed values are its first row
        getattr(getattr(committed, k.split(".")[0]), k.split(".", 1)[1]) != v for k, v in s.items())]
    if args.seeds > 1:
        return main_seeds(args.stage, raw, todo, args.seeds)
    records = [run_variant(args.stage, raw, sets, f"variant {i + 1}/{len(todo)}") for i, sets in enumerate(todo)]
    records += [r for r in kept(args.stage, raw) if r["sets"] not in todo]  # earlier grids on the same params and base
    report(args.stage, raw, summarize(args.stage, records), args.stage, lambda row: f"format {row['format']:5.1f}")


if __name__ == "__main__":
    main()
