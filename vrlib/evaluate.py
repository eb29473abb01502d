"""Greedy decoding on the held-out split, every trace kept, metrics per task.

Scoring reuses the reward parsers (`vrlib.rewards`), so training and evaluation cannot
drift apart in how an answer is read.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from vrlib import rewards
from vrlib.data import atomic_write_lines
from vrlib.rollout import generate


@dataclass
class Trace:
    """One model's answer to one item, with everything needed to inspect it later."""

    model: str
    problem_id: str
    problem_type: str
    problem: str
    solution: str
    completion: str
    format: float     # 1.0 if <think>..</think><answer>..</answer>, else 0.0
    accuracy: float   # the accuracy reward: temporal IoU for grounding
    truncated: bool   # no EOS within max_new_tokens


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


def score_traces(name: str, samples: list, texts: list[str], truncated: list[bool]) -> list[Trace]:
    return [Trace(model=name, problem_id=s.problem_id, problem_type=s.problem_type,
                  problem=s.problem, solution=s.solution, completion=t,
                  format=rewards.format_reward(t, s), accuracy=rewards.accuracy_reward(t, s),
                  truncated=bool(tr))
            for s, t, tr in zip(samples, texts, truncated)]


def task_metrics(traces: list[Trace], recalls: list[float]) -> dict:
    """{problem_type: {metric: value, "n": N}}; values in percent.

    Grounding: mIoU and R@k = share of items with IoU >= k (Charades-STA's R@1, IoU=k).
    Every task: `accuracy` (mean accuracy reward) and `format` (share of well-formed outputs).
    """
    out: dict[str, dict] = {}
    for task in sorted({t.problem_type for t in traces}):
        rows = [t for t in traces if t.problem_type == task]
        acc = np.array([t.accuracy for t in rows])
        m = {"accuracy": 100 * acc.mean(), "format": 100 * np.mean([t.format for t in rows])}
        if task == "temporal grounding":
            m["mIoU"] = m.pop("accuracy")
            m.update({f"R@{k}": 100 * float((acc >= k).mean()) for k in recalls})
        out[task] = {k: round(float(v), 2) for k, v in m.items()} | {"n": len(rows)}
    return out


def write_traces(path, traces: list[Trace]) -> None:
    """One JSON object per line, written whole or not at all."""
    atomic_write_lines(path, (json.dumps(asdict(t)) + "\n" for t in traces))


STAGE_ORDER = ["base", "sft", "rft"]


def results_table(metrics: dict, task: str = "temporal grounding") -> str:
    """The README's results table, generated from metrics/eval.json."""
    cols = [c for c in next(iter(metrics.values()))[task] if c != "n"]
    lines = ["| model | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 2) + "|"]
    for name in sorted(metrics, key=lambda n: (STAGE_ORDER + [n]).index(n)):
        m = metrics[name][task]
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.1f}" for c in cols) + f" | {m['n']} |")
    return "\n".join(lines)
