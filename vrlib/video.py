"""Video in and out: PyAV writes the synthetic MP4s, decord decodes and samples frames.

Sampling follows qwen-vl-utils' `smart_nframes` as vendored by Video-R1 (2 fps, 4..16
frames, an even count because Qwen2.5-VL's temporal patch is 2), and reports the real
sampled fps so the processor gets the same temporal spacing in training and evaluation
(Video-R1 drops it in training; see docs/design.md, "Video in").

av and decord are imported where they are used: the GPU benchmark machine has neither.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

# Qwen2.5-VL merges 2 frames into one temporal patch (qwen-vl-utils FRAME_FACTOR = 2).
FRAME_FACTOR = 2


class VideoDecodeError(ValueError):
    """A video file exists but cannot be decoded; the message names the path and the reason."""


@dataclass
class Clip:
    """Frames sampled from one video, with what the processor needs to place them in time."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float  # real sampled rate, T / duration (what the processor must be told)
    indices: np.ndarray  # (T,) int, frame numbers in the file
    timestamps: np.ndarray  # (T,) float, seconds of each sampled frame
    duration: float  # seconds, total frames / native fps
    native_fps: float  # the file's own frame rate
    path: str


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temp file next to `path` to write into, moved onto `path` only if the block ends
    cleanly and removed otherwise: a crash never leaves a half-written file that a later stage
    would trust."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int) -> None:
    """Encode frames as H.264 (yuv420p); the file appears whole or not at all.

    Written through `atomic_path`, so a crash mid-encode leaves no half-written video.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be (T>0, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even height and width, got {height}x{width}")
    import av

    with atomic_path(path) as tmp:
        with av.open(tmp, "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=int(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # Lossless (qp 0) H.264, one thread. x264 at crf 18 (its earlier setting) did not
            # give the same stream for the same frames within one process on an AVX512 CPU: a
            # few of 16 encodes differed by up to 5 levels after decoding, which changed the
            # whole study downstream. Lossless, any stream x264 picks decodes to the same
            # yuv420p frames, and the colours survive exactly (the files are no larger here:
            # flat synthetic scenes). The conversion to yuv420p is explicit, on one thread.
            stream.options = {"qp": "0", "threads": "1"}
            for frame in frames:
                yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p", threads=1)
                container.mux(stream.encode(yuv))
            container.mux(stream.encode())  # flush the encoder


def write_image(path: str | os.PathLike, frame: np.ndarray) -> None:
    """Save one (H, W, 3) uint8 frame as PNG (lossless), whole or not at all."""
    from PIL import Image

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"an image must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(frame).save(tmp, format="PNG")


def read_image(path: str | os.PathLike) -> Clip:
    """An image as a one-frame Clip (fps 0): the prompt then carries it as an image, not a video."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "image not found", str(path))
    try:
        with Image.open(path) as im:
            frame = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:  # what PIL raises
        raise VideoDecodeError(f"cannot decode image {path}: {err}") from err
    return Clip(frames=frame[None], fps=0.0, indices=np.zeros(1, int), timestamps=np.zeros(1),
                duration=0.0, native_fps=0.0, path=str(path))


def import_decord():
    """decord, imported after av: decord loads its own FFmpeg into the global symbol table, and
    imported first it can break PyAV (dmlc/decord#128)."""
    import av  # noqa: F401
    import decord

    return decord


def num_frames(duration: float, total: int, *, fps: float, min_frames: int, max_frames: int) -> int:
    """How many frames to sample: duration * fps within [min_frames, max_frames] and <= total, even.

    Departs from qwen-vl-utils, which floors duration * fps; we round to nearest first
    (7.9 s at 2 fps gives 16 frames, not 14).
    """
    n = min(max(math.floor(duration * fps + 0.5), min_frames), max_frames, total)
    return n - n % FRAME_FACTOR


