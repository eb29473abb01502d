"""Records of the one schema (`vrlib.schema.Sample`): strict JSONL I/O, media, splits.

A malformed record stops the stage with file, line and field in the message: a research
record that silently drops or defaults a field gives results nobody can trust.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from vrlib import tasks, video
from vrlib.schema import (DATA_TYPES, FIELDS, OPTIONAL, PROBLEM_TYPES, PROCESS, SOLUTION,
                          SOLUTION_GLUE, Sample)


class RecordError(ValueError):
    """A record breaks the schema; the message reads `file:line: field 'name': why`."""


class _FieldError(ValueError):
    def __init__(self, field: str, why: str):
        super().__init__(f"field {field!r}: {why}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_sample(record: Any) -> Sample:
    """Validate one decoded JSON object and build its Sample; `_FieldError` names the field."""
    if not isinstance(record, dict):
        raise _FieldError("<record>", f"expected a JSON object, got {_show(record)}")
    for key in record:
        if key not in FIELDS:
            raise _FieldError(key, f"unknown field; known fields are {list(FIELDS)}")
    for key in FIELDS:
        if key not in record and key not in OPTIONAL:
            raise _FieldError(key, "missing")
    r = {"process": "", "kim_path": "", **record}
    for key in FIELDS:
        if key in ("options", "duration", "fps"):
            continue
        if not isinstance(r[key], str):
            raise _FieldError(key, f"expected a string, got {_show(r[key])}")
    for key in ("problem_id", "path"):
        if not r[key]:
            raise _FieldError(key, "empty")
    if not isinstance(r["options"], list) or not all(isinstance(o, str) for o in r["options"]):
        raise _FieldError("options", f"expected a list of strings, got {_show(r['options'])}")
    for key in ("duration", "fps"):
        v = r[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise _FieldError(key, f"expected a finite number >= 0, got {_show(v)}")
    for key, allowed in (("data_type", DATA_TYPES), ("problem_type", PROBLEM_TYPES)):
        if r[key] not in allowed:
            raise _FieldError(key, f"expected one of {list(allowed)}, got {_show(r[key])}")
    if r["problem_type"] == "multiple choice" and not r["options"]:
        raise _FieldError("options", "multiple choice needs options")
    if r["problem_type"] == "grounded QA":
        pattern, shape = SOLUTION_GLUE, "'<answer>...</answer><glue>...</glue>'"
    else:
        pattern, shape = SOLUTION, "'<answer>...</answer>'"
    if not pattern.fullmatch(r["solution"]):
        raise _FieldError("solution", f"expected {shape}, got {_show(r['solution'])}")
    if r["process"] and not PROCESS.fullmatch(r["process"]):
        why = f"expected '' or '<think>...</think>', got {_show(r['process'])}"
        raise _FieldError("process", why)
    r["duration"], r["fps"] = float(r["duration"]), float(r["fps"])
    return Sample(**r)


def read_jsonl(path: str | os.PathLike) -> list[Sample]:
    """All records of a JSONL file, each validated; the first bad line raises RecordError."""
    samples: list[Sample] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            if not line.strip():
                raise RecordError(f"{where}: empty line")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                why = f"invalid JSON: {err.msg} (column {err.colno})"
                raise RecordError(f"{where}: {why}") from None
            try:
                sample = _to_sample(record)
            except _FieldError as err:
                raise RecordError(f"{where}: {err}") from None
            if sample.problem_id in first_line:
                raise RecordError(
                    f"{where}: field 'problem_id': duplicate {sample.problem_id!r}, "
                    f"first on line {first_line[sample.problem_id]}"
                )
            first_line[sample.problem_id] = lineno
            samples.append(sample)
    return samples


def write_jsonl(path: str | os.PathLike, samples: Iterable[Sample]) -> None:
    """Validate then write one JSON object per line; the file appears whole or not at all.

    Validating on write means whatever is written reads back; an error names the line the
    record would have had.
    """
    samples = list(samples)
    first_line: dict[str, int] = {}
    for lineno, sample in enumerate(samples, start=1):
        try:
            _to_sample(asdict(sample))
        except _FieldError as err:
            raise RecordError(f"{path}:{lineno}: {err}") from None
        if sample.problem_id in first_line:
            raise RecordError(
                f"{path}:{lineno}: field 'problem_id': duplicate {sample.problem_id!r}, "
                f"first on line {first_line[sample.problem_id]}"
            )
        first_line[sample.problem_id] = lineno
    atomic_write_lines(path, (json.dumps(asdict(s), ensure_ascii=False) + "\n" for s in samples))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write metrics as stable JSON (sorted keys, indent 2): diffs in git and DVC stay readable.

    NaN or infinity raise ValueError: they are not JSON, and a NaN metric is a bug to see.
    """
    text = json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n"
    atomic_write_lines(path, [text])


