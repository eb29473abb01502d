"""How an answer is scored against the truth, per problem_type: the data contract's score
column (docs/design.md). The evaluation's metrics are these scores, and the rewards pay them
by default (`vrlib.rewards`); a reward experiment changes `vrlib.rewards`, not this module, so
what the evaluation measures stays the same ruler on both sides of a comparison.

Answers are read by `vrlib.answers`; its docstring lists the departures in parsing. Model
output never raises (garbage scores 0); a sample with an unknown problem_type or an unreadable
solution is a bug in the data and raises ValueError. Departures from the reference code:

1. Regression with gt == 0: 1 if pred == 0; Video-R1's +1e-9 terms score that 0.
2. Tracking: the box count must equal the ground truth's (VideoChat-R1 hard-codes 8).
3. Spans, boxes and IoUs: a start after its end, or a non-finite number, scores 0.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Sequence

from vrlib import answers
from vrlib.answers import finite


# ----------------------------------------------------------------------------- helpers
def temporal_iou(pred: tuple[float, float], gt: tuple[float, float]) -> float:
    """IoU of two [start, end] spans in seconds (VideoChat-R1 tg_iou)."""
    (ps, pe), (gs, ge) = pred, gt
    if not finite(ps, pe, gs, ge) or ps > pe or gs > ge:
        return 0.0
    union = max(pe, ge) - min(ps, gs)
    if union <= 0:  # two points: right only if they are the same point (VideoChat-R1 grpo_tg.py)
        return 1.0 if (ps, pe) == (gs, ge) else 0.0
    return max(0.0, min(pe, ge) - max(ps, gs)) / union


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two boxes [x0, y0, x1, y1]; an inverted box scores 0."""
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    if not finite(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1):
        return 0.0
    if ax1 < ax0 or ay1 < ay0 or bx1 < bx0 or by1 < by0:
        return 0.0
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    if union <= 0:  # degenerate boxes: right only if identical, as temporal_iou
        return 1.0 if tuple(a) == tuple(b) else 0.0
    return inter / union


def _merge(segments: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for s, e in sorted(segments):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def segments_iou(pred_segments: Sequence[tuple[float, float]],
                 gt_segments: Sequence[tuple[float, float]]) -> float:
    """Multi-segment IoU: merge overlaps on each side, then total intersection / total union
    (VideoChat-R1 gqa_iou)."""
    for s, e in [*pred_segments, *gt_segments]:
        if not finite(s, e) or s > e:
            return 0.0
    pred, gt = _merge(pred_segments), _merge(gt_segments)
    # merged segments are disjoint on each side, so pairwise overlaps add up without double counting
    inter = sum(max(0.0, min(pe, ge) - max(ps, gs)) for ps, pe in pred for gs, ge in gt)
    union = sum(e - s for s, e in pred) + sum(e - s for s, e in gt) - inter
    if union <= 0:  # empty or point-only evidence: right only if identical, as temporal_iou
        return 1.0 if pred == gt else 0.0
    return inter / union


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance / max(1, #reference words), case-sensitive (Video-R1 OCR)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))  # distances from the empty reference prefix
    for i, r in enumerate(ref, 1):
        prev_diag, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev_diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev_diag + (r != h))
    return row[-1] / max(1, len(ref))


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer  # imported on first use: it pulls in nltk

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_f(reference: str, prediction: str) -> float:
    """Mean of ROUGE-1/2/L F with the Porter stemmer (Video-R1 free-form).

    rouge_score keeps only [a-z0-9] tokens, so text in other scripts scores 0 unless identical.
    Departs from Video-R1: an answer equal to the reference once normalised (the same words,
    or the same lower-cased [a-z0-9] tokens, as rouge_score reads them) scores 1.0; in
    Video-R1's mean a one-word reference ("No.") has no bigram, ROUGE-2 is 0 and the exact
    answer scored 0.667.
    """
    words = re.findall(r"[a-z0-9]+", reference.lower())
    if reference.split() == prediction.split() or (words and words == re.findall(r"[a-z0-9]+", prediction.lower())):
        return 1.0
    scores = _rouge_scorer().score(reference, prediction)
    return (scores["rouge1"].fmeasure + scores["rouge2"].fmeasure + scores["rougeL"].fmeasure) / 3


# ----------------------------------------------------------------------------- scores
def score(problem_type: str, pred, gt) -> float:
    """A read answer against the read truth, by problem_type (docs/design.md's score column);
    `pred` and `gt` as `answers.PARSERS` read them."""
    if problem_type in ("multiple choice", "grounded QA"):
        return float(pred == gt)
    if problem_type == "numerical":
        return float(round(pred, 2) == round(gt, 2))
    if problem_type == "OCR":
        return 1.0 - word_error_rate(gt, pred)
    if problem_type == "free-form":
        return rouge_f(gt, pred)
    if problem_type == "regression":
        if gt == 0:  # Video-R1's (|d|+1e-9)/(|gt|+1e-9) scores pred == gt == 0 as 0
            return float(pred == 0)
        return 1.0 - min(1.0, abs(pred - gt) / abs(gt))
    if problem_type == "temporal grounding":
        return temporal_iou(pred, gt)
    if problem_type == "tracking":
        if len(pred) != len(gt):  # VideoChat-R1: exactly 8 boxes, else 0
            return 0.0
        return sum(box_iou(p, g) for p, g in zip(pred, gt)) / len(gt)
    raise AssertionError(problem_type)


def clip01(x: float) -> float:
    """x in [0, 1]; a non-finite x is 0."""
    return min(1.0, max(0.0, float(x))) if math.isfinite(x) else 0.0


def accuracy(completion: str, sample) -> float:
    """The answer's score by problem_type in [0, 1]; 0 without an <answer>."""
    gt = answers.read_solution(sample)  # raises on an unknown problem_type or an unreadable solution
    # Video-R1's eval falls back to the raw output when there is no <answer>; this does not, as
    # in Video-R1's training (the evaluation passes `evaluate.scored_text` for its fallback).
    pred_text = answers.extract_answer(completion)
    if pred_text is None:
        return 0.0
    try:
        pred = answers.PARSERS[sample.problem_type](pred_text)
        return 0.0 if pred is None else clip01(score(sample.problem_type, pred, gt))
    except Exception:  # model output never raises: huge numbers, odd unicode, deep nesting
        return 0.0


def glue_iou(completion: str, sample) -> float:
    """Multi-segment IoU of the <glue> evidence for grounded QA; 0 for other types."""
    if answers.problem_type(sample) != "grounded QA":
        return 0.0
    gt = answers.parse_glue(sample.solution)
    if gt is None:
        raise answers._bad_solution(sample, "no valid <glue> list")
    try:
        pred = answers.parse_glue(completion)
        return 0.0 if pred is None else clip01(segments_iou(pred, gt))
    except Exception:  # model output never raises
        return 0.0
