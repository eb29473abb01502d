"""Temporal Clue-driven Reasoning (VideoChat-R1, Algorithm 1): look at the whole video cheaply,
say where the clues are, then look again closely at those moments only.

1. `(A1, C) = M(V_low, Q)`: the video at `low` times the fps and pixel budget; the question
   also asks for the clue segments, in VideoChat-R1's evidence format `<glue>[(s, e)]</glue>`.
2. Cut the clue segments and sample them at `high` times the fps and pixels.
3. `A2 = M(V_high, Q)` is the answer scored.

The paper and its code give neither the factors nor a padding around the clues: here they
are params (`evaluation.tcr_low`, `tcr_high`, `tcr_pad`). Departures, on purpose:
- The second pass sees one segment, from the first clue's start to the last clue's end, so
  its frames stay evenly spaced as Qwen2.5-VL's time positions assume.
- Questions whose answer is a time or a box at given times (temporal grounding, grounded QA,
  tracking) keep the whole video in the second pass, only sampled more densely: a cut video
  would shift the times they ask about.
- An item whose first pass names no valid clue gets the whole video in the second pass.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from vrlib import answers
from vrlib.data import atomic_write_lines, load_media
from vrlib.rollout import decode

CLUE_ASK = "Also give the time spans of the clues you used as <glue>[(start, end)]</glue>."
WHOLE_VIDEO = ("temporal grounding", "grounded QA", "tracking")
"""Problem types whose second pass keeps the whole video."""


def clue_span(completion: str, duration: float, pad: float) -> tuple[float, float] | None:
    """From the first clue's start to the last clue's end, padded and kept inside the video;
    None without a valid, non-empty clue. E.g. "<glue>[(2.0, 3.0), (5.0, 5.5)]</glue>" in an
    8 s video with pad 0.5 gives (1.5, 6.0)."""
    spans = answers.parse_glue(completion)
    if not spans or duration <= 0:
        return None
    start = max(0.0, min(s for s, _ in spans) - pad)
    end = min(duration, max(e for _, e in spans) + pad)
    return (start, end) if end > start else None


@dataclass
class TwoPass:
    """Both passes of every item: the second is the answer that is scored."""

    first: list[str]            # pass-1 completions (answer + clues)
    spans: list[tuple | None]   # the segment each item's second pass saw (None: the whole video)
    texts: list[str]            # pass-2 completions
    truncated: list[bool]
    fps: list[tuple] = field(default_factory=list)  # (pass 1, pass 2) real sampled fps per item
    asked_fps: tuple = ()       # (pass 1, pass 2): the fps each pass asked the sampler for


def two_pass(model, processor, samples: list, paths: list[Path], settings: dict, *, low: float,
             high: float, pad: float, partial_dir: str | Path | None = None, key: str = "",
             name: str = "") -> TwoPass:
    """Both passes over `samples` (media at `paths`), `settings` as `evaluate.settings` gives;
    with `name`, each pass shows its progress (`rollout.decode`)."""
    fps, px = settings["fps"], settings["max_pixels"]
    frames = dict(min_frames=settings["min_frames"], max_frames=settings["max_frames"])
    dec = dict(batch_size=settings["batch_size"], max_new_tokens=settings["max_new_tokens"])
    part = (lambda name: None) if partial_dir is None else (lambda name: Path(partial_dir) / name)
    asked = [replace(s, problem=f"{s.problem} {CLUE_ASK}") for s in samples]
    low_clips = [load_media(p, s.data_type, fps=fps * low, **frames) for s, p in zip(samples, paths)]
    first, _ = decode(model, processor, asked, low_clips, max_pixels=int(px * low),
                      partial=part("tcr_pass1.jsonl"), key=key, name=name and f"{name} pass 1", **dec)
    spans, clips = [], []
    for s, p, text in zip(samples, paths, first):
        span = None if s.problem_type in WHOLE_VIDEO or s.data_type != "video" \
            else clue_span(text, s.duration, pad)
        spans.append(span)
        start, end = span or (0.0, None)
        clips.append(load_media(p, s.data_type, fps=fps * high, start=start, end=end, **frames))
    texts, truncated = decode(model, processor, samples, clips, max_pixels=int(px * high),
                              partial=part("tcr_pass2.jsonl"), key=key, name=name and f"{name} pass 2", **dec)
    return TwoPass(first, spans, texts, truncated, [(a.fps, b.fps) for a, b in zip(low_clips, clips)],
                   (fps * low, fps * high))


def write_passes(path: str | Path, samples: list, two: TwoPass) -> None:
    """Both passes of every item, one JSON line each, for the explorer (notebook 06) to show what
    the scored answer was told: pass 1's completion and clues, the span and fps of pass 2."""
    rows = ({"problem_id": s.problem_id, "first": first, "clues": answers.parse_glue(first),
             "span": span, "fps": list(fps), "asked_fps": list(two.asked_fps)}
            for s, first, span, fps in zip(samples, two.first, two.spans, two.fps))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_lines(path, (json.dumps(r) + "\n" for r in rows))


def read_passes(path: str | Path) -> dict[str, dict]:
    """problem_id -> the row `write_passes` wrote (span a tuple or None)."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {r["problem_id"]: r | {"span": None if r["span"] is None else tuple(r["span"])} for r in rows}