def digest(obj: Any, files: Iterable[str | os.PathLike] = ()) -> str:
    """A short hash of a JSON-able object and the bytes of some files: what a saved partial
    result (RFT checkpoint, half-done evaluation) must match to be resumed."""
    h = hashlib.sha256(json.dumps(obj, sort_keys=True).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def atomic_write_lines(path: str | os.PathLike, chunks: Iterable[str]) -> None:
    """Write text through `video.atomic_path`, fsynced: the file appears whole or not at all."""
    with video.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def load_split(jsonl_path: str | os.PathLike, *, fps: float, min_frames: int,
               max_frames: int, families: Iterable[str] = ()) -> tuple[list[Sample], list[video.Clip]]:
    """Records of a split and their sampled clips (an image is a one-frame clip), decoded once
    and kept in memory; with `families`, only the records of those (`family`), and a family
    without a record is an error (a misspelt name trains on nothing). Bad media stop here: the
    data stage already skipped what it was told to."""
    samples = read_jsonl(jsonl_path)
    if families:
        missing = sorted(set(families) - {family(s) for s in samples})
        if missing:
            raise ValueError(f"{jsonl_path}: no record of the families {missing}; it has "
                             f"{', '.join(sorted({family(s) for s in samples}))}")
        samples = [s for s in samples if family(s) in set(families)]
    clips = [load_media(video_path(s, jsonl_path), s.data_type, fps=fps, min_frames=min_frames,
                        max_frames=max_frames) for s in samples]
    return samples, clips


def load_kim_clips(samples: list[Sample], jsonl_path: str | os.PathLike, dcfg) -> list[video.Clip | None]:
    """The key-information-missing clip of each sample that has one (`kim_path`), else None."""
    return [None if not getattr(s, "kim_path", None) else
            load_media(video_path(s, jsonl_path, "kim_path"), s.data_type, fps=dcfg.fps,
                       min_frames=dcfg.min_frames, max_frames=dcfg.max_frames) for s in samples]


def load_media(path: str | os.PathLike, data_type: str, *, fps: float, min_frames: int,
               max_frames: int, start: float = 0.0, end: float | None = None) -> video.Clip:
    """An image as a one-frame clip, or frames sampled from a video (or its [start, end] s) or
    from a folder of frames (GOT-10k)."""
    if data_type == "image":
        return video.read_image(path)
    if Path(path).is_dir():
        return video.sample_frame_folder(path, fps=fps, min_frames=min_frames, max_frames=max_frames)
    return video.sample_frames(path, fps=fps, min_frames=min_frames, max_frames=max_frames,
                               start=start, end=end)


def video_path(sample: Sample, jsonl_path: str | os.PathLike, key: str = "path") -> Path:
    """The media file of a record (`key` "path" or "kim_path"): relative to the JSONL's folder,
    so splits move whole; absolute paths (imported data) are kept."""
    return Path(jsonl_path).parent / getattr(sample, key)


def split_seed(seed: int, split: str) -> int:
    """A seed per split, so splits draw disjoint scene streams from one study seed.

    crc32 is stable across runs, unlike Python's salted `hash()`. The map (seed, split) ->
    seed * 2**32 + crc32(split) is one-to-one, and `world.scene_rng` keys each scene by
    (this seed, index), so two splits never share a scene stream.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return seed * 2**32 + zlib.crc32(split.encode("utf-8"))


def build_split(
    out_dir: str | os.PathLike,
    split: str,
    seed: int,
    n: int,
    *,
    families: dict[str, int],
    spec: tasks.WorldSpec,
    kim: bool = False,
    start_index: int = 0,
) -> list[Sample]:
    """Generate n world items of the weighted `families` mix into `out_dir/media/` and return
    their records (`data_source` "world/<family>/<kind>").

    With `kim`, every video whose key frames can be hidden also gets its key-information-missing
    copy `<name>_kim.mp4`, named in the record's `kim_path` so the RL stage can pair them.
    Paths are relative to `out_dir`, so the caller writes the JSONL there. Record i depends
    only on (seed, split, i), so a split can be built in pieces with `start_index`.
    """
    out_dir = Path(out_dir)
    s = split_seed(seed, split)
    plan = tasks.mixture(families, start_index + n)
    samples = []
    for i in range(start_index, start_index + n):
        name = f"{split}_{i:05d}"
        item = tasks.FAMILIES[plan[i]](s, i, spec)
        kim_path = ""
        if item.data_type == "image":
            path = f"media/{name}.png"
            video.write_image(out_dir / path, item.frames[0])
        else:
            path = f"media/{name}.mp4"
            video.write_mp4(out_dir / path, item.frames, spec.fps)
            degraded = tasks.missing_key_frames(item.frames, item.key_frames) if kim else None
            if degraded is not None:
                kim_path = f"media/{name}_kim.mp4"
                video.write_mp4(out_dir / kim_path, degraded, spec.fps)
        samples.append(world_record(item, name, plan[i], spec, path=path, kim_path=kim_path))
    return samples


def world_record(item: tasks.Item, name: str, family: str, spec: tasks.WorldSpec, *, path: str = "",
                 kim_path: str = "") -> Sample:
    """The record of world `item` (of `family`) saved as `path`: its duration and frame rate are
    the world's (0 for an image)."""
    video_ = item.data_type == "video"
    return Sample(problem_id=name, problem=item.problem, data_type=item.data_type,
                  problem_type=item.problem_type, options=item.options, solution=item.solution,
                  path=path, data_source=f"world/{family}/{item.kind}",
                  duration=float(len(item.frames) / spec.fps) if video_ else 0.0,
                  fps=float(spec.fps) if video_ else 0.0, process=item.process, kim_path=kim_path)


def family(sample: Sample) -> str:
    """The task a record belongs to, for per-task metrics: the world family, else the source."""
    parts = sample.data_source.split("/")
    return parts[1] if parts[0] == "world" and len(parts) > 1 else sample.data_source
