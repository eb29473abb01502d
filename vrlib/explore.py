"""The trace explorer: pick evaluation items by task, model, right or wrong and length, then
read one with the frames the model saw (the gold spans and boxes drawn on them), every model's
answer to it side by side, its reasoning, its answer and every reward.

The filters, the marks and the text are plain functions (tested without a notebook); `explorer`
only wires them to ipywidgets, which it imports itself so that this module loads without them."""
from __future__ import annotations

import functools
import os
import textwrap
from dataclasses import replace

import numpy as np

from vrlib import answers
from vrlib.analysis import FAILURES, failure
from vrlib.data import load_media, video_path
from vrlib.evaluate import scores
from vrlib.schema import CORRECT
from vrlib.tcr import WHOLE_VIDEO

ALL = "all"
"""The filters' "no filter" choice. A value, not None: ipywidgets 8 shows a Dropdown whose
value is None as blank."""

GOLD, SAID, CLUE = "limegreen", "red", "orange"
"""The colours of the gold answer, the model's answer and TCR's clues, on frames and timeline."""


def clip_loader(jsonl_path: str | os.PathLike, setup: dict):
    """`record -> Clip`: the frames the evaluation gave the model, sampled with its settings
    (`vrlib.evaluate.settings`: fps, min and max frames), not the training's. `fps`, `start`
    and `end` resample a part of the video as TCR's second pass did."""
    def load(r, fps: float | None = None, start: float = 0.0, end: float | None = None):
        return load_media(video_path(r, jsonl_path), r.data_type, fps=fps or setup["fps"],
                          min_frames=setup["min_frames"], max_frames=setup["max_frames"],
                          start=start, end=end)
    return load


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


def keep(chosen: list[dict], current: dict | None) -> int | None:
    """Where the list stands after a filter change: on the item shown before if it still passes,
    else on the same problem under another model (so switching the model filter reads one item
    across models), else on the first; None for an empty list."""
    if not chosen:
        return None
    if current is not None:
        for same in (("model", "problem_id"), ("problem_id",)):
            for i, t in enumerate(chosen):
                if all(t[k] == current[k] for k in same):
                    return i
    return 0


def parts(trace: dict) -> dict[str, str | None]:
    """The completion cut as the rewards read it: the last closed <think>, <answer> (as
    answers.extract_answer) and <glue>, each None when missing, and the raw text. A truncated
    completion has no closed tag, so only `raw` shows what it wrote."""
    text = trace["completion"]
    return {"reasoning": answers.last_tagged(text, "think"), "answer": answers.extract_answer(text),
            "glue": answers.last_tagged(text, "glue"), "raw": text}


def said(trace: dict, width: int = 60) -> str:
    """The answer without its tags (and the evidence, if any), or what the completion ended with
    when it has no answer tag, shortened at a word boundary."""
    p = parts(trace)
    if p["answer"] is None:
        return "(no answer tag) …" + textwrap.shorten(p["raw"][-width:], width, placeholder=" …")
    text = p["answer"] + (f" evidence {p['glue']}" if p["glue"] is not None else "")
    return textwrap.shorten(text, width, placeholder=" …")


def reward_rows(trace: dict, sample) -> list[dict]:
    """Every score recomputed from the completion (`vrlib.evaluate.scores`, under the names of
    the rewards they equal), next to the value the trace logged (None when it logged none): a
    difference means the traces are stale against the scoring."""
    return [{"reward": name, "value": value, "logged": trace.get(name)}
            for name, value in scores(trace["completion"], sample).items()]


def side_by_side(problem_id: str, traces_by_model: dict[str, list[dict]], sample,
                 threshold: float = CORRECT) -> list[dict]:
    """Every model's answer to one item, one row per model that answered it: the item compared
    across models (the same question, frames and gold)."""
    rows = []
    for name, ts in traces_by_model.items():
        for t in ts:
            if t["problem_id"] == problem_id:
                rows.append({"model": name, "answer": said(t), "accuracy": round(t["accuracy"], 2),
                             "reason": failure(t, sample, threshold), "characters": length(t)})
                break
    return rows


