"""vrlib.benchmarks, vrlib.tcr and the resumable decoding: metrics by hand, every format read
and run end to end with a tiny model, a crash resumed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vrlib import benchmarks, evaluate, importers, rollout, tcr
from vrlib.config import BaseParams, DataParams, EvalParams
from vrlib.evaluate import Trace, scored_text

FIXTURES = Path(__file__).parent / "fixtures" / "importers"
FORMAT_FILES = {"video_r1": "video_r1.json", "charades_sta": "charades_sta.txt",
                "videochat_r1_grounding": "videochat_r1_grounding.json",
                "videochat_r1_got": "videochat_r1_got.json", "videochat_r1_gqa": "videochat_r1_gqa.json"}


def trace(i, problem_type, task, accuracy=0.0, mra=0.0, glue=0.0, duration=8.0):
    return Trace(model="m", problem_id=f"q{i}", task=task, problem_type=problem_type, problem="?",
                 solution="", completion="", format=1.0, accuracy=accuracy, truncated=False,
                 glue_iou=glue, mra=mra, duration=duration)


def by_metric(scores):
    return {s["metric"]: s for s in scores}


def test_vsi_bench_style_combinations_by_hand():
    traces = [trace(0, "multiple choice", "rel_direction", accuracy=1.0),
              trace(1, "multiple choice", "rel_direction", accuracy=0.0),
              trace(2, "multiple choice", "route_plan", accuracy=1.0),
              trace(3, "regression", "abs_distance", accuracy=0.9, mra=0.5),
              trace(4, "regression", "abs_distance", accuracy=0.99, mra=1.0)]
    got = by_metric(benchmarks.overall(traces, [0.3, 0.5, 0.7]))
    assert got["mean_acc"]["value"] == pytest.approx(100 * 2 / 3, abs=0.01) and got["mean_acc"]["n"] == 3
    assert got["mean_mra"]["value"] == 75.0 and got["mean_mra"]["n"] == 2
    # tasks: rel_direction 50, route_plan 100, abs_distance MRA 75 -> 75
    assert got["task_mean"]["value"] == 75.0 and "VSI-Bench" in got["task_mean"]["combined"]
    assert all(s["combined"] for s in got.values())


def test_grounding_tracking_gqa_combinations_by_hand():
    traces = [trace(0, "temporal grounding", "cha", accuracy=0.75),
              trace(1, "temporal grounding", "cha", accuracy=0.25),
              trace(2, "temporal grounding", "cha", accuracy=0.5),
              trace(3, "tracking", "got", accuracy=0.6), trace(4, "tracking", "got", accuracy=0.2),
              trace(5, "grounded QA", "gqa", accuracy=1.0, glue=0.4),
              trace(6, "grounded QA", "gqa", accuracy=0.0, glue=0.0)]
    got = {(s["items"], s["metric"]): s["value"] for s in benchmarks.overall(traces, [0.3, 0.5, 0.7])}
    tg, tr, qa = "temporal grounding", "tracking", "grounded QA"
    assert got == {(tg, "mIoU"): 50.0, (tg, "R@0.3"): 66.67, (tg, "R@0.5"): 66.67, (tg, "R@0.7"): 33.33,
                   (tr, "overlap"): 40.0, (tr, "R@0.5"): 50.0,
                   (qa, "accuracy"): 50.0, (qa, "glue_mIoU"): 20.0}


def test_breakdowns_partition_the_items():
    traces = [trace(0, "multiple choice", "a", 1.0, duration=30.0),
              trace(1, "multiple choice", "b", 0.0, duration=600.0),
              trace(2, "numerical", "b", 1.0, duration=3600.0), trace(3, "numerical", "a", 1.0, duration=0.0)]
    s = benchmarks.summarize(traces, [0.5], {"fps": 2.0})
    assert s["settings"] == {"fps": 2.0} and s["n"] == 4
    assert {k: v["n"] for k, v in s["by_duration"]["groups"].items()} == {
        "image": 1, "short (< 2 min)": 1, "medium (2-15 min)": 1, "long (>= 15 min)": 1}
    assert s["by_task"]["groups"]["b"]["accuracy"] == 50.0
    assert s["by_problem_type"]["groups"]["numerical"]["accuracy"] == 100.0
    assert s["by_task"]["key"] == "data_source" and "measured" in s["by_duration"]["key"]


def test_breakdowns_use_the_benchmarks_own_keys():
    """VSI-Bench's Avg. over its question types; Video-MME's own duration groups."""
    traces = [trace(0, "regression", "VSIBench/arkitscenes", mra=0.5),
              trace(1, "regression", "VSIBench/arkitscenes", mra=1.0),
              trace(2, "multiple choice", "VSIBench/scannet", accuracy=0.0)]
    labels = {"q0": {"benchmark": "VSIBench", "task": "object_counting"},
              "q1": {"benchmark": "VSIBench", "task": "object_counting"},
              "q2": {"benchmark": "VSIBench", "task": "route_plan"}}
    s = benchmarks.summarize(traces, [0.5], {}, labels)
    assert set(s["by_task"]["groups"]) == {"object_counting", "route_plan"} and s["benchmark"] == "VSIBench"
    assert by_metric(s["overall"])["task_mean"]["value"] == 37.5  # (75 + 0) / 2
    mme = {f"q{i}": {"benchmark": "VideoMME", "task": "Counting Problem", "duration": d}
           for i, d in enumerate(["short", "short", "long"])}
    mc = [trace(i, "multiple choice", "VideoMME", accuracy=1.0) for i in range(3)]
    s = benchmarks.summarize(mc, [0.5], {}, mme)
    assert {k: v["n"] for k, v in s["by_duration"]["groups"].items()} == {"short": 2, "long": 1}
    assert "task_mean" not in by_metric(s["overall"])  # Video-MME reports the mean over items
    mvb = {f"q{i}": {"benchmark": "MVBench", "task": "ssv2_video"} for i in range(3)}
    assert list(benchmarks.summarize(traces, [0.5], {}, mvb)["by_task"]["groups"]) == ["ssv2_video: Action Antonym"]


def test_scored_text_strips_the_reasoning_when_there_is_no_answer_tag():
    tagged = "<think>maybe A</think><answer>B</answer>"
    assert scored_text(tagged) == tagged
    assert scored_text("<think>It is A, no.</think> B") == "<answer>B</answer>"
    assert scored_text("<think>unclosed A") == "<answer></answer>"
    assert scored_text("C") == "<answer>C</answer>"  # Video-R1 scores the raw output


def test_clue_span_by_hand():
    assert tcr.clue_span("x<glue>[(2.0, 3.0), (5.0, 5.5)]</glue>", 8.0, 0.5) == (1.5, 6.0)
    assert tcr.clue_span("<glue>[(0.2, 9.0)]</glue>", 8.0, 0.5) == (0.0, 8.0)
    assert tcr.clue_span("<glue>[]</glue>", 8.0, 0.5) is None
    assert tcr.clue_span("no clue", 8.0, 0.5) is None
    assert tcr.clue_span("<glue>[(9.0, 9.5)]</glue>", 8.0, 0.0) is None  # outside the video


# ----------------------------------------------------------------------------- with a tiny model
@pytest.fixture(scope="module")
def tiny(tiny_dir):
    from vrlib.model import load_model, load_processor

    return load_model(tiny_dir), load_processor(tiny_dir)


def test_decode_resumes_after_a_crash_with_the_same_outputs(tiny, world_split, tmp_path, monkeypatch, capsys):
    model, processor = tiny
    _, samples, clips = world_split
    samples, clips = samples[:5], clips[:5]
    kw = dict(batch_size=2, max_new_tokens=6)
    whole, whole_tr = rollout.decode(model, processor, samples, clips, **kw)
    partial = tmp_path / "part.jsonl"
    rollout.decode(model, processor, samples, clips, partial=partial, key="k", **kw)
    lines = partial.read_text().splitlines()
    assert json.loads(lines[0]) == {"key": "k"} and len(lines) == 6
    # a crash in the third batch: two batches written, the fifth item's line cut short
    partial.write_text("\n".join(lines[:5]) + "\n" + lines[5][:10])
    calls = []
    real = rollout.generate
    monkeypatch.setattr(rollout, "generate", lambda m, p, s, *a, **k: calls.append(len(s)) or real(m, p, s, *a, **k))
    texts, tr = rollout.decode(model, processor, samples, clips, partial=partial, key="k", name="eval sft", **kw)
    assert calls == [1] and (texts, tr) == (whole, whole_tr)
    # the resumed run shows where it is: the one batch it decoded, the third of three
    assert capsys.readouterr().out.splitlines()[-1] == "eval sft  batch 3/3"
    calls.clear()  # another key (other model or settings): nothing reused
    assert rollout.decode(model, processor, samples, clips, partial=partial, key="other", **kw)[0] == whole
    assert calls == [2, 2, 1]


def test_decode_batches_items_family_by_family_and_returns_them_in_order(world_split, monkeypatch):
    """A batch runs as long as its longest answer: items of one data source go together (tracking's
    86-token boxes in every mixed batch made decoding ~2x slower); the outputs keep the input order."""
    import types

    import torch

    _, samples, clips = world_split
    batches = []

    def fake(model, processor, chunk, *a, **k):
        batches.append([s.data_source for s in chunk])
        return types.SimpleNamespace(texts=[s.problem_id for s in chunk], truncated=torch.zeros(len(chunk), dtype=torch.bool))

    monkeypatch.setattr(rollout, "generate", fake)
    texts, truncated = rollout.decode(None, None, samples, clips, batch_size=3, max_new_tokens=4)
    assert texts == [s.problem_id for s in samples] and truncated == [False] * len(samples)
    flat = [d for b in batches for d in b]
    assert flat == sorted(s.data_source for s in samples) and flat != [s.data_source for s in samples]


@pytest.mark.parametrize("fmt", sorted(FORMAT_FILES))
def test_runner_reads_every_format_and_records_its_settings(fmt, tiny_dir, media, tmp_path):
    cfg = EvalParams(max_new_tokens=6, batch_size=4, max_frames=8)
    s = benchmarks.run(fmt, FIXTURES / FORMAT_FILES[fmt], media, model_dir=str(tiny_dir), adapters=[],
                       name="tiny", out_dir=tmp_path, dcfg=DataParams(), bcfg=BaseParams(), cfg=cfg)
    n = len(importers.FORMATS[fmt](FIXTURES / FORMAT_FILES[fmt], media).samples)
    assert s["n"] == n and len((tmp_path / "tiny.jsonl").read_text().splitlines()) == n
    assert json.loads((tmp_path / "tiny.json").read_text()) == s
    assert (s["settings"]["max_frames"], s["settings"]["fps"], s["settings"]["format"]) == (8, 2.0, fmt)
    assert s["settings"]["decoding"] == "greedy" and s["overall"]
    assert sum(v["n"] for v in s["by_problem_type"]["groups"].values()) == n
    # the finished decode is kept, keyed by model, items and settings: a rerun reads it back
    assert len((tmp_path / ".tiny.partial/decode.jsonl").read_text().splitlines()) == n + 1
    again = benchmarks.run(fmt, FIXTURES / FORMAT_FILES[fmt], media, model_dir=str(tiny_dir), adapters=[],
                           name="tiny", out_dir=tmp_path, dcfg=DataParams(), bcfg=BaseParams(), cfg=cfg)
    assert again == s


def test_tcr_two_passes_cut_only_question_answering(tiny, media, monkeypatch):
    model, processor = tiny
    samples = importers.video_r1(FIXTURES / "video_r1.json", media).samples  # MC, numerical, image, ...
    samples += importers.charades_sta(FIXTURES / "charades_sta.txt", media).samples[:1]
    paths = [Path(s.path) for s in samples]
    settings = evaluate.settings(DataParams(), EvalParams(max_new_tokens=6, batch_size=8))
    # the first pass of every item names a clue at 0.5..1.0 s
    real = tcr.decode  # vrlib.rollout.decode
    passes = []

    def fake_first(m, p, s, c, **k):
        passes.append((s, c, k["max_pixels"]))
        texts, tr = real(m, p, s, c, **k)
        return (texts if len(passes) == 2 else ["<glue>[(0.5, 1.0)]</glue>"] * len(s)), tr

    monkeypatch.setattr(tcr, "decode", fake_first)
    got = tcr.two_pass(model, processor, samples, paths, settings, low=0.5, high=2.0, pad=0.25)
    (first_s, first_c, px1), (second_s, second_c, px2) = passes
    # pass 1 only where clues can cut: not the image, not the question about times
    asked = [s for s in samples if s.data_type == "video" and s.problem_type != "temporal grounding"]
    assert [s.problem_id for s in first_s] == [s.problem_id for s in asked] and 0 < len(asked) < len(samples)
    assert all(tcr.CLUE_ASK in s.problem for s in first_s) and second_s == samples
    assert [f is None for f in got.first] == [s not in asked for s in samples]
    assert (px1, px2) == (112 * 112 // 2, 112 * 112 * 2)  # data.max_pixels x low, x high
    for s, span, clip in zip(samples, got.spans, second_c):
        if s.data_type == "image":
            assert span is None and len(clip.frames) == 1
        elif s.problem_type == "temporal grounding":  # the whole video, denser
            assert span is None and clip.timestamps[0] == 0.0
        else:  # 0.25..1.25 s of a 2 s video at 4 fps
            assert span == (0.25, 1.25) and clip.timestamps.min() >= 0.25 and clip.timestamps.max() <= 1.25
    assert len(got.texts) == len(samples) == len(got.first) and got.reused == [False] * len(samples)


def test_tcr_keeps_the_one_pass_answer_where_pass_two_sees_the_same(tiny, media, monkeypatch):
    """An item whose pass-2 input equals the one-pass evaluation's (the same frames, resized to
    the same size) takes that decode's answer; every other item is decoded again."""
    from vrlib.data import load_media

    model, processor = tiny
    samples = importers.video_r1(FIXTURES / "video_r1.json", media).samples
    samples += importers.charades_sta(FIXTURES / "charades_sta.txt", media).samples[:1]
    paths = [Path(s.path) for s in samples]
    settings = evaluate.settings(DataParams(), EvalParams(max_new_tokens=4, batch_size=8))
    clips = [load_media(p, s.data_type, fps=settings["fps"], min_frames=settings["min_frames"],
                        max_frames=settings["max_frames"]) for s, p in zip(samples, paths)]
    plain = (clips, [f"plain {k}" for k in range(len(samples))], [False] * len(samples))
    second = []

    def no_clue(m, p, s, c, **k):  # pass 1 names no clue: nothing is cut
        if tcr.CLUE_ASK in s[0].problem:
            return ["no clue"] * len(s), [False] * len(s)
        second.append([x.problem_id for x in s])
        return [f"again {x.problem_id}" for x in s], [True] * len(s)

    monkeypatch.setattr(tcr, "decode", no_clue)
    same = tcr.two_pass(model, processor, samples, paths, settings, low=0.5, high=1.0, pad=0.25, plain=plain)
    assert same.reused == [True] * len(samples) and same.texts == plain[1] and not second  # nothing decoded twice
    denser = tcr.two_pass(model, processor, samples, paths, settings, low=0.5, high=2.0, pad=0.25, plain=plain)
    px = settings["max_pixels"]
    for k, s in enumerate(samples):  # 2 s videos: twice the fps is twice the frames; an image is the same
        assert denser.reused[k] == (s.data_type == "image")
        assert (denser.texts[k], denser.truncated[k]) == (
            (plain[1][k], False) if denser.reused[k] else (f"again {s.problem_id}", True))
    assert second == [[s.problem_id for s in samples if s.data_type != "image"]]


