"""The one answer reader: the tags of a solution or a completion, whether a completion is well
formed (`well_formed`), and the answer text read per problem_type (PARSERS). The rewards, the evaluation, the analysis, the explorer and the
importers all read answers here, so a record the data stage accepts is one the rewards can
score; it imports nothing from vrlib but the schema, so the data stage does not depend on how
answers are scored (`vrlib.rewards`).

A parser returns None on text it cannot read and never raises on model output; a sample with
an unknown problem_type or an unreadable solution is a bug in the data and raises ValueError.
Departures from the reference code:

1. Answers: the last closed `<answer>` wins (VideoChat-R1); Video-R1 takes the first.
2. Numbers: "3" == "3.0" and "1,200" == "1200"; Video-R1 scores a pair where only one side
   has "." or "," as 0.
3. Letters: "B", "B.", "(B)", "B. text", "Answer: B" read as B, but "Dance." is not D;
   VideoChat-R1's extract_characters_regex takes the first capital in [A-G].
"""

from __future__ import annotations

import ast
import math
import re

from vrlib.schema import FORMAT, FORMAT_GLUE, PROBLEM_TYPES


def finite(*xs: float) -> bool:
    return all(math.isfinite(x) for x in xs)


# ----------------------------------------------------------------------------- parsers
def last_tagged(text: str, tag: str) -> str | None:
    """Content of the last closed <tag>...</tag>, stripped.

    The last opening tag before the last closing tag, up to its first closing tag: the same
    as the last match of `<tag>(.*?)</tag>` except with nested or unclosed tags, and linear
    in the length of the text.
    """
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    last_close = text.rfind(close_tag)
    start = text.rfind(open_tag, 0, last_close) if last_close >= 0 else -1
    if start < 0:
        return None
    start += len(open_tag)
    return text[start:text.find(close_tag, start)].strip()


def extract_answer(text: str) -> str | None:
    """The stripped content of the last `<answer>...</answer>`, or None."""
    return last_tagged(text, "answer")


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", re.ASCII)


def parse_number(text: str) -> float | None:
    """A finite number that is the whole text: "3", "-2.5", "1e3", "1,200" (thousands commas)."""
    s = text.strip()
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if not _NUMBER.fullmatch(s):  # rejects "nan", "inf", "1_000" that float() would accept
        return None
    x = float(s)
    return x if math.isfinite(x) else None


# A number inside running text, in parse_number's grammar: not inside a word or another
# number, a sign only where no digit precedes it ("2-3" is 2 and 3), and thousands commas
# only in groups of exactly three digits ("1,200" is one number, "1,2" two).
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])(?:[-+](?=\.?\d))?"
                             r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)",
                             re.ASCII)


def find_numbers(text: str) -> list[float]:
    """Every number in a text, read as parse_number reads an answer: "1,200 or .5 or 1e3" ->
    [1200.0, 0.5, 1000.0]. The reasoning's numbers, compared with the answer's."""
    return [x for x in map(parse_number, _NUMBER_IN_TEXT.findall(text)) if x is not None]


# Prefixes a model writes before the letter: "Answer:", "The correct option is", "Choice".
_LETTER_PREFIX = re.compile(r"(?:the\s+)?(?:(?:best|correct|final)\s+)?(?:answer|option|choice)\s*(?:is\b)?\s*:?\s*",
                            re.IGNORECASE)
# "(B)" then anything after a non-word character; or "B" alone or followed by . : ) and a space.
_LETTER = re.compile(r"\(([A-Z])\)(?:\W.*)?|([A-Z])(?:[.:)](?:\s.*)?)?", re.DOTALL)


def parse_letter(text: str) -> str | None:
    """A single option letter A-Z: "B", "B.", "(B)", "B. text", "Answer: B"; not "Dance.".

    Departs from VideoChat-R1's extract_characters_regex, which returns the first capital
    in [A-G] and so reads "Dance." as D: here the letter must stand alone, or be followed by
    punctuation, so a word that starts with a capital is never an option.
    """
    s = text.strip().strip("*`'\"").strip()
    prefix = _LETTER_PREFIX.match(s)
    if prefix:
        s = s[prefix.end():]
    m = _LETTER.fullmatch(s)
    return (m.group(1) or m.group(2)) if m else None


# Anchored at the start of a number ((?<![\d.])) so a long run of digits cannot make the
# search quadratic; otherwise VideoChat-R1's `(\d+\.?\d*) (to|and) (\d+\.?\d*)` with \s*.
_SPAN = re.compile(r"(?<![\d.])(\d+(?:\.\d*)?)\s*(?:to|and)\s*(\d+(?:\.\d*)?)", re.ASCII)


