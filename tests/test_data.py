"""vrlib.data: one strict record schema, atomic files, reproducible disjoint splits."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, replace

import numpy as np
import pytest

from vrlib import data
from vrlib.data import (
    PROBLEM_TYPES,
    RecordError,
    Sample,
    atomic_write_json,
    build_split,
    read_jsonl,
    split_seed,
    video_path,
    write_jsonl,
)
from vrlib.tasks import WorldSpec
from vrlib.video import sample_frames

MIX = {"grounding": 1, "image": 1, "ocr": 1}  # a video, an image, a video


def good(**changes) -> dict:
    record = {
        "problem_id": "q1",
        "problem": "When does the red circle appear?",
        "data_type": "video",
        "problem_type": "temporal grounding",
        "options": [],
        "solution": "<answer>2.0 to 5.0</answer>",
        "path": "videos/q1.mp4",
        "data_source": "world/grounding",
        "duration": 8.0,
        "fps": 4.0,
        "process": "<think>It is seen from 2.0 to 5.0.</think>",
    }
    record.update(changes)
    return record


def write_lines(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    return out, build_split(out, "train", 0, 3, families=MIX, spec=WorldSpec(), kim=True)


def test_problem_types_are_the_eight_of_the_design():
    assert PROBLEM_TYPES == (
        "multiple choice", "numerical", "OCR", "free-form", "regression",
        "temporal grounding", "tracking", "grounded QA",
    )


def test_build_split_round_trips_and_its_videos_decode(split):
    out, samples = split
    assert [s.problem_id for s in samples] == ["train_00000", "train_00001", "train_00002"]
    path = out / "train.jsonl"
    write_jsonl(path, samples)
    assert read_jsonl(path) == samples
    assert [s.data_source.rsplit("/", 1)[0] for s in samples] == ["world/grounding", "world/image", "world/ocr"]
    for s in samples:
        if s.data_type == "image":
            assert s.path == f"media/{s.problem_id}.png" and (s.duration, s.fps) == (0.0, 0.0)
            assert s.kim_path == ""
            clip = data.load_media(video_path(s, path), "image", fps=2, min_frames=4, max_frames=16)
            assert clip.frames.shape == (1, 112, 112, 3)
            continue
        assert s.path == f"media/{s.problem_id}.mp4" and s.kim_path == f"media/{s.problem_id}_kim.mp4"
        assert (s.duration, s.fps, s.data_type) == (8.0, 4.0, "video")
        for key in ("path", "kim_path"):
            clip = sample_frames(video_path(s, path, key))
            assert clip.frames.shape == (16, 112, 112, 3) and clip.fps == 2.0
            assert clip.duration == s.duration and clip.native_fps == s.fps


def test_build_split_is_reproducible_in_pieces(split, tmp_path):
    out, samples = split
    again = build_split(tmp_path, "train", 0, 2, families=MIX, spec=WorldSpec(), kim=True,
                        start_index=1)
    assert again == samples[1:]
    for s in again:
        assert (tmp_path / s.path).read_bytes() == (out / s.path).read_bytes()


def test_splits_draw_disjoint_streams(split, tmp_path):
    out, train = split
    eval_ = build_split(tmp_path, "eval", 0, 3, families=MIX, spec=WorldSpec())
    frames = lambda root, s: data.load_media(root / s.path, s.data_type, fps=2, min_frames=4,  # noqa: E731
                                             max_frames=16).frames
    for a, b in zip(train, eval_):
        assert not np.array_equal(frames(out, a), frames(tmp_path, b))
    assert len({split_seed(0, name) for name in ("train", "rl", "sft", "eval")}) == 4
    assert split_seed(1, "eval") != split_seed(0, "eval")
    assert split_seed(0, "eval") == split_seed(0, "eval")  # stable, unlike hash()


def test_process_is_optional(tmp_path):
    record = good()
    del record["process"]
    write_lines(tmp_path / "a.jsonl", [record])
    assert read_jsonl(tmp_path / "a.jsonl")[0].process == ""


def test_integer_numbers_read_as_floats(tmp_path):
    write_lines(tmp_path / "a.jsonl", [good(duration=8, fps=4)])
    s = read_jsonl(tmp_path / "a.jsonl")[0]
    assert isinstance(s.duration, float) and isinstance(s.fps, float)


MALFORMED = [
    ("not json {", None, "invalid JSON"),
    ("[1, 2]", "<record>", "JSON object"),
    (good(problem_id=7), "problem_id", "string"),
    (good(problem_id=""), "problem_id", "empty"),
    ({k: v for k, v in good().items() if k != "solution"}, "solution", "missing"),
    ({k: v for k, v in good().items() if k != "fps"}, "fps", "missing"),
    (good(extra=1), "extra", "known fields"),
    (good(data_type="audio"), "data_type", "'audio'"),
    (good(problem_type="counting"), "problem_type", "'counting'"),
    (good(options="A"), "options", "list of strings"),
    (good(options=[1, 2]), "options", "list of strings"),
    (good(problem_type="multiple choice", solution="<answer>A</answer>"), "options", "needs options"),
    (good(solution="3"), "solution", "expected '<answer>...</answer>', got '3'"),
    (good(solution="<answer>3</answer> and more"), "solution", "<answer>"),
    (good(problem_type="grounded QA", solution="<answer>C</answer>"), "solution", "<glue>"),
    (good(duration="8"), "duration", "number"),
    (good(duration=True), "duration", "number"),
    (good(fps=-1.0), "fps", "number"),
    (good(process="no tags"), "process", "<think>"),
    (good(path=""), "path", "empty"),
    ("", None, "empty line"),
]


@pytest.mark.parametrize("bad, field, why", MALFORMED)
def test_malformed_record_names_file_line_and_field(tmp_path, bad, field, why):
    path = tmp_path / "eval.jsonl"
    write_lines(path, [good(problem_id="a"), good(problem_id="b"), bad])
    with pytest.raises(RecordError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: ")
    if field is not None:
        assert f"field '{field}'" in message
    assert why in message
    assert isinstance(info.value, ValueError)


def test_the_documented_message(tmp_path):
    path = tmp_path / "eval.jsonl"
    write_lines(path, [good(solution="3")])
    with pytest.raises(RecordError) as info:
        read_jsonl(path)
    assert str(info.value) == f"{path}:1: field 'solution': expected '<answer>...</answer>', got '3'"


def test_duplicate_ids_are_rejected_on_read_and_write(tmp_path):
    path = tmp_path / "a.jsonl"
    write_lines(path, [good(problem_id="x"), good(problem_id="y"), good(problem_id="x")])
    with pytest.raises(RecordError, match=r"a.jsonl:3: field 'problem_id': duplicate 'x', first on line 1"):
        read_jsonl(path)
    sample = Sample(**good())
    with pytest.raises(RecordError, match=r"b.jsonl:2: field 'problem_id': duplicate"):
        write_jsonl(tmp_path / "b.jsonl", [sample, sample])
    assert not (tmp_path / "b.jsonl").exists()


def test_write_refuses_an_invalid_sample(tmp_path):
    bad = replace(Sample(**good()), problem_type="counting")
    with pytest.raises(RecordError, match=r"c.jsonl:1: field 'problem_type'"):
        write_jsonl(tmp_path / "c.jsonl", [bad])
    assert list(tmp_path.iterdir()) == []


def test_every_problem_type_has_a_valid_example(tmp_path):
    solutions = {
        "multiple choice": "<answer>B</answer>",
        "numerical": "<answer>3</answer>",
        "OCR": "<answer>hello world</answer>",
        "free-form": "<answer>the red circle moves left</answer>",
        "regression": "<answer>10</answer>",
        "temporal grounding": "<answer>2.0 to 5.0</answer>",
        "tracking": "<answer>[[0.1,0.2,0.3,0.4]]</answer>",
        "grounded QA": "<answer>C</answer><glue>[(5.0, 10.0)]</glue>",
    }
    samples = [
        Sample(**good(problem_id=t, problem_type=t, solution=sol, options=["A. x", "B. y", "C. z"]))
        for t, sol in solutions.items()
    ]
    write_jsonl(tmp_path / "all.jsonl", samples)
    assert read_jsonl(tmp_path / "all.jsonl") == samples


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    old = [Sample(**good(problem_id="old"))]
    write_jsonl(path, old)
    before = path.read_bytes()
    calls = {"n": 0}
    real = json.dumps

    def fail_midway(obj, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise TypeError("Object of type Thing is not JSON serializable")
        return real(obj, **kwargs)

    monkeypatch.setattr(data.json, "dumps", fail_midway)
    new = [Sample(**good(problem_id=f"n{i}")) for i in range(5)]
    with pytest.raises(TypeError):
        write_jsonl(path, new)
    assert calls["n"] == 3  # two lines were already in the temp file
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.jsonl"]


def test_atomic_write_json_is_stable_and_refuses_nan(tmp_path):
    path = tmp_path / "metrics" / "data.json"
    atomic_write_json(path, {"b": 1, "a": {"d": 2, "c": 3}})
    assert path.read_text() == '{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}\n'
    with pytest.raises(ValueError):
        atomic_write_json(path, {"a": math.nan})
    assert json.loads(path.read_text())["b"] == 1
    assert os.listdir(path.parent) == ["data.json"]


def test_video_path_is_relative_to_the_jsonl(tmp_path):
    s = Sample(**good())
    assert video_path(s, tmp_path / "data" / "eval.jsonl") == tmp_path / "data" / "videos" / "q1.mp4"
    assert asdict(s)["path"] == "videos/q1.mp4"
