"""The trace explorer: pick evaluation items by task, model, right or wrong and length, then
read one with the frames the model saw, its reasoning, its answer and every reward.

The filters and the text are plain functions (tested without a notebook); `explorer` only wires
them to ipywidgets, which it imports itself so that this module loads without them."""
from __future__ import annotations

import os

from vrlib import answers
from vrlib.analysis import failure, show_frames
from vrlib.data import load_media, video_path
from vrlib.evaluate import reward_values
from vrlib.schema import CORRECT

ALL = "all"
"""The filters' "no filter" choice. A value, not None: ipywidgets 8 shows a Dropdown whose
value is None as blank."""


def clip_loader(jsonl_path: str | os.PathLike, setup: dict):
    """`record -> Clip`: the frames the evaluation gave the model, sampled with its settings
    (`vrlib.evaluate.settings`: fps, min and max frames), not the training's."""
    return lambda r: load_media(video_path(r, jsonl_path), r.data_type, fps=setup["fps"],
                                min_frames=setup["min_frames"], max_frames=setup["max_frames"])


def length(trace: dict) -> int:
    """Completion length in characters: the traces keep no token count, and characters do not
    depend on the tokenizer (the tiny model writes about 50 to 400)."""
    return len(trace["completion"])


def select(traces: list[dict], *, task: str | None = None, model: str | None = None,
           correct: bool | None = None, min_len: int = 0, max_len: int | None = None,
           threshold: float = CORRECT) -> list[dict]:
    """The traces that pass every filter (None: no filter), in their order. Right means an
    accuracy reward >= threshold, as in the failure taxonomy; lengths are inclusive."""
    return [t for t in traces
            if (task is None or t["task"] == task)
            and (model is None or t["model"] == model)
            and (correct is None or (t["accuracy"] >= threshold) == correct)
            and min_len <= length(t) and (max_len is None or length(t) <= max_len)]


def parts(trace: dict) -> dict[str, str | None]:
    """The completion cut as the rewards read it: the last closed <think>, <answer> (as
    answers.extract_answer) and <glue>, each None when missing, and the raw text. A truncated
    completion has no closed tag, so only `raw` shows what it wrote."""
    text = trace["completion"]
    return {"reasoning": answers.last_tagged(text, "think"), "answer": answers.extract_answer(text),
            "glue": answers.last_tagged(text, "glue"), "raw": text}


def reward_rows(trace: dict, sample) -> list[dict]:
    """Every reward recomputed from the completion, next to the value the trace logged (None
    when it logged none): a difference means the traces are stale against vrlib.rewards."""
    return [{"reward": name, "value": value, "logged": trace.get(name)}
            for name, value in reward_values(trace["completion"], sample).items()]


def card(trace: dict, sample, threshold: float = CORRECT) -> str:
    """The text of one item: question, options, the gold answer (and evidence) without its tags,
    the completion's parts, every reward and the taxonomy's reason (vrlib.analysis.failure)."""
    p = parts(trace)
    lines = [f"{trace['model']} · {trace['problem_id']} · {trace['task']} ({sample.problem_type})"
             f" · {length(trace)} characters · {failure(trace, sample, threshold)}",
             f"question:  {sample.problem}"]
    if sample.options:
        lines.append(f"options:   {' | '.join(sample.options)}")
    lines.append(f"gold:      {answers.extract_answer(sample.solution)}")
    if sample.problem_type == "grounded QA":
        lines.append(f"gold glue: {answers.last_tagged(sample.solution, 'glue')}")
    for key in ("reasoning", "answer", "glue"):
        if key != "glue" or p[key] is not None:  # glue only where the model wrote some
            lines.append(f"{key + ':':<10} {'(none)' if p[key] is None else p[key]}")
    if p["answer"] is None:  # then the raw text is the only way to see what went wrong
        lines.append(f"raw:       {p['raw']}")
    lines.append("rewards:   " + " · ".join(
        f"{r['reward']} {r['value']:.2f}" + ("" if r["logged"] is None else f" (logged {r['logged']:.2f})")
        for r in reward_rows(trace, sample)))
    return "\n".join(lines)


def explorer(traces_by_model: dict[str, list[dict]], records: dict, load_clip,
             threshold: float = CORRECT, per_row: int = 8):
    """A JupyterLab widget: filters (task, model, right or wrong, length), previous and next
    buttons (arrow keys move JupyterLab's cells, not the list), the matching items, and the
    chosen one's frames (all the model saw, `per_row` a row) and card. `records`: problem_id ->
    data record; `load_clip(record)` -> the vrlib.video.Clip the model saw (`clip_loader`).
    Returns an ipywidgets.VBox of (filters, buttons, items, output)."""
    import ipywidgets as w  # only the explorer needs them
    import matplotlib.pyplot as plt
    from IPython.display import display

    traces = [t for ts in traces_by_model.values() for t in ts]
    top = max(map(length, traces), default=0)
    task = w.Dropdown(options=[ALL, *sorted({t["task"] for t in traces})], description="task")
    model = w.Dropdown(options=[ALL, *traces_by_model], description="model")
    correct = w.Dropdown(options=[(ALL, ALL), ("right", True), ("wrong", False)], description="answer")
    span = w.IntRangeSlider(value=(0, top), min=0, max=top, description="characters")
    previous, following = w.Button(description="previous"), w.Button(description="next")
    where = w.Label()
    # width "auto", not "100%": the widget's margin made 100% overflow its box by a few pixels
    items = w.Select(rows=8, layout=w.Layout(width="auto"))
    out = w.Output()

    def refilter(_=None):
        chosen = select(traces, task=None if task.value == ALL else task.value,
                        model=None if model.value == ALL else model.value,
                        correct=None if correct.value == ALL else correct.value,
                        min_len=span.value[0], max_len=span.value[1], threshold=threshold)
        items.options = [(f"{t['model']} · {t['problem_id']} · {t['task']} · accuracy "
                          f"{t['accuracy']:.2f} · {length(t)} characters", t) for t in chosen]
        if items.index is None and chosen:  # an emptied list selects nothing when it refills
            items.index = 0
        count()

    def count():
        where.value = f"{(items.index or 0) + bool(items.options)} of {len(items.options)}"

    def step(by: int):
        if items.options:
            items.index = min(max((items.index or 0) + by, 0), len(items.options) - 1)

    def draw(_=None):
        count()
        with out:
            out.clear_output(wait=True)
            if items.value is None:
                print("no item passes these filters")
                return
            sample = records[items.value["problem_id"]]
            clip = load_clip(sample)
            rows = -(-len(clip.frames) // per_row)
            fig, axes = plt.subplots(rows, per_row, figsize=(12, 1.6 * rows + 0.3), squeeze=False)
            show_frames(axes.ravel(), clip)
            fig.suptitle(f"the {len(clip.frames)} frames the model saw, {clip.fps:.2f} fps", fontsize=9)
            display(fig)
            plt.close(fig)
            print(card(items.value, sample, threshold))

    for control in (task, model, correct, span):
        control.observe(refilter, names="value")
    previous.on_click(lambda _: step(-1))
    following.on_click(lambda _: step(1))
    items.observe(draw, names="value")
    refilter()  # fills the list; choosing its first item draws it
    filters = w.HBox([task, model, correct, span], layout=w.Layout(flex_flow="row wrap"))
    return w.VBox([filters, w.HBox([previous, following, where]), items, out])
