"""vrlib.importers: each real format to data.Sample, media checked, bad records named.

The fixtures in tests/fixtures/importers/ are small files in each data set's own format;
the media they name are rendered here as tiny real MP4s (2 s at 4 fps), a PNG and JPG frames.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vrlib import importers, video
from vrlib.data import RecordError, load_split, read_jsonl, write_jsonl
from vrlib.rewards import accuracy_reward, format_reward, glue_iou_reward

from conftest import FRAME_DIRS, IMAGES  # the media the fixtures name (built by the `media` fixture)

FIXTURES = Path(__file__).parent / "fixtures" / "importers"

# importer, fixture, how many samples it holds
CASES = [
    (importers.video_r1, "video_r1.json", 5),
    (importers.charades_sta, "charades_sta.txt", 4),
    (importers.videochat_r1_grounding, "videochat_r1_grounding.json", 4),
    (importers.videochat_r1_got, "videochat_r1_got.json", 3),
    (importers.videochat_r1_gqa, "videochat_r1_gqa.json", 3),
]
IDS = [fixture.split(".")[0] for _, fixture, _ in CASES]


@pytest.fixture
def media_copy(media, tmp_path) -> Path:
    """A copy of the media root that a test may break."""
    return Path(shutil.copytree(media, tmp_path / "media"))


def write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def fixture_records(name: str):
    return json.loads((FIXTURES / name).read_text())


# ----------------------------------------------------------------------------- good files
@pytest.mark.parametrize("importer, fixture, n", CASES, ids=IDS)
def test_fixture_imports_round_trips_and_scores_its_own_solution(importer, fixture, n, media, tmp_path):
    got = importer(FIXTURES / fixture, media)
    assert len(got.samples) == n and got.skipped == []
    assert len({s.problem_id for s in got.samples}) == n
    for s in got.samples:
        assert Path(s.path).is_absolute() and Path(s.path).exists()
        if s.data_type == "image":
            assert (s.duration, s.fps) == (0.0, 0.0)
        elif Path(s.path).is_dir():  # 8 GOT-10k frames timed at 10 fps
            assert (s.duration, s.fps) == (0.8, 10.0)
        else:  # measured from the file, not copied from the annotation
            assert (s.duration, s.fps) == pytest.approx((2.0, 4.0))
        completion = "<think>x</think>" + s.solution
        assert accuracy_reward(completion, s) == 1.0
        assert format_reward(completion, s) == 1.0
        if s.problem_type == "grounded QA":
            assert glue_iou_reward(completion, s) == 1.0
    write_jsonl(tmp_path / "out.jsonl", got.samples)
    assert read_jsonl(tmp_path / "out.jsonl") == got.samples


def test_video_r1_fields(media):
    by_id = {s.problem_id: s for s in importers.video_r1(FIXTURES / "video_r1.json", media).samples}
    assert set(by_id) == {"2", "1531", "40211", "188302", "250117"}  # int ids become strings
    mc = by_id["1531"]
    assert mc.options[:2] == ["A. to support himself", "B. to reach the toy"]  # "A) ..." normalised
    assert mc.problem == "Why did the boy put his hand on the table at the end?"  # kept as given
    assert mc.process.startswith("<think>Let me think.") and by_id["2"].process == ""
    assert mc.path == str(media / "NeXT-QA/NExTVideo/1025/3238737531.mp4")
    assert mc.data_source == "NeXT-QA"
    image = by_id["188302"]
    assert (image.data_type, image.problem_type) == ("image", "free-form")


def test_charades_sta_follows_videochat_r1(media):
    samples = importers.charades_sta(FIXTURES / "charades_sta.txt", media).samples
    first = samples[0]
    assert first.problem_id == "3MSZA_0" and samples[1].problem_id == "3MSZA_1"
    # lower-cased, trailing "." dropped, in VideoChat-R1's TG question
    assert first.problem == ('To accurately pinpoint the event "person turn a light on" in the '
                             "video, determine the precise time period of the event.")
    assert samples[3].solution == "<answer>11.20 to 18.75</answer>"
    assert (first.problem_type, first.options, first.data_source) == (
        "temporal grounding", [], "Charades-STA")
    assert first.path == str(media / "3MSZA.mp4")


def test_videochat_r1_grounding_matches_charades_sta(media):
    tg = importers.videochat_r1_grounding(FIXTURES / "videochat_r1_grounding.json", media)
    sta = importers.charades_sta(FIXTURES / "charades_sta.txt", media)
    assert tg.samples == sta.samples  # the same four queries in two formats
    anet = importers.videochat_r1_grounding(FIXTURES / "videochat_r1_grounding.json", media,
                                            data_source="ActivityNet-Captions")
    assert {s.data_source for s in anet.samples} == {"ActivityNet-Captions"}


def test_videochat_r1_got_states_object_and_first_box(media):
    samples = importers.videochat_r1_got(FIXTURES / "videochat_r1_got.json", media).samples
    frames = samples[0]
    assert frames.problem == ('Track the "ship" in the video based on its initial coordinates '
                              '"[0.3125, 0.4097, 0.4703, 0.6139]".')
    assert frames.solution.startswith("<answer>[[0.3125, 0.4097, 0.4703, 0.6139], [0.3203,")
    assert frames.data_type == "video" and Path(frames.path).is_dir()
    assert frames.problem_id == "GOT-10k/val/GOT-10k_Val_000001"
    assert samples[1].path.endswith("GOT-10k_Val_000002.mp4")


def test_videochat_r1_gqa_options_answer_and_glue(media):
    samples = importers.videochat_r1_gqa(FIXTURES / "videochat_r1_gqa.json", media).samples
    first, second, third = samples
    assert first.options[0] == "A. share with the girl"
    assert first.solution == "<answer>C</answer><glue>[(12.3, 20.5)]</glue>"
    assert second.solution == "<answer>B</answer><glue>[(3.0, 7.5), (15.1, 19.9)]</glue>"
    assert first.path == str(media / "1025/4010069381.mp4")  # ".mp4" added
    assert second.path == str(media / "1025/3238737531.mp4")  # extension kept, not doubled
    assert (third.problem_id, third.data_source) == ("5523", "NExT-GQA/CH")


def test_imported_videos_load_with_load_split(media, tmp_path):
    """Absolute paths survive the JSONL: load_split decodes them from any folder."""
    samples = importers.charades_sta(FIXTURES / "charades_sta.txt", media).samples
    write_jsonl(tmp_path / "elsewhere" / "eval.jsonl", samples)
    _, clips = load_split(tmp_path / "elsewhere" / "eval.jsonl", fps=2.0, min_frames=4, max_frames=4)
    assert [len(c.frames) for c in clips] == [4, 4, 4, 4]


def test_got_frame_folders_load_as_videos(media, tmp_path):
    """GOT-10k's folders of JPG frames decode like a video, timed at video.FOLDER_FPS."""
    samples = importers.videochat_r1_got(FIXTURES / "videochat_r1_got.json", media).samples
    write_jsonl(tmp_path / "got.jsonl", samples)
    _, clips = load_split(tmp_path / "got.jsonl", fps=2.0, min_frames=4, max_frames=16)
    folder = clips[0]  # 8 frames at 10 fps = 0.8 s: the 4-frame minimum, evenly spaced
    assert folder.indices.tolist() == [0, 2, 5, 7] and folder.frames.shape == (4, 112, 112, 3)
    assert folder.timestamps.tolist() == pytest.approx([0.0, 0.2, 0.5, 0.7])


