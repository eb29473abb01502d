"""The seed papers' claims, each from >= 3 seeds of SFT and RL: `make claims` -> metrics/claims.json.

One training run cannot tell a method from its luck: the study's single-run tables (README,
docs/results.md) hold the items' noise only. Here every stage after the base is trained again at
each seed k (`sft.seed=k rft.seed=k`; the study's `seed`, and so the data, stays fixed), in each
configuration of CONFIGS that a claim needs. A claim is a difference `a - b` between two
(configuration, model) arms on some items; both arms of seed k share their seeds (and often the
SFT model itself), so each claim's interval resamples the per-seed differences and the items
within each family (`stats.paired_seeds_interval`, seeds x items).

Each run trains in this process as its stage does (`vrlib.sft.run`, `vrlib.rft.run`; an SFT
adapter is shared with `vrlib.choose` and between the configurations of a seed) and decodes both
splits greedily with the eval stage's driver (`evaluate.run_model`), only the models its claims
read. Why not `dvc exp run` per run, as `make ablations` does: each would start five kernels and
reload the models, rerun the eval stage on every model of the study, and cost 1 to 7 minutes more
per run (about 150 minutes in all, against the 90 of the budget). A record per configuration and
seed, `metrics/claims/<configuration>/seed<k>.json`, is written as its run ends, keyed by what
the runs read of the committed study (`study_key`: params.yaml, the code, the splits and the
base): a killed `make claims` resumes after the last finished run, and a finished seed updates
`metrics/claims.json`.

Both splits are measured; a claim is decided on `val` (its verdict) and reported on `eval`, the
test split, which chooses nothing. A claim that does not hold is written as not holding, with its
interval. `python -m vrlib.claims --plan` prints the runs and the time they should take.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from vrlib import ablations, stats
from vrlib.data import atomic_write_json, digest

GROUNDING_SFT = ["sft.steps=240"]
"""The grounding-only SFT models keep 240 steps, both arms of the equal-data comparison alike: the
480 of params.yaml were chosen on `val` for SFT on all eleven families (metrics/choices/
sft-steps-seeds.json), and 240 steps already show a grounding-only model each of its items about
a hundred times. It also spares `make claims` six SFT trainings (about 20 minutes)."""

CONFIGS: dict[str, tuple[str, list[str]]] = {
    "committed": ("the committed recipe: SFT cold start on every family, then T-GRPO", []),
    "grpo": ("the same SFT model, then GRPO without shuffled rollouts", ["rft.algo=grpo"]),
    "relative": ("the same SFT model, then GRPO with the relative reward on KIM videos",
                 ["rft.algo=grpo", "rft.relative=true"]),
    "rl from base": ("T-GRPO from the base, no SFT cold start", ["rft.init=base"]),
    "grounding": ("SFT on the sft split's grounding items, then GRPO on the rl split's (VideoChat-R1's GRPO)",
                  ["sft.families=[grounding]", "rft.families=[grounding]", "rft.algo=grpo", *GROUNDING_SFT]),
    "grounding sft": ("SFT on the grounding items of the sft and rl splits: the same items as "
                      "`grounding`, all of them supervised",
                      ["sft.families=[grounding]", "sft.splits=[sft,rl]", *GROUNDING_SFT]),
}
"""configuration -> (what it trains, overrides of the committed params.yaml as `dvc exp run -S`
writes them); each runs with `sft.seed=k rft.seed=k` for k in SEEDS, and COMMON (no TCR, no
shuffled-frame evaluation). A configuration trains only the models its claims read (`models_of`):
`grounding sft` no RL, `grpo` no SFT of its own (the committed configuration's of its seed)."""

SEEDS = (0, 1, 2)
SEED_KEYS = ("sft.seed", "rft.seed")
"""Set to the same k in every run of seed k: the SFT run and the RL run change, the data does not."""
SPLITS = ("val", "eval")
DECIDED_ON = "val"
OUT = Path("metrics/claims.json")
FIGURE = Path("docs/claims.png")
"""The claims at a glance (`figure`), in git beside the README that shows it."""
RUNS = Path("metrics/claims")
"""One record per configuration and seed (`run_one`): what a resumed `make claims` keeps."""
ROOT = Path("checkpoints/claims")
"""Each run's RL adapter, step history and decodes: `<configuration>/<choose.variant_key>/`."""
MINUTES = {"committed": 6.9, "grpo": 1.9, "relative": 2.3, "rl from base": 2.6, "grounding": 3.5,
           "grounding sft": 2.2}
"""Expected minutes per run on the 2-core machine when no model is there yet (58 min in all): the
mean over seeds of the latest `make claims`, run from nothing (`configurations.<name>.minutes`;
AMD EPYC with torch's AVX-512 kernels; every SFT model trained). The committed configuration
trains its 480-step SFT model (about 4.5 min), the grounding-only ones 240 steps; an RL run of 40
steps takes under 2 min, a model decoded on val + eval about 0.5. The 2-core AVX2 machines
seen here ran the study about 1.4 times slower than AVX-512 ones. An estimate, printed by
`--plan` and the progress lines."""


@dataclass(frozen=True)
class Claim:
    """A paper's claim as a difference `a - b` of two (configuration, model) arms on some items."""

    name: str
    paper: str
    says: str       # the claim, as the paper makes it
    a: tuple[str, str]
    b: tuple[str, str]
    items: str      # "all", a family, "not <family>", or "kim" (see `selected`)
    sign: int = 1   # +1: the paper says a > b; -1: a < b


CLAIMS = [
    Claim("rft - sft", "Video-R1", "RL after an SFT cold start beats the SFT model, over tasks",
          ("committed", "rft"), ("committed", "sft"), "all"),
    Claim("grpo - sft on grounding", "VideoChat-R1", "GRPO beats SFT on temporal grounding (mIoU) at equal data",
          ("grounding", "rft"), ("grounding sft", "sft"), "grounding"),
    Claim("forgetting", "VideoChat-R1", "grounding-only GRPO keeps the other families better than "
          "grounding-only SFT at equal data (RL keeps general ability, SFT loses it)",
          ("grounding", "rft"), ("grounding sft", "sft"), "not grounding"),
    Claim("t-grpo - grpo on order", "Video-R1", "T-GRPO's temporal contrast beats GRPO on order-dependent questions",
          ("committed", "rft"), ("grpo", "rft"), "order"),
    Claim("t-grpo - grpo on the other families", "Video-R1", "T-GRPO beats GRPO on the other families too",
          ("committed", "rft"), ("grpo", "rft"), "not order"),
    Claim("relative reward - grpo on kim items", "VideoPerceiver (our hypothesis of its reward)",
          "the relative reward beats GRPO on the items whose key frames a KIM copy removes",
          ("relative", "rft"), ("grpo", "rft"), "kim"),
    Claim("no sft cold start", "Video-R1", "RL from the base stays below RL after the SFT cold start, over tasks",
          ("rl from base", "rft"), ("committed", "rft"), "all", sign=-1),
]
"""The claims of issue 24, in the order of the tables. The two grounding arms see the same
grounding items of the sft and rl splits; VideoChat-R1 trains both from Qwen2.5-VL, which writes
its answer format already; our base does not, so the GRPO arm starts from a grounding-only SFT
cold start on the sft split's part of them (RL from the base has no reward signal here)."""


def claim_named(name: str) -> Claim:
    """A claim by its name or its slug (`rft-sft`, `forgetting`, ...)."""
    for c in CLAIMS:
        if name in (c.name, ablations.slug(c.name)):
            return c
    raise ValueError(f"unknown claim {name!r}; known: {', '.join(ablations.slug(c.name) for c in CLAIMS)}")


def configs_of(claims: list[Claim]) -> list[str]:
    """The configurations the claims read, in CONFIGS' order."""
    needed = {arm[0] for c in claims for arm in (c.a, c.b)}
    return [name for name in CONFIGS if name in needed]


def plan(seeds: tuple[int, ...] = SEEDS, only: list[str] | None = None) -> list[tuple[str, list[str], int]]:
    """(configuration, overrides, seed) for every run the claims (those `only` names, if given)
    need, seed by seed: the runs of one seed share their SFT model (restored from DVC's run cache)
    and its decodes, which the next seed replaces."""
    claims = CLAIMS if not only else [claim_named(n) for n in only]
    return [(name, CONFIGS[name][1], s) for s in seeds for name in configs_of(claims)]


def overrides(sets: list[str], seed: int) -> list[str]:
    """Every override of one run, as `dvc exp run -S` would take them."""
    return [*ablations.COMMON, *[f"{k}={seed}" for k in SEED_KEYS], *sets]


def models_of(name: str) -> list[str]:
    """The models of a configuration that some claim reads (`sft`, `rft`)."""
    return sorted({arm[1] for c in CLAIMS for arm in (c.a, c.b) if arm[0] == name})


# ----------------------------------------------------------------------------- items
def kim_items(split: str, items: list[tuple[str, str]], dcfg, seed: int) -> set[str]:
    """The problem ids among `items` ((family, problem_id) of the split's world records) whose
    video has key frames that VideoPerceiver's KIM copy would hide (`tasks.missing_key_frames`):
    the items the relative reward is about. Val and eval have no KIM copies; each item is drawn
    again from (seed, split, index), as `data.build_split` drew it for the rl split's copies.
    Imported (real) data has no key frames: none."""
    from vrlib import tasks
    from vrlib.data import split_seed

    spec = tasks.WorldSpec.of(dcfg)
    out = set()
    for family, pid in items:
        if family not in tasks.FAMILIES or not pid.startswith(f"{split}_"):
            continue
        item = tasks.FAMILIES[family](split_seed(seed, split), int(pid.rsplit("_", 1)[1]), spec)
        if item.data_type == "video" and tasks.missing_key_frames(item.frames, item.key_frames) is not None:
            out.add(pid)
    return out


def describe(spec: str) -> str:
    """An item selection in words (the tables)."""
    if spec in ("all", "kim"):
        return {"all": "every family", "kim": "the items a KIM copy changes"}[spec]
    return f"every family but {spec[4:]}" if spec.startswith("not ") else spec


def selected(spec: str, task: str, pid: str, kim: set[str]) -> bool:
    """Whether an item counts in a claim: `all`, one family (`grounding`), every other family
    (`not grounding`), or `kim` (the ids `kim_items` gave)."""
    if spec == "all":
        return True
    if spec == "kim":
        return pid in kim
    if spec.startswith("not "):
        return task != spec[4:]
    return task == spec


# ----------------------------------------------------------------------------- intervals
def _arm(records: list[dict], model: str, split: str, keys: list[tuple[str, str]]) -> np.ndarray:
    """(seeds, items) headline scores of `model` in each record, items in `keys` order."""
    return np.array([[r["scores"][split][model][t][i] for t, i in keys] for r in records])


def verdict(row: dict, sign: int) -> str:
    """holds (the interval lies on the claimed side of 0), reversed (on the other side), not
    shown (it holds 0), or not measured (no interval)."""
    if row["low"] is None:
        return "not measured"
    if sign * row["low"] > 0 and sign * row["high"] > 0:
        return "holds"
    if sign * row["low"] < 0 and sign * row["high"] < 0:
        return "reversed"
    return "not shown"


def measure(claim: Claim, runs: dict[str, list[dict]], split: str, kim: set[str], seed: int = 0) -> dict:
    """One row of claims.json: `a - b` on `split`, mean over the selected items' families, its
    seeds x items interval, and what each arm scores (mean over seeds, then over tasks)."""
    by_seed = {arm: {r["seed"]: r for r in runs[arm[0]]} for arm in (claim.a, claim.b)}
    seeds = sorted(set(by_seed[claim.a]) & set(by_seed[claim.b]))
    a_runs, b_runs = [by_seed[claim.a][s] for s in seeds], [by_seed[claim.b][s] for s in seeds]
    scores = a_runs[0]["scores"][split][claim.a[1]]
    keys = [(t, i) for t in sorted(scores) for i in sorted(scores[t]) if selected(claim.items, t, i, kim)]
    ids = lambda held: {t: set(v) for t, v in held.items()}  # noqa: E731
    if any(ids(r["scores"][split][model]) != ids(scores)
           for arm_runs, model in ((a_runs, claim.a[1]), (b_runs, claim.b[1])) for r in arm_runs):
        raise ValueError(f"{claim.name}: the runs were not evaluated on the same {split} items")
    row = {"name": claim.name, "split": split, "diff": None, "low": None, "high": None,
           "seeds": len(seeds), "items": len(keys)}
    if keys:
        a, b = _arm(a_runs, claim.a[1], split, keys), _arm(b_runs, claim.b[1], split, keys)  # (seeds, items)
        strata = np.array([t for t, _ in keys])
        iv = stats.paired_seeds_interval(a, b, strata, seed=seed).as_dict()
        over = lambda x: float(np.mean([x[:, strata == t].mean() for t in np.unique(strata)]))  # noqa: E731
        row |= {"diff": iv["diff"], "low": iv["low"], "high": iv["high"],
                "per_seed": [round(over(a[[k]] - b[[k]]), 2) + 0.0 for k in range(len(seeds))],
                "a_mean": round(over(a), 2), "b_mean": round(over(b), 2),
                "families": sorted({t for t, _ in keys})}
    return row | {"seed_list": seeds, "a": "/".join(claim.a), "b": "/".join(claim.b), "on": claim.items,
                  "paper": claim.paper, "says": claim.says, "expected": "a > b" if claim.sign > 0 else "a < b",
                  "verdict": verdict(row, claim.sign)}


def summarize(runs: dict[str, list[dict]], kim: dict[str, set[str]], seed: int = 0) -> dict:
    """metrics/claims.json from the run records (configuration -> records): two rows per claim
    whose configurations ran, `eval` (reported) then `val` (deciding)."""
    claims = [c for c in CLAIMS if c.a[0] in runs and c.b[0] in runs]
    rows = [measure(c, runs, split, kim.get(split, set()), seed) for c in claims for split in ("eval", "val")]
    return {"claims": rows, "decided_on": DECIDED_ON, "reported_on": "eval",
            "seeds": sorted({r["seed"] for records in runs.values() for r in records}),
            "seed_keys": list(SEED_KEYS), "confidence": stats.CONFIDENCE, "n_resamples": stats.N_RESAMPLES,
            "machines": [json.loads(m) for m in sorted({json.dumps(r.get("machine"), sort_keys=True)
                                                        for records in runs.values() for r in records})],
            "seed": seed, "metric": "headline per task (evaluate.HEADLINE), percent points, mean over the "
                                    "claim's families",
            "method": "runs paired by seed (sft.seed = rft.seed = k); percentile bootstrap resampling the "
                      "per-seed differences and, within each family, items (vrlib.stats.paired_seeds_interval)",
            "configurations": {name: {"trains": what, "set": sets,
                                      "minutes": [r.get("minutes") for r in runs[name]],  # per seed, as measured
                                      "format": formats(runs[name])}
                               for name, (what, sets) in CONFIGS.items() if name in runs}}


def formats(records: list[dict]) -> dict[str, dict[str, list]]:
    """split -> model -> each seed's share of well-formed answers (None for a record written
    before the share was kept): the SFT seeds differ most in how often an answer is empty."""
    models = sorted({m for r in records for by_model in r.get("format", {}).values() for m in by_model})
    return {split: {m: [r.get("format", {}).get(split, {}).get(m) for r in records] for m in models}
            for split in SPLITS}


# ----------------------------------------------------------------------------- tables
PHRASES = {"holds": "holds", "reversed": "does not hold: the opposite is measured",
           "not shown": "does not hold: not told from 0", "not measured": "not measured"}


def sentence(eval_row: dict, val_row: dict) -> str:
    """The claim and its verdict in one sentence: decided on val, then what eval says."""
    decided, seen = val_row["verdict"], eval_row["verdict"]
    tail = "`eval` agrees" if seen == decided else f"on `eval` it {PHRASES[seen]}"
    return f"{val_row['paper']}: {val_row['says']}; {PHRASES[decided]} on `val`, {tail}."


def _fmt(row: dict) -> str:
    return "no items" if row["diff"] is None else stats.fmt(row, mark=True)


def table(result: dict | None) -> str:
    """A row per claim: its difference on `eval` with the seeds x items interval, seeds and items,
    the same on `val`, the verdict (decided on val) and the sentence; bold where an interval
    excludes 0. `None` (before the first `make claims`): every claim, not yet run."""
    lines = ["| claim | arms: a - b | eval: a - b, 95% (seeds x items) | seeds x items | val: a - b, 95% "
             "| verdict (on val) | in one sentence |",
             "|---|---|---|---|---|---|---|"]
    rows = {} if result is None else {(r["name"], r["split"]): r for r in result["claims"]}
    for c in CLAIMS:
        arms = f"{'/'.join(c.a)} - {'/'.join(c.b)}, {describe(c.items)}"
        e, v = rows.get((c.name, "eval")), rows.get((c.name, "val"))
        if e is None or v is None:
            lines.append(f"| {c.name} | {arms} | not yet run | - | not yet run | - | {c.paper}: {c.says}. |")
            continue
        lines.append(f"| {c.name} | {arms} | {_fmt(e)} | {e['seeds']} x {e['items']} "
                     f"| {_fmt(v)} | {v['verdict']} | {sentence(e, v)} |")
    return "\n".join(lines)


def figure(result: dict):
    """One row per claim: `a - b` on `eval` (filled) and `val` (open) with their seeds x items
    intervals, each seed's difference on `eval` as a dot, an arrow toward the paper's side of 0."""
    from matplotlib.figure import Figure  # no pyplot: no backend, no display

    rows = {(r["name"], r["split"]): r for r in result["claims"]}
    shown = [c for c in CLAIMS if (c.name, "eval") in rows and rows[c.name, "eval"]["diff"] is not None]
    fig = Figure(figsize=(8, 0.7 * len(shown) + 1.2), layout="constrained")
    ax = fig.subplots()
    for y, c in enumerate(shown):
        for split, dy, face in (("eval", -0.12, "C0"), ("val", 0.12, "white")):
            r = rows[c.name, split]
            if r["low"] is not None:
                ax.plot([r["low"], r["high"]], [y + dy] * 2, color="C0", lw=2)
            ax.plot(r["diff"], y + dy, "o", mfc=face, mec="C0", ms=7, label=f"{split}: a - b, 95% (seeds x items)")
        seeds = rows[c.name, "eval"].get("per_seed", [])
        ax.plot(seeds, [y - 0.3] * len(seeds), ".", color="0.4", label="eval: each seed's a - b")
        ax.annotate("", xytext=(0, y + 0.3), xy=(c.sign * 2.5, y + 0.3),
                    arrowprops=dict(arrowstyle="->", color="C2"))
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_yticks(range(len(shown)), [f"{c.name}: {rows[c.name, DECIDED_ON]['verdict']} on {DECIDED_ON}\n"
                                      f"({c.paper.split(' (')[0]}; {describe(c.items)})" for c in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("a - b, points of the headline metric (arrow: the side the paper claims)")
    handles, labels = ax.get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    ax.legend(seen.values(), seen.keys(), fontsize=7, loc="best")
    ax.set_title(f"The seed papers' claims, {len(result['seeds'])} seeds of SFT and RL each", fontsize=10)
    return fig


def configs_table() -> str:
    """How each configuration's runs are made and which claims read them (docs/results.md)."""
    lines = ["| runs | what trains | overrides of params.yaml (and `sft.seed=k rft.seed=k`, k = 0, 1, 2) "
             "| models trained and decoded | claims that read them |", "|---|---|---|---|---|"]
    for name, (what, sets) in CONFIGS.items():
        uses = ", ".join(f"{c.name} ({' and '.join(arm for arm, x in (('a', c.a), ('b', c.b)) if x[0] == name)})"
                         for c in CLAIMS if name in (c.a[0], c.b[0]))
        lines.append(f"| {name} | {what} | {' '.join(f'`{s}`' for s in sets) or '(committed params)'} "
                     f"| {', '.join(models_of(name))} | {uses} |")
    return "\n".join(lines)


def times_table(result: dict) -> str:
    """Each configuration's measured minutes per seed and their sum: what `make claims` cost."""
    configs = result["configurations"]
    lines = ["| configuration | trains and decodes | minutes per seed | minutes |", "|---|---|---|---|"]
    total = 0.0
    for name in CONFIGS:
        minutes = [m for m in configs.get(name, {}).get("minutes", []) if m is not None]
        if minutes:
            total += sum(minutes)
            lines.append(f"| {name} | {', '.join(models_of(name))} | {' / '.join(f'{m:.1f}' for m in minutes)} "
                         f"| {sum(minutes):.1f} |")
    lines.append(f"| **all runs** | | | **{total:.0f}** |")
    return "\n".join(lines)


def formats_table(result: dict) -> str:
    """Each configuration's models and their share of well-formed answers on `eval`, per seed:
    where the seeds' scores part, it is mostly answers left empty (EOS right after `<answer>`)."""
    lines = ["| configuration | model | well-formed answers on eval, % per seed |", "|---|---|---|"]
    for name in CONFIGS:
        for model, shares in result["configurations"].get(name, {}).get("format", {}).get("eval", {}).items():
            lines.append(f"| {name} | {model} | {' / '.join('-' if x is None else f'{x:.1f}' for x in shares)} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the runs
def with_kept(runs: dict[str, list[dict]], seeds: tuple[int, ...]) -> dict[str, list[dict]]:
    """`runs` (what `execute` just ran or kept) and every other configuration whose
    records of all `seeds` are on disk from the same committed study with its overrides: after
    `--only`, claims.json still holds each claim measured before."""
    key = next(iter(runs.values()))[0]["key"]
    out = dict(runs)
    for name, (_, sets) in CONFIGS.items():
        paths = [RUNS / ablations.slug(name) / f"seed{s}.json" for s in seeds]
        if name in out or not all(p.is_file() for p in paths):
            continue
        records = [json.loads(p.read_text()) for p in paths]
        if all(r["key"] == key and r["set"] == sets for r in records):
            out[name] = records
    return out


def as_sets(strings: list[str]) -> dict[str, object]:
    """["sft.families=[grounding]"] -> {"sft.families": ["grounding"]}, each value read as YAML."""
    return {k: yaml.safe_load(v) for k, _, v in (x.partition("=") for x in strings)}


def train(name: str, params, folder: Path) -> dict[str, list[str]]:
    """Train the models of configuration `name` that its claims read: model -> the adapters it
    stacks on the base. The SFT adapter lives where `vrlib.choose` keeps it (`choose.sft_key`:
    the sft, data and base sections, the splits' bytes), so the configurations of one seed that
    start from the same SFT train it once; an RL run resumes its own checkpoints."""
    from vrlib import choose, rft, sft
    from vrlib.logs import progress

    needed = models_of(name)
    sft_dir = choose.ROOT / "sft" / choose.sft_key(params)
    below = [str(sft_dir)] if params.rft.init == "sft" else []
    if ("sft" in needed or below) and not (sft_dir / "adapter_model.safetensors").is_file():
        sft.run(params.data, params.base, params.sft, base=choose.BASE, out=str(sft_dir),
                on_step=progress(f"claims {name} sft", params.sft.steps))
    adapters = {"sft": [str(sft_dir)]}
    if "rft" in needed:
        out = folder / "rft"
        if not (out / "history.json").is_file():  # written last: the run finished
            rft.run(params.rft.seed, params.data, params.rft, params.base, base=choose.BASE, sft=str(sft_dir),
                    out=str(out), checkpoint_dir=str(folder / "rft-checkpoints"), live_dir=None)
        adapters["rft"] = [*below, str(out)]
    return {m: adapters[m] for m in needed}


def decode_split(params, adapters: dict[str, list[str]], folder: Path, split: str) -> dict[str, list]:
    """Each model's greedy decodes of `split`: model -> traces, by the eval stage's driver
    (`choose.decode`; family by family, as `rollout.decode` batches), also written to `folder`,
    the split's frames loaded once for all of them."""
    from vrlib import choose

    items = f"data/{split}.jsonl"
    loaded = choose.load_items(params, items)
    return {m: choose.decode(params, a, loaded, items, f"{m} {split}", folder / "decode" / f"{m}-{split}",
                             folder / f"{m}-{split}.jsonl")
            for m, a in adapters.items()}


def format_rate(traces: list) -> float:
    """The share of well-formed answers in percent (the `format` column of the traces)."""
    rows = [t if isinstance(t, dict) else asdict(t) for t in traces]
    return round(100 * float(np.mean([r["format"] for r in rows])), 1)


def run_one(name: str, sets: list[str], seed: int, raw: dict, key: str) -> dict:
    """One configuration at one seed, trained and decoded on both splits: its record (the
    overrides, the seed, the committed study's `key`, the RL run's step-log means, the minutes
    it took and each model's per-item scores per split)."""
    from vrlib import choose
    from vrlib.evaluate import item_scores
    from vrlib.logs import machine

    start = time.time()
    wanted = as_sets(overrides(sets, seed))
    params = choose.with_sets(raw, wanted)
    folder = ROOT / ablations.slug(name) / choose.variant_key(raw, wanted, params)
    adapters = train(name, params, folder)
    traces = {split: decode_split(params, adapters, folder, split) for split in SPLITS}
    scores = {split: {m: item_scores(t) for m, t in by_model.items()} for split, by_model in traces.items()}
    shares = {split: {m: format_rate(t) for m, t in by_model.items()} for split, by_model in traces.items()}
    history = folder / "rft" / "history.json"
    steps = json.loads(history.read_text()) if "rft" in adapters else []
    log = {k: float(np.mean([h[k] for h in steps if k in h]))
           for k in (*ablations.LOGGED, "group/frac_zero_std") if any(k in h for h in steps)}
    return {"set": sets, "seed": seed, "key": key, "log": log, "minutes": round((time.time() - start) / 60, 1),
            "machine": machine(), "format": shares, "scores": scores}


STUDY_READ = ("data", "models/base")
"""The committed study's outputs that a run reads: the splits and the base. It trains and decodes
everything else itself."""


def study_key(lock: str | Path = "dvc.lock") -> str:
    """What a record must have been made on: params.yaml, the overrides common to every run, and
    what its runs read of the committed study: every stage's code, notebooks and files that no
    stage writes, and the outputs of STUDY_READ (dvc.lock's hashes). Not the study's own SFT, RL
    and evaluation outputs: a rerun of the study on another CPU kind, whose float kernels train
    other models from the same inputs, keeps the records."""
    stages = yaml.safe_load(Path(lock).read_text())["stages"].values()
    written = {out["path"] for stage in stages for out in stage.get("outs", [])}
    read = {(d["path"], d.get("md5")) for stage in stages for d in stage.get("deps", []) if d["path"] not in written}
    read |= {(o["path"], o.get("md5")) for stage in stages for o in stage.get("outs", []) if o["path"] in STUDY_READ}
    return digest([ablations.COMMON, sorted(read)], ["params.yaml"])


def execute(todo: list[tuple[str, list[str], int]], on_seed=None) -> dict[str, list[dict]]:
    """Each (configuration, overrides, seed) of `todo`, in order: configuration -> records. A
    record of the same committed study (`study_key`) and overrides is kept; after the
    last run of each seed, `on_seed(records so far)`. Prints `[k/N]` lines with the time left."""
    raw = yaml.safe_load(Path("params.yaml").read_text())
    key = study_key()
    records, start, ran = {}, time.time(), 0
    for k, (name, sets, seed) in enumerate(todo, 1):
        path = RUNS / ablations.slug(name) / f"seed{seed}.json"
        record = json.loads(path.read_text()) if path.is_file() else {}
        what = f"[{k}/{len(todo)}] {name}, {', '.join(f'{s}={seed}' for s in SEED_KEYS)}"
        if record.get("key") != key or record.get("set") != sets:
            left = sum(MINUTES[n] for n, _, _ in todo[k - 1:])
            if ran:  # the estimate, scaled by how this machine kept to it so far
                left *= (time.time() - start) / 60 / sum(MINUTES[n] for n, _, _ in todo[k - 1 - ran:k - 1])
            print(f"{what}: running, about {left:.0f} min left", flush=True)
            record = run_one(name, sets, seed, raw, key)
            atomic_write_json(path, record)  # kept if a later run fails or is killed
            ran += 1
            print(f"{what}: done in {record['minutes']} min", flush=True)
        else:
            print(f"{what}: done before, kept", flush=True)
        records.setdefault(name, []).append(record)
        if on_seed is not None and (k == len(todo) or todo[k][2] != seed):
            on_seed(records)
    return records


def write(runs: dict[str, list[dict]]) -> dict:
    """metrics/claims.json from `runs` and the records of every other configuration kept on disk."""
    from vrlib import config
    from vrlib.video import atomic_path

    seeds = tuple(sorted({r["seed"] for records in runs.values() for r in records}))
    runs = with_kept(runs, seeds)
    params = config.load("params.yaml")
    first = next(iter(runs.values()))[0]["scores"]
    kim = {split: kim_items(split, [(t, i) for t, ids in next(iter(first[split].values())).items() for i in ids],
                            params.data, params.seed) for split in SPLITS}
    result = summarize(runs, kim)
    atomic_write_json(OUT, result)
    fig = figure(result)
    with atomic_path(FIGURE) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return result


def main(argv: list[str] | None = None) -> None:
    import argparse

    import torch

    from vrlib.stage import quiet

    ap = argparse.ArgumentParser(prog="python -m vrlib.claims", description=(
        "each claim from >= 3 seeds of SFT and RL (trained and decoded per configuration and seed) -> "
        "metrics/claims.json; resumes after a kill"))
    ap.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds per configuration (0, 1, ...; >= 3)")
    ap.add_argument("--only", nargs="+", metavar="CLAIM", help="these claims only (names or slugs: "
                    + ", ".join(ablations.slug(c.name) for c in CLAIMS) + ")")
    ap.add_argument("--plan", action="store_true", help="print the runs and their expected time, run nothing")
    args = ap.parse_args(argv)
    todo = plan(tuple(range(args.seeds)), args.only)
    minutes = sum(MINUTES[name] for name, _, _ in todo)
    print(f"{len(todo)} runs ({len(configs_of([claim_named(n) for n in args.only] if args.only else CLAIMS))} "
          f"configurations x {args.seeds} seeds), about {minutes:.0f} min on 2 cores if none is done "
          f"(records in {RUNS}/)", flush=True)
    if args.plan:
        for name, sets, s in todo:
            print(f"  {name}, seed {s}: " + " ".join(overrides(sets, s))
                  + f" (trains and decodes {', '.join(models_of(name))})")
        return
    if args.seeds < 3:
        print(f"warning: {args.seeds} seeds; the claims need >= 3", flush=True)
    quiet()
    # set, as `make pretrain` sets it; the notebook kernels do not. Measured on this machine: 3 SFT
    # steps 7e-6 apart with and without the call; yet the committed run's seed-0 RL model (trained
    # here, on the SFT model `vrlib.choose` trained) decodes eval as the study's does (docs/results.md)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    result = write(execute(todo, on_seed=write))
    print(f"\n{OUT}: claims decided on {DECIDED_ON}, reported on eval\n\n{table(result)}")


if __name__ == "__main__":
    sys.exit(main())