def sample_frames(
    path: str | os.PathLike, *, fps: float = 2.0, min_frames: int = 4, max_frames: int = 16,
    start: float = 0.0, end: float | None = None,
) -> Clip:
    """Decode `num_frames` frames spread evenly over the video (Video-R1: 2 fps, 4..16 frames),
    or over the segment [start, end] seconds of it (a clue segment, VideoChat-R1's TCR).

    An 8 s file of 32 frames at 4 fps gives 16 frames, indices 0, 2, 4, ..., 14, 17, ...,
    29, 31 (timestamps 0.0, 0.5, ..., 3.5, 4.25, ..., 7.75) and `fps` 2.0. With start 2.0
    and end 4.0 at 2 fps: 4 frames, indices 8, 11, 13, 16 (timestamps stay in the file's time).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "video not found", str(path))
    decord = import_decord()
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        total, native_fps = len(reader), float(reader.get_avg_fps())
    except (RuntimeError, decord.DECORDError) as err:
        raise VideoDecodeError(f"cannot decode video {path}: {_reason(path, err)}") from err
    if total < FRAME_FACTOR or not native_fps > 0:
        raise VideoDecodeError(
            f"cannot decode video {path}: {total} frames at {native_fps} fps, "
            f"need at least {FRAME_FACTOR} frames and a positive fps"
        )
    first, last = 0, total - 1
    if start > 0 or end is not None:  # a segment: whole frames inside it, at least FRAME_FACTOR
        first = min(max(0, math.ceil(start * native_fps)), total - FRAME_FACTOR)
        stop = total - 1 if end is None else math.floor(end * native_fps)
        last = min(max(stop, first + FRAME_FACTOR - 1), total - 1)

    def read(indices: np.ndarray) -> np.ndarray:
        try:
            return reader.get_batch(indices.tolist()).asnumpy()  # (n, H, W, 3) uint8
        except (RuntimeError, decord.DECORDError) as err:
            raise VideoDecodeError(f"cannot decode video {path}: {_reason(path, err)}") from err

    return _spread(read, first, last, native_fps, path, fps=fps, min_frames=min_frames, max_frames=max_frames)


def _spread(read, first: int, last: int, native_fps: float, path: Path, *, fps: float, min_frames: int,
            max_frames: int) -> Clip:
    """The frames spread evenly over source frames first..last (inclusive), read by
    `read(indices)`, timed by the source's native_fps."""
    duration = (last - first + 1) / native_fps
    n = num_frames(duration, last - first + 1, fps=fps, min_frames=min_frames, max_frames=max_frames)
    indices = np.linspace(first, last, n).round().astype(int)  # (n,)
    return Clip(
        frames=read(indices),
        fps=n / duration,  # as qwen-vl-utils reports sample_fps
        indices=indices,
        timestamps=indices / native_fps,
        duration=duration,
        native_fps=native_fps,
        path=str(path),
    )


FOLDER_FPS = 10.0
"""The clock of a folder of frames, which has none: GOT-10k is recorded at 10 fps."""


def frame_files(path: str | os.PathLike) -> list[Path]:
    """The frames of a folder of frames: its `*.jpg` files in name order (VideoChat-R1
    grpo_tasks.py load_json_dataset_tracking; MVBench's TVQA frames too); [] for no folder."""
    path = Path(path)
    return sorted(p for p in path.iterdir() if p.suffix == ".jpg") if path.is_dir() else []


def sample_frame_folder(path: str | os.PathLike, *, fps: float = 2.0, min_frames: int = 4,
                        max_frames: int = 16) -> Clip:
    """`sample_frames` for a folder of frames (`frame_files`: GOT-10k as VideoChat-R1 feeds
    it), timed at FOLDER_FPS."""
    path = Path(path)
    files = frame_files(path)
    if len(files) < FRAME_FACTOR:
        raise FileNotFoundError(2, f"need at least {FRAME_FACTOR} .jpg frames in folder", str(path))
    return _spread(lambda indices: np.stack([read_image(files[i]).frames[0] for i in indices]),  # (n, H, W, 3)
                   0, len(files) - 1, FOLDER_FPS, path, fps=fps, min_frames=min_frames, max_frames=max_frames)


def _reason(path: Path, err: Exception) -> str:
    """decord's exception says only "Error reading <path>" (the cause goes to stderr): ask PyAV."""
    import av

    try:
        with av.open(str(path)) as container:
            next(container.decode(video=0))
    except Exception as probe:  # noqa: BLE001 - diagnostics only, the decord error is raised
        return f"{err}; PyAV: {probe}"
    return str(err)


def shuffle_clip(clip: Clip, rng: np.random.Generator) -> Clip:
    """The same frames in a random order other than the original (T-GRPO). Frames are shuffled
    before the processor, as in Video-R1, so temporal patches fuse random pairs of frames."""
    n = len(clip.frames)
    order = np.arange(n)
    while n > 1 and np.array_equal(order, np.arange(n)):
        order = rng.permutation(n)
    return replace(clip, frames=clip.frames[order], indices=clip.indices[order],
                   timestamps=clip.timestamps[order])
