"""Run a model on a benchmark file in its own format and report what the papers report,
each number with the rule that combined it.

    python -m vrlib.benchmarks --format video_r1 --path eval_vsibench.json \\
        --media-root /data/vsibench --adapters models/sft models/rft --name rft --out eval/bench/vsi

Formats are the importers' (`vrlib.importers.FORMATS`): the Video-R1 eval schema (MVBench,
TempCompass, VideoMME, VideoMMMU, VSI-Bench, MMVU), Charades-STA, VideoChat-R1's grounding
(ActivityNet), GoT tracking and NExT-GQA. Frames, pixels and decoding are the study's own
(params.yaml) unless overridden, and are written into the result; the model loads as the
`base` section says, through the study's own driver (`evaluate.run_model`). A crashed run
resumes. The breakdowns use the benchmark's own keys (VSI-Bench's question types, Video-MME's
duration groups and task types, MVBench's tasks), each with the rule that combined it.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from vrlib.evaluate import Trace, group_metrics

MVBENCH_TASKS = {
    "star": "Action Sequence, Action Prediction, Object Interaction",
    "ssv2_video": "Action Antonym", "Moments_in_Time_Raw": "Fine-grained Action",
    "FunQA_test": "Unexpected Action",
    "clevrer": "Object Existence, Moving Direction, Moving Count, Moving Attribute, Counterfactual Inference",
    "perception": "Object Shuffle, Action Count, State Change, Character Order",
    "sta": "Action Localization", "scene_qa": "Scene Transition", "nturgbd": "Fine-grained Pose",
    "vlnqa": "Egocentric Navigation", "tvqa": "Episodic Reasoning"}
"""MVBench's video folder -> its tasks (MVBench's data_list, OpenGVLab/Ask-Anything
video_chat2/mvbench.ipynb). Video-R1's eval JSON names no task, only the path, so three
folders group several of the 20 tasks."""
TASK_KEYS = {
    "VSIBench": "VSI-Bench's question type (`original_question_type`)",
    "VideoMME": "Video-MME's task type (`original_question_type`)",
    "MMVU": "MMVU's question type (`original_question_type`)",
    "MVBench": "MVBench's video folder of the path, with the tasks it holds (MVBENCH_TASKS)"}
"""How each benchmark of Video-R1's eval names the groups of its items (`importers` labels)."""

DURATIONS = ((0.0, 120.0, "short (< 2 min)"), (120.0, 900.0, "medium (2-15 min)"),
             (900.0, float("inf"), "long (>= 15 min)"))
"""VideoMME's duration groups (short < 2 min, medium 4-15, long 30-60), closed into a partition."""
_VIDEO_R1 = ("multiple choice", "numerical", "OCR", "free-form")


def _score(name: str, value: float, n: int, combined: str, items: str = "all") -> dict:
    """One headline number: its value, over which items (`items`: all or a problem_type), how many."""
    return {"metric": name, "items": items, "value": round(float(value), 2), "n": n, "combined": combined}


