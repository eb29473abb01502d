"""Reading the traces: which items each model gets right, which RL fixed or broke, and why."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vrlib import rewards


def read_traces(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def failure(trace: dict, threshold: float = 0.5) -> str:
    """A coarse reason per trace: ok, truncated, no answer tag, bad format, or wrong answer."""
    if trace["accuracy"] >= threshold:
        return "ok"
    if trace["truncated"]:
        return "truncated"
    if rewards.extract_answer(trace["completion"]) is None:
        return "no answer tag"
    if trace["format"] < 1.0:
        return "wrong format"
    return "wrong answer"


def taxonomy(traces: list[dict], threshold: float = 0.5) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in traces:
        reason = failure(t, threshold)
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))


def flips(before: list[dict], after: list[dict], threshold: float = 0.5) -> dict[str, list[str]]:
    """Items that crossed the accuracy threshold between two models (e.g. SFT -> RFT)."""
    b = {t["problem_id"]: t["accuracy"] >= threshold for t in before}
    a = {t["problem_id"]: t["accuracy"] >= threshold for t in after}
    common = sorted(b.keys() & a.keys())
    return {"fixed": [i for i in common if a[i] and not b[i]],
            "broken": [i for i in common if b[i] and not a[i]]}


def ranked(traces: list[dict], n: int) -> tuple[list[dict], list[dict]]:
    """The n best and n worst traces by accuracy (ties broken by id, so the choice is stable)."""
    order = sorted(traces, key=lambda t: (-t["accuracy"], t["problem_id"]))
    return order[:n], order[::-1][:n]


def show_frames(ax_row, clip, n: int | None = None) -> None:
    """Draw up to len(ax_row) evenly spaced frames of a clip with their timestamps."""
    n = min(n or len(ax_row), len(clip.frames))  # an image is one frame
    idx = np.linspace(0, len(clip.frames) - 1, n).round().astype(int)
    for ax in ax_row[n:]:
        ax.axis("off")
    for ax, i in zip(ax_row, idx):
        ax.imshow(clip.frames[i])
        ax.set_title(f"{clip.timestamps[i]:.1f}s", fontsize=8)
        ax.axis("off")