# ----------------------------------------------------------------------------- bad media
@pytest.mark.parametrize("importer, fixture, n", CASES, ids=IDS)
def test_missing_media_stops_or_is_skipped_and_counted(importer, fixture, n, media_copy):
    first = importer(FIXTURES / fixture, media_copy).samples[0].path
    shutil.rmtree(first) if Path(first).is_dir() else Path(first).unlink()
    with pytest.raises(FileNotFoundError) as err:
        importer(FIXTURES / fixture, media_copy)
    assert first in str(err.value)
    got = importer(FIXTURES / fixture, media_copy, on_bad_media="skip")
    samples_on_it = 2 if fixture in ("charades_sta.txt", "videochat_r1_grounding.json") else 1
    assert len(got.samples) == n - samples_on_it
    assert [path for path, _ in got.skipped] == [first] * samples_on_it
    assert first in got.skipped[0][1]  # the reason names the path too


def test_corrupt_video_raises_decode_error_naming_path(media_copy):
    bad = media_copy / "AO8RW.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    with pytest.raises(video.VideoDecodeError, match="AO8RW.mp4"):
        importers.charades_sta(FIXTURES / "charades_sta.txt", media_copy)
    got = importers.charades_sta(FIXTURES / "charades_sta.txt", media_copy, on_bad_media="skip")
    assert len(got.samples) == 3 and got.skipped[0][0] == str(bad)


