"""Benchmarks (scripts, not timed tests): `python -m vrlib.bench data [--n 20] [--repeat 3]`.

`data` measures how fast the world generates items (frames rendered and MP4 written, per
family) and how fast our loader decodes the frames the model sees, against raw decord on the
same files and the same frame indices. It prints a markdown table with the machine it ran on,
for the README.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import decord
import numpy as np

from vrlib import data, tasks, video


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def generate(root: Path, n: int, spec: tasks.WorldSpec) -> tuple[dict[str, float], list[Path]]:
    """Items per second for each family, through the data stage's own `build_split` (render +
    write), and the videos written."""
    rates, paths = {}, []
    for name in tasks.FAMILIES:
        t0 = time.perf_counter()
        samples = data.build_split(root, name, 0, n, families={name: 1}, spec=spec)
        rates[name] = n / (time.perf_counter() - t0)
        paths += [root / s.path for s in samples if s.data_type == "video"]
    return rates, paths


def decode(paths: list[Path], *, fps: float, min_frames: int, max_frames: int, repeat: int
           ) -> tuple[float, float]:
    """Frames per second: `video.sample_frames` vs raw decord (`VideoReader` + `get_batch` of the
    same indices); best of `repeat` passes, so the page cache is warm for both."""
    indices = [video.sample_frames(p, fps=fps, min_frames=min_frames,
                                   max_frames=max_frames).indices.tolist() for p in paths]
    n_frames = sum(len(ix) for ix in indices)
    ours, raw = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in paths:
            video.sample_frames(p, fps=fps, min_frames=min_frames, max_frames=max_frames)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for p, ix in zip(paths, indices):
            decord.VideoReader(str(p), ctx=decord.cpu(0)).get_batch(ix).asnumpy()
        raw.append(time.perf_counter() - t0)
    return n_frames / min(ours), n_frames / min(raw)


def bench_data(n: int, repeat: int) -> str:
    spec = tasks.WorldSpec()
    with tempfile.TemporaryDirectory() as tmp:
        rates, paths = generate(Path(tmp), n, spec)
        ours, raw = decode(paths, fps=2.0, min_frames=4, max_frames=16, repeat=repeat)
    lines = [f"machine: {machine()}; {n} items per family, {spec.duration} s at {spec.fps} fps, "
             f"{spec.size}x{spec.size}; decoding 2 fps, 4..16 frames, best of {repeat}", "",
             "| measure | value |", "|---|---|"]
    lines += [f"| generate `{name}` (items/s) | {r:.1f} |" for name, r in rates.items()]
    lines += [f"| generate, all families (items/s) | {len(rates) / sum(1 / r for r in rates.values()):.1f} |",
              f"| decode, `video.sample_frames` (frames/s) | {ours:.0f} |",
              f"| decode, raw decord `get_batch` (frames/s) | {raw:.0f} |",
              f"| our decode time / raw decord time (bar: <= 1.5) | {raw / ours:.2f} |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vrlib.bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    data = sub.add_parser("data", help="world generation and frame decoding speed")
    data.add_argument("--n", type=int, default=20, help="items per family")
    data.add_argument("--repeat", type=int, default=3, help="decoding passes; the best is kept")
    args = parser.parse_args(argv)
    np.random.seed(0)
    print(bench_data(args.n, args.repeat))


if __name__ == "__main__":
    main()