def overall(traces: list[Trace], recalls: list[float], task_key: str = "") -> list[dict]:
    """The headline numbers of a benchmark, as its paper combines them:
    - Video-R1's eval (`mean_acc`, `mean_mra`): the mean accuracy over every item that is not
      regression, the mean MRA over regression items;
    - VSI-Bench's average: the mean over tasks of each task's accuracy or MRA (how Video-R1
      merged its two numbers into one is undocumented, issue #47, so both are given), over
      the question types the records name when `task_key` says so (MVBench's Avg. over its
      20 tasks of 200 items each is `mean_acc`);
    - grounding (Charades-STA, ActivityNet): mIoU and R@k over items; GoT: mean box IoU
      ("overlap") and R@0.5; NExT-GQA: accuracy and evidence mIoU."""
    out = []
    by_type = {k: [t for t in traces if t.problem_type == k] for k in sorted({t.problem_type for t in traces})}
    acc = [t for t in traces if t.problem_type in _VIDEO_R1]
    if acc:
        out.append(_score("mean_acc", 100 * np.mean([t.accuracy for t in acc]), len(acc),
                          "mean over items of the accuracy reward (exact letter or number, 1 - WER "
                          "for OCR, ROUGE for free-form): Video-R1's eval_bench", "+".join(_VIDEO_R1)))
    if by_type.get("regression"):
        rows = by_type["regression"]
        out.append(_score("mean_mra", 100 * np.mean([t.mra for t in rows]), len(rows),
                          "mean over regression items of MRA, thresholds 0.50..0.95: Video-R1's "
                          "eval_bench", "regression"))
    tasks = sorted({t.task for t in traces})
    if (acc and by_type.get("regression")) or task_key:
        per_task = [group_metrics([t for t in traces if t.task == k], recalls) for k in tasks]
        out.append(_score("task_mean", np.mean([m.get("MRA", m["accuracy"]) for m in per_task]), len(traces),
                          f"mean over the {len(tasks)} tasks ({task_key or 'data_source'}) of each "
                          "task's accuracy (MRA for regression tasks): VSI-Bench's Avg."))
    for kind, names, how in (
            ("temporal grounding", ["mIoU", *[f"R@{k}" for k in recalls]],
             "over items: mean temporal IoU, share with IoU >= k; an unparsable answer is IoU 0 (VideoChat-R1)"),
            ("tracking", ["accuracy", "R@0.5"],
             "over videos: mean of the per-video average box IoU (GoT overlap), share >= 0.5 (VideoChat-R1)"),
            ("grounded QA", ["accuracy", "glue_mIoU"],
             "over items: exact letter, mean IoU of the <glue> evidence with the gold spans (NExT-GQA)")):
        if by_type.get(kind):
            m = group_metrics(by_type[kind], recalls)
            for name in names:
                label = "overlap" if (kind, name) == ("tracking", "accuracy") else name
                out.append(_score(label, m[name], m["n"], how, kind))
    return out


def breakdown(traces: list[Trace], recalls: list[float], key, name: str) -> dict:
    """The metrics of each group of traces (`key(trace)` names the group), and how."""
    groups: dict[str, list[Trace]] = {}
    for t in traces:
        groups.setdefault(key(t), []).append(t)
    return {"key": name, "combined": "per group, its items combined as `overall` combines them "
            "(mean accuracy, MRA, mIoU and R@k), values in percent",
            "groups": {g: group_metrics(rows, recalls) for g, rows in sorted(groups.items())}}


def duration_group(t: Trace) -> str:
    if t.duration <= 0:
        return "image"
    return next(name for lo, hi, name in DURATIONS if lo <= t.duration < hi)


def _benchmark(labels: dict[str, dict]) -> str:
    """The benchmark of Video-R1's eval the items come from, "" if none or several."""
    names = {v.get("benchmark", "") for v in labels.values()}
    return names.pop() if len(names) == 1 and not names & {""} else ""


def summarize(traces: list[Trace], recalls: list[float], settings: dict,
              labels: dict[str, dict] | None = None) -> dict:
    """Everything a benchmark run reports: the settings, the headline numbers with how each
    was combined, and the breakdowns by problem type, task and duration, under the
    benchmark's own keys where its records carry them (`importers.Imported.labels`)."""
    labels = labels or {}
    bench = _benchmark(labels)
    task_key = TASK_KEYS.get(bench, "")

    def task(t: Trace) -> str:
        name = labels.get(t.problem_id, {}).get("task", "") if task_key else ""
        if bench == "MVBench" and name in MVBENCH_TASKS:
            name = f"{name}: {MVBENCH_TASKS[name]}"
        return name or t.task

    traces = [replace(t, task=task(t)) for t in traces]
    own = {labels.get(t.problem_id, {}).get("duration", "") for t in traces}
    if "" in own:  # measured from the file
        durations = (duration_group, "the video's measured length: short < 2 min, medium 2-15 "
                                     "min, long >= 15 min (Video-MME's groups closed into a partition)")
    else:
        durations = (lambda t: labels[t.problem_id]["duration"],
                     "the record's own duration group (`duration`: Video-MME's short, medium, long)")
    return {"settings": settings, "n": len(traces), "benchmark": bench,
            "overall": overall(traces, recalls, task_key if bench == "VSIBench" else ""),
            "by_problem_type": breakdown(traces, recalls, lambda t: t.problem_type, "problem_type"),
            "by_task": breakdown(traces, recalls, lambda t: t.task, task_key or "data_source"),
            "by_duration": breakdown(traces, recalls, durations[0], durations[1])}


