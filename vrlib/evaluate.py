"""Greedy decoding on the held-out split, every trace kept, metrics per task.

Scoring reads answers with the one reader (`vrlib.answers`) and scores them as the data
contract says (`vrlib.scoring`), which the rewards pay by default; it never calls the training
rewards (`vrlib.rewards`), so a reward experiment is measured with the same ruler as its
baseline, and a change here reruns the evaluation and the analysis only. The video settings default to training's and are recorded with the results
(`settings`): Video-R1's released numbers used other frames and pixels than its training,
undocumented (Video-R1's README and `src/eval_bench.py`; issue #11).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vrlib import answers, scoring, stats
from vrlib.data import atomic_write_lines, digest, family
from vrlib.rollout import decode, decoded
from vrlib.schema import MODELS
from vrlib.tcr import two_pass


@dataclass
class Trace:
    """One model's answer to one item, with everything needed to inspect it later."""

    model: str
    problem_id: str
    task: str         # the world family ("grounding", "order", ...) or the data_source
    problem_type: str
    problem: str
    solution: str
    completion: str
    format: float     # 1.0 if <think>..</think><answer>..</answer> (answers.well_formed), else 0.0
    accuracy: float   # the answer's score (scoring.accuracy): temporal IoU for grounding, mean box IoU for tracking
    truncated: bool   # no EOS within max_new_tokens
    glue_iou: float = 0.0  # grounded QA: IoU of the <glue> evidence
    mra: float = 0.0  # regression: VSI-Bench's mean relative accuracy (the paper's eval metric)
    answer: str = ""  # what was scored (`scored_text`), the raw output being `completion`
    duration: float = 0.0  # the video's length in seconds (0 for images), for breakdowns


def settings(dcfg, cfg) -> dict:
    """How frames were sampled and answers decoded, training's video settings unless the
    evaluation section overrides them: written next to every result."""
    return {"fps": cfg.fps or dcfg.fps, "min_frames": dcfg.min_frames,
            "max_frames": cfg.max_frames or dcfg.max_frames,
            "max_pixels": cfg.max_pixels or dcfg.max_pixels, "decoding": "greedy",
            "max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size,
            "scoring": "the reward parsers on the last <answer>; without one, on the output "
                       "with its <think> removed (Video-R1's eval scores the raw output)"}


# ----------------------------------------------------------------------------- decoding
def resume_key(setup: dict, items: str | os.PathLike, model_dir: str | os.PathLike, adapters: list) -> str:
    """What a saved decode must match to be reused (`decode`'s `key`): the settings, the bytes
    of the items file, the model's config, its weights when they are one file (the tiny model,
    retrained with the same config by every study; a real checkpoint's shards are not reread,
    it is not retrained here) and each adapter's weights."""
    from vrlib.model import check_model_dir

    model = check_model_dir(model_dir)
    weights = [model / "config.json", *[model / "model.safetensors"] * (model / "model.safetensors").is_file(),
               *[Path(a) / "adapter_model.safetensors" for a in adapters]]
    return digest(setup, [items, *weights])


@dataclass
class ModelRun:
    """One model's evaluation by `run_model`: its scored traces, and TCR's two passes if asked."""

    traces: list[Trace]
    two_pass: object = None  # tcr.TwoPass: both passes and the span each item's second pass saw


