"""Shared fixtures: a real synthetic split on disk and a tiny Qwen2.5-VL built offline.

Run everything CI runs: `make test` (or `.venv/bin/pytest`); only the fast tiers:
`.venv/bin/pytest -m "not slow"`. Tests marked `real_data` read excerpts of the papers' own files
(REAL_DATA): skipped, with the reason, where the folder is missing; an error under `CI=true`.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)

REAL_DATA = Path(os.environ.get("VRLIB_REAL_DATA") or Path(__file__).resolve().parents[2] / "shared" / "real-data")
"""Excerpts of public third-party files (docs/test-data.md: the layout, and where each comes from);
this team and CI keep them beside the clone in ../shared/real-data, a user points VRLIB_REAL_DATA
at a folder laid out the same."""
REAL_LAYOUT = ("video_r1", "charades_sta", "videochat_r1", "media")


def pytest_runtest_setup(item):
    """A `real_data` test without the excerpts: skipped with what is missing and how to provide it,
    or, under CI=true, an error (CI must run them)."""
    if item.get_closest_marker("real_data") is None:
        return
    missing = [f"{name}/" for name in REAL_LAYOUT if not (REAL_DATA / name).is_dir()]
    if missing:
        reason = (f"needs the real-data excerpts: {REAL_DATA} has no {', '.join(missing)}; set VRLIB_REAL_DATA "
                  f"to a folder laid out as docs/test-data.md says (each file's public source is listed there)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def world_split(tmp_path_factory):
    """One item of every task family (real MP4s, one PNG), written and read back through the
    JSONL contract; item 0 is temporal grounding."""
    from vrlib.data import build_split, load_split, write_jsonl
    from vrlib.tasks import FAMILIES, WorldSpec

    root = tmp_path_factory.mktemp("data")
    families = {f: 1 for f in FAMILIES if f != "inventory"}
    write_jsonl(root / "eval.jsonl", build_split(root, "eval", 0, len(families), families=families,
                                                 spec=WorldSpec(), kim=True))
    samples, clips = load_split(root / "eval.jsonl", fps=2.0, min_frames=4, max_frames=16)
    return root, samples, clips


@pytest.fixture(scope="session")
def world_in_memory():
    """world_split's items made in memory, no file written or decoded (the GPU machine has
    neither av nor decord): (samples with no media path, clips of every second frame)."""
    import numpy as np

    from vrlib.data import split_seed, world_record
    from vrlib.tasks import FAMILIES, WorldSpec, mixture
    from vrlib.video import FRAME_FACTOR, Clip

    families, spec = {f: 1 for f in FAMILIES if f != "inventory"}, WorldSpec()
    plan, seed = mixture(families, len(families)), split_seed(0, "eval")
    samples, clips = [], []
    for i, family in enumerate(plan):
        item = FAMILIES[family](seed, i, spec)
        video = item.data_type == "video"
        step = 2 if video else 1
        index = np.arange(0, len(item.frames), step)
        index = index[:len(index) - len(index) % FRAME_FACTOR] if video else index
        samples.append(world_record(item, f"eval_{i:05d}", family, spec))
        duration = samples[-1].duration
        clips.append(Clip(frames=item.frames[index], fps=len(index) / duration if video else 0.0, indices=index,
                          timestamps=index / spec.fps if video else np.zeros(1), duration=duration,
                          native_fps=samples[-1].fps, path=""))
    return samples, clips


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, world_in_memory):
    """A random-weight tiny Qwen2.5-VL checkpoint directory (model + processor)."""
    from vrlib.model import TinyShape, build_tiny
    from vrlib.prompts import user_text

    samples, _ = world_in_memory
    corpus = [user_text(s) for s in samples] + [s.process + s.solution for s in samples]
    out = tmp_path_factory.mktemp("models") / "base"
    build_tiny(out, corpus * 4, max_pixels=56 * 56, seed=0, shape=TinyShape(vocab_size=400))
    return out


# ----------------------------------------------------------------------------- importer fixtures
# The media each fixture names, relative to the media root.
VIDEOS = [
    "LLaVA-Video-178K/liwei_youtube_videos/videos/youtube_video_2024/ytb_7nRmsEw7nsE.mp4",
    "NeXT-QA/NExTVideo/1025/3238737531.mp4",
    "CLEVRER/video_validation/video_10000-11000/video_10023.mp4",
    "Spatial/SpaceLLaVA/scene_00412.mp4",
    "3MSZA.mp4", "AO8RW.mp4", "Y6R7T.mp4",  # Charades-STA, both formats
    "GOT-10k/val/GOT-10k_Val_000002.mp4", "GOT-10k/val/GOT-10k_Val_000003.mp4",
    "1025/4010069381.mp4", "1025/3238737531.mp4", "0071/2435100235.mp4",  # NExT-GQA
]
IMAGES = ["Chart/chartqa/train/png/two_col_61042.png"]
FRAME_DIRS = ["GOT-10k/val/GOT-10k_Val_000001"]


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """The media the files in tests/fixtures/importers/ name: tiny real MP4s (2 s at 4 fps), a
    PNG and a folder of JPG frames."""
    from PIL import Image

    from vrlib import video, world

    root = tmp_path_factory.mktemp("media")
    for i, name in enumerate(VIDEOS):
        video.write_mp4(root / name, world.render(world.make_scene(0, i, duration=2)), 4)
    frames = world.render(world.make_scene(1, 0, duration=2))  # (8, 112, 112, 3)
    for name in IMAGES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frames[0]).save(root / name)
    for name in FRAME_DIRS:  # GOT-10k's layout: 00000001.jpg, 00000002.jpg, ...
        (root / name).mkdir(parents=True)
        for k, frame in enumerate(frames, start=1):
            Image.fromarray(frame).save(root / name / f"{k:08d}.jpg")
    return root
