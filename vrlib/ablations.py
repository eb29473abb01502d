"""The study's RL ablations: each variant x RL seed as `dvc exp run -S ...`, in metrics/ablations.json.

`python -m vrlib.ablations` (or `make ablations`) runs the committed recipe and each variant of
ABLATIONS with the RL seeds SEEDS (`rft.seed`: rft and eval rerun; data, base and SFT
come from the cache). Each run's per-item scores on `val` and `eval` are written to
`metrics/ablations/<variant>/seed<k>.json` as it ends, so a killed run resumes after the last
finished one. `summarize` gives per variant the mean and spread over seeds and intervals that
hold both items and seeds; `choose` picks the recipe from `val` alone (the test split only
reports). The README's ablation tables are `table(...)` of the file it writes, checked by a test.
`execute` (the runs, resuming, putting the committed study back) is shared with `make claims`.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vrlib import stats
from vrlib.analysis import read_traces
from vrlib.data import atomic_write_json, digest
from vrlib.evaluate import item_scores

ABLATIONS: dict[str, list[str]] = {
    "grpo (no shuffled rollouts)": ["rft.algo=grpo"],                # Video-R1: T-GRPO vs GRPO
    "DAPO dynamic sampling": ["rft.dynamic_sampling=true"],
    "relative reward (hypothesis)": ["rft.relative=true"],          # VideoPerceiver
    "no SFT cold start": ["rft.init=base"],                         # Video-R1's RL without SFT
    # GSPO and CISPO equal GRPO and dapo with one update per batch (every ratio is 1), so they
    # run with 2 updates per batch; GSPO with its paper's clip range
    "GSPO (2 updates per batch)": ["rft.importance_sampling=sequence", "rft.num_iterations=2",
                                   "rft.epsilon_low=0.0003", "rft.epsilon_high=0.0004"],
    "CISPO (2 updates per batch)": ["rft.loss_type=cispo", "rft.num_iterations=2"],
}
"""name -> `dvc exp run -S` overrides of the committed params.yaml (Video-R1's bonus on the
reward and Dr. GRPO were single-run rows before the seeds; `dvc exp run -S` reruns them)."""

COMMITTED = "committed params.yaml"
SEEDS = (0, 1, 2)
"""RL seeds per variant (`rft.seed`): the same data, base and SFT model, only the RL run differs."""
COMMON = ["evaluation.tcr=false", "evaluation.shuffled=false"]
"""Set for every run, the committed recipe's too: the table compares RFT rows, and TCR's second
pass would double each run's decoding."""
SPLITS = ("val", "eval")
TRACES = {"val": Path("eval/traces/val"), "eval": Path("eval/traces")}
"""Where the eval stage writes each split's traces (`<model>.jsonl`)."""
OUT = Path("metrics/ablations.json")
RUNS = Path("metrics/ablations")
"""One record per variant and seed (`run_record`): what a resumed `make ablations` keeps."""
FOCUS = "order"
"""The order-dependent task family T-GRPO is for (vrlib/tasks.py)."""
# The table's p / p~ are the mean accuracies of the ordered and the shuffled-frame rollouts
# over the run: p ~ p~ means the policy answers as well without the frame order.


LOGGED = ("tgrpo/advantage_changed", "tgrpo/p", "tgrpo/p_shuffled", "relative/gap", "policy/kl")
"""Step logs of the RFT run kept with each variant, as their mean over steps."""


def log_means(dvclive_dir: str | Path = "dvclive/rft") -> dict[str, float]:
    """Mean over steps of the LOGGED metrics a run wrote (DVCLive's `<name>.tsv`: step, value)."""
    means = {}
    for name in LOGGED:
        path = Path(dvclive_dir) / "plots/metrics" / f"{name}.tsv"
        if path.is_file():
            values = [float(line.split("\t")[1]) for line in path.read_text().splitlines()[1:]]
            means[name] = sum(values) / len(values)
    return means


