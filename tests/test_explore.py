"""vrlib.explore: the trace explorer's filters, parts, scores and marks on hand-written traces
and world items, and the widget wired to a few traces and a fake clip loader. What only a
browser shows (JupyterLab not moving its cells on the explorer's keys) is checked by hand."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vrlib import answers
from vrlib.explore import (KEYS_JS, box_times, caption, card, draw_frames, explorer, items_figure, keep,
                           length, lengths_by_reason, marks, parts, reward_rows, select, side_by_side, tcr_lines)
from vrlib.tcr import TwoPass, read_passes, write_passes
from vrlib.video import Clip

ROOT = Path(__file__).resolve().parents[1]

GQA = SimpleNamespace(problem_id="g", problem="What colour is the square?", problem_type="grounded QA",
                      options=["A. red", "B. blue"], duration=8.0, fps=4.0, data_type="video",
                      solution="<answer>A</answer><glue>[(2.0, 6.0)]</glue>")
MC = SimpleNamespace(problem_id="m", problem="Which shape is first?", problem_type="multiple choice",
                     options=["A. white square", "B. yellow square"], duration=8.0, fps=4.0, data_type="video",
                     solution="<answer>A</answer>")


KINDS = {"gqa": "grounded QA", "choice": "multiple choice", "grounding": "temporal grounding"}


def trace(pid, model, task, completion, accuracy, fmt=1.0, glue_iou=0.0, truncated=False):
    return {"problem_id": pid, "model": model, "task": task, "problem_type": KINDS[task],
            "completion": completion, "accuracy": accuracy, "format": fmt, "glue_iou": glue_iou,
            "truncated": truncated, "answer": "ignored: a key the explorer does not know"}


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
    def load_clip(sample, fps=None, start=0.0, end=None):
        calls.append(sample.problem_id if fps is None else (sample.problem_id, fps, start, end))
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
    monkeypatch.setattr("vrlib.explore.draw_frames", lambda axes, clip, mark: drawn.append((len(axes), len(clip.frames))))
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


def test_clip_loader_resamples_a_part_as_tcr_pass_two_did(tmp_path):
    from vrlib.explore import clip_loader
    from vrlib.video import write_mp4

    write_mp4(tmp_path / "v.mp4", np.zeros((32, 64, 64, 3), np.uint8), 4)  # 8 s at 4 fps
    record = SimpleNamespace(path="v.mp4", data_type="video")
    load = clip_loader(tmp_path / "eval.jsonl", {"fps": 1.0, "min_frames": 4, "max_frames": 16})
    clip = load(record, fps=4.0, start=2.0, end=4.0)  # 2 s at 4 fps
    assert clip.timestamps.min() >= 2.0 and clip.timestamps.max() <= 4.0 and clip.fps > 2.0


# ----------------------------------------------------------------------------- one item, every model
def test_keep_stays_on_the_item_then_on_its_problem_then_goes_to_the_first():
    sft_g, sft_m, rft_g, rft_m = TRACES
    assert keep(TRACES, sft_m) == 1  # still passes: stays
    assert keep([rft_g, rft_m], sft_m) == 1  # the same problem under another model
    assert keep([rft_g], sft_m) == 0 and keep([rft_g], None) == 0
    assert keep([], sft_m) is None


def test_explorer_keeps_the_item_while_it_passes_the_filters():
    calls = []
    box = explorer({"sft": TRACES[:2], "rft": TRACES[2:]}, {"g": GQA, "m": MC}, fake_clip(calls))
    task, model, correct, span, _, following, items = widgets(box)
    following.click()
    assert items.value is TRACES[1] and calls == ["g", "m"]
    task.value = "choice"  # sft's choice item still passes: not item 1, and not drawn again
    assert items.value is TRACES[1] and calls == ["g", "m"]
    span.value = (30, 68)
    assert items.value is TRACES[1] and calls == ["g", "m"]
    model.value = "rft"  # the same problem, the other model's answer: one item across models
    assert items.value is TRACES[3] and box.children[1].children[2].value == "1 of 1"
    correct.value = False  # rft answered it right: the list has no m, the first item is shown
    assert items.options == () and items.value is None


def test_side_by_side_shows_every_models_answer_to_one_item():
    rows = side_by_side("g", {"sft": TRACES[:2], "rft": TRACES[2:], "base": []}, GQA)
    assert rows == [
        {"model": "sft", "answer": "A evidence [(2.0, 4.0)]", "accuracy": 1.0, "reason": "ok", "characters": 68},
        {"model": "rft", "answer": "(no answer tag) …<think>It is", "accuracy": 0.0, "reason": "truncated",
         "characters": 12}]  # base did not answer it: no row


def test_explorer_draws_every_models_answer_under_the_frames(capsys):
    explorer({"sft": TRACES[:2], "rft": TRACES[2:]}, {"g": GQA, "m": MC}, fake_clip([]))
    out = capsys.readouterr().out
    assert re.search(r"sft\s+A evidence \[\(2\.0, 4\.0\)\]\s+1\.0\s+ok", out)
    assert re.search(r"rft\s+\(no answer tag\) …<think>It is\s+0\.0\s+truncated", out)


# ----------------------------------------------------------------------------- the widget's controls
def test_explorer_keys_step_through_the_items():
    """The browser half (keys kept from JupyterLab) lives in KEYS_JS; the Python half here."""
    box = explorer({"sft": TRACES[:2], "rft": TRACES[2:]}, {"g": GQA, "m": MC}, fake_clip([]))
    items, keys = box.children[2], box.children[1].children[3]
    assert "vrlib-explorer" in box._dom_classes  # where KEYS_JS listens
    keys._handle_custom_msg({"step": 1}, [])
    keys._handle_custom_msg({"step": 1}, [])
    assert items.index == 2
    keys._handle_custom_msg({"step": -1}, [])
    assert items.index == 1
    # what the browser runs: j/k and the arrows stopped before JupyterLab's document listener
    assert "e.stopPropagation()" in KEYS_JS and "model.send({ step })" in KEYS_JS
    assert "{ j: 1, ArrowDown: 1, k: -1, ArrowUp: -1 }" in KEYS_JS


def test_characters_slider_redraws_on_release_only():
    box = explorer({"sft": TRACES[:2]}, {"g": GQA, "m": MC}, fake_clip([]))
    span = box.children[0].children[3]
    assert span.continuous_update is False  # a drag redrew on every pixel: 5.5 s per drag


# ----------------------------------------------------------------------------- gold on the frames
def world_item(world_in_memory, family):
    samples, clips = world_in_memory
    k = next(i for i, s in enumerate(samples) if s.data_source.split("/")[1] == family)
    return samples[k], clips[k]


def test_box_times_are_the_times_the_tracking_question_asks(world_in_memory):
    sample, _ = world_item(world_in_memory, "tracking")
    asked = [float(x) for x in re.search(r"Give its box at ([\d., ]+) seconds", sample.problem).group(1).split(", ")]
    np.testing.assert_allclose(box_times(len(asked), sample), asked, atol=0.051)  # asked with one decimal
    assert box_times(3, SimpleNamespace(duration=0.0, fps=0.0)).tolist() == [0, 0, 0]  # an image


def test_marks_read_gold_and_answer_as_the_scoring_does(world_in_memory):
    grounding, _ = world_item(world_in_memory, "grounding")
    m = marks(grounding, "<think>x</think><answer>1.0 to 2.5</answer>")
    assert m["gold"]["spans"] == [answers.read_solution(grounding)] and m["said"]["spans"] == [(1.0, 2.5)]
    assert marks(grounding, "<think>cut sh")["said"] == {"spans": [], "boxes": []}  # no answer: nothing drawn
    gqa, _ = world_item(world_in_memory, "gqa")
    assert marks(gqa)["gold"]["spans"] == answers.parse_glue(gqa.solution)
    assert marks(gqa, "<answer>A</answer><glue>[(1.0, 2.0), (3.0, 4.0)]</glue>")["said"]["spans"] == [(1.0, 2.0), (3.0, 4.0)]
    tracking, _ = world_item(world_in_memory, "tracking")
    gold = marks(tracking)["gold"]["boxes"]
    assert [b for _, b in gold] == answers.read_solution(tracking) and gold[0][0] == 0.0


def test_gold_boxes_and_spans_are_drawn_on_their_frames(world_in_memory):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    tracking, clip = world_item(world_in_memory, "tracking")
    said = "<think>x</think><answer>[[0.1, 0.1, 0.3, 0.3], [0.2, 0.2, 0.4, 0.4]]</answer>"
    fig, axes = plt.subplots(2, 8)
    draw_frames(axes.ravel(), clip, marks(tracking, said))
    boxes = [(ax, p) for ax in axes.ravel() for p in ax.patches if isinstance(p, Rectangle)]
    gold = [(ax, p) for ax, p in boxes if p.get_linestyle() == "-"]
    assert len(gold) == 4 and len(boxes) == 6  # every gold box and both said ones
    first = axes.ravel()[0]  # the first box, at 0.0 s, on the first frame, in pixels
    x0, y0, x1, y1 = answers.read_solution(tracking)[0]
    h, w = clip.frames[0].shape[:2]
    assert any(ax is first and np.allclose(p.get_xy(), (x0 * w, y0 * h)) for ax, p in gold)
    plt.close(fig)

    grounding, clip = world_item(world_in_memory, "grounding")
    start, end = answers.read_solution(grounding)
    fig, axes = plt.subplots(2, 8)
    draw_frames(axes.ravel(), clip, marks(grounding))
    framed = [ax.spines["top"].get_visible() for ax in axes.ravel()[:len(clip.frames)]]
    assert framed == [start <= t <= end for t in clip.timestamps] and any(framed) and not all(framed)
    plt.close(fig)


# ----------------------------------------------------------------------------- TCR's two passes
PASSES = {"g": {"problem_id": "g", "first": "<think>seen</think><answer>B</answer><glue>[(2.0, 3.0)]</glue>",
                "clues": [[2.0, 3.0]], "span": (1.5, 3.5), "fps": [1.0, 8.0], "asked_fps": [1.0, 8.0]}}


def test_tcr_passes_round_trip(tmp_path):
    two = TwoPass(first=["<glue>[(2.0, 3.0)]</glue>", "no clue"], spans=[(1.5, 3.5), None], texts=["a", "b"],
                  truncated=[False, False], fps=[(1.0, 8.0), (1.0, 2.0)], asked_fps=(1.0, 8.0))
    write_passes(tmp_path / "tcr/rft_tcr.jsonl", [GQA, MC], two)
    got = read_passes(tmp_path / "tcr/rft_tcr.jsonl")
    assert got["g"]["span"] == (1.5, 3.5) and got["g"]["clues"] == [[2.0, 3.0]] and got["g"]["fps"] == [1.0, 8.0]
    assert got["m"]["span"] is None and got["m"]["clues"] is None and not got["m"]["reused"]
    # an item pass 1 was not asked for, whose pass 2 kept the one-pass answer
    two = TwoPass(first=[None], spans=[None], texts=["a"], truncated=[False], fps=[(None, 2.0)],
                  asked_fps=(1.0, 8.0), reused=[True])
    write_passes(tmp_path / "tcr/rft_tcr.jsonl", [MC], two)
    got = read_passes(tmp_path / "tcr/rft_tcr.jsonl")["m"]
    assert got["first"] is None and got["clues"] is None and got["fps"] == [None, 2.0] and got["reused"]


def test_tcr_lines_say_when_a_pass_was_not_needed():
    """An item pass 1 was not asked for (its clues could not cut the video) and whose pass 2 took
    the rft row's answer (the same input) says so rather than showing an empty first answer."""
    row = {"problem_id": "m", "first": None, "clues": None, "span": None, "fps": [1.0, 2.0],
           "asked_fps": [1.0, 8.0], "reused": True}
    lines = tcr_lines(MC, row)
    assert lines[0] == "tcr pass 1: not run, its clues could not change what pass 2 sees"
    assert lines[1].endswith("at 2.00 fps (asked 8.00): the rft row's answer, the same input") and len(lines) == 2