def test_corrupt_image_and_frame_raise_decode_error(media_copy):
    png = media_copy / IMAGES[0]
    png.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(video.VideoDecodeError, match="two_col_61042.png"):
        importers.video_r1(FIXTURES / "video_r1.json", media_copy)
    jpg = media_copy / FRAME_DIRS[0] / "00000008.jpg"  # the last frame of the sequence
    jpg.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(video.VideoDecodeError, match="00000008.jpg"):
        importers.videochat_r1_got(FIXTURES / "videochat_r1_got.json", media_copy)


def test_frame_folder_without_jpg_frames_is_missing_media(media_copy):
    folder = media_copy / FRAME_DIRS[0]
    for jpg in folder.glob("*.jpg"):
        jpg.unlink()
    with pytest.raises(FileNotFoundError, match="GOT-10k_Val_000001"):
        importers.videochat_r1_got(FIXTURES / "videochat_r1_got.json", media_copy)


def test_on_bad_media_must_be_stop_or_skip(media):
    with pytest.raises(ValueError, match="on_bad_media"):
        importers.video_r1(FIXTURES / "video_r1.json", media, on_bad_media="ignore")


# ----------------------------------------------------------------------------- bad records
def _edit(fixture: str, index, key: str, value):
    records = fixture_records(fixture)
    records[index][key] = value
    return records


MALFORMED = [  # importer, file name, content, what the message must say
    (importers.video_r1, "v.json", _edit("video_r1.json", 1, "problem_type", "essay"),
     "v.json:[1]: field 'problem_type'"),
    (importers.video_r1, "v.json", _edit("video_r1.json", 2, "solution", "2"),
     "v.json:[2]: field 'solution'"),
    (importers.video_r1, "v.json", _edit("video_r1.json", 0, "solution", "<answer>F</answer>"),
     "v.json:[0]: field 'solution': answer 'F'"),
    (importers.video_r1, "v.json", _edit("video_r1.json", 2, "solution", "<answer>two</answer>"),
     "v.json:[2]: field 'solution'"),
    (importers.video_r1, "v.json", _edit("video_r1.json", 3, "problem_id", None),
     "v.json:[3]: field 'problem_id'"),
    (importers.video_r1, "v.json", _edit("video_r1.json", 1, "process", "no think tags"),
     "v.json:[1]: field 'process'"),
    (importers.video_r1, "v.json", '[{"problem_id": 1,\n "problem": }]', "v.json:2: invalid JSON"),
    (importers.video_r1, "v.json", "[1]", "v.json:[0]: field '<record>': expected a JSON object"),
    (importers.video_r1, "v.json", '"records"', "v.json: expected a JSON list or dict"),
    (importers.video_r1, "v.json", {"problem_id": 1}, "v.json: field 'path': missing"),  # one record
    (importers.charades_sta, "c.txt", "3MSZA 24.3 30.4##a.\nAO8RW 6.9##person sits.\n",
     "c.txt:2: field '<line>'"),
    (importers.charades_sta, "c.txt", "3MSZA 24.3 30.4##a.\nAO8RW 6.9 x##person sits.\n",
     "c.txt:2: field 'start/end': expected numbers"),
    (importers.charades_sta, "c.txt", "3MSZA 30.4 24.3##person turns a light on.\n",
     "c.txt:1: field 'start/end': expected [start, end] with 0 <= start <= end"),
    (importers.videochat_r1_grounding, "g.json",
     {"3MSZA": {"duration": 30.96, "timestamps": [[24.3, 30.4]], "sentences": []}},
     "g.json:[\"3MSZA\"]: field 'sentences'"),
    (importers.videochat_r1_grounding, "g.json",
     {"3MSZA": {"duration": 30.96, "timestamps": [[24.3]], "sentences": ["a."]}},
     "g.json:[\"3MSZA\"]: field 'timestamps[0]'"),
    (importers.videochat_r1_got, "t.json", _edit("videochat_r1_got.json", 2, "gt", [[0.5, 0.5, 0.6]]),
     "t.json:[2]: field 'gt[0]'"),
    (importers.videochat_r1_got, "t.json", _edit("videochat_r1_got.json", 1, "gt", [[12, 40, 96, 120]]),
     "t.json:[1]: field 'gt[0]': expected a normalised box"),
    (importers.videochat_r1_got, "t.json", _edit("videochat_r1_got.json", 0, "object", ""),
     "t.json:[0]: field 'object': empty"),
    (importers.videochat_r1_gqa, "q.json", _edit("videochat_r1_gqa.json", 0, "answer", "(F)"),
     "q.json:[0]: field 'answer'"),
    (importers.videochat_r1_gqa, "q.json", _edit("videochat_r1_gqa.json", 1, "options", ["A. crawls"]),
     "q.json:[1]: field 'options[0]'"),
    (importers.videochat_r1_gqa, "q.json", _edit("videochat_r1_gqa.json", 2, "glue", [[34.75, 30.25]]),
     "q.json:[2]: field 'glue[0]'"),
    (importers.videochat_r1_gqa, "q.json", _edit("videochat_r1_gqa.json", 2, "type", 3),
     "q.json:[2]: field 'type'"),
]