def parse_span(text: str) -> tuple[float, float] | None:
    """(start, end) in seconds from "s to e" or "s and e", the last match (VideoChat-R1).

    Takes the answer text; start > end is returned as is and scored 0 by temporal_iou.
    """
    matches = _SPAN.findall(text)
    if not matches:
        return None
    start, end = float(matches[-1][0]), float(matches[-1][1])
    return (start, end) if finite(start, end) else None


# Validity regexes checked before ast.literal_eval (never eval). Written so that no two
# adjacent quantifiers compete for the same characters: linear on any input.
_GLUE_NUM = r"\d+(?:\.\d+)?"
_SEGMENT = rf"\(\s*{_GLUE_NUM}\s*,\s*{_GLUE_NUM}\s*\)"
_GLUE = re.compile(rf"\[\s*(?:{_SEGMENT}\s*(?:,\s*{_SEGMENT}\s*)*(?:,\s*)?)?\]", re.ASCII)
_BOX_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_BOX = rf"\[\s*{_BOX_NUM}\s*,\s*{_BOX_NUM}\s*,\s*{_BOX_NUM}\s*,\s*{_BOX_NUM}\s*\]"
_BOXES = re.compile(rf"\[\s*{_BOX}\s*(?:,\s*{_BOX}\s*)*(?:,\s*)?\]", re.ASCII)


def parse_glue(text: str) -> list[tuple[float, float]] | None:
    """Evidence spans from the last `<glue>[(s, e), ...]</glue>` in text, or None if invalid.

    As VideoChat-R1: non-negative numbers, every s <= e, and `[]` is a valid empty list.
    """
    content = last_tagged(text, "glue")
    if content is None or not _GLUE.fullmatch(content):
        return None
    try:
        segments = [(float(s), float(e)) for s, e in ast.literal_eval(content)]
    except (ValueError, SyntaxError):  # an integer literal over Python's int_max_str_digits
        return None
    if any(not finite(s, e) or s > e for s, e in segments):
        return None
    return segments


def parse_boxes(text: str) -> list[tuple[float, float, float, float]] | None:
    """Boxes from answer text `[[x0, y0, x1, y1], ...]` (at least one box), or None."""
    s = text.strip()
    if not _BOXES.fullmatch(s):
        return None
    try:
        boxes = [tuple(float(v) for v in box) for box in ast.literal_eval(s)]
    except (ValueError, SyntaxError):  # an integer literal over Python's int_max_str_digits
        return None
    if any(not finite(*box) for box in boxes):
        return None
    return boxes


def well_formed(completion: str, problem_type: str) -> bool:
    """The whole stripped completion is <think>..</think> <answer>..</answer>, plus a valid
    <glue> list for grounded QA (Video-R1's full match). What the evaluation's `format` counts
    and the taxonomy's "wrong format" reads, whatever the format reward pays."""
    text = completion.strip()
    if problem_type != "grounded QA":
        return FORMAT.fullmatch(text) is not None
    try:
        return FORMAT_GLUE.fullmatch(text) is not None and parse_glue(text) is not None
    except Exception:  # model output never raises
        return False


# ----------------------------------------------------------------------------- solutions
def problem_type(sample) -> str:
    """The sample's problem_type, or ValueError listing the known ones: a typo in the data
    must not score every answer 0."""
    if sample.problem_type not in PROBLEM_TYPES:
        raise ValueError(f"unknown problem_type {sample.problem_type!r}; known: {', '.join(PROBLEM_TYPES)}")
    return sample.problem_type


def _bad_solution(sample, what: str) -> ValueError:
    where = getattr(sample, "problem_id", "?")
    return ValueError(f"sample {where} ({sample.problem_type}): {what} in solution {sample.solution!r}")


def _text(s: str) -> str:  # OCR and free-form compare the answer text as written
    return s


PARSERS = {
    "multiple choice": parse_letter,
    "numerical": parse_number,
    "OCR": _text,
    "free-form": _text,
    "regression": parse_number,
    "temporal grounding": parse_span,
    "tracking": parse_boxes,
    "grounded QA": parse_letter,
}
"""How the answer text of each problem_type is read, for the solution and the completion alike:
the one answer reader of the rewards, the evaluation, the analysis, the explorer and the importers."""


def read_solution(sample) -> object:
    """The ground truth of a sample, read as its answers are (PARSERS); for grounded QA the
    <glue> evidence list must parse too. The importers check every record with it, so a record
    the data stage accepts is one the rewards can score; an unreadable solution raises ValueError."""
    kind = problem_type(sample)
    text = extract_answer(sample.solution)
    gt = None if text is None else PARSERS[kind](text)
    if gt is None:
        raise _bad_solution(sample, "no parsable answer")
    if kind == "grounded QA" and parse_glue(sample.solution) is None:
        raise _bad_solution(sample, "no valid <glue> list")
    return gt
