"""Compare two runs of the study item by item: what a change did, with its 95% interval.

`python -m vrlib.compare BASELINE EXPERIMENT` prints, per task family and over tasks, the
paired difference EXPERIMENT - BASELINE of the RFT model's per-item headline scores
(`evaluate.item_scores`) on the test split, with the interval `vrlib.stats.paired` gives
(items resampled within each family). A run is a `dvc exp` name, a git revision (`HEAD`, a
branch, a commit) whose traces this machine's DVC cache holds, `workspace` (the traces on
disk), or a folder of `<model>.jsonl` traces. A side may be several runs joined by commas,
one per RL seed (`base-s0,base-s1,base-s2`): each item's score is then its mean over the
runs, and when both sides have several, the seeds x items interval (`stats.seeds_interval`)
is printed too, since one RL run's luck is not seen by resampling items.

There is no default baseline: the committed metrics come from another machine, whose numbers
this one does not reproduce to the digit, so the baseline is a run made here (`dvc exp run -n
baseline` on the committed recipe, docs/change-a-reward.md), named on the command line. A
revision whose traces are not in the cache (the committed run, on a fresh clone) is an error
that says so; it never falls back to the committed numbers.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from vrlib import stats
from vrlib.evaluate import item_scores

WORKSPACE = "workspace"
TRACES = {"eval": "eval/traces", "val": "eval/traces/val"}
"""Where the eval stage writes each split's traces (`<model>.jsonl`)."""


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_run(run: str, *, model: str = "rft", split: str = "eval", root: str | Path = ".") -> list[dict]:
    """The traces of `model` on `split` in one run: a folder, `workspace`, or a revision or
    `dvc exp` name read through DVC from this machine's cache."""
    if Path(run).is_dir():
        return _rows((Path(run) / f"{model}.jsonl").read_text())
    path = f"{TRACES[split]}/{model}.jsonl"
    if run == WORKSPACE:
        return _rows((Path(root) / path).read_text())
    import dvc.api

    try:
        return _rows(dvc.api.read(path, repo=str(root), rev=run))
    except Exception as err:  # an unknown name, or outputs this machine never produced
        raise SystemExit(
            f"cannot read {path} of {run!r}: {type(err).__name__}: {err}\n"
            f"A revision's traces are read from this machine's DVC cache; the committed run is not "
            f"in a fresh clone's cache. Run the committed recipe here first (`dvc exp run -n baseline` "
            f"on a clean workspace) and compare against `baseline`; `dvc exp list` names the runs.") from None


def side_scores(runs: list[list[dict]]) -> dict[str, np.ndarray]:
    """task -> (runs, items) per-item headline scores, items sorted by id, the same in every run."""
    per_run = [item_scores(rows) for rows in runs]
    ids = {task: sorted(items) for task, items in per_run[0].items()}
    for scores in per_run[1:]:
        if {t: sorted(i) for t, i in scores.items()} != ids:
            raise ValueError("the runs of one side were not evaluated on the same items")
    return {task: np.array([[s[task][i] for i in ids[task]] for s in per_run]) for task in ids}


def compare(baseline: list[list[dict]], experiment: list[list[dict]], *, seed: int = 0) -> dict:
    """EXPERIMENT - BASELINE per task and "over tasks": `items` (stats.paired on each item's mean
    over its side's runs), `seeds` (stats.seeds_interval, when both sides have >= 2 runs, else
    None), and each side's mean headline in percent."""
    a, b = side_scores(experiment), side_scores(baseline)
    if {t: v.shape[1] for t, v in a.items()} != {t: v.shape[1] for t, v in b.items()}:
        raise ValueError("the two sides were not evaluated on the same items")
    tasks = sorted(a)
    items = stats.paired({t: a[t].mean(0) for t in tasks}, {t: b[t].mean(0) for t in tasks}, seed=seed)
    several = min(len(experiment), len(baseline)) >= 2
    seeds = {}
    if several:
        for key, group in [("over tasks", tasks), *[(t, [t]) for t in tasks]]:
            strata = np.concatenate([[t] * a[t].shape[1] for t in group])
            seeds[key] = stats.seeds_interval(np.concatenate([a[t] for t in group], axis=1),
                                              np.concatenate([b[t] for t in group], axis=1), strata, seed=seed)
    means = lambda side: {t: float(side[t].mean()) for t in tasks} | {  # noqa: E731
        "over tasks": float(np.mean([side[t].mean() for t in tasks]))}
    return {"baseline": means(b), "experiment": means(a), "runs": (len(baseline), len(experiment)),
            "items": items, "seeds": seeds or None}


def table(result: dict) -> str:
    """The comparison as a markdown table, a row per task family and one over tasks."""
    seeds = result["seeds"]
    head = "| task | n | baseline | experiment | experiment - baseline, items 95% |"
    head += " seeds x items 95% |" if seeds else ""
    lines = [head, "|---" * (6 if seeds else 5) + "|"]
    keys = [k for k in result["items"] if k != "over tasks"] + ["over tasks"]
    for k in keys:
        name = "**over tasks**" if k == "over tasks" else k
        row = (f"| {name} | {result['items'][k].n} | {result['baseline'][k]:.1f} | "
               f"{result['experiment'][k]:.1f} | {stats.fmt(result['items'][k], mark=True)} |")
        lines.append(row + (f" {stats.fmt(seeds[k], mark=True)} |" if seeds else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m vrlib.compare",
        description="EXPERIMENT - BASELINE per task family and over tasks, with paired 95%% intervals. "
                    "A run: a `dvc exp` name, a git revision, `workspace`, or a traces folder; "
                    "several runs joined by commas are RL seeds of one side.")
    ap.add_argument("baseline", help="e.g. baseline (your own run of the committed recipe)")
    ap.add_argument("experiment", help="e.g. my-reward, or workspace")
    ap.add_argument("--model", default="rft", help="which model's traces (default rft)")
    ap.add_argument("--split", default="eval", choices=sorted(TRACES),
                    help="eval (the test split, reported) or val (where choices are made)")
    args = ap.parse_args(argv)
    read = lambda spec: [read_run(r, model=args.model, split=args.split) for r in spec.split(",")]  # noqa: E731
    result = compare(read(args.baseline), read(args.experiment))
    k_base, k_exp = result["runs"]
    print(f"{args.model} on {args.split}: {args.experiment} ({k_exp} run{'s' * (k_exp > 1)}) - "
          f"{args.baseline} ({k_base} run{'s' * (k_base > 1)}), headline per task in percent "
          f"(evaluate.HEADLINE); paired 95% bootstrap intervals, items resampled within each family"
          + ("; seeds x items: RL runs resampled too" if result["seeds"] else
             "; one RL run per side: the interval holds the items' noise, not another seed's") + ".\n")
    print(table(result))
    over = result["items"]["over tasks"]
    print(f"\nover tasks: {stats.fmt(over)}: "
          + ("an effect (the interval excludes 0)." if over.excludes_zero else
             f"not told from 0 (a true difference under about {over.half_width or 0:.1f} points is not "
             f"detectable with these items)."))


if __name__ == "__main__":
    sys.exit(main())
