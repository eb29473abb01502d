"""vrlib.video: MP4 written by PyAV decodes with decord at the right times and colours."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from vrlib import video
from vrlib.video import Clip, VideoDecodeError, num_frames, sample_frames, write_mp4

RED, GREY = (230, 30, 30), (24, 24, 24)


def red_square_video(duration=8, fps=4, start=2, end=5, size=64):
    """Grey frames with a red square in the middle on [start, end) seconds."""
    frames = np.full((duration * fps, size, size, 3), GREY, np.uint8)  # (T, H, W, 3)
    t = np.arange(duration * fps) / fps
    frames[(start <= t) & (t < end), 16:48, 16:48] = RED
    return frames


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "red.mp4"
    write_mp4(path, red_square_video(), fps=4)
    return path


def test_sample_8s_at_2fps_gives_16_frames_at_the_right_times(mp4):
    clip = sample_frames(mp4)
    assert clip.frames.shape == (16, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.native_fps == 4.0 and clip.duration == 8.0 and clip.fps == 2.0
    np.testing.assert_array_equal(clip.indices, np.linspace(0, 31, 16).round().astype(int))
    np.testing.assert_allclose(clip.timestamps, clip.indices / 4.0)
    assert clip.path == str(mp4)


def test_colours_survive_encoding_only_while_visible(mp4):
    clip = sample_frames(mp4)
    centre = clip.frames[:, 24:40, 24:40].reshape(len(clip.frames), -1, 3).mean(1)  # (T, 3)
    visible = (2 <= clip.timestamps) & (clip.timestamps < 5)
    assert visible.sum() == 6  # 2.0, 2.5, 3.0, 3.5, 4.25, 4.75
    np.testing.assert_allclose(centre[visible], np.tile(RED, (6, 1)), atol=12)
    np.testing.assert_allclose(centre[~visible], np.tile(GREY, (10, 1)), atol=12)


def test_all_frames_decode(tmp_path):
    path = tmp_path / "long.mp4"
    write_mp4(path, red_square_video(duration=8, fps=4), fps=4)
    clip = sample_frames(path, fps=4.0, max_frames=64)
    assert len(clip.frames) == 32 and clip.fps == 4.0


def test_min_frames_clamp_on_a_real_file(tmp_path):
    path = tmp_path / "short.mp4"
    write_mp4(path, red_square_video(duration=1, fps=6, start=0, end=1), fps=6)
    clip = sample_frames(path)  # 1 s at 2 fps = 2 frames, raised to min_frames = 4
    assert len(clip.frames) == 4 and clip.fps == 4.0


@pytest.mark.parametrize(
    "duration, total, kwargs, expected",
    [
        (8.0, 32, {}, 16),  # 2 fps
        (30.0, 120, {}, 16),  # max_frames
        (1.0, 4, {}, 4),  # min_frames
        (1.5, 6, {}, 4),  # 3 -> min_frames
        (3.5, 14, {}, 6),  # 7 -> even
        (7.9, 79, {}, 16),  # 15.8 rounds to 16 (qwen-vl-utils would floor to 14)
        (3.0, 3, {}, 2),  # no more frames than the file has, still even
        (10.0, 100, {"fps": 1.0, "min_frames": 2, "max_frames": 8}, 8),
    ],
)
def test_num_frames(duration, total, kwargs, expected):
    kw = {"fps": 2.0, "min_frames": 4, "max_frames": 16, **kwargs}
    assert num_frames(duration, total, **kw) == expected


def test_num_frames_is_always_even():
    for total in range(2, 200):
        for fps in (0.5, 1.0, 2.0, 3.0):
            n = num_frames(total / 7.0, total, fps=fps, min_frames=4, max_frames=16)
            assert n % 2 == 0 and 2 <= n <= min(16, total)


def test_missing_file_names_its_path(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        sample_frames(path)


def test_random_bytes_raise_decode_error_naming_the_path(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match="noise.mp4") as info:
        sample_frames(path)
    assert isinstance(info.value, ValueError)
    assert "PyAV" in str(info.value)  # the decoder's reason, not just "error reading"


def test_truncated_file_raises_decode_error_naming_the_path(mp4, tmp_path):
    path = tmp_path / "cut.mp4"
    data = mp4.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        sample_frames(path)


def test_same_frames_decode_to_the_same_frames_every_time(tmp_path):
    """The study reproduces: world videos (text, shapes) written again and again decode to the
    same frames. At crf 18, a few of 16 encodes of one world video decoded differently (by up
    to 5 levels) on an AVX512 CPU; lossless, every stream x264 picks decodes alike."""
    from vrlib import tasks

    items = [tasks.FAMILIES[f](7, i, tasks.WorldSpec()) for i, f in enumerate(["ocr", "order", "grounding"])]
    for k, frames in enumerate([red_square_video(), *(item.frames for item in items)]):
        decoded = set()
        for _ in range(8):
            write_mp4(tmp_path / "a.mp4", frames, fps=4)
            clip = sample_frames(tmp_path / "a.mp4", fps=4.0, min_frames=2, max_frames=len(frames))
            decoded.add(clip.frames.tobytes())
        assert len(decoded) == 1, k


def test_write_rejects_odd_sizes_and_wrong_dtype(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_mp4(tmp_path / "odd.mp4", np.zeros((4, 63, 64, 3), np.uint8), fps=4)
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "f.mp4", np.zeros((4, 64, 64, 3), np.float32), fps=4)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    import av

    path = tmp_path / "v.mp4"
    write_mp4(path, red_square_video(), fps=4)
    before = path.read_bytes()
    calls = {"n": 0}
    real = av.VideoFrame.from_ndarray

    def fail_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", fail_on_third)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_mp4(path, red_square_video(start=0), fps=4)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["v.mp4"]


def test_av_and_decord_are_imported_on_use_and_av_first():
    """Not on import (the GPU benchmark machine has neither); decord after av, as the module's
    top-level imports were (decord imported first can break PyAV, dmlc/decord#128)."""
    code = ("import sys; from vrlib import video; print('av' in sys.modules, 'decord' in sys.modules)\n"
            "video.import_decord(); names = list(sys.modules); print(names.index('av') < names.index('decord'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "True"]


def test_shuffle_permutes_frames_with_their_metadata(mp4):
    from vrlib.rft import shuffle_clip  # T-GRPO's one shuffle

    clip = sample_frames(mp4)
    a, b = shuffle_clip(clip, np.random.default_rng(0)), shuffle_clip(clip, np.random.default_rng(0))
    np.testing.assert_array_equal(a.frames, b.frames)  # one seed, one order
    assert sorted(a.indices.tolist()) == clip.indices.tolist()
    assert a.indices.tolist() != clip.indices.tolist()
    for k, idx in enumerate(a.indices):
        j = clip.indices.tolist().index(idx)
        np.testing.assert_array_equal(a.frames[k], clip.frames[j])
        assert a.timestamps[k] == clip.timestamps[j]
    assert a.fps == clip.fps and a.duration == clip.duration
    assert isinstance(a, Clip) and a.frames is not clip.frames


def test_data_benchmark_runs_and_reports_every_family():
    """The speed script's numbers go to docs/results.md; this only checks it runs."""
    from vrlib.speed import bench_data
    from vrlib.tasks import FAMILIES

    report = bench_data(n=1, repeat=1)
    for name in FAMILIES:
        assert f"| generate `{name}` (items/s) |" in report
    assert "| our decode time / raw decord time (bar: <= 1.5) |" in report


# ----------------------------------------------------------------------------- real media
# Real third-party files (conftest.REAL_DATA, docs/test-data.md), read where they lie.
from conftest import REAL_DATA  # noqa: E402

REAL_MEDIA = REAL_DATA / "media"


@pytest.mark.real_data
@pytest.mark.parametrize("name, shape, native_fps", [
    ("videor1_video1.mp4", (360, 640), 22.29), ("llamafactory_2.avi", (240, 320), 29.92),
    ("decord_flipping_a_pancake.mkv", (240, 426), 30.0)])
def test_real_mp4_avi_mkv_sample_at_2fps(name, shape, native_fps):
    clip = sample_frames(REAL_MEDIA / name)  # 9..22 s at 2 fps: the 16-frame cap
    assert clip.frames.shape == (16, *shape, 3) and clip.native_fps == pytest.approx(native_fps, abs=0.01)
    assert clip.indices[0] == 0 and np.all(np.diff(clip.indices) > 0)
    assert clip.fps == pytest.approx(16 / clip.duration)


@pytest.mark.real_data
def test_a_jpeg_saved_as_png_reads_as_an_image():
    clip = video.read_image(REAL_MEDIA / "image_21088.png")
    assert clip.frames.shape == (1, 155, 500, 3) and clip.fps == 0.0


@pytest.mark.real_data
def test_a_video_corrupt_part_way_raises_naming_its_path():
    """decord's own corrupt test file: the first frames decode, the last do not; the probe the
    importers run (first and last frame) fails before any training step."""
    path = REAL_MEDIA / "decord_corrupted.mp4"
    with pytest.raises(VideoDecodeError, match="decord_corrupted.mp4"):
        sample_frames(path, min_frames=2, max_frames=2)
    from vrlib import importers

    with pytest.raises(VideoDecodeError, match="decord_corrupted.mp4"):
        importers.probe(path, "video")


@pytest.mark.real_data
def test_portrait_and_odd_sized_real_frames_stay_under_the_pixel_budget(tiny_dir):
    from dataclasses import replace

    from vrlib.data import Sample
    from vrlib.model import load_processor
    from vrlib.prompts import encode_prompts

    processor = load_processor(tiny_dir)
    clip = sample_frames(REAL_MEDIA / "videor1_video1.mp4", max_frames=4)
    portrait = replace(clip, frames=np.ascontiguousarray(clip.frames.transpose(0, 2, 1, 3)[:, :633, :357]))
    image = video.read_image(REAL_MEDIA / "image_21088.png")  # 155 x 500
    q = dict(problem="What happens?", problem_type="free-form", options=[], solution="<answer>x</answer>",
             path="", data_source="real", duration=0.0, fps=0.0)
    samples = [Sample(problem_id="v", data_type="video", **q), Sample(problem_id="i", data_type="image", **q)]
    for max_pixels in (56 * 56, 128 * 28 * 28):
        batch = encode_prompts(processor, samples, [portrait, image], max_pixels=max_pixels)
        for t, h, w in [*batch["video_grid_thw"].tolist(), *batch["image_grid_thw"].tolist()]:
            assert h * 14 * w * 14 <= max_pixels  # 14 px patches
        (t, h, w), = batch["video_grid_thw"].tolist()
        assert h > w  # still portrait
