"""The trace explorer: pick evaluation items by task, model, right or wrong and length, then
read one with the frames the model saw, its reasoning, its answer and every reward.

The filters and the text are plain functions (tested without a notebook); `explorer` only wires
them to ipywidgets, which it imports itself so that this module loads without them."""
from __future__ import annotations

from vrlib import rewards
from vrlib.analysis import failure, show_frames
from vrlib.evaluate import scored_text

REWARDS = {"format": rewards.format_reward,
           "accuracy": lambda completion, sample: rewards.accuracy_reward(scored_text(completion), sample),
           "glue_iou": rewards.glue_iou_reward}
"""Each reward under the name its value has in a trace, computed as `vrlib.evaluate` does
(accuracy on the output minus its reasoning when there is no <answer>)."""


def length(trace: dict) -> int:
    """Completion length in characters: the traces keep no token count, and characters do not
    depend on the tokenizer (the tiny model writes about 50 to 400)."""
    return len(trace["completion"])


def select(traces: list[dict], *, task: str | None = None, model: str | None = None,
           correct: bool | None = None, min_len: int = 0, max_len: int | None = None,
           threshold: float = 0.5) -> list[dict]:
    """The traces that pass every filter (None: no filter), in their order. Right means an
    accuracy reward >= threshold, as in the failure taxonomy; lengths are inclusive."""
    return [t for t in traces
            if (task is None or t["task"] == task)
            and (model is None or t["model"] == model)
            and (correct is None or (t["accuracy"] >= threshold) == correct)
            and min_len <= length(t) and (max_len is None or length(t) <= max_len)]


def parts(trace: dict) -> dict[str, str | None]:
    """The completion cut as the rewards read it: the last closed <think>, <answer> (as
    rewards.extract_answer) and <glue>, each None when missing, and the raw text. A truncated
    completion has no closed tag, so only `raw` shows what it wrote."""
    text = trace["completion"]
    return {"reasoning": rewards.last_tagged(text, "think"), "answer": rewards.extract_answer(text),
            "glue": rewards.last_tagged(text, "glue"), "raw": text}


def reward_rows(trace: dict, sample) -> list[dict]:
    """Every reward recomputed from the completion, next to the value the trace logged (None
    when it logged none): a difference means the traces are stale against vrlib.rewards."""
    return [{"reward": name, "value": reward(trace["completion"], sample), "logged": trace.get(name)}
            for name, reward in REWARDS.items()]


def card(trace: dict, sample, threshold: float = 0.5) -> str:
    """The text of one item: question, options, gold, the completion's parts, every reward and
    the taxonomy's reason (vrlib.analysis.failure)."""
    p = parts(trace)
    lines = [f"{trace['model']} · {trace['problem_id']} · {trace['task']} ({sample.problem_type})"
             f" · {length(trace)} characters · {failure(trace, sample, threshold)}",
             f"question:  {sample.problem}"]
    if sample.options:
        lines.append(f"options:   {' | '.join(sample.options)}")
    lines.append(f"gold:      {sample.solution}")
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
             threshold: float = 0.5, n_frames: int = 8):
    """A JupyterLab widget: filters (task, model, right or wrong, length), the matching items,
    and the chosen one's frames and card. `records`: problem_id -> data record;
    `load_clip(record)` -> the vrlib.video.Clip the model saw. Returns an ipywidgets.VBox of
    (filters, items, output)."""
    import ipywidgets as w  # only the explorer needs them
    import matplotlib.pyplot as plt
    from IPython.display import display

    traces = [t for ts in traces_by_model.values() for t in ts]
    tasks = sorted({t["task"] for t in traces})
    top = max(map(length, traces), default=0)
    task = w.Dropdown(options=[("all", None), *[(x, x) for x in tasks]], description="task")
    model = w.Dropdown(options=[("all", None), *[(m, m) for m in traces_by_model]],
                       description="model")
    correct = w.Dropdown(options=[("all", None), ("right", True), ("wrong", False)],
                         description="answer")
    span = w.IntRangeSlider(value=(0, top), min=0, max=top, description="characters")
    items = w.Select(rows=8, layout=w.Layout(width="100%"))
    out = w.Output()

    def refilter(_=None):
        chosen = select(traces, task=task.value, model=model.value, correct=correct.value,
                        min_len=span.value[0], max_len=span.value[1], threshold=threshold)
        items.options = [(f"{t['model']} · {t['problem_id']} · {t['task']} · accuracy "
                          f"{t['accuracy']:.2f} · {length(t)} characters", t) for t in chosen]
        if items.index is None and chosen:  # an emptied list selects nothing when it refills
            items.index = 0

    def draw(_=None):
        with out:
            out.clear_output(wait=True)
            if items.value is None:
                print("no item passes these filters")
                return
            sample = records[items.value["problem_id"]]
            fig, axes = plt.subplots(1, n_frames, figsize=(12, 1.8))
            show_frames(axes, load_clip(sample))
            display(fig)
            plt.close(fig)
            print(card(items.value, sample, threshold))

    for control in (task, model, correct, span):
        control.observe(refilter, names="value")
    items.observe(draw, names="value")
    refilter()  # fills the list; choosing its first item draws it
    return w.VBox([w.HBox([task, model, correct, span]), items, out])