def test_same_input_means_the_same_frames_at_the_same_size(tiny):
    import numpy as np

    from vrlib.video import Clip

    _, processor = tiny
    frames = np.random.default_rng(0).integers(0, 255, (4, 112, 112, 3), dtype=np.uint8)
    clip = Clip(frames, 2.0, np.arange(4), np.arange(4) / 2.0, 2.0, 4.0, "v.mp4")
    assert tcr.same_input(clip, clip, 112 * 112, 4 * 112 * 112, processor)  # both budgets keep 112 x 112
    assert not tcr.same_input(clip, clip, 112 * 112, 56 * 56, processor)    # the smaller one shrinks it
    other = Clip(frames[::-1].copy(), 2.0, np.arange(4), np.arange(4) / 2.0, 2.0, 4.0, "v.mp4")
    later = Clip(frames, 2.0, np.arange(4), np.arange(4) / 2.0 + 0.5, 2.0, 4.0, "v.mp4")
    slower = Clip(frames, 1.0, np.arange(4), np.arange(4) / 2.0, 4.0, 4.0, "v.mp4")  # other time positions
    for changed in (other, later, slower):
        assert not tcr.same_input(clip, changed, 112 * 112, 112 * 112, processor)


def test_runner_loads_the_model_as_the_base_section_says(tiny_dir, media, tmp_path, monkeypatch):
    """One driver: dtype, 4-bit storage, attention and device from `base`, never fp32 by default."""
    import torch

    from vrlib import model
    from vrlib.model import load_kwargs

    seen = {}

    def capture(model_dir, adapters, **kwargs):
        seen.update(kwargs, model_dir=model_dir, adapters=adapters)
        raise RuntimeError("captured")

    monkeypatch.setattr(model, "load_policy", capture)
    bcfg = BaseParams(dtype="bfloat16", quant_storage="bfloat16", attn_implementation="eager")
    with pytest.raises(RuntimeError, match="captured"):
        benchmarks.run("charades_sta", FIXTURES / "charades_sta.txt", media, model_dir=str(tiny_dir),
                       adapters=[], name="m", out_dir=tmp_path, dcfg=DataParams(), bcfg=bcfg, cfg=EvalParams())
    assert seen == {**load_kwargs(bcfg), "model_dir": str(tiny_dir), "adapters": []}
    assert (seen["dtype"], seen["quant_storage"], seen["attn_implementation"]) == (
        torch.bfloat16, torch.bfloat16, "eager")
    assert seen["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- real files
from test_importers import REAL, REAL_FILES, real_media  # noqa: E402  (the shared real excerpts)

REAL_EVAL = [name for name in sorted(REAL_FILES) if "train" not in name and "cot165k" not in name]
PAPER_KEYS = {  # what each benchmark's breakdown is keyed by, as its paper reports it
    "video_r1/eval_vsibench_first30.json": ("VSIBench", "by_task", {"object_counting"}),
    "video_r1/eval_videomme_first30.json": ("VideoMME", "by_duration", {"short"}),
    "video_r1/eval_mvbench_first30.json": ("MVBench", "by_task", {"ssv2_video: Action Antonym"}),
    "video_r1/eval_mmvu_first30.json": ("MMVU", "by_task", {"multiple-choice"}),
}


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("name", REAL_EVAL)
def test_runner_reports_every_real_eval_excerpt_with_the_papers_keys(name, tiny_dir, tmp_path):
    """Reading, scoring and the report's layout on the real files (not accuracy: a tiny model)."""
    fmt, path = REAL_FILES[name], REAL / name
    media = real_media(fmt, path, tmp_path / "media")
    cfg = EvalParams(max_new_tokens=4, batch_size=16, max_frames=4)
    s = benchmarks.run(fmt, path, media, model_dir=str(tiny_dir), adapters=[], name="tiny",
                       out_dir=tmp_path / "out", dcfg=DataParams(), bcfg=BaseParams(), cfg=cfg)
    n = len(importers.FORMATS[fmt](path, media).samples)
    assert s["n"] == n and json.loads((tmp_path / "out" / "tiny.json").read_text()) == s
    assert s["skipped"] == {"bad_media": [], "bad_records": []}
    assert all(m["combined"] and m["n"] for m in s["overall"])
    for part in ("by_problem_type", "by_task", "by_duration"):
        assert s[part]["key"] and s[part]["combined"]
        assert sum(g["n"] for g in s[part]["groups"].values()) == n
    if name in PAPER_KEYS:
        bench, part, groups = PAPER_KEYS[name]
        assert s["benchmark"] == bench and set(s[part]["groups"]) == groups
    if "vsibench" in name:
        assert {m["metric"] for m in s["overall"]} == {"mean_mra", "task_mean"}


@pytest.mark.real_data
def test_runner_lists_the_records_it_skipped(tiny_dir, tmp_path):
    from test_importers import INVERTED

    media = real_media("videochat_r1_grounding", INVERTED, tmp_path / "media")
    s = benchmarks.run("videochat_r1_grounding", INVERTED, media, model_dir=str(tiny_dir), adapters=[],
                       name="m", out_dir=tmp_path, dcfg=DataParams(), bcfg=BaseParams(),
                       cfg=EvalParams(max_new_tokens=4, max_frames=4), on_bad_record="skip")
    assert s["n"] == 1 and s["settings"]["skipped_bad_records"] == 4
    assert all(r.startswith(str(INVERTED)) for r in s["skipped"]["bad_records"])