DUPLICATES = [  # importer, file name, content, what the message must say
    (importers.video_r1, "v.json", _edit("video_r1.json", 3, "problem_id", 2),
     "v.json:[3]: field 'problem_id': duplicate '2', first at"),
    (importers.videochat_r1_gqa, "q.json", _edit("videochat_r1_gqa.json", 2, "id", "4010069381_6"),
     "q.json:[2]: field 'id': duplicate '4010069381_6'"),
    (importers.videochat_r1_got, "t.json",
     _edit("videochat_r1_got.json", 2, "path", "GOT-10k/val/GOT-10k_Val_000002.mp4"),
     "t.json:[2]: field 'path': duplicate"),
    (importers.charades_sta, "c.txt",
     "AO8RW 0.0 6.9##a person sits.\n3MSZA 1 2##x.\nAO8RW 0 6.90##a person sits.\n",
     "c.txt:3: field 'sentence': duplicate of line 1"),
    (importers.videochat_r1_grounding, "g.json",
     '{"AO8RW": {"timestamps": [[0, 6.9]], "sentences": ["a."]},\n'
     ' "AO8RW": {"timestamps": [[1, 2]], "sentences": ["b."]}}',
     "g.json: field 'AO8RW': duplicate key"),
]


@pytest.mark.parametrize("importer, name, content, message", MALFORMED + DUPLICATES)
def test_bad_record_names_file_place_and_field(importer, name, content, message, media, tmp_path):
    """A malformed record or a duplicate id: the message starts with the file and says where."""
    path = write(tmp_path, name, content)
    with pytest.raises(RecordError) as err:
        importer(path, media)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_import_sources_concatenates_and_names_bad_entries(media):
    got = importers.import_sources([
        {"format": "charades_sta", "path": str(FIXTURES / "charades_sta.txt"), "media_root": str(media)},
        {"format": "videochat_r1_gqa", "path": str(FIXTURES / "videochat_r1_gqa.json"),
         "media_root": str(media)}])
    assert {s.problem_type for s in got.samples} == {"temporal grounding", "grounded QA"}
    with pytest.raises(ValueError, match="unknown format 'charades'; known: video_r1"):
        importers.import_sources([{"format": "charades", "path": "x", "media_root": "y"}])
    with pytest.raises(ValueError, match="entry 0: expected keys format, path, media_root"):
        importers.import_sources([{"format": "charades_sta", "path": "x"}])


# ----------------------------------------------------------------------------- real files
# Excerpts of real third-party files (conftest.REAL_DATA, docs/test-data.md); each media path they
# name is made to point at a real clip of its media/ (or at a folder of its JPEG).
from conftest import REAL_DATA as REAL  # noqa: E402
CLIPS = ["videor1_video1.mp4", "llamafactory_2.avi", "decord_flipping_a_pancake.mkv"]
JPEG = REAL / "media" / "image_21088.png"  # a JPEG under a .png name, as in Video-R1's data
REAL_FILES = {  # file -> format
    "video_r1/eval_mvbench_first30.json": "video_r1", "video_r1/eval_videomme_first30.json": "video_r1",
    "video_r1/eval_vsibench_first30.json": "video_r1", "video_r1/eval_mmvu_first30.json": "video_r1",
    "video_r1/train_260k_first3.json": "video_r1", "video_r1/cot165k_one_record.json": "video_r1",
    "charades_sta/charades_sta_test_first200.txt": "charades_sta",
    "videochat_r1/charades_test_first100.json": "videochat_r1_grounding",
    "videochat_r1/got_val_first30.json": "videochat_r1_got",
    "videochat_r1/nextgqa_val_first50.json": "videochat_r1_gqa",
}
INVERTED = REAL / "videochat_r1/charades_train_inverted_moments.json"


