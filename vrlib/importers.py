"""Importers from the real data sets' own formats to the one `data.Sample` schema.

Each reads one annotation file, checks every record and every media file, and returns
samples with absolute media paths and the duration and fps measured from the file (never
the annotation's). A malformed record raises `data.RecordError` as `file:where: field
'name': why`, `where` a line number or a JSON index (`[3]`, `["3MSZA"]`); a missing or
undecodable media file stops the import or, with `on_bad_media="skip"`, is skipped and
counted (DESIGN.md "Data contract": bad input never passes silently).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vrlib import rewards, video
from vrlib.data import DATA_TYPES, RecordError, Sample

PathLike = str | os.PathLike

_ANSWER = re.compile(r"<answer>.*</answer>", re.DOTALL)
_THINK = re.compile(r"<think>.*</think>", re.DOTALL)
_LETTERED = re.compile(r"([A-Z])[.)]\s*(.*)", re.DOTALL)  # "A. text" or "A) text" (Video-R1)
_PARENS = re.compile(r"\(([A-Z])\)\s*(.*)", re.DOTALL)  # "(A) text" (NExT-GQA)


@dataclass
class Imported:
    """The samples read, and the records skipped for bad media as (path, reason)."""

    samples: list[Sample] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def probe(path: PathLike, data_type: str) -> tuple[float, float]:
    """(duration, fps) of a media file, decoded as `data.load_split` will; images give (0, 0).

    The first and last frames are decoded, not just the header read, so a truncated file
    fails here rather than in a training step.
    """
    path = Path(path)
    if path.is_dir():
        # GOT-10k as VideoChat-R1 feeds it: a folder of frames, the sorted `*.jpg` files
        # (VideoChat-R1 grpo_tasks.py load_json_dataset_tracking).
        frames = sorted(p for p in path.iterdir() if p.suffix == ".jpg")
        if not frames:
            raise FileNotFoundError(2, "no .jpg frames in folder", str(path))
        for frame in frames[:1] + frames[-1:]:
            video.read_image(frame)
        return len(frames) / video.FOLDER_FPS, video.FOLDER_FPS  # as `data.load_media` times them
    if not path.is_file():
        raise FileNotFoundError(2, "media not found", str(path))
    if data_type == "image":
        video.read_image(path)
        return 0.0, 0.0
    clip = video.sample_frames(path, min_frames=2, max_frames=2)  # the first and last frames
    return clip.duration, clip.native_fps


# ----------------------------------------------------------------------------- record checks
def _bad(where: str, name: str, why: str) -> RecordError:
    return RecordError(f"{where}: field {name!r}: {why}")


def _get(record: Any, name: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """record[name], of type `kind` (a bool is never a number); a string must not be blank."""
    if not isinstance(record, dict):
        raise _bad(where, "<record>", f"expected a JSON object, got {record!r:.60}")
    if name not in record:
        raise _bad(where, name, "missing")
    value, kinds = record[name], kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise _bad(where, name, f"expected {' or '.join(k.__name__ for k in kinds)}, got {value!r:.60}")
    if isinstance(value, str) and not value.strip():
        raise _bad(where, name, "empty")
    return value


def _numbers(value: Any, n: int) -> bool:
    """A JSON list of n finite numbers."""
    return isinstance(value, list) and len(value) == n and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value)


def _span(value: Any, name: str, where: str) -> tuple[float, float]:
    """[start, end] in seconds with 0 <= start <= end: a reversed span scores 0 even against itself."""
    if not _numbers(value, 2) or not 0 <= value[0] <= value[1]:
        raise _bad(where, name, f"expected [start, end] with 0 <= start <= end, got {value!r:.60}")
    return float(value[0]), float(value[1])


def _load_json(path: Path, kind: type) -> Any:
    def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
        if len({key for key, _ in pairs}) < len(pairs):  # json.load would keep the last silently
            key = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
            raise _bad(str(path), key, "duplicate key in a JSON object")
        return dict(pairs)

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
    if not isinstance(data, kind):
        raise RecordError(f"{path}: expected a JSON {kind.__name__} of records, got {type(data).__name__}")
    return data


class _Builder:
    """Collects samples: unique ids, a solution the rewards can read, media checked by `probe`."""

    def __init__(self, media_root: PathLike, on_bad_media: str):
        if on_bad_media not in ("stop", "skip"):
            raise ValueError(f"on_bad_media must be 'stop' or 'skip', got {on_bad_media!r}")
        self.root, self.skip = Path(media_root), on_bad_media == "skip"
        self.first: dict[str, str] = {}  # problem_id -> where it was first seen
        self.out = Imported()

    def add(self, where: str, id_field: str, media: str, **fields: Any) -> None:
        sample = Sample(**{"path": "", "duration": 0.0, "fps": 0.0, "options": [], **fields})
        if sample.problem_id in self.first:
            why = f"duplicate {sample.problem_id!r}, first at {self.first[sample.problem_id]}"
            raise _bad(where, id_field, why)
        self.first[sample.problem_id] = where
        try:  # the rewards raise ValueError on a solution they cannot parse
            rewards.accuracy_reward(sample.solution, sample)
            rewards.glue_iou_reward(sample.solution, sample)
        except ValueError as err:
            raise _bad(where, "solution", str(err)) from None
        path = Path(os.path.abspath(self.root / media))  # an absolute `media` stays as is
        try:
            duration, fps = probe(path, sample.data_type)
        except (FileNotFoundError, video.VideoDecodeError) as err:
            if not self.skip:
                raise
            self.out.skipped.append((str(path), str(err)))
            return
        self.out.samples.append(replace(sample, path=str(path), duration=duration, fps=fps))


# ----------------------------------------------------------------------------- importers
def video_r1(json_path: PathLike, media_root: PathLike, *, on_bad_media: str = "stop") -> Imported:
    """Video-R1-260k, Video-R1-COT-165k or a Video-R1 eval JSON: a list in Video-R1's schema.

    `path` ("./LLaVA-Video-178K/....mp4") is relative to the unpacked Video-R1-data folder
    (Video-R1 grpo.py: os.getcwd() + "/Video-R1-data" + path[1:]). Other keys are ignored.
    """
    source, b = Path(json_path), _Builder(media_root, on_bad_media)
    for i, r in enumerate(_load_json(source, list)):
        where = f"{source}:[{i}]"
        pid, path = _get(r, "problem_id", where, (int, str)), _get(r, "path", where)
        for name, allowed in (("data_type", DATA_TYPES), ("problem_type", rewards.PROBLEM_TYPES)):
            if _get(r, name, where) not in allowed:
                raise _bad(where, name, f"expected one of {list(allowed)}, got {r[name]!r}")
        options = _get(r, "options", where, list)
        if not all(isinstance(o, str) for o in options):
            raise _bad(where, "options", f"expected a list of strings, got {options!r:.60}")
        # "A) text" occurs beside "A. text" (Video-R1 issue #92): one form, "A. text".
        options = [_LETTERED.sub(r"\1. \2", o.strip(), count=1) for o in options]
        solution = _get(r, "solution", where).strip()
        if not _ANSWER.fullmatch(solution):
            raise _bad(where, "solution", f"expected '<answer>...</answer>', got {solution!r:.60}")
        if r["problem_type"] == "multiple choice":
            letters = [m.group(1) for o in options if (m := _LETTERED.fullmatch(o))]
            answer = rewards.parse_letter(rewards.extract_answer(solution) or "")
            if answer not in letters:
                raise _bad(where, "solution", f"answer {answer!r} is not an option letter {letters}")
        process = _get(r, "process", where).strip() if "process" in r else ""
        if process and not _THINK.fullmatch(process):  # COT-165k: "<think>...</think>"
            raise _bad(where, "process", f"expected '<think>...</think>', got {process!r:.60}")
        b.add(where, "problem_id", path, problem_id=str(pid), problem=_get(r, "problem", where),
              data_type=r["data_type"], problem_type=r["problem_type"], options=options,
              solution=solution, data_source=_get(r, "data_source", where), process=process)
    return b.out


def _grounding(b: _Builder, where: str, vid: str, k: int, sentence: str,
               span: tuple[float, float], data_source: str) -> None:
    # VideoChat-R1 grpo_tasks.py load_json_dataset_tg: the query is stripped, lower-cased and
    # loses one trailing "."; the video is VID.mp4; the answer "s to e" in seconds with two
    # decimals, as its TG prompt asks ("For example: 12.54 to 17.83"). The problem is the first
    # sentence of that prompt; `prompts.user_text` adds the answer format.
    query = sentence.strip().lower()
    query = query[:-1] if query.endswith(".") else query
    b.add(where, "sentence", f"{vid}.mp4", problem_id=f"{vid}_{k}",
          problem=f'To accurately pinpoint the event "{query}" in the video, determine the '
                  "precise time period of the event.", data_type="video",
          problem_type="temporal grounding", data_source=data_source,
          solution=f"<answer>{span[0]:.2f} to {span[1]:.2f}</answer>")


def charades_sta(txt_path: PathLike, media_root: PathLike, *, on_bad_media: str = "stop") -> Imported:
    """Charades-STA's own lines, `VID start end##sentence`; the video is media_root/VID.mp4.

    problem_id is `VID_k`, the k-th query of that video in file order (as VideoChat-R1's
    TG JSON numbers them); a line repeated exactly is a duplicate.
    """
    source, b = Path(txt_path), _Builder(media_root, on_bad_media)
    first_line: dict[tuple, int] = {}  # (VID, span, sentence) -> line
    count: dict[str, int] = {}  # VID -> queries so far
    with open(source, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{source}:{lineno}"
            head, sep, sentence = line.partition("##")
            parts = head.split()
            if not sep or len(parts) != 3 or not sentence.strip():
                raise _bad(where, "<line>", f"expected 'VID start end##sentence', got {line.strip()!r:.60}")
            try:
                times = [float(parts[1]), float(parts[2])]
            except ValueError:
                raise _bad(where, "start/end", f"expected numbers, got {parts[1:]}") from None
            span = _span(times, "start/end", where)
            key = (parts[0], span, sentence.strip())
            if key in first_line:
                raise _bad(where, "sentence", f"duplicate of line {first_line[key]}")
            first_line[key], count[parts[0]] = lineno, count.get(parts[0], -1) + 1
            _grounding(b, where, parts[0], count[parts[0]], sentence, span, "Charades-STA")
    return b.out


def videochat_r1_grounding(json_path: PathLike, media_root: PathLike, *,
                           data_source: str = "Charades-STA", on_bad_media: str = "stop") -> Imported:
    """VideoChat-R1's TG JSON `{vid: {"duration", "timestamps": [[s, e], ...], "sentences"}}`,
    a sample per sentence; `data_source` tells its Charades-STA files from its ActivityNet ones."""
    source, b = Path(json_path), _Builder(media_root, on_bad_media)
    for vid, r in _load_json(source, dict).items():
        where = f"{source}:[{json.dumps(vid)}]"
        spans, sentences = _get(r, "timestamps", where, list), _get(r, "sentences", where, list)
        if len(spans) != len(sentences):
            raise _bad(where, "sentences", f"{len(sentences)} sentences for {len(spans)} timestamps")
        for k, sentence in enumerate(sentences):
            if not isinstance(sentence, str) or not sentence.strip():
                raise _bad(where, f"sentences[{k}]", f"expected a non-empty string, got {sentence!r:.60}")
            _grounding(b, where, vid, k, sentence, _span(spans[k], f"timestamps[{k}]", where), data_source)
    return b.out


def videochat_r1_got(json_path: PathLike, media_root: PathLike, *, on_bad_media: str = "stop") -> Imported:
    """VideoChat-R1's GOT-10k tracking JSON: a list of `{"path", "object", "gt": [8 boxes]}`.

    `path` is an MP4 or, as VideoChat-R1 has it, a folder of JPG frames (data_type "video",
    timed at `video.FOLDER_FPS` by `data.load_media`).
    """
    source, b = Path(json_path), _Builder(media_root, on_bad_media)
    for i, r in enumerate(_load_json(source, list)):
        where = f"{source}:[{i}]"
        path, name = _get(r, "path", where).rstrip("/"), _get(r, "object", where)
        boxes = _get(r, "gt", where, list)
        if not boxes:
            raise _bad(where, "gt", "no boxes")
        for j, box in enumerate(boxes):
            if not _numbers(box, 4) or not (0 <= box[0] <= box[2] <= 1 and 0 <= box[1] <= box[3] <= 1):
                raise _bad(where, f"gt[{j}]", f"expected a normalised box [x0, y0, x1, y1], got {box!r:.60}")
        # 4 decimals: repr writes no exponent for 1e-4 <= x <= 1, which the reward's box regex needs.
        boxes = [[round(float(v), 4) for v in box] for box in boxes]
        # The first sentence of VideoChat-R1's TRACK template (src_eval/eval_prompts.py),
        # `[START]` being the first ground-truth box.
        problem = f'Track the "{name.strip()}" in the video based on its initial coordinates "{boxes[0]}".'
        b.add(where, "path", path, problem_id=path, problem=problem, data_type="video",
              problem_type="tracking", solution=f"<answer>{boxes}</answer>", data_source="GOT-10k")
    return b.out


def videochat_r1_gqa(json_path: PathLike, media_root: PathLike, *, on_bad_media: str = "stop") -> Imported:
    """NExT-GQA as VideoChat-R1 ships it: a list of `{"id", "video", "question", "options":
    ["(A) ..."], "duration", "glue": [[s, e], ...], "type", "answer": "(C)"}`.

    `video` is relative to media_root and gets ".mp4" when it has no extension; data_source
    is "NExT-GQA/<type>" (NExT-QA's question types CW, CH, TN, TC, TP, ...).
    """
    source, b = Path(json_path), _Builder(media_root, on_bad_media)
    for i, r in enumerate(_load_json(source, list)):
        where = f"{source}:[{i}]"
        pid, media = _get(r, "id", where, (int, str)), _get(r, "video", where)
        options = []
        for j, o in enumerate(_get(r, "options", where, list)):
            m = _PARENS.fullmatch(o.strip()) if isinstance(o, str) else None
            if not m:
                raise _bad(where, f"options[{j}]", f"expected '(A) text', got {o!r:.60}")
            options.append(f"{m.group(1)}. {m.group(2)}")
        answer = _get(r, "answer", where).strip().strip("()")
        if answer not in [o[0] for o in options]:
            raise _bad(where, "answer", f"expected an option letter like '(C)', got {r['answer']!r:.60}")
        spans = [_span(s, f"glue[{j}]", where) for j, s in enumerate(_get(r, "glue", where, list))]
        if not spans:
            raise _bad(where, "glue", "no evidence segment")
        # 3 decimals: no exponent in repr, which the reward's glue regex needs.
        glue = ", ".join(f"({round(s, 3)!r}, {round(e, 3)!r})" for s, e in spans)
        b.add(where, "id", media if Path(media).suffix else media + ".mp4", problem_id=str(pid),
              problem=_get(r, "question", where), data_type="video", problem_type="grounded QA",
              options=options, solution=f"<answer>{answer}</answer><glue>[{glue}]</glue>",
              data_source=f"NExT-GQA/{_get(r, 'type', where)}")
    return b.out


FORMATS = {"video_r1": video_r1, "charades_sta": charades_sta,
           "videochat_r1_grounding": videochat_r1_grounding, "videochat_r1_got": videochat_r1_got,
           "videochat_r1_gqa": videochat_r1_gqa}
"""`format` names accepted in params.yaml `data.imports`."""


def import_sources(sources: list[dict], *, on_bad_media: str = "stop") -> Imported:
    """Concatenate the imports of one split, each {format, path, media_root}; ids stay unique
    (`data.write_jsonl` rejects a duplicate across sources)."""
    out = Imported()
    for i, src in enumerate(sources):
        if not isinstance(src, dict) or set(src) != {"format", "path", "media_root"}:
            raise ValueError(f"data.imports entry {i}: expected keys format, path, media_root; "
                             f"got {src!r}")
        if src["format"] not in FORMATS:
            raise ValueError(f"data.imports entry {i}: unknown format {src['format']!r}; "
                             f"known: {', '.join(FORMATS)}")
        got = FORMATS[src["format"]](src["path"], src["media_root"], on_bad_media=on_bad_media)
        out.samples += got.samples
        out.skipped += got.skipped
    return out