def tcr_lines(sample, passes: dict | None) -> list[str]:
    """TCR's two passes of one item (`vrlib.tcr.write_passes`'s row): what pass 1 answered and
    which clues it named, then the part of the video pass 2 saw and at which fps."""
    if passes is None:
        return ["tcr:       both passes not saved by this evaluation (rerun the eval stage); the "
                "frames below are the evaluation's usual sampling, not pass 2's"]
    first = {"completion": passes["first"]}
    span = passes["span"]
    if span is not None:
        where = f"{span[0]:.1f} to {span[1]:.1f} s, from the first clue to the last (padded)"
    elif sample.data_type != "video":
        where = "the image"
    elif sample.problem_type in WHOLE_VIDEO:
        where = "the whole video (the question asks about times)"
    else:
        where = "the whole video (pass 1 named no valid clue)"
    fps, asked = passes["fps"], passes["asked_fps"]
    scored = "the rft row's answer, the same input" if passes.get("reused") else "the answer scored"
    second = f"tcr pass 2: {where} at {fps[1]:.2f} fps (asked {asked[1]:.2f}): {scored}"
    if passes["first"] is None:
        return ["tcr pass 1: not run, its clues could not change what pass 2 sees", second]
    return [f"tcr pass 1: the whole video at {fps[0]:.2f} fps (asked {asked[0]:.2f}), said {said(first)}",
            "           clues " + ("(none valid)" if passes["clues"] is None else
                                       "[" + ", ".join(f"({s:g}, {e:g})" for s, e in passes["clues"]) + "]"),
            second]


def card(trace: dict, sample, threshold: float = CORRECT, passes: dict | None = None) -> str:
    """The text of one item: question, options, the gold answer (and evidence) without its tags,
    the completion's parts, every reward and the taxonomy's reason (vrlib.analysis.failure);
    for `rft_tcr`, both passes (`passes`: its row of `vrlib.tcr.read_passes`, None if unsaved)."""
    p = parts(trace)
    lines = [f"{trace['model']} · {trace['problem_id']} · {trace['task']} ({sample.problem_type})"
             f" · {length(trace)} characters · {failure(trace, sample, threshold)}",
             f"question:  {sample.problem}"]
    if sample.options:
        lines.append(f"options:   {' | '.join(sample.options)}")
    lines.append(f"gold:      {answers.extract_answer(sample.solution)}")
    if sample.problem_type == "grounded QA":
        lines.append(f"gold glue: {answers.last_tagged(sample.solution, 'glue')}")
    if trace["model"] == "rft_tcr":
        lines += tcr_lines(sample, passes)
    for key in ("reasoning", "answer", "glue"):
        if key != "glue" or p[key] is not None:  # glue only where the model wrote some
            lines.append(f"{key + ':':<10} {'(none)' if p[key] is None else p[key]}")
    if p["answer"] is None:  # then the raw text is the only way to see what went wrong
        lines.append(f"raw:       {p['raw']}")
    lines.append("rewards:   " + " · ".join(
        f"{r['reward']} {r['value']:.2f}" + ("" if r["logged"] is None else f" (logged {r['logged']:.2f})")
        for r in reward_rows(trace, sample)))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- marks on the frames
def box_times(n: int, sample) -> np.ndarray:
    """The times of a tracking answer's n boxes: at n evenly spaced frames from the first to the
    last, as the world asks them (vrlib.tasks.tracking) and VideoChat-R1 samples GoT-10k's. E.g.
    4 boxes of an 8 s video at 4 fps (32 frames): frames 0, 10, 21, 31, at 0.0, 2.5, 5.25, 7.75 s."""
    if n < 2 or sample.duration <= 0 or sample.fps <= 0:
        return np.zeros(n)
    frames = round(sample.duration * sample.fps)
    return np.linspace(0, frames - 1, n).round() / sample.fps  # (n,)


def _read(text: str | None, sample, evidence: str | None) -> dict:
    spans, boxes = [], []
    kind = sample.problem_type
    if kind == "temporal grounding" and text is not None:
        span = answers.parse_span(text)
        spans = [] if span is None else [span]
    elif kind == "grounded QA" and evidence is not None:
        spans = answers.parse_glue(evidence) or []
    elif kind == "tracking" and text is not None:
        read = answers.parse_boxes(text) or []
        boxes = list(zip(box_times(len(read), sample).tolist(), read))
    return {"spans": spans, "boxes": boxes}


def marks(sample, completion: str | None = None) -> dict[str, dict]:
    """What to draw on the frames: {"gold": ..., "said": ...}, each {"spans": [(s, e), ...],
    "boxes": [(time, (x0, y0, x1, y1)), ...]} in seconds and normalised coordinates. Spans are
    the grounding answer or grounded QA's evidence, boxes the tracking answer; "said" is read
    from `completion` as the rewards read it (empty when it says none)."""
    out = {"gold": _read(answers.extract_answer(sample.solution), sample, sample.solution)}
    text = None if completion is None else answers.extract_answer(completion)
    out["said"] = _read(text, sample, completion) if completion is not None else {"spans": [], "boxes": []}
    return out