def test_explorer_shows_tcr_pass_two_frames_and_both_passes(capsys):
    calls = []
    tcr = trace("g", "rft_tcr", "gqa", RIGHT, 1.0, glue_iou=0.5)
    box = explorer({"rft": TRACES[2:3], "rft_tcr": [tcr]}, {"g": GQA}, fake_clip(calls), passes=PASSES)
    items = box.children[2]
    items.index = 1
    assert calls == ["g", ("g", 8.0, 1.5, 3.5)]  # pass 2's span at pass 2's fps
    out = capsys.readouterr().out
    assert "tcr pass 1: the whole video at 1.00 fps (asked 1.00), said B evidence [(2.0, 3.0)]" in out
    assert "clues [(2, 3)]" in out
    assert "tcr pass 2: 1.5 to 3.5 s, from the first clue to the last (padded) at 8.00 fps" in out
    assert "tcr " not in card(TRACES[2], GQA)  # the other models have one pass
    assert "not saved by this evaluation" in card(tcr, GQA)  # traces from before the passes were kept


# ----------------------------------------------------------------------------- static figure and hints
def test_caption_wraps_whole_words_without_tags():
    long = SimpleNamespace(**{**vars(MC), "problem": "Which of the shapes in this rather long video is the "
                              "first to appear on the left side of the frame, counting from the start?"})
    text = caption(TRACES[1], long, width=60)
    assert "<answer>" not in text and "<think>" not in text
    assert all(len(line) <= 60 for line in text.splitlines()[1:])
    assert " ".join(text.split()).count(long.problem) == 1  # every word, none cut
    assert "gold: A" in text and "said: B" in text
    assert "(no answer tag) …<think>It is" in caption(TRACES[2], GQA)


