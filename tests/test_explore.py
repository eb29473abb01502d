"""vrlib.explore: the trace explorer's filters, parts and rewards on hand-written traces, and
the widget wired to two traces and a fake clip loader."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from vrlib.explore import card, explorer, length, parts, reward_rows, select
from vrlib.video import Clip

GQA = SimpleNamespace(problem_id="g", problem="What colour is the square?", problem_type="grounded QA",
                      options=["A. red", "B. blue"], duration=8.0,
                      solution="<answer>A</answer><glue>[(2.0, 6.0)]</glue>")
MC = SimpleNamespace(problem_id="m", problem="Which shape is first?", problem_type="multiple choice",
                     options=["A. white square", "B. yellow square"], duration=8.0,
                     solution="<answer>A</answer>")


def trace(pid, model, task, completion, accuracy, fmt=1.0, glue_iou=0.0, truncated=False):
    return {"problem_id": pid, "model": model, "task": task, "completion": completion,
            "accuracy": accuracy, "format": fmt, "glue_iou": glue_iou, "truncated": truncated,
            "answer": "ignored: a key the explorer does not know"}


RIGHT = "<think>It is red.</think><answer>A</answer><glue>[(2.0, 4.0)]</glue>"  # 68 characters
WRONG = "<think>The white square is first.</think><answer>B</answer>"  # 59 characters
TRACES = [trace("g", "sft", "gqa", RIGHT, 1.0, glue_iou=0.5),
          trace("m", "sft", "choice", WRONG, 0.0),
          trace("g", "rft", "gqa", "<think>It is", 0.0, fmt=0.0, truncated=True),  # 12 characters
          trace("m", "rft", "choice", "<think>A</think><answer>A</answer>", 1.0)]  # 34 characters


def ids(traces):
    return [(t["model"], t["problem_id"]) for t in traces]


def test_length_counts_characters():
    assert [length(t) for t in TRACES] == [68, 59, 12, 34]


def test_select_by_each_filter_and_together():
    assert select(TRACES) == TRACES
    assert ids(select(TRACES, task="gqa")) == [("sft", "g"), ("rft", "g")]
    assert ids(select(TRACES, model="rft")) == [("rft", "g"), ("rft", "m")]
    assert ids(select(TRACES, correct=True)) == [("sft", "g"), ("rft", "m")]
    assert ids(select(TRACES, correct=False)) == [("sft", "m"), ("rft", "g")]
    assert ids(select(TRACES, min_len=34, max_len=59)) == [("sft", "m"), ("rft", "m")]  # inclusive
    assert ids(select(TRACES, task="choice", model="sft", correct=False)) == [("sft", "m")]
    assert select(TRACES, task="gqa", max_len=11) == []
    # the threshold decides what counts as right, as in the taxonomy
    half = [trace("x", "rft", "grounding", "", 0.4)]
    assert select(half, correct=True) == [] and select(half, correct=True, threshold=0.3) == half


def test_parts_cut_the_completion_as_the_rewards_read_it():
    assert parts(TRACES[0]) == {"reasoning": "It is red.", "answer": "A", "glue": "[(2.0, 4.0)]",
                                "raw": RIGHT}
    assert parts(TRACES[2]) == {"reasoning": None, "answer": None, "glue": None, "raw": "<think>It is"}
    # the last closed tag wins, as rewards.extract_answer
    two = trace("m", "rft", "choice", "<think>a</think><think> b </think><answer>A</answer><answer>B</answer>", 0)
    assert parts(two)["reasoning"] == "b" and parts(two)["answer"] == "B"


def test_reward_rows_recompute_every_reward_next_to_the_logged_one():
    # gold evidence (2, 6), predicted (2, 4): IoU 2 / 4 = 0.5
    assert reward_rows(TRACES[0], GQA) == [
        {"reward": "format", "value": 1.0, "logged": 1.0},
        {"reward": "accuracy", "value": 1.0, "logged": 1.0},
        {"reward": "glue_iou", "value": 0.5, "logged": 0.5}]
    rows = reward_rows({"completion": WRONG}, MC)  # a trace that logged nothing
    assert [(r["reward"], r["value"], r["logged"]) for r in rows] == [
        ("format", 1.0, None), ("accuracy", 0.0, None), ("glue_iou", 0.0, None)]


def test_card_shows_question_gold_parts_rewards_and_reason():
    text = card(TRACES[1], MC)
    assert "answer not supported by the reasoning" in text.splitlines()[0]
    assert "options:   A. white square | B. yellow square" in text
    assert "gold:      <answer>A</answer>" in text
    assert "reasoning: The white square is first." in text and "answer:    B" in text
    assert "glue:" not in text  # multiple choice wrote none
    assert "rewards:   format 1.00 (logged 1.00) · accuracy 0.00 (logged 0.00)" in text
    truncated = card(TRACES[2], GQA)
    assert "truncated" in truncated.splitlines()[0]
    assert "answer:    (none)" in truncated and "raw:       <think>It is" in truncated


def fake_clip(calls):
    def load_clip(sample):
        calls.append(sample.problem_id)
        frames = np.full((4, 6, 6, 3), 100, np.uint8)  # (T, H, W, 3)
        return Clip(frames=frames, fps=0.5, indices=np.arange(4), timestamps=np.arange(4) * 2.0,
                    duration=8.0, native_fps=4.0, path="fake.mp4")
    return load_clip


def test_explorer_filters_and_draws_the_chosen_item(capsys):
    calls = []
    by_model = {"sft": TRACES[:2], "rft": TRACES[2:]}
    box = explorer(by_model, {"g": GQA, "m": MC}, fake_clip(calls))
    filters, items, out = box.children
    task, model, correct, span = filters.children
    assert [label for label, _ in model.options] == ["all", "sft", "rft"]
    assert [label for label, _ in task.options] == ["all", "choice", "gqa"]
    assert (span.min, span.max, span.value) == (0, 68, (0, 68))
    assert len(items.options) == 4 and items.value is TRACES[0]
    assert calls == ["g"]  # the first item is drawn at once
    assert "It is red." in capsys.readouterr().out

    model.value, correct.value = "sft", False
    assert [t for _, t in items.options] == [TRACES[1]]
    assert calls == ["g", "m"]
    assert "answer not supported by the reasoning" in capsys.readouterr().out

    span.value = (0, 20)  # nothing wrong from sft is that short
    assert items.options == () and items.value is None and calls == ["g", "m"]
    assert "no item passes these filters" in capsys.readouterr().out
    model.value = "rft"  # the refilled list selects its first item again
    assert items.value is TRACES[2] and calls == ["g", "m", "g"]
