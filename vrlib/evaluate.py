"""Greedy decoding on the held-out split, every trace kept, metrics per task.

Scoring reuses the reward parsers (`vrlib.rewards`), so training and evaluation cannot
drift apart in how an answer is read.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from vrlib import rewards
from vrlib.data import atomic_write_lines, family
from vrlib.rollout import generate


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
    format: float     # 1.0 if <think>..</think><answer>..</answer>, else 0.0
    accuracy: float   # the accuracy reward: temporal IoU for grounding, mean box IoU for tracking
    truncated: bool   # no EOS within max_new_tokens
    glue_iou: float = 0.0  # grounded QA: IoU of the <glue> evidence
    mra: float = 0.0  # regression: VSI-Bench's mean relative accuracy (the paper's eval metric)


def decode(model, processor, samples: list, clips: list, *, batch_size: int,
           max_new_tokens: int) -> tuple[list[str], list[bool]]:
    """Greedy completions, in batches."""
    texts, truncated = [], []
    for i in range(0, len(samples), batch_size):
        ro = generate(model, processor, samples[i:i + batch_size], clips[i:i + batch_size],
                      num_generations=1, max_new_tokens=max_new_tokens, do_sample=False)
        texts += ro.texts
        truncated += ro.truncated.tolist()
    return texts, truncated


def _mra(completion: str, sample) -> float:
    pred = rewards.extract_answer(completion)
    pred = None if pred is None else rewards.parse_number(pred)
    gt = rewards.parse_number(rewards.extract_answer(sample.solution))
    return 0.0 if pred is None else rewards.mean_relative_accuracy(pred, gt)


def score_traces(name: str, samples: list, texts: list[str], truncated: list[bool]) -> list[Trace]:
    return [Trace(model=name, problem_id=s.problem_id, task=family(s), problem_type=s.problem_type,
                  problem=s.problem, solution=s.solution, completion=t,
                  format=rewards.format_reward(t, s), accuracy=rewards.accuracy_reward(t, s),
                  truncated=bool(tr), glue_iou=rewards.glue_iou_reward(t, s),
                  mra=_mra(t, s) if s.problem_type == "regression" else 0.0)
            for s, t, tr in zip(samples, texts, truncated)]


def task_metrics(traces: list[Trace], recalls: list[float]) -> dict:
    """{task: {metric: value, "problem_type": ..., "n": N}}; values in percent.

    Every task: `accuracy` (mean accuracy reward: exact letter or number, 1 - WER, ROUGE,
    1 - relative error) and `format` (share of well-formed outputs). Then as the papers report:
    grounding mIoU (in place of accuracy) and R@k = share with IoU >= k (Charades-STA's R@1,
    IoU=k); tracking `R@0.5` on the mean box IoU (VideoChat-R1's GoT overlap is `accuracy`);
    grounded QA `glue_mIoU` (NExT-GQA); regression `MRA` (VSI-Bench, Video-R1's eval).
    """
    out: dict[str, dict] = {}
    for task in sorted({t.task for t in traces}):
        rows = [t for t in traces if t.task == task]
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
        out[task] = {k: round(float(v), 2) for k, v in m.items()} | {
            "n": len(rows), "problem_type": "+".join(types)}
    return out


HEADLINE = {"temporal grounding": "mIoU", "regression": "MRA"}
"""The one number per task in the overview table; `accuracy` for every other problem_type."""


def headline(m: dict) -> float:
    return m[HEADLINE.get(m["problem_type"], "accuracy")]


def write_traces(path, traces: list[Trace]) -> None:
    """One JSON object per line, written whole or not at all."""
    atomic_write_lines(path, (json.dumps(asdict(t)) + "\n" for t in traces))


STAGE_ORDER = ["base", "sft", "rft"]


def _models(metrics: dict) -> list[str]:
    return sorted(metrics, key=lambda n: (STAGE_ORDER + [n]).index(n))


def results_table(metrics: dict, task: str = "grounding") -> str:
    """One task's table for the README, every metric, generated from metrics/eval.json."""
    cols = [c for c, v in next(iter(metrics.values()))[task].items()
            if c != "n" and isinstance(v, (int, float))]
    lines = ["| model | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 2) + "|"]
    for name in _models(metrics):
        m = metrics[name][task]
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.1f}" for c in cols) + f" | {m['n']} |")
    return "\n".join(lines)


def overview_table(metrics: dict) -> str:
    """Every task for the README: a row per task, a column per model, the task's headline metric
    (HEADLINE), and the unweighted mean over tasks."""
    models = _models(metrics)
    tasks = sorted(next(iter(metrics.values())))
    lines = ["| task | metric | n | " + " | ".join(models) + " |", "|---" * (len(models) + 3) + "|"]
    for task in tasks:
        m0 = metrics[models[0]][task]
        name = HEADLINE.get(m0["problem_type"], "accuracy")
        lines.append(f"| {task} | {name} | {m0['n']} | "
                     + " | ".join(f"{headline(metrics[x][task]):.1f}" for x in models) + " |")
    means = [np.mean([headline(metrics[x][t]) for t in tasks]) for x in models]
    lines.append("| **mean over tasks** | | | " + " | ".join(f"{v:.1f}" for v in means) + " |")
    return "\n".join(lines)
