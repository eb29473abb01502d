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
- Work neither pass needs is not done: pass 1 runs only where its clues can cut the video (not
  on images, not on the questions about times above), and an item whose pass-2 input is the
  one-pass evaluation's own (the same frames at the same size: a whole video whose denser
  sampling hits `max_frames`, an image) takes that decode's answer (`plain`) instead of a
  second greedy decode of the same input. In the tiny study no item is cut, and this halves
  the cost of the `rft_tcr` row.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

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
    reused: list[bool] = field(default_factory=list)  # pass 2 is the one-pass decode (the same input)


def needs_clues(sample) -> bool:
    """Whether pass 1's clues can change what pass 2 sees: a video whose question is not about times."""
    return sample.data_type == "video" and sample.problem_type not in WHOLE_VIDEO


def same_input(a, b, px_a: int, px_b: int, processor) -> bool:
    """Whether clips `a` at `px_a` pixels and `b` at `px_b` reach the model as the same tensors:
    the same frames at the same times, resized to the same size (Qwen2.5-VL's `smart_resize`)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    if a.frames.shape != b.frames.shape or a.fps != b.fps or not np.array_equal(a.timestamps, b.timestamps) \
            or not np.array_equal(a.frames, b.frames):
        return False
    h, w = a.frames.shape[1:3]
    low = processor.video_processor.size["shortest_edge"]  # what `prompts.encode_prompts` gives both
    return all(smart_resize(h, w, p.patch_size * p.merge_size, low, px_a)
               == smart_resize(h, w, p.patch_size * p.merge_size, low, px_b)
               for p in (processor.image_processor, processor.video_processor))


def two_pass(model, processor, samples: list, paths: list[Path], settings: dict, *, low: float,
             high: float, pad: float, partial_dir: str | Path | None = None, key: str = "",
             name: str = "", plain: tuple[list, list, list] | None = None) -> TwoPass:
    """Both passes over `samples` (media at `paths`), `settings` as `evaluate.settings` gives;
    with `name`, each pass shows its progress (`rollout.decode`). `plain` = (clips, texts,
    truncated) of the same model's one-pass greedy decode at `settings`: an item whose pass-2
    input is the same (`same_input`) takes its answer. An item that does not `needs_clues` has
    no pass 1 (None, its fps too)."""
    fps, px = settings["fps"], settings["max_pixels"]
    frames = dict(min_frames=settings["min_frames"], max_frames=settings["max_frames"])
    dec = dict(batch_size=settings["batch_size"], max_new_tokens=settings["max_new_tokens"])
    part = (lambda name: None) if partial_dir is None else (lambda name: Path(partial_dir) / name)
    ask = [k for k, s in enumerate(samples) if needs_clues(s)]
    low_clips = {k: load_media(paths[k], samples[k].data_type, fps=fps * low, **frames) for k in ask}
    said, _ = decode(model, processor, [replace(samples[k], problem=f"{samples[k].problem} {CLUE_ASK}") for k in ask],
                     list(low_clips.values()), max_pixels=int(px * low), partial=part("tcr_pass1.jsonl"),
                     key=key, name=name and f"{name} pass 1", **dec) if ask else ([], [])
    first = [None] * len(samples)
    for k, text in zip(ask, said):
        first[k] = text
    spans = [clue_span(text, s.duration, pad) if text is not None else None for s, text in zip(samples, first)]
    clips = []
    for s, p, span in zip(samples, paths, spans):
        start, end = span or (0.0, None)
        clips.append(load_media(p, s.data_type, fps=fps * high, start=start, end=end, **frames))
    reused = [plain is not None and same_input(plain[0][k], clips[k], px, int(px * high), processor)
              for k in range(len(samples))]
    again = [k for k in range(len(samples)) if not reused[k]]
    texts, truncated = decode(model, processor, [samples[k] for k in again], [clips[k] for k in again],
                              max_pixels=int(px * high), partial=part("tcr_pass2.jsonl"), key=key,
                              name=name and f"{name} pass 2", **dec) if again else ([], [])
    by_k = dict(zip(again, zip(texts, truncated)))
    both = [by_k[k] if k in by_k else (plain[1][k], plain[2][k]) for k in range(len(samples))]
    return TwoPass(first, spans, [t for t, _ in both], [tr for _, tr in both],
                   [(low_clips[k].fps if k in low_clips else None, b.fps) for k, b in enumerate(clips)],
                   (fps * low, fps * high), reused)


def write_passes(path: str | Path, samples: list, two: TwoPass) -> None:
    """Both passes of every item, one JSON line each, for the explorer (notebook 06) to show what
    the scored answer was told: pass 1's completion and clues, the span and fps of pass 2."""
    reused = two.reused or [False] * len(samples)
    rows = ({"problem_id": s.problem_id, "first": first, "clues": None if first is None else answers.parse_glue(first),
             "span": span, "fps": list(fps), "asked_fps": list(two.asked_fps), "reused": again}
            for s, first, span, fps, again in zip(samples, two.first, two.spans, two.fps, reused))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_lines(path, (json.dumps(r) + "\n" for r in rows))


def read_passes(path: str | Path) -> dict[str, dict]:
    """problem_id -> the row `write_passes` wrote (span a tuple or None)."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {r["problem_id"]: r | {"span": None if r["span"] is None else tuple(r["span"])} for r in rows}