def real_media(fmt: str, path: Path, root: Path) -> Path:
    """Make every media path `path` names under `root` a real clip: what an import with
    `skip` reports missing becomes a link to one of CLIPS in turn, to the JPEG for an image
    name, or a folder of four JPEG frames for a name without a suffix (GOT-10k, MVBench's TVQA)."""
    root.mkdir(parents=True, exist_ok=True)
    got = importers.FORMATS[fmt](path, root, on_bad_media="skip", on_bad_record="skip")
    for k, (missing, _) in enumerate(got.skipped):
        m = Path(missing)
        if m.exists():  # a video several records share
            continue
        if not m.suffix:
            m.mkdir(parents=True)
            for i in range(1, 5):
                (m / f"{i:08d}.jpg").symlink_to(JPEG)
        else:
            m.parent.mkdir(parents=True, exist_ok=True)
            m.symlink_to(JPEG if m.suffix in (".png", ".jpg", ".jpeg") else REAL / "media" / CLIPS[k % len(CLIPS)])
    return root


def n_records(fmt: str, path: Path) -> int:
    if fmt == "charades_sta":
        return sum(bool(line.strip()) for line in path.read_text().splitlines())
    data = json.loads(path.read_text())
    if fmt == "videochat_r1_grounding":
        return sum(len(r["sentences"]) for r in data.values())
    return len(data) if isinstance(data, list) else 1


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_every_real_file_imports_and_every_sample_scores_1_on_its_own_solution(name, tmp_path):
    fmt, path = REAL_FILES[name], REAL / name
    got = importers.FORMATS[fmt](path, real_media(fmt, path, tmp_path / "media"))
    assert len(got.samples) == n_records(fmt, path) and got.skipped == [] and got.bad_records == []
    for s in got.samples:
        completion = "<think>x</think>" + s.solution
        assert accuracy_reward(completion, s) == 1.0, s
        assert format_reward(completion, s) == 1.0
        if s.problem_type == "grounded QA":
            assert glue_iou_reward(completion, s) == 1.0
        if s.problem_type == "multiple choice":
            assert all(importers._LETTERED.fullmatch(o) for o in s.options)
    write_jsonl(tmp_path / "out.jsonl", got.samples)
    assert read_jsonl(tmp_path / "out.jsonl") == got.samples


def _real_video_r1(name: str, tmp_path: Path) -> importers.Imported:
    path = REAL / "video_r1" / name
    return importers.video_r1(path, real_media("video_r1", path, tmp_path / "media"))


@pytest.mark.real_data
def test_real_video_r1_eval_files_read_what_the_format_allows(tmp_path):
    mmvu = _real_video_r1("eval_mmvu_first30.json", tmp_path)  # process "" everywhere
    assert {s.process for s in mmvu.samples} == {""}
    assert mmvu.samples[0].data_source == "https://www.youtube.com/watch?v=6HuyUxJBY3E"  # kept as given
    mvbench = _real_video_r1("eval_mvbench_first30.json", tmp_path)  # no data_source, no process
    assert {s.data_source for s in mvbench.samples} == {"MVBench/ssv2_video"}  # the path's
    assert mvbench.labels["1"] == {"benchmark": "MVBench", "task": "ssv2_video"}
    mme = _real_video_r1("eval_videomme_first30.json", tmp_path)
    assert mme.labels["1"] == {"benchmark": "VideoMME", "task": "Counting Problem", "duration": "short"}
    assert mme.samples[0].data_source == "VideoMME"
    vsi = _real_video_r1("eval_vsibench_first30.json", tmp_path)  # options null, data_source ""
    assert vsi.samples[0].options == [] and vsi.samples[0].problem_type == "regression"
    assert vsi.samples[0].data_source == "VSIBench/arkitscenes"
    assert vsi.labels["0"]["task"] == "object_counting"


@pytest.mark.real_data
def test_real_video_r1_training_records(tmp_path):
    train = {s.problem_id: s for s in _real_video_r1("train_260k_first3.json", tmp_path).samples}
    assert train["1"].options[0] == "A. It is used to focus the laser for the LDV"  # "A) ..." read
    assert train["1"].data_source == "Knowledge/ArxivQA"  # "" in the file
    assert train["6"].data_type == "image" and train["6"].options == []
    assert accuracy_reward("<answer>wetsuit</answer>", train["6"]) == 1.0  # one word, ROUGE-2 is 0
    cot = _real_video_r1("cot165k_one_record.json", tmp_path).samples  # a single object
    assert len(cot) == 1 and cot[0].process.startswith("<think>Let me think")


