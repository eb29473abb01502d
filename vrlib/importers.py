"""Importers from the real data sets' own formats to the one `data.Sample` schema.

Each reads one annotation file, checks every record and every media file, and returns
samples with absolute media paths and the duration and fps measured from the file (never
the annotation's). A malformed record raises `data.RecordError` as `file:where: field
'name': why`, `where` a line number or a JSON index (`[3]`, `["3MSZA"]`), or with
`on_bad_record="skip"` is left out and listed; a missing or undecodable media file stops the
import or, with `on_bad_media="skip"`, is skipped and counted (docs/design.md, "The data
contract": bad input never passes silently). What a real file holds that its format allows is
read: Video-R1's eval files leave `process` and `data_source` empty or out and `options` null.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vrlib import answers, video
from vrlib.data import RecordError
from vrlib.schema import DATA_TYPES, PROBLEM_TYPES, Sample

PathLike = str | os.PathLike

_ANSWER = re.compile(r"<answer>.*</answer>", re.DOTALL)
_THINK = re.compile(r"<think>.*</think>", re.DOTALL)
_LETTERED = re.compile(r"([A-Z])[.)]\s*(.*)", re.DOTALL)  # "A. text" or "A) text" (Video-R1)
_PARENS = re.compile(r"\(([A-Z])\)\s*(.*)", re.DOTALL)  # "(A) text" (NExT-GQA)


@dataclass
class Imported:
    """The samples read, the records skipped for bad media as (path, reason), and those left
    out for breaking the schema (`on_bad_record="skip"`) as "file:where: field 'name': why"."""

    samples: list[Sample] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    bad_records: list[str] = field(default_factory=list)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    """problem_id -> what the record says about its benchmark beyond the schema, for the
    breakdowns the benchmark reports: "benchmark", "task" (VSI-Bench's and Video-MME's
    `original_question_type`, else the task folder of the path: MVBench's), "duration"
    (Video-MME's short / medium / long)."""


def probe(path: PathLike, data_type: str) -> tuple[float, float]:
    """(duration, fps) of a media file, decoded as `data.load_split` will; images give (0, 0).

    The first and last frames are decoded, not just the header read, so a truncated file
    fails here rather than in a training step.
    """
    path = Path(path)
    if path.is_dir():  # a folder of frames: GOT-10k as VideoChat-R1 feeds it, MVBench's TVQA
        frames = video.frame_files(path)
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


def _load_json(path: Path, kind: type | tuple[type, ...]) -> Any:
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
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(data, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise RecordError(f"{path}: expected a JSON {expected} of records, got {type(data).__name__}")
    return data


class _Builder:
    """Collects samples: unique ids, a solution `answers.read_solution` can read (so the rewards
    can score it), media checked by `probe`; a bad record stops the import or is listed (`record`)."""

    def __init__(self, media_root: PathLike, on_bad_media: str, on_bad_record: str = "stop"):
        for name, value in (("on_bad_media", on_bad_media), ("on_bad_record", on_bad_record)):
            if value not in ("stop", "skip"):
                raise ValueError(f"{name} must be 'stop' or 'skip', got {value!r}")
        self.root, self.skip = Path(media_root), on_bad_media == "skip"
        self.skip_records = on_bad_record == "skip"
        self.first: dict[str, str] = {}  # problem_id -> where it was first seen
        self.out = Imported()

    @contextlib.contextmanager
    def record(self):
        """Around one record: its RecordError stops the import, or under `skip` is listed."""
        try:
            yield
        except RecordError as err:
            if not self.skip_records:
                raise
            self.out.bad_records.append(str(err))

    def add(self, where: str, id_field: str, media: str, labels: dict | None = None, **fields: Any) -> None:
        sample = Sample(**{"path": "", "duration": 0.0, "fps": 0.0, "options": [], **fields})
        if sample.problem_id in self.first:
            why = f"duplicate {sample.problem_id!r}, first at {self.first[sample.problem_id]}"
            raise _bad(where, id_field, why)
        try:  # the one answer reader raises ValueError on a solution it cannot read
            answers.read_solution(sample)
        except ValueError as err:
            raise _bad(where, "solution", str(err)) from None
        self.first[sample.problem_id] = where
        path = Path(os.path.abspath(self.root / media))  # an absolute `media` stays as is
        try:
            duration, fps = probe(path, sample.data_type)
        except (FileNotFoundError, video.VideoDecodeError) as err:
            if not self.skip:
                raise
            self.out.skipped.append((str(path), str(err)))
            return
        self.out.samples.append(replace(sample, path=str(path), duration=duration, fps=fps))
        if labels:
            self.out.labels[sample.problem_id] = labels


# ----------------------------------------------------------------------------- importers
def _benchmark_and_folder(path: str) -> tuple[str, str]:
    """What a Video-R1 `path` says of its source: "./Evaluation/MVBench/ssv2_video/1.mp4" gives
    ("MVBench", "ssv2_video"), "./Knowledge/ArxivQA/images/x.jpg" ("Knowledge", "ArxivQA"),
    "./Evaluation/VideoMME/x.mp4" ("VideoMME", ""); a folder of frames counts as the file."""
    parts = [p for p in Path(path).parts[:-1] if p not in (".", "/")]
    parts = parts[1:] if parts[:1] == ["Evaluation"] else parts
    return (parts[0] if parts else "", parts[1] if len(parts) > 1 else "")


def _optional(r: dict, name: str, where: str, kind: type | tuple[type, ...]) -> Any:
    """record[name] where the real files leave it out, null or empty (blank): None then."""
    value = r.get(name)
    if value is None or value == [] or (isinstance(value, str) and not value.strip()):
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise _bad(where, name, f"expected {expected} or nothing, got {value!r:.60}")
    return value


def video_r1(json_path: PathLike, media_root: PathLike, *, on_bad_media: str = "stop",
             on_bad_record: str = "stop") -> Imported:
    """Video-R1-260k, Video-R1-COT-165k or a Video-R1 eval JSON: a list in Video-R1's schema,
    or one such record as a single object (the COT-165k card's example).

    `path` ("./LLaVA-Video-178K/....mp4") is relative to the unpacked Video-R1-data folder
    (Video-R1 grpo.py: os.getcwd() + "/Video-R1-data" + path[1:]). As the real files have them:
    `process` empty or absent; `data_source` empty or absent, then the path's benchmark and
    task folder ("MVBench/ssv2_video"; the file's name when the path has no folder); `options`
    null or [] outside multiple choice, written "A. text", "A) text" or "A. "; `data_type`
    "frame" (MVBench's TVQA), a folder of frames read as a video. Kept in `labels`:
    `original_question_type` (VSI-Bench's and Video-MME's task), the path's task folder
    (MVBench), Video-MME's `duration` group. Other keys are ignored.
    """
    source, b = Path(json_path), _Builder(media_root, on_bad_media, on_bad_record)
    data = _load_json(source, (list, dict))
    for i, r in enumerate(data if isinstance(data, list) else [data]):
        where = f"{source}:[{i}]" if isinstance(data, list) else str(source)
        with b.record():
            _video_r1_record(b, r, where, source)
    return b.out


def _video_r1_record(b: _Builder, r: Any, where: str, source: Path) -> None:
    pid, path = _get(r, "problem_id", where, (int, str)), _get(r, "path", where)
    for name, allowed in (("data_type", (*DATA_TYPES, "frame")), ("problem_type", PROBLEM_TYPES)):
        if _get(r, name, where) not in allowed:
            raise _bad(where, name, f"expected one of {list(allowed)}, got {r[name]!r}")
    data_type = "video" if r["data_type"] == "frame" else r["data_type"]  # frame: a folder of frames
    options = _optional(r, "options", where, list) or []
    if not all(isinstance(o, str) for o in options):
        raise _bad(where, "options", f"expected a list of strings, got {options!r:.60}")
    # "A) text" occurs beside "A. text" (Video-R1 issue #92): one form, "A. text".
    options = [f"{m.group(1)}. {m.group(2)}".rstrip() if (m := _LETTERED.fullmatch(o.strip())) else o.strip()
               for o in options]
    solution = _get(r, "solution", where).strip()
    if not _ANSWER.fullmatch(solution):
        raise _bad(where, "solution", f"expected '<answer>...</answer>', got {solution!r:.60}")
    if r["problem_type"] == "multiple choice":
        if not options:
            raise _bad(where, "options", "multiple choice needs options")
        letters = [m.group(1) for o in options if (m := _LETTERED.fullmatch(o))]
        answer = answers.parse_letter(answers.extract_answer(solution) or "")
        if answer not in letters:
            raise _bad(where, "solution", f"answer {answer!r} is not an option letter {letters}")
    process = (_optional(r, "process", where, str) or "").strip()
    if process and not _THINK.fullmatch(process):  # COT-165k: "<think>...</think>"
        raise _bad(where, "process", f"expected '<think>...</think>', got {process!r:.60}")
    benchmark, folder = _benchmark_and_folder(path)
    data_source = _optional(r, "data_source", where, str) or "/".join(filter(None, (benchmark, folder))) \
        or source.stem
    task = (_optional(r, "original_question_type", where, str) or "").strip() or folder
    duration = _optional(r, "duration", where, (str, int, float))
    labels = {"benchmark": benchmark, "task": task,
              "duration": duration.strip() if isinstance(duration, str) else ""}
    b.add(where, "problem_id", path, {k: v for k, v in labels.items() if v}, problem_id=str(pid),
          problem=_get(r, "problem", where), data_type=data_type, problem_type=r["problem_type"],
          options=options, solution=solution, data_source=data_source.strip(), process=process)


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


def charades_sta(txt_path: PathLike, media_root: PathLike, *, on_bad_media: str = "stop",
                 on_bad_record: str = "stop") -> Imported:
    """Charades-STA's own lines, `VID start end##sentence`; the video is media_root/VID.mp4.

    problem_id is `VID_k`, the k-th query of that video in file order, a skipped line counted
    (as VideoChat-R1's TG JSON numbers them); a line repeated exactly is a duplicate.
    """
    source, b = Path(txt_path), _Builder(media_root, on_bad_media, on_bad_record)
    first_line: dict[tuple, int] = {}  # (VID, span, sentence) -> line
    count: dict[str, int] = {}  # VID -> queries so far
    with open(source, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{source}:{lineno}"
            with b.record():
                head, sep, sentence = line.partition("##")
                parts = head.split()
                if not sep or len(parts) != 3 or not sentence.strip():
                    raise _bad(where, "<line>", f"expected 'VID start end##sentence', got {line.strip()!r:.60}")
                vid, k = parts[0], count.get(parts[0], -1) + 1
                count[vid] = k
                try:
                    times = [float(parts[1]), float(parts[2])]
                except ValueError:
                    raise _bad(where, "start/end", f"expected numbers, got {parts[1:]}") from None
                span = _span(times, "start/end", where)
                key = (vid, span, sentence.strip())
                if key in first_line:
                    raise _bad(where, "sentence", f"duplicate of line {first_line[key]}")
                first_line[key] = lineno
                _grounding(b, where, vid, k, sentence, span, "Charades-STA")
    return b.out


def videochat_r1_grounding(json_path: PathLike, media_root: PathLike, *,
                           data_source: str = "Charades-STA", on_bad_media: str = "stop",
                           on_bad_record: str = "stop") -> Imported:
    """VideoChat-R1's TG JSON `{vid: {"duration", "timestamps": [[s, e], ...], "sentences"}}`,
    a sample per sentence; `data_source` tells its Charades-STA files from its ActivityNet ones.
    A moment with start > end (its Charades train.json has four) is a bad record."""
    source, b = Path(json_path), _Builder(media_root, on_bad_media, on_bad_record)
    for vid, r in _load_json(source, dict).items():
        where = f"{source}:[{json.dumps(vid)}]"
        with b.record():
            spans, sentences = _get(r, "timestamps", where, list), _get(r, "sentences", where, list)
            if len(spans) != len(sentences):
                raise _bad(where, "sentences", f"{len(sentences)} sentences for {len(spans)} timestamps")
            for k, sentence in enumerate(sentences):
                with b.record():
                    if not isinstance(sentence, str) or not sentence.strip():
                        raise _bad(where, f"sentences[{k}]", f"expected a non-empty string, got {sentence!r:.60}")
                    span = _span(spans[k], f"timestamps[{k}]", where)
                    _grounding(b, where, vid, k, sentence, span, data_source)
    return b.out


def videochat_r1_got(json_path: PathLike, media_root: PathLike, *, on_bad_media: str = "stop",
                     on_bad_record: str = "stop") -> Imported:
    """VideoChat-R1's GOT-10k tracking JSON: a list of `{"path", "object", "gt": [8 boxes]}`.

    `path` is an MP4 or, as VideoChat-R1 has it, a folder of JPG frames (data_type "video",
    timed at `video.FOLDER_FPS` by `data.load_media`). Its files name folders on its own
    cluster ("/mnt/.../raw/GOT-10k/val/GOT-10k_Val_000010"): an absolute path is read from its
    `GOT-10k` folder on, relative to media_root, like a relative one.
    """
    source, b = Path(json_path), _Builder(media_root, on_bad_media, on_bad_record)
    for i, r in enumerate(_load_json(source, list)):
        where = f"{source}:[{i}]"
        with b.record():
            _got_record(b, r, where)
    return b.out


def _got_record(b: _Builder, r: Any, where: str) -> None:
        path, name = _get(r, "path", where).rstrip("/"), _get(r, "object", where)
        parts = Path(path).parts
        if Path(path).is_absolute() and "GOT-10k" in parts:
            path = str(Path(*parts[parts.index("GOT-10k"):]))
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


def videochat_r1_gqa(json_path: PathLike, media_root: PathLike, *, on_bad_media: str = "stop",
                     on_bad_record: str = "stop") -> Imported:
    """NExT-GQA as VideoChat-R1 ships it: a list of `{"id", "video", "question", "options":
    ["(A) ..."], "duration", "glue": [[s, e], ...], "type", "answer": "(C)"}`.

    `video` is relative to media_root and gets ".mp4" when it has no extension; data_source
    is "NExT-GQA/<type>" (NExT-QA's question types CW, CH, TN, TC, TP, ...).
    """
    source, b = Path(json_path), _Builder(media_root, on_bad_media, on_bad_record)
    for i, r in enumerate(_load_json(source, list)):
        where = f"{source}:[{i}]"
        with b.record():
            _gqa_record(b, r, where)
    return b.out


def _gqa_record(b: _Builder, r: Any, where: str) -> None:
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


FORMATS = {"video_r1": video_r1, "charades_sta": charades_sta,
           "videochat_r1_grounding": videochat_r1_grounding, "videochat_r1_got": videochat_r1_got,
           "videochat_r1_gqa": videochat_r1_gqa}
"""`format` names accepted in params.yaml `data.imports`."""


def import_sources(sources: list[dict], *, on_bad_media: str = "stop", on_bad_record: str = "stop") -> Imported:
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
        got = FORMATS[src["format"]](src["path"], src["media_root"], on_bad_media=on_bad_media,
                                     on_bad_record=on_bad_record)
        out.samples += got.samples
        out.skipped += got.skipped
        out.bad_records += got.bad_records
        out.labels |= got.labels
    return out