def run_model(name: str, samples: list, paths: list, setup: dict, *, model_dir: str | os.PathLike,
              adapters: list, bcfg, items: str | os.PathLike, partial_dir: str | os.PathLike,
              traces_path: str | os.PathLike, clips: list | None = None, tcr: dict | None = None,
              plain: list | None = None, processor=None) -> ModelRun:
    """The one evaluation driver, for the study (notebook 05) and `vrlib.benchmarks` alike.

    Loads `model_dir` + `adapters` as params.yaml's `base` section says (`bcfg`: dtype, 4-bit
    storage, attention, device; a real 7B is never loaded in fp32 on the CPU), decodes every
    item greedily, or in TCR's two passes with `tcr` = {"low", "high", "pad"}, resuming a
    crashed run from `partial_dir` (keyed by `resume_key` on `setup`, the `items` file and the
    weights), scores and writes the traces to `traces_path`. The finished decode stays in
    `partial_dir`: a rerun with the same model, items and settings (an RL ablation reevaluating
    the unchanged base and SFT models) reads it instead of loading and decoding again.
    `clips` are the items' media already sampled as `setup` says (else decoded from `paths`).
    With `tcr`, `plain` may give the same model's one-pass traces of `samples` (and `clips`
    theirs): pass 2 takes their answer where its input is the same (`tcr.two_pass`).
    """
    from vrlib.data import load_media
    from vrlib.model import load_kwargs, load_policy, load_processor

    key = resume_key(setup | ({"tcr": tcr, "reuse": plain is not None} if tcr else {}), items, model_dir, adapters)
    partial_dir, two = Path(partial_dir), None
    done = {} if tcr else decoded(partial_dir / "decode.jsonl", key)
    if not tcr and all(s.problem_id in done for s in samples):  # decoded before: no model, no frames
        print(f"eval {name}: decoded before ({partial_dir / 'decode.jsonl'}), read back", flush=True)
        texts, truncated = [done[s.problem_id][0] for s in samples], [done[s.problem_id][1] for s in samples]
    else:
        model = load_policy(model_dir, adapters, **load_kwargs(bcfg))
        processor = processor if processor is not None else load_processor(model_dir)
        if tcr:
            given = None if plain is None or clips is None else (
                clips, [t.completion for t in plain], [t.truncated for t in plain])
            two = two_pass(model, processor, samples, paths, setup, low=tcr["low"], high=tcr["high"],
                           pad=tcr["pad"], partial_dir=partial_dir, key=key, name=f"eval {name}", plain=given)
            texts, truncated = two.texts, two.truncated
        else:
            if clips is None:
                clips = [load_media(p, s.data_type, fps=setup["fps"], min_frames=setup["min_frames"],
                                    max_frames=setup["max_frames"]) for s, p in zip(samples, paths)]
            texts, truncated = decode(model, processor, samples, clips, batch_size=setup["batch_size"],
                                      max_new_tokens=setup["max_new_tokens"], max_pixels=setup["max_pixels"],
                                      partial=partial_dir / "decode.jsonl", key=key, name=f"eval {name}")
    traces = score_traces(name, samples, texts, truncated)
    write_traces(traces_path, traces)
    return ModelRun(traces, two)


# ----------------------------------------------------------------------------- scoring
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


def scored_text(completion: str) -> str:
    """The completion the parsers read: as is when it has an <answer>; else its text without
    the <think> part, wrapped in <answer> (Video-R1's eval falls back to the raw output, where
    a letter or number inside the reasoning would be read as the answer)."""
    if answers.extract_answer(completion) is not None:
        return completion
    return f"<answer>{_THINK.sub('', completion).strip()}</answer>"


# 0.50, 0.55, ..., 0.95: the ten confidence thresholds of VSI-Bench's MRA (VSI-Bench sec. 3).
MRA_THRESHOLDS = tuple(round(0.50 + 0.05 * i, 2) for i in range(10))


def mean_relative_accuracy(pred: float, gt: float, thresholds: Sequence[float] = MRA_THRESHOLDS) -> float:
    """VSI-Bench MRA: mean over C of 1[|pred - gt| / |gt| < 1 - C] (paper eq., and Video-R1 eval).

    lmms-eval's VSI-Bench code compares with `<=`; that differs only when the relative error
    equals a threshold exactly. gt == 0 counts as relative error 0 if pred == 0, else infinite.
    """
    if not answers.finite(pred, gt):
        return 0.0
    if gt == 0:
        rel = 0.0 if pred == 0 else math.inf
    else:
        rel = abs(pred - gt) / abs(gt)
    return sum(rel < 1 - c for c in thresholds) / len(thresholds)


def scores(completion: str, sample) -> dict[str, float]:
    """A trace's scores, under the names of the default rewards they equal: `format`
    (`answers.well_formed` on the raw output, whatever the format reward pays), `accuracy` on
    `scored_text` and `glue_iou` on the raw output (`vrlib.scoring`). Computed here, never by
    `vrlib.rewards`: a reward experiment does not change what the evaluation measures."""
    return {"format": float(answers.well_formed(completion, answers.problem_type(sample))),
            "accuracy": scoring.accuracy(scored_text(completion), sample),
            "glue_iou": scoring.glue_iou(completion, sample)}