def pick(clip, n: int):
    """At most n evenly spaced frames of a clip, as a clip (timestamps kept)."""
    if len(clip.frames) <= n:
        return clip
    idx = np.linspace(0, len(clip.frames) - 1, n).round().astype(int)  # (n,)
    return replace(clip, frames=clip.frames[idx], indices=clip.indices[idx], timestamps=clip.timestamps[idx])


def draw_frames(axes, clip, mark: dict[str, dict]) -> None:
    """Each frame with its time; a green frame around those inside a gold span, a red bar under
    those inside the said span; the gold boxes in green and the said ones dashed red, each on the
    frame nearest its time. `axes`: at least len(clip.frames) of them; the rest are hidden."""
    from matplotlib.patches import Rectangle

    times = np.asarray(clip.timestamps, dtype=float)  # (T,)
    for ax in axes[len(clip.frames):]:
        ax.axis("off")
    for i, (ax, frame) in enumerate(zip(axes, clip.frames)):
        h, w = frame.shape[:2]
        ax.imshow(frame)
        ax.set(xticks=[], yticks=[])
        t = times[i]
        inside = {k: any(s <= t <= e for s, e in mark[k]["spans"]) for k in ("gold", "said")}
        for spine in ax.spines.values():
            spine.set_visible(inside["gold"])
            spine.set(color=GOLD, linewidth=3)
        title = f"{t:.1f}s" + (" gold" if inside["gold"] else "")
        ax.set_title(title, fontsize=8, color="darkgreen" if inside["gold"] else "black")
        if inside["said"]:  # a red bar under the frame: the world has red shapes of its own
            ax.plot([0, 1], [-0.06, -0.06], color=SAID, lw=3, transform=ax.transAxes, clip_on=False)
        for key, style in (("gold", "-"), ("said", "--")):
            for bt, (x0, y0, x1, y1) in mark[key]["boxes"]:
                if int(np.abs(times - bt).argmin()) == i:
                    ax.add_patch(Rectangle((x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False,
                                           edgecolor=GOLD if key == "gold" else SAID, linestyle=style,
                                           linewidth=1.5, label=f"{key} box at {bt:.1f}s"))


def draw_timeline(ax, duration: float, times, rows: dict[str, tuple[list, str]]) -> None:
    """The video's time axis: one bar per span of each row (label -> (spans, colour)), and a tick
    at each frame the model saw."""
    labels = list(rows)
    for y, label in enumerate(labels):
        spans, colour = rows[label]
        ax.broken_barh([(s, max(e - s, duration / 200)) for s, e in spans], (y - 0.35, 0.7), color=colour)
    ax.vlines(times, -0.5, len(labels) - 0.5, color="0.6", lw=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(0, max(duration, 1e-6))
    ax.set_xlabel("seconds (grey: the frames the model saw)", fontsize=8)
    ax.tick_params(labelsize=8)


def timeline_rows(mark: dict[str, dict], passes: dict | None = None) -> dict[str, tuple[list, str]]:
    """The timeline's rows: gold and said spans, and TCR's clues and pass 2's span when given."""
    rows = {"gold": (mark["gold"]["spans"], GOLD), "said": (mark["said"]["spans"], SAID)}
    if passes is not None:
        rows["tcr clues"] = (passes["clues"] or [], CLUE)
        rows["tcr pass 2"] = ([passes["span"]] if passes["span"] is not None else [], "0.5")
    return rows


def item_figure(clip, sample, trace: dict | None = None, passes: dict | None = None, per_row: int = 8):
    """Every frame of a clip (`per_row` a row) with the marks, and under a video's the timeline
    of its spans (gold, said, TCR's), when it has any."""
    import matplotlib.pyplot as plt

    mark = marks(sample, None if trace is None else trace["completion"])
    rows = -(-len(clip.frames) // per_row)
    spans = timeline_rows(mark, passes)
    timeline = sample.data_type == "video" and sample.duration > 0 and any(s for s, _ in spans.values())
    fig = plt.figure(figsize=(12, 1.6 * rows + (0.9 if timeline else 0) + 0.3), layout="constrained")
    grid = fig.add_gridspec(rows + timeline, per_row, height_ratios=[1] * rows + [0.5] * timeline)
    axes = [fig.add_subplot(grid[r, c]) for r in range(rows) for c in range(per_row)]
    draw_frames(axes, clip, mark)
    if timeline:
        draw_timeline(fig.add_subplot(grid[rows, :]), sample.duration, clip.timestamps, spans)
    fig.suptitle(f"the {len(clip.frames)} frames the model saw, {clip.fps:.2f} fps; gold in green, "
                 "the answer in red", fontsize=9)
    return fig


def caption(trace: dict, sample, threshold: float = CORRECT, width: int = 150) -> str:
    """A figure's caption for one item, wrapped at word boundaries, the tags left out:
    task, model, accuracy and reason; the question; the gold answer and what the model said."""
    head = (f"[{trace['task']}] {trace['model']} · accuracy {trace['accuracy']:.2f} · "
            f"{failure(trace, sample, threshold)}")
    gold = answers.extract_answer(sample.solution)
    if sample.problem_type == "grounded QA":
        gold += f" evidence {answers.last_tagged(sample.solution, 'glue')}"
    body = f"{sample.problem} — gold: {gold} — said: {said(trace)}"
    return head + "\n" + textwrap.fill(body, width)


def items_figure(traces: list[dict], records: dict, load_clip, per_row: int = 8,
                 threshold: float = CORRECT):
    """One row per trace: its caption above `per_row` evenly spaced frames, gold and answer
    drawn on them. Each row is a subfigure, so no caption overprints the frames of another."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 2.2 * len(traces)), layout="constrained")
    for sub, t in zip(np.atleast_1d(fig.subfigures(len(traces), 1)), traces):
        sample = records[t["problem_id"]]
        clip = load_clip(sample)
        shown = pick(clip, per_row)
        axes = sub.subplots(1, per_row, squeeze=False)[0]
        draw_frames(axes, shown, marks(sample, t["completion"]))
        note = "" if len(shown.frames) == len(clip.frames) else f" ({len(shown.frames)} of its {len(clip.frames)} frames)"
        sub.suptitle(caption(t, sample, threshold) + note, fontsize=8, x=0.01, ha="left")
    return fig


def lengths_by_reason(traces_by_model: dict[str, list[dict]], records: dict,
                      threshold: float = CORRECT):
    """The wrong answers' lengths in characters per reason of the taxonomy, every model together:
    which range of the explorer's characters slider shows which kind of failure."""
    import pandas as pd

    rows = [{"reason": failure(t, records.get(t["problem_id"]), threshold), "characters": length(t)}
            for ts in traces_by_model.values() for t in ts if t["accuracy"] < threshold]
    table = pd.DataFrame(rows, columns=["reason", "characters"]).groupby("reason")["characters"] \
        .agg(["count", "min", "median", "max"])
    return table.reindex([r for r in FAILURES if r in table.index])


# ----------------------------------------------------------------------------- the widget
KEYS_JS = """
function render({ model, el }) {
  el.textContent = "keys: j or \u2193 next, k or \u2191 previous (click the explorer first)";
  el.style.cssText = "font-size: 0.85em; color: var(--jp-ui-font-color2, #666); padding: 0 1em";
  let tries = 0;
  const attach = () => {  // the explorer's box, once the view is in the page
    const root = el.closest(".vrlib-explorer");
    if (!root) { if (tries++ < 600) requestAnimationFrame(attach); return; }
    if (root.dataset.vrlibKeys) return;  // one listener per explorer, however many views
    root.dataset.vrlibKeys = "1";
    root.tabIndex = 0;  // a click anywhere in the explorer gives it the keys
    root.style.outline = "none";
    root.addEventListener("keydown", (e) => {
      if (e.altKey || e.ctrlKey || e.metaKey) return;
      const step = { j: 1, ArrowDown: 1, k: -1, ArrowUp: -1 }[e.key];
      if (step === undefined) return;
      // JupyterLab reads shortcuts on the document, after the widget (bubbling): keep these
      // from moving the notebook's active cell
      e.stopPropagation();
      const own = e.key.startsWith("Arrow") && (e.target.tagName === "SELECT" ||
                                                e.target.closest(".noUi-target, .widget-slider"));
      if (own) return;  // the item list, a dropdown or the slider moves itself
      e.preventDefault();
      model.send({ step });
    });
  };
  attach();
}
export default { render };
"""
"""The explorer's keys, in the browser: a keydown listener on the explorer's box that stops j, k
and the arrows from reaching JupyterLab (whose command mode moves the active cell on them) and
sends {"step": +1 | -1}; arrows on the list, a dropdown or the slider keep their own meaning."""


@functools.cache
def _keys_class():
    import anywidget  # only the explorer needs it

    class Keys(anywidget.AnyWidget):
        _esm = KEYS_JS

    return Keys


def explorer(traces_by_model: dict[str, list[dict]], records: dict, load_clip,
             threshold: float = CORRECT, per_row: int = 8, passes: dict | None = None):
    """A JupyterLab widget: filters (task, model, right or wrong, length), previous and next
    buttons and keys (j/k, arrows), the matching items, and the chosen one's frames (all the
    model saw, `per_row` a row, gold and answer drawn), every model's answer to it and its card.
    A filter change stays on the item while it passes. `records`: problem_id -> data record;
    `load_clip(record, fps=None, start=0.0, end=None)` -> the vrlib.video.Clip the model saw
    (`clip_loader`); `passes`: TCR's rows (`vrlib.tcr.read_passes`), so `rft_tcr` items show
    pass 2's frames and both passes. Returns an ipywidgets.VBox of (filters, buttons, items, output)."""
    import ipywidgets as w  # only the explorer needs them
    import matplotlib.pyplot as plt
    import pandas as pd
    from IPython.display import display

    traces = [t for ts in traces_by_model.values() for t in ts]
    top = max(map(length, traces), default=0)
    task = w.Dropdown(options=[ALL, *sorted({t["task"] for t in traces})], description="task")
    model = w.Dropdown(options=[ALL, *traces_by_model], description="model")
    correct = w.Dropdown(options=[(ALL, ALL), ("right", True), ("wrong", False)], description="answer")
    # redrawn on release, not on every pixel of a drag
    span = w.IntRangeSlider(value=(0, top), min=0, max=top, description="characters", continuous_update=False)
    previous, following = w.Button(description="previous"), w.Button(description="next")
    where = w.Label()
    keys = _keys_class()()
    # width "auto", not "100%": the widget's margin made 100% overflow its box by a few pixels
    items = w.Select(rows=8, layout=w.Layout(width="auto"))
    out = w.Output()
    quiet, shown = [False], [None]  # no redraw while the list is refilled; the clip last loaded

    def refilter(_=None):
        current = items.value
        chosen = select(traces, task=None if task.value == ALL else task.value,
                        model=None if model.value == ALL else model.value,
                        correct=None if correct.value == ALL else correct.value,
                        min_len=span.value[0], max_len=span.value[1], threshold=threshold)
        quiet[0] = True
        try:
            items.options = [(f"{t['model']} · {t['problem_id']} · {t['task']} · accuracy "
                              f"{t['accuracy']:.2f} · {length(t)} characters", t) for t in chosen]
            items.index = keep(chosen, current)
        finally:
            quiet[0] = False
        if items.value is not current or current is None:
            draw()
        count()

    def count():
        where.value = f"{(items.index or 0) + bool(items.options)} of {len(items.options)}"

    def step(by: int):
        if items.options:
            items.index = min(max((items.index or 0) + by, 0), len(items.options) - 1)

    def clip_of(trace, sample):
        row = (passes or {}).get(trace["problem_id"]) if trace["model"] == "rft_tcr" else None
        key = (trace["problem_id"], None if row is None else (row["span"], row["asked_fps"][1]))
        if shown[0] is None or shown[0][0] != key:
            if row is None:
                clip = load_clip(sample)
            else:  # what pass 2 saw: its span (or the whole video) at its fps
                start, end = row["span"] or (0.0, None)
                clip = load_clip(sample, fps=row["asked_fps"][1], start=start, end=end)
            shown[0] = (key, clip)
        return shown[0][1], row

    def draw(_=None):
        if quiet[0]:
            return
        count()
        with out:
            out.clear_output(wait=True)
            if items.value is None:
                print("no item passes these filters")
                return
            trace = items.value
            sample = records[trace["problem_id"]]
            clip, row = clip_of(trace, sample)
            fig = item_figure(clip, sample, trace, row, per_row)
            display(fig)
            plt.close(fig)
            display(pd.DataFrame(side_by_side(trace["problem_id"], traces_by_model, sample, threshold))
                    .set_index("model"))
            print(card(trace, sample, threshold, row))

    for control in (task, model, correct, span):
        control.observe(refilter, names="value")
    previous.on_click(lambda _: step(-1))
    following.on_click(lambda _: step(1))
    keys.on_msg(lambda _, content, buffers: step(int(content.get("step", 0))))
    items.observe(draw, names="value")
    refilter()  # fills the list and draws its first item
    filters = w.HBox([task, model, correct, span], layout=w.Layout(flex_flow="row wrap"))
    box = w.VBox([filters, w.HBox([previous, following, where, keys]), items, out])
    box.add_class("vrlib-explorer")  # where the keys listen (KEYS_JS)
    return box
