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
    # the last closed tag wins, as answers.extract_answer
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
    assert "gold:      A" in text and "<answer>" not in text  # the gold without its tags
    assert "reasoning: The white square is first." in text and "answer:    B" in text
    assert "glue:" not in text  # multiple choice wrote none
    assert "rewards:   format 1.00 (logged 1.00) · accuracy 0.00 (logged 0.00)" in text
    truncated = card(TRACES[2], GQA)
    assert "truncated" in truncated.splitlines()[0]
    assert "answer:    (none)" in truncated and "raw:       <think>It is" in truncated
    assert "gold:      A\ngold glue: [(2.0, 6.0)]" in truncated


def fake_clip(calls, n=4):
    def load_clip(sample):
        calls.append(sample.problem_id)
        frames = np.full((n, 6, 6, 3), 100, np.uint8)  # (T, H, W, 3)
        return Clip(frames=frames, fps=n / 8, indices=np.arange(n), timestamps=np.arange(n) * 8 / n,
                    duration=8.0, native_fps=4.0, path="fake.mp4")
    return load_clip


def test_explorer_filters_and_draws_the_chosen_item(capsys):
    calls = []
    by_model = {"sft": TRACES[:2], "rft": TRACES[2:]}
    box = explorer(by_model, {"g": GQA, "m": MC}, fake_clip(calls))
    filters, buttons, items, out = box.children
    task, model, correct, span = filters.children
    assert list(model.options) == ["all", "sft", "rft"]
    assert list(task.options) == ["all", "choice", "gqa"]
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


def widgets(box):
    filters, buttons, items, _ = box.children
    return (*filters.children, *buttons.children[:2], items)


def test_explorer_filters_return_to_all_visibly():
    """ipywidgets 8 shows a Dropdown whose value is None as blank: "all" must be a real value."""
    box = explorer({"sft": TRACES[:2], "rft": TRACES[2:]}, {"g": GQA, "m": MC}, fake_clip([]))
    task, model, correct, span, _, _, items = widgets(box)
    assert [d.label for d in (task, model, correct)] == ["all", "all", "all"]
    task.value, model.value, correct.value = "gqa", "sft", True
    assert [t for _, t in items.options] == [TRACES[0]]
    task.value = model.value = correct.value = "all"
    assert [d.label for d in (task, model, correct)] == ["all", "all", "all"]
    assert [d.index for d in (task, model, correct)] == [0, 0, 0]
    assert len(items.options) == 4


def test_explorer_buttons_step_through_the_items_and_stop_at_the_ends():
    box = explorer({"sft": TRACES[:2], "rft": TRACES[2:]}, {"g": GQA, "m": MC}, fake_clip([]))
    *_, previous, following, items = widgets(box)
    where = box.children[1].children[2]
    assert items.index == 0 and where.value == "1 of 4"
    previous.click()
    assert items.index == 0
    for expected in (1, 2, 3, 3):
        following.click()
        assert items.index == expected
    assert items.value is TRACES[3] and where.value == "4 of 4"
    previous.click()
    assert items.value is TRACES[2] and where.value == "3 of 4"


def test_explorer_shows_every_frame_the_model_saw(monkeypatch):
    import matplotlib.pyplot as plt

    drawn = []
    monkeypatch.setattr("vrlib.explore.show_frames", lambda axes, clip: drawn.append((len(axes), len(clip.frames))))
    explorer({"sft": TRACES[:1]}, {"g": GQA}, fake_clip([], n=16))
    assert drawn == [(16, 16)]  # two rows of 8, none left out
    plt.close("all")


def test_explorer_boxes_fit_their_width():
    box = explorer({"sft": TRACES[:1]}, {"g": GQA}, fake_clip([]))
    filters, _, items, _ = box.children
    assert items.layout.width == "auto"  # "100%" plus the margin overflowed
    assert filters.layout.flex_flow == "row wrap"


def test_clip_loader_samples_with_the_evaluation_settings(tmp_path):
    from vrlib.explore import clip_loader
    from vrlib.video import write_mp4

    frames = np.zeros((32, 64, 64, 3), np.uint8)  # 8 s at 4 fps
    write_mp4(tmp_path / "v.mp4", frames, 4)
    record = SimpleNamespace(path="v.mp4", data_type="video")
    setup = {"fps": 1.0, "min_frames": 4, "max_frames": 6}
    clip = clip_loader(tmp_path / "eval.jsonl", setup)(record)
    assert len(clip.frames) == 6  # 8 s at 1 fps, capped at the evaluation's max_frames