def _mra(completion: str, sample) -> float:
    pred = answers.extract_answer(completion)
    pred = None if pred is None else answers.parse_number(pred)
    gt = answers.read_solution(sample)  # a regression's solution, read as parse_number reads it
    return 0.0 if pred is None else mean_relative_accuracy(pred, gt)


def score_traces(name: str, samples: list, texts: list[str], truncated: list[bool]) -> list[Trace]:
    """Format on the raw output; accuracy, evidence IoU and MRA on `scored_text`."""
    traces = []
    for s, t, tr in zip(samples, texts, truncated):
        read = scored_text(t)
        traces.append(Trace(
            model=name, problem_id=s.problem_id, task=family(s), problem_type=s.problem_type,
            problem=s.problem, solution=s.solution, completion=t,
            truncated=bool(tr), **scores(t, s),
            mra=_mra(read, s) if s.problem_type == "regression" else 0.0,
            answer=answers.extract_answer(read) or "", duration=float(s.duration)))
    return traces


def task_metrics(traces: list[Trace], recalls: list[float]) -> dict:
    """{task: {metric: value, "problem_type": ..., "n": N}}; values in percent.

    Every task: `accuracy` (mean answer score, `scoring.accuracy`: exact letter or number, 1 - WER, ROUGE,
    1 - relative error) and `format` (share of well-formed outputs). Then as the papers report:
    grounding mIoU (in place of accuracy) and R@k = share with IoU >= k (Charades-STA's R@1,
    IoU=k); tracking `R@0.5` on the mean box IoU (VideoChat-R1's GoT overlap is `accuracy`);
    grounded QA `glue_mIoU` (NExT-GQA); regression `MRA` (VSI-Bench, Video-R1's eval).
    """
    return {task: group_metrics([t for t in traces if t.task == task], recalls)
            for task in sorted({t.task for t in traces})}


def group_metrics(rows: list[Trace], recalls: list[float]) -> dict:
    """The metrics of one task (its first trace's problem_type decides the paper's metrics)."""
    kind = rows[0].problem_type
    acc = np.array([t.accuracy for t in rows])
    m = {"accuracy": 100 * acc.mean(), "format": 100 * np.mean([t.format for t in rows])}
    if kind == "temporal grounding":
        m = {"mIoU": m["accuracy"], "format": m["format"]}
        m.update({f"R@{k}": 100 * float((acc >= k).mean()) for k in recalls})
    elif kind == "tracking":
        m["R@0.5"] = 100 * float((acc >= 0.5).mean())
    elif kind == "grounded QA":
        m["glue_mIoU"] = 100 * np.mean([t.glue_iou for t in rows])
    elif kind == "regression":
        m["MRA"] = 100 * np.mean([t.mra for t in rows])
    types = sorted({t.problem_type for t in rows})
    return {k: round(float(v), 2) for k, v in m.items()} | {"n": len(rows), "problem_type": "+".join(types)}


HEADLINE = {"temporal grounding": "mIoU", "regression": "MRA"}
"""The one number per task in the overview table; `accuracy` for every other problem_type."""


def headline(m: dict) -> float:
    return m[HEADLINE.get(m["problem_type"], "accuracy")]


# ----------------------------------------------------------------------------- intervals
PAIRS = (("sft", "base"), ("rft", "sft"), ("rft_tcr", "rft"))
"""The differences reported with their intervals: each model against the one it starts from."""


def item_scores(traces: list) -> dict[str, dict[str, float]]:
    """task -> {problem_id: the item's headline score in percent}: the values whose mean is the
    task's `headline` (IoU for grounding, MRA for regression, the answer's score otherwise).
    Takes `Trace` records or the dicts of a traces file."""
    rows = [t if isinstance(t, dict) else asdict(t) for t in traces]
    out = {}
    for task in sorted({r["task"] for r in rows}):
        group = [r for r in rows if r["task"] == task]
        kind = HEADLINE.get("+".join(sorted({r["problem_type"] for r in group})), "accuracy")
        out[task] = {r["problem_id"]: 100 * (r["mra"] if kind == "MRA" else r["accuracy"]) for r in group}
    return out