def run(fmt: str, path: str, media_root: str, *, model_dir: str, adapters: list[str], name: str,
        out_dir: str, dcfg, bcfg, cfg, tcr: bool = False, on_bad_media: str = "stop",
        on_bad_record: str = "stop") -> dict:
    """Import the benchmark file, run the model on it (`evaluate.run_model`: loaded as `bcfg`
    says, resuming a crashed run), and write `<out_dir>/<name>.jsonl` (every trace) and
    `<out_dir>/<name>.json` (the summary, with the records and media skipped)."""
    from vrlib import importers
    from vrlib.data import atomic_write_json
    from vrlib.evaluate import run_model, settings

    if fmt not in importers.FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(importers.FORMATS)}")
    got = importers.FORMATS[fmt](path, media_root, on_bad_media=on_bad_media, on_bad_record=on_bad_record)
    setup = settings(dcfg, cfg) | {"format": fmt, "file": str(path), "model": model_dir,
                                   "adapters": list(adapters), "tcr": tcr,
                                   "skipped_bad_media": len(got.skipped),
                                   "skipped_bad_records": len(got.bad_records)}
    if tcr:
        setup |= {"tcr_low": cfg.tcr_low, "tcr_high": cfg.tcr_high, "tcr_pad": cfg.tcr_pad}
    out = Path(out_dir)
    done = run_model(name, got.samples, [Path(s.path) for s in got.samples], setup, model_dir=model_dir,
                     adapters=adapters, bcfg=bcfg, items=path, partial_dir=out / f".{name}.partial",
                     traces_path=out / f"{name}.jsonl",
                     tcr={"low": cfg.tcr_low, "high": cfg.tcr_high, "pad": cfg.tcr_pad} if tcr else None)
    summary = summarize(done.traces, cfg.recalls, setup, got.labels) | {"skipped": {
        "bad_media": [f"{p}: {why}" for p, why in got.skipped], "bad_records": got.bad_records}}
    atomic_write_json(out / f"{name}.json", summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    from vrlib import config, importers

    ap = argparse.ArgumentParser(prog="python -m vrlib.benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--format", required=True, choices=sorted(importers.FORMATS))
    ap.add_argument("--path", required=True, help="the benchmark's annotation file")
    ap.add_argument("--media-root", required=True, help="folder its video paths are relative to")
    ap.add_argument("--model", default="models/base", help="base checkpoint directory")
    ap.add_argument("--adapters", nargs="*", default=[], help="LoRA adapters merged in order")
    ap.add_argument("--name", default="model", help="the model's name in the outputs")
    ap.add_argument("--out", default="eval/bench", help="output folder")
    ap.add_argument("--params", default="params.yaml", help="frames, pixels and decoding from here")
    ap.add_argument("--fps", type=float, help="override evaluation.fps")
    ap.add_argument("--max-frames", type=int, help="override evaluation.max_frames (16, 32, 64)")
    ap.add_argument("--max-pixels", type=int, help="override evaluation.max_pixels")
    ap.add_argument("--tcr", action="store_true", help="Temporal Clue-driven Reasoning (two passes)")
    ap.add_argument("--skip-bad-media", action="store_true", help="skip and count missing videos")
    ap.add_argument("--skip-bad-records", action="store_true",
                    help="skip and list records that break the schema (e.g. start > end)")
    args = ap.parse_args(argv)
    params = config.load(args.params)
    cfg = params.evaluation
    for field in ("fps", "max_frames", "max_pixels"):
        if getattr(args, field) is not None:
            setattr(cfg, field, getattr(args, field))
    summary = run(args.format, args.path, args.media_root, model_dir=args.model, adapters=args.adapters,
                  name=args.name, out_dir=args.out, dcfg=params.data, bcfg=params.base, cfg=cfg,
                  tcr=args.tcr, on_bad_media="skip" if args.skip_bad_media else "stop",
                  on_bad_record="skip" if args.skip_bad_records else "stop")
    for s in summary["overall"]:
        print(f"{s['metric']:>10} {s['value']:6.2f}  n={s['n']}  ({s['combined']})")
    skipped = summary["skipped"]
    print(f"skipped: {len(skipped['bad_media'])} for bad media, {len(skipped['bad_records'])} bad records")


if __name__ == "__main__":
    main()
