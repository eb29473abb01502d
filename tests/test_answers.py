"""vrlib.answers: the one answer reader's parser edge cases, the solution check, and that it
imports nothing from vrlib but the schema (so the data stage does not depend on the rewards)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from vrlib.answers import (
    PARSERS,
    extract_answer,
    find_numbers,
    parse_boxes,
    parse_glue,
    parse_letter,
    parse_number,
    parse_span,
    problem_type,
    read_solution,
)
from vrlib.schema import PROBLEM_TYPES


def sample(problem_type: str, solution: str) -> SimpleNamespace:
    return SimpleNamespace(problem_type=problem_type, solution=solution, problem_id="t-1")


# ----------------------------------------------------------------------------- imports
def test_answers_imports_nothing_from_vrlib_but_the_schema():
    """The data stage checks solutions here (tests/test_schema.py: without the rewards)."""
    code = "import sys, vrlib.answers; print(sorted(m for m in sys.modules if m.startswith('vrlib')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['vrlib', 'vrlib.answers', 'vrlib.schema']"


# ----------------------------------------------------------------------------- parsers
def test_extract_answer():
    assert extract_answer("<answer> A </answer> then <answer>B</answer>") == "B"   # last one
    assert extract_answer("<answer>a</answer>c</answer>") == "a"
    assert extract_answer("<answer>unclosed") is None
    assert extract_answer("</answer><answer>") is None
    assert extract_answer("<answer></answer>") == ""


@pytest.mark.parametrize("text,letter", [
    ("B", "B"), ("B.", "B"), ("(B)", "B"), ("B. the ball", "B"), ("(B) the ball", "B"),
    ("Answer: B", "B"), ("The answer is (C).", "C"), ("The correct option is D", "D"), ("B)", "B"),
    ("Dance.", None), ("A cat", None), ("b", None), ("", None), ("B C", None), ("Answer", None),
])
def test_parse_letter(text, letter):
    assert parse_letter(text) == letter


@pytest.mark.parametrize("text,number", [
    ("3", 3.0), ("3.0", 3.0), ("1,200", 1200.0), ("-2.5", -2.5), (" 7 ", 7.0), ("1e3", 1000.0), (".5", 0.5),
    ("1,2", None), ("nan", None), ("inf", None), ("1e400", None), ("1_000", None), ("3 m", None), ("", None),
])
def test_parse_number(text, number):
    assert parse_number(text) == number


@pytest.mark.parametrize("text,numbers", [
    ("1,200 frames, .5 s apart, 1e3 in all", [1200.0, 0.5, 1000.0]),  # the answer's grammar
    ("That is 2.", [2.0]), ("from (12, 30) to (50, 30), so 38.", [12.0, 30.0, 50.0, 30.0, 38.0]),
    ("1,200, then 300", [1200.0, 300.0]), ("1,2 or 1,2345", [1.0, 2.0, 1.0, 2345.0]),
    ("x = -3, y = +.5, 2-3 s", [-3.0, 0.5, 2.0, 3.0]), ("frame2 at 2.5s", [2.5]),
    ("3.2.1", [3.2]), ("nan inf 1e400", []), ("no number", []),
])
def test_find_numbers_reads_running_text_as_parse_number(text, numbers):
    assert find_numbers(text) == numbers
    # each number found is what the answer parser reads from its own text
    assert all(parse_number(str(x)) == x for x in numbers)


def test_one_parser_per_problem_type():
    assert set(PARSERS) == set(PROBLEM_TYPES)
    assert PARSERS["numerical"]("1,200") == 1200.0 and PARSERS["grounded QA"]("(C)") == "C"


def test_parse_span():
    assert parse_span("2.0 to 5.0") == (2.0, 5.0)
    assert parse_span("between 3 and 8") == (3.0, 8.0)
    assert parse_span("1 to 2, then 12.54 to 17.83") == (12.54, 17.83)
    assert parse_span("5 to 2") == (5.0, 2.0)             # kept; temporal_iou scores it 0
    assert parse_span("at 5 seconds") is None


def test_parse_glue_and_boxes():
    assert parse_glue("<glue>[(5.2, 10.4), (12, 13),]</glue>") == [(5.2, 10.4), (12.0, 13.0)]
    assert parse_glue("[(5.2, 10.4)]") is None             # the tags are required
    assert parse_glue("<glue>[(1, 2)] + [(3, 4)]</glue>") is None
    assert parse_boxes("[[0.1, 0.2, 0.3, 0.4], [.1, -0.2, 1., 1]]") == [(0.1, 0.2, 0.3, 0.4), (0.1, -0.2, 1.0, 1.0)]
    assert parse_boxes("[]") is None
    assert parse_boxes("[[1, 2, 3, 4]") is None


# ----------------------------------------------------------------------------- solutions
def test_read_solution_reads_the_ground_truth_as_the_answers_are_read():
    assert read_solution(sample("numerical", "<answer>1,200</answer>")) == 1200.0
    assert read_solution(sample("multiple choice", "<answer>(C)</answer>")) == "C"
    assert read_solution(sample("temporal grounding", "<answer>2.0 to 5.0</answer>")) == (2.0, 5.0)
    assert read_solution(sample("grounded QA", "<answer>C</answer><glue>[(5.0, 10.0)]</glue>")) == "C"


@pytest.mark.parametrize("kind,solution,why", [
    ("numerical", "3", "no parsable answer"),                      # no <answer> tag
    ("numerical", "<answer>three</answer>", "no parsable answer"),
    ("multiple choice", "<answer>Dance.</answer>", "no parsable answer"),
    ("grounded QA", "<answer>C</answer>", "no valid <glue> list"),
    ("grounded QA", "<answer>C</answer><glue>[(10, 5)]</glue>", "no valid <glue> list"),
    ("grounded QA", "<answer>maybe</answer>", "no parsable answer"),  # the answer is checked first
])
def test_read_solution_raises_on_an_unreadable_solution(kind, solution, why):
    with pytest.raises(ValueError, match=rf"sample t-1 \({kind}\): {why} in solution"):
        read_solution(sample(kind, solution))


def test_unknown_problem_type_raises_with_the_known_ones():
    with pytest.raises(ValueError, match="known: multiple choice, numerical"):
        problem_type(sample("multiple-choice", "<answer>B</answer>"))
    with pytest.raises(ValueError, match="known: multiple choice, numerical"):
        read_solution(sample("multiple-choice", "<answer>B</answer>"))