def _run_scores(split_scores: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(task of each item, SFT scores (items,), RFT scores (items,)) of one run on one split,
    items in (task, problem_id) order."""
    sft, rft = split_scores["sft"], split_scores["rft"]
    keys = [(t, i) for t in sorted(sft) for i in sorted(sft[t])]
    return ([t for t, _ in keys], np.array([sft[t][i] for t, i in keys]), np.array([rft[t][i] for t, i in keys]))


def _over_tasks(tasks: list[str], scores: np.ndarray) -> float:
    tasks = np.asarray(tasks)
    return float(np.mean([scores[tasks == t].mean() for t in np.unique(tasks)]))


def _intervals(a: np.ndarray, b: np.ndarray, tasks: list[str], seed: int) -> dict:
    """`a - b` over tasks and per task, runs and items resampled (`stats.seeds_interval`)."""
    tasks = np.asarray(tasks)
    out = {"over tasks": stats.seeds_interval(a, b, tasks, seed=seed).as_dict()}
    for t in np.unique(tasks):
        cols = tasks == t
        out[str(t)] = stats.seeds_interval(a[:, cols], b[:, cols], tasks[cols], seed=seed).as_dict()
    return out


def summarize(runs: dict[str, list[dict]], seed: int = 0) -> dict:
    """metrics/ablations.json from the per-run records (`run_record`): per variant and split, RFT's
    mean over tasks per seed, their mean and standard deviation, and the intervals of
    `rft - sft` and `rft - committed` (items and seeds resampled); then `choose` on `val`."""
    variants = {}
    for name, records in runs.items():
        entry = {"set": records[0]["set"], "seeds": [r["seed"] for r in records],
                 "log": {k: float(np.mean([r["log"][k] for r in records if k in r["log"]]))
                         for k in LOGGED if any(k in r["log"] for r in records)}}
        for split in SPLITS:
            per_run = [_run_scores(r["scores"][split]) for r in records]
            for r, (tasks, _, _) in zip(records, per_run):
                if tasks != _run_scores(runs[COMMITTED][0]["scores"][split])[0]:
                    raise ValueError(f"{name}, rft.seed={r['seed']}: other {split} items than the committed run")
            tasks, sft = per_run[0][0], per_run[0][1]
            rft = np.stack([r[2] for r in per_run])                                  # (seeds, items)
            ref = np.stack([_run_scores(r["scores"][split])[2] for r in runs[COMMITTED]])
            per_seed = [round(_over_tasks(tasks, x), 2) for x in rft]
            entry[split] = {"sft": round(_over_tasks(tasks, sft), 2),
                            "rft": {"per_seed": per_seed, "mean": round(float(np.mean(per_seed)), 2),
                                    "sd": round(float(np.std(per_seed, ddof=1)), 2) if len(per_seed) > 1 else None},
                            "rft - sft": _intervals(rft, sft[None], tasks, seed)}
            if name != COMMITTED:
                entry[split]["rft - committed"] = _intervals(rft, ref, tasks, seed)
        variants[name] = entry
    return {"seeds": sorted({s for e in variants.values() for s in e["seeds"]}),
            "confidence": stats.CONFIDENCE, "n_resamples": stats.N_RESAMPLES, "seed": seed,
            "method": "percentile bootstrap resampling RL runs and, within each task, items "
                      "(vrlib.stats.seeds_interval); headline metric per task, percent points",
            "variants": variants, "choice": choose(variants)}


def choose(variants: dict) -> dict:
    """The recipe, chosen on `val` only: the variant whose RFT beats the committed recipe by the
    most over tasks, among those whose interval of that difference lies above 0; else the
    committed recipe. The test split is never read here."""
    better = {name: e["val"]["rft - committed"]["over tasks"] for name, e in variants.items()
              if name != COMMITTED and (e["val"]["rft - committed"]["over tasks"]["low"] or 0) > 0}
    if not better:
        return {"split": "val", "recipe": COMMITTED,
                "why": "no variant's val interval of rft - committed lies above 0"}
    best = max(better, key=lambda name: better[name]["diff"])
    return {"split": "val", "recipe": best, "why": f"rft - committed on val: {stats.fmt(better[best])}"}


def table(ablations: dict, split: str = "val") -> str:
    """A row per variant on one split: RFT's mean over tasks (mean and sd over RL seeds), its
    difference from SFT and from the committed recipe over tasks and on `order`, intervals over
    items and seeds; bold where the interval excludes 0 (an effect)."""
    n = len(ablations["seeds"])
    lines = [f"| variant | `dvc exp run -S` | rft, mean over tasks ({n} seeds: mean ± sd) | rft - sft "
             f"| rft - committed | {FOCUS}: rft - sft | {FOCUS}: rft - committed "
             "| T-GRPO bonus changed the advantage | p / p~ |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, run in ablations["variants"].items():
        s = run[split]
        sets = " ".join(f"`{x}`" for x in run["set"]) or "(committed params)"
        sd = "" if s["rft"]["sd"] is None else f" ± {s['rft']['sd']:.1f}"
        vs = s.get("rft - committed", {})
        log = run.get("log", {})
        changed = f"{100 * log['tgrpo/advantage_changed']:.1f}%" if "tgrpo/advantage_changed" in log else "-"
        p = f"{log['tgrpo/p']:.3f} / {log['tgrpo/p_shuffled']:.3f}" if "tgrpo/p" in log else "-"
        lines.append(f"| {name} | {sets} | {s['rft']['mean']:.1f}{sd} (sft {s['sft']:.1f}) "
                     f"| {stats.fmt(s['rft - sft']['over tasks'], mark=True)} "
                     f"| {stats.fmt(vs.get('over tasks'), mark=True)} "
                     f"| {stats.fmt(s['rft - sft'].get(FOCUS), mark=True)} | {stats.fmt(vs.get(FOCUS), mark=True)} "
                     f"| {changed} | {p} |")
    return "\n".join(lines)


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


def branch() -> str | None:
    """The branch HEAD is on; None when HEAD is detached or this is not a git repository."""
    return _git("symbolic-ref", "-q", "--short", "HEAD") or None


def back_on(name: str | None) -> None:
    """Put HEAD back on the branch `name` it was on before the runs. `dvc exp run` detaches HEAD
    while it runs (DVC's design, dvc#5818) and a run killed or failed mid-way can leave it
    detached; commits made after that land on no branch (the ablation results of one session
    missed `main` so). HEAD is reattached only if it still points at the branch's commit."""
    if name is None or branch() == name:
        return
    head, tip = _git("rev-parse", "HEAD"), _git("rev-parse", "-q", "--verify", f"refs/heads/{name}")
    if not tip:
        raise RuntimeError(f"the branch {name} is gone; HEAD is at {head[:7]}")
    if head != tip:
        raise RuntimeError(f"HEAD moved to {head[:7]} during the ablations, off {name} ({tip[:7]}): "
                           f"check `git log {head[:7]}`, then `git checkout {name}`")
    _run(["git", "symbolic-ref", "HEAD", f"refs/heads/{name}"])


def slug(name: str) -> str:
    """A variant's folder name under RUNS: `t_grpo, bonus on the reward (Video-R1)` ->
    `t_grpo-bonus-on-the-reward-video-r1`."""
    return re.sub(r"[^a-z0-9_]+", "-", name.lower()).strip("-")


def run_record(sets: list[str], seed: int, key: str) -> dict:
    """What one finished run leaves: its step-log means and each model's per-item headline
    scores on both splits (`evaluate.item_scores`), read from the traces the eval stage wrote."""
    scores = {split: {m: item_scores(read_traces(folder / f"{m}.jsonl")) for m in ("sft", "rft")}
              for split, folder in TRACES.items()}
    return {"set": sets, "seed": seed, "key": key, "log": log_means(), "scores": scores}


def plan(seeds: tuple[int, ...] = SEEDS, only: list[str] | None = None) -> list[tuple[str, list[str], int]]:
    """(variant, its overrides, RL seed) for every run (of the variants `only` names, if given),
    the committed recipe first."""
    unknown = set(only or ()) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"unknown ablation(s) {sorted(unknown)}; known: {', '.join(ABLATIONS)}")
    chosen = {name: sets for name, sets in ABLATIONS.items() if only is None or name in only}
    return [(name, sets, s) for name, sets in {COMMITTED: [], **chosen}.items() for s in seeds]


def execute(todo: list[tuple[str, list[str], int]], *, runs: Path = RUNS, out: Path = OUT,
            seed_keys: tuple[str, ...] = ("rft.seed",)) -> dict[str, list[dict]]:
    """Each (name, overrides, seed) of `todo` as one `dvc exp run -S ... eval` on the committed
    study, COMMON and every key of `seed_keys` set to the seed; name -> run records, in order.
    `make ablations` and `make claims` share it. Each record is written to
    `runs/<slug(name)>/seed<k>.json` as its run ends; one made on the same committed study
    (params.yaml and dvc.lock) with the same overrides is kept, so a killed run resumes after the
    last finished one. Prints `[k/N]` progress lines. Then the committed study is put back
    (params, lock, step logs, metrics but `runs` and `out`, DVC's outputs) and HEAD on its branch."""
    on = branch()
    if on is None and _git("rev-parse", "--git-dir"):
        print("warning: HEAD is detached (a killed `dvc exp run`?): commits made now land on no branch; "
              "`git checkout main` first", flush=True)
    _run(["git", "checkout", "--", "params.yaml", "dvc.lock"])  # a killed run left its experiment here
    key = digest([COMMON], ["params.yaml", "dvc.lock"])  # the committed study every run starts from
    records, start, ran = {}, time.time(), 0
    try:
        for k, (name, sets, seed) in enumerate(todo, 1):
            path = runs / slug(name) / f"seed{seed}.json"
            record = json.loads(path.read_text()) if path.is_file() else {}
            what = f"[{k}/{len(todo)}] {name}, {', '.join(f'{s}={seed}' for s in seed_keys)}"
            if record.get("key") != key or record.get("set") != sets:
                per_run = (time.time() - start) / max(ran, 1)
                left = f", about {per_run * (len(todo) - k + 1) / 60:.0f} min left" if ran else ""
                print(f"{what}: running{left}", flush=True)
                _run(["git", "checkout", "--", "params.yaml"])
                # up to the eval stage: the tables read its traces, the error analysis is not needed
                overrides = [*COMMON, *[f"{s}={seed}" for s in seed_keys], *sets]
                _run(["dvc", "exp", "run", *[a for s in overrides for a in ("-S", s)], "eval"])
                record = run_record(sets, seed, key)
                atomic_write_json(path, record)  # kept if a later run fails or is killed
                ran += 1
            else:
                print(f"{what}: done before, kept", flush=True)
            records.setdefault(name, []).append(record)
    finally:  # back to the committed study: params, lock, and its outputs from the cache
        _run(["git", "checkout", "--", "params.yaml", "dvc.lock", "dvclive", "metrics",
              f":(exclude){runs}", f":(exclude){out}"])  # the runs' records stay
        _run(["git", "clean", "-fdq", "--", "dvclive"])  # a variant's own step logs (CISPO's capped fraction)
        _run(["dvc", "checkout", "--force"])
        back_on(on)
    return records


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="every RL variant x RL seed; resumes after a kill")
    ap.add_argument("--seeds", type=int, default=len(SEEDS), help="RL seeds per variant (0, 1, ...)")
    ap.add_argument("--only", nargs="+", metavar="VARIANT", help="run these variants of ABLATIONS only "
                    "(and the committed recipe); the summary covers the runs on disk of those")
    args = ap.parse_args(argv)
    runs = execute(plan(tuple(range(args.seeds)), args.only))
    results = summarize(runs)
    atomic_write_json(OUT, results)
    for split in SPLITS:
        print(f"\n{split}:\n{table(results, split)}")
    print("\nrecipe chosen on val:", results["choice"])


if __name__ == "__main__":
    sys.exit(main())