def test_items_figure_captions_do_not_overprint_frames():
    import matplotlib.pyplot as plt

    fig = items_figure(TRACES, {"g": GQA, "m": MC}, fake_clip([], n=16))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [sub._suptitle for sub in fig.subfigs]
    assert len(titles) == 4 and all("<answer>" not in t.get_text() for t in titles)
    frames = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_images()]
    for t in titles:
        box = t.get_window_extent(renderer)
        assert not any(box.overlaps(f) for f in frames), t.get_text()
    plt.close(fig)


def test_lengths_by_reason_gives_each_failures_length_range():
    table = lengths_by_reason({"sft": TRACES[:2], "rft": TRACES[2:]}, {"g": GQA, "m": MC})
    assert list(table.index) == ["truncated", "answer not supported by the reasoning"]  # taxonomy order
    assert table.loc["truncated"].tolist() == [1, 12, 12, 12]  # count, min, median, max
    assert table.loc["answer not supported by the reasoning", "max"] == 59


def test_notebook_explains_the_explorer_truthfully():
    cells = json.loads((ROOT / "notebooks/06_error_analysis.ipynb").read_text())["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "mostly the truncated" not in text  # untrue: the short wrong ones had no answer tag
    assert "Loading widget" in text  # a reopened notebook: how to get the explorer back
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "lengths_by_reason(" in code and "items_figure(" in code and "passes=" in code