@pytest.mark.real_data
def test_inverted_real_moments_stop_naming_file_record_and_field_or_are_skipped(tmp_path):
    media = real_media("videochat_r1_grounding", INVERTED, tmp_path / "media")
    with pytest.raises(RecordError) as err:
        importers.videochat_r1_grounding(INVERTED, media)
    assert str(err.value).startswith(f"{INVERTED}:[\"LEOL6\"]: field 'timestamps[0]': expected [start, end]")
    got = importers.videochat_r1_grounding(INVERTED, media, on_bad_record="skip")
    assert [s.problem_id for s in got.samples] == ["IOL8Q_1"]  # the one moment with start <= end
    assert len(got.bad_records) == 4 and all(r.startswith(str(INVERTED)) for r in got.bad_records)
    assert "[\"AKKWU\"]: field 'timestamps[1]'" in got.bad_records[-1]
    both = importers.import_sources([{"format": "videochat_r1_grounding", "path": str(INVERTED),
                                      "media_root": str(media)}], on_bad_record="skip")
    assert both.bad_records == got.bad_records


VIDEO_R1_EDGES = [  # what the schema allows beyond the real excerpts
    {"problem_id": "e1", "problem": "Which?", "data_type": "video", "problem_type": "multiple choice",
     "options": ["A. ", "B. yes"], "solution": "<answer>A</answer>", "path": "./Evaluation/X/v.mp4"},
    {"problem_id": "e2", "problem": "How many?", "data_type": "frame", "problem_type": "numerical",
     "options": [], "process": None, "solution": "<answer>3</answer>",
     "path": "./Evaluation/MVBench/tvqa/frames_fps3_hq/clip_1", "data_source": ""},
]


@pytest.mark.real_data  # its media are links to the real clips (real_media)
def test_video_r1_empty_option_text_and_frame_folders(tmp_path):
    path = write(tmp_path, "edges.json", VIDEO_R1_EDGES)
    got = importers.video_r1(path, real_media("video_r1", path, tmp_path / "media"))
    mc, frames = got.samples
    assert mc.options == ["A.", "B. yes"] and mc.data_source == "X"
    assert frames.data_type == "video" and Path(frames.path).is_dir() and frames.data_source == "MVBench/tvqa"
    assert got.labels["e2"] == {"benchmark": "MVBench", "task": "tvqa"}


@pytest.mark.real_data  # its media are links to the real clips (real_media)
@pytest.mark.parametrize("index, key, value, message", [
    (0, "solution", "<answer>C</answer>", "field 'solution': answer 'C' is not an option letter"),
    (0, "options", None, "field 'options': multiple choice needs options"),
    (1, "problem_id", "e1", "field 'problem_id': duplicate 'e1'"),
    (1, "path", "", "field 'path': empty"),
])
def test_video_r1_strictness_that_matters_stops_or_is_listed(index, key, value, message, tmp_path):
    records = json.loads(json.dumps(VIDEO_R1_EDGES))
    media = real_media("video_r1", write(tmp_path, "ok.json", records), tmp_path / "media")
    records[index][key] = value
    path = write(tmp_path, "bad.json", records)
    with pytest.raises(RecordError) as err:
        importers.video_r1(path, media)
    assert str(err.value).startswith(f"{path}:[{index}]: {message}")
    got = importers.video_r1(path, media, on_bad_record="skip")
    assert len(got.samples) == 1 and got.bad_records == [str(err.value)]


def test_on_bad_record_must_be_stop_or_skip(media):
    with pytest.raises(ValueError, match="on_bad_record"):
        importers.video_r1(FIXTURES / "video_r1.json", media, on_bad_record="ignore")


@pytest.mark.real_data
def test_real_corrupt_video_stops_the_import_naming_its_path_or_is_counted(tmp_path):
    media = tmp_path / "media"
    (media / "Charades").mkdir(parents=True)
    (media / "Charades" / "3MSZA.mp4").symlink_to(REAL / "media" / "decord_corrupted.mp4")
    txt = write(tmp_path, "c.txt", "3MSZA 24.3 30.4##person turn a light on.\n")
    with pytest.raises(video.VideoDecodeError, match="3MSZA.mp4"):
        importers.charades_sta(txt, media / "Charades")
    got = importers.charades_sta(txt, media / "Charades", on_bad_media="skip")
    assert got.samples == [] and got.skipped[0][0] == str(media / "Charades" / "3MSZA.mp4")