def differences(traces: dict[str, list], *, split: str, seed: int, pairs=PAIRS) -> dict:
    """Every reported difference `a - b` between two models on the same items, per task and
    over tasks (mean of the tasks' headlines), with its paired 95% bootstrap interval
    (`vrlib.stats`): `metrics/<split>_diffs.json`. Pairs whose models were not run are left out."""
    scores = {name: item_scores(rows) for name, rows in traces.items()}
    out = {"split": split, "metric": "headline per task (evaluate.HEADLINE), percent points",
           "confidence": stats.CONFIDENCE, "n_resamples": stats.N_RESAMPLES, "seed": seed,
           "method": "paired percentile bootstrap, items resampled within each task (scipy.stats.bootstrap)",
           "differences": {}}
    for a, b in pairs:
        if a not in scores or b not in scores:
            continue
        ids = {task: sorted(items) for task, items in scores[b].items()}
        if {t: sorted(i) for t, i in scores[a].items()} != ids:
            raise ValueError(f"{a} and {b} were not evaluated on the same items")
        get = lambda name: {t: np.array([scores[name][t][i] for i in ids[t]]) for t in ids}  # noqa: E731
        intervals = stats.paired(get(a), get(b), seed=seed)
        out["differences"][f"{a} - {b}"] = {k: iv.as_dict() for k, iv in intervals.items()}
    return out


def sizes_table(diffs: list[dict]) -> str:
    """What each comparison can detect, for the README: per difference and split (`differences`
    of each split), the half-width of its 95% interval over tasks and per task (median and
    largest): a smaller true difference is not told from 0 by this many items."""
    lines = ["| difference | split | items | smallest detectable over tasks | per task: median (largest) |",
             "|---|---|---|---|---|"]
    for d in diffs:
        for pair, per in d["differences"].items():
            tasks = [v["half_width"] for k, v in per.items() if k != "over tasks" and v["half_width"] is not None]
            over = per["over tasks"]["half_width"]
            lines.append(f"| {pair} | {d['split']} | {per['over tasks']['n']} | "
                         + ("n/a" if over is None else f"{over:.1f}") + " | "
                         + (f"{np.median(tasks):.1f} ({max(tasks):.1f})" if tasks else "n/a") + " |")
    return "\n".join(lines)


def write_traces(path, traces: list[Trace]) -> None:
    """One JSON object per line, written whole or not at all."""
    atomic_write_lines(path, (json.dumps(asdict(t)) + "\n" for t in traces))


def _models(metrics: dict) -> list[str]:
    return sorted(metrics, key=lambda n: (list(MODELS) + [n]).index(n))


def results_table(metrics: dict, task: str = "grounding") -> str:
    """One task's table for the README, every metric, generated from metrics/eval.json."""
    cols = [c for c, v in next(iter(metrics.values()))[task].items()
            if c != "n" and isinstance(v, (int, float))]
    lines = ["| model | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 2) + "|"]
    for name in _models(metrics):
        m = metrics[name][task]
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.1f}" for c in cols) + f" | {m['n']} |")
    return "\n".join(lines)


def overview_table(metrics: dict, diffs: dict | None = None) -> str:
    """Every task for the README: a row per task, a column per model, the task's headline metric
    (HEADLINE), and the unweighted mean over tasks; with `diffs` (`differences`), a column per
    difference, `+4.1 [+1.2, +7.0]`, its 95% interval."""
    models = _models(metrics)
    tasks = sorted(next(iter(metrics.values())))
    pairs = list((diffs or {}).get("differences", {}))
    lines = ["| task | metric | n | " + " | ".join(models + pairs) + " |",
             "|---" * (len(models) + len(pairs) + 3) + "|"]
    cells = lambda key: [stats.fmt(diffs["differences"][p][key]) for p in pairs]  # noqa: E731
    for task in tasks:
        m0 = metrics[models[0]][task]
        name = HEADLINE.get(m0["problem_type"], "accuracy")
        lines.append(f"| {task} | {name} | {m0['n']} | "
                     + " | ".join([f"{headline(metrics[x][task]):.1f}" for x in models] + cells(task)) + " |")
    means = [np.mean([headline(metrics[x][t]) for t in tasks]) for x in models]
    lines.append("| **mean over tasks** | | | " + " | ".join([f"{v:.1f}" for v in means] + cells("over tasks")) + " |")
    return "\n".join(lines)
