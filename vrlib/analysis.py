"""Reading the traces: which items each model gets right, which RL fixed or broke, and why."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from vrlib import answers
from vrlib.schema import CORRECT, MODELS


def read_traces(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_models(folder: str | Path = "eval/traces") -> dict[str, list[dict]]:
    """Every `<model>.jsonl` in the folder, the study's MODELS first in their order, then any
    other by name: the evaluation may add variants that the analysis should see."""
    names = sorted(p.stem for p in Path(folder).glob("*.jsonl"))
    names = [m for m in MODELS if m in names] + [m for m in names if m not in MODELS]
    return {m: read_traces(Path(folder) / f"{m}.jsonl") for m in names}


FAILURES = ("ok", "truncated", "empty answer", "no answer tag", "wrong format", "time outside the video",
            "answer not supported by the reasoning", "wrong answer, valid format")
"""The taxonomy, checked in this order: each trace gets the first that applies. "empty answer":
the text ends at `<answer>` (EOS where the answer goes), the tiny SFT model's commonest failure:
`<answer>` and `</answer>` end in the same two tokens (`answer`, `>`), and a model that has not
learned to look two tokens back gives EOS there the odds it has after `</answer>` (one SFT seed
on its own training items; the others after their own chain of thought, docs/results.md)."""

_SPANS = {"temporal grounding", "grounded QA"}
_CONCLUDES = {"multiple choice", "grounded QA", "numerical", "regression", "temporal grounding"}
"""The types whose reasoning can be compared with the answer (read by answers.PARSERS)."""


def _outside(completion: str, sample) -> bool:
    """A predicted span or evidence segment that starts before 0 or ends after the video."""
    if sample is None or sample.problem_type not in _SPANS or sample.duration <= 0:
        return False
    answer = answers.extract_answer(completion) or ""
    spans = [answers.parse_span(answer)] if sample.problem_type == "temporal grounding" \
        else (answers.parse_glue(completion) or [])
    return any(s is not None and (min(s) < 0 or max(s) > sample.duration) for s in spans)


def reasoning_answer(completion: str, sample) -> object | None:
    """What the <think> part concludes, read as the answer would be: the last option the
    reasoning names (its letter, or the option's text), the last number (in the answer's
    grammar, answers.find_numbers: "1,200" is 1200), or the last span.
    None when the reasoning names none, or for types without one (OCR, free-form, tracking).
    A heuristic for the taxonomy, not a metric: e.g. "The white square is first." -> the letter
    of the option "white square"."""
    think = answers.last_tagged(completion, "think")
    if think is None or sample is None or sample.problem_type not in _CONCLUDES:
        return None
    kind = sample.problem_type
    if kind in ("multiple choice", "grounded QA"):
        named = []  # (position, letter) of every option the reasoning names
        for option in sample.options:
            letter, _, text = option.partition(". ")
            at = think.lower().rfind(text.strip().lower()) if text.strip() else -1
            if at >= 0:
                named.append((at + len(text.strip()), letter))
            for needle in (f"({letter})", f" {letter}."):  # the letter itself, case-sensitive
                at = think.rfind(needle)
                if at >= 0:
                    named.append((at + len(needle), letter))
        return max(named)[1] if named else None
    if kind in ("numerical", "regression"):
        numbers = answers.find_numbers(think)
        return numbers[-1] if numbers else None
    return answers.parse_span(think)  # temporal grounding


def failure(trace: dict, sample=None, threshold: float = CORRECT) -> str:
    """The first reason of FAILURES that applies to a trace; `sample` (its data record) lets the
    two last checks see the video's duration and the options."""
    if trace["accuracy"] >= threshold:
        return "ok"
    if trace["truncated"]:
        return "truncated"
    completion = trace["completion"]
    if completion.rstrip().endswith("<answer>"):
        return "empty answer"
    answer = answers.extract_answer(completion)
    if answer is None:
        return "no answer tag"
    if not answers.well_formed(completion, trace["problem_type"]):  # the parser's verdict, not a reward's
        return "wrong format"
    if _outside(completion, sample):
        return "time outside the video"
    concluded = reasoning_answer(completion, sample)
    if concluded is not None:
        if answers.PARSERS[sample.problem_type](answer) != concluded:
            return "answer not supported by the reasoning"
    return "wrong answer, valid format"


def taxonomy(traces: list[dict], samples: dict | None = None, threshold: float = CORRECT) -> dict[str, int]:
    """Counts per FAILURES reason (every reason listed, zeros included): they add up to the
    traces, and all but "ok" add up to the wrong items. `samples`: problem_id -> data record."""
    counts = dict.fromkeys(FAILURES, 0)
    for t in traces:
        counts[failure(t, (samples or {}).get(t["problem_id"]), threshold)] += 1
    return counts


def flips(before: list[dict], after: list[dict], threshold: float = CORRECT) -> dict[str, list[str]]:
    """Items that crossed the accuracy threshold between two models (e.g. SFT -> RFT)."""
    b = {t["problem_id"]: t["accuracy"] >= threshold for t in before}
    a = {t["problem_id"]: t["accuracy"] >= threshold for t in after}
    common = sorted(b.keys() & a.keys())
    return {"fixed": [i for i in common if a[i] and not b[i]],
            "broken": [i for i in common if b[i] and not a[i]]}


def flip_table(traces_by_model: dict[str, list[dict]], pairs=None,
               threshold: float = CORRECT) -> pd.DataFrame:
    """Items fixed and broken per task, one row per (pair, task) plus an "all" row per pair.
    `pairs`: (before, after) names, by default every pair in the dict's order (base_to_sft,
    base_to_rft, sft_to_rft, ...), so a change is always read forward in the study."""
    rows = []
    for a, b in pairs or itertools.combinations(traces_by_model, 2):
        task = {t["problem_id"]: t["task"] for t in traces_by_model[b]}
        flipped = flips(traces_by_model[a], traces_by_model[b], threshold)
        for name in [*sorted(set(task.values())), "all"]:
            count = {k: sum(name in ("all", task[i]) for i in ids) for k, ids in flipped.items()}
            rows.append({"pair": f"{a}_to_{b}", "task": name, **count})
    return pd.DataFrame(rows, columns=["pair", "task", "fixed", "broken"])


def ranked(traces: list[dict], n: int) -> tuple[list[dict], list[dict]]:
    """The n best and n worst traces by accuracy (ties broken by id, so the choice is stable)."""
    order = sorted(traces, key=lambda t: (-t["accuracy"], t["problem_id"]))
    return order[:n], order[::-1][:n]


def show_frames(ax_row, clip, n: int | None = None) -> None:
    """Draw up to len(ax_row) evenly spaced frames of a clip with their timestamps; when that
    is fewer than the clip's, the first one says how many of them are drawn."""
    n = min(n or len(ax_row), len(clip.frames))  # an image is one frame
    if n < len(clip.frames):
        ax_row[0].text(0, -0.08, f"{n} of the {len(clip.frames)} frames", fontsize=7, va="top",
                       transform=ax_row[0].transAxes)
    idx = np.linspace(0, len(clip.frames) - 1, n).round().astype(int)
    for ax in ax_row[n:]:
        ax.axis("off")
    for ax, i in zip(ax_row, idx):
        ax.imshow(clip.frames[i])
        ax.set_title(f"{clip.timestamps[i]:.1f}s", fontsize=8)
        ax.axis("off")
