"""vrlib.rewards and the scores they pay (vrlib.scoring): hand-computed scores per problem_type, bad
solutions, nasty strings (the parsers' own cases are in test_answers.py)."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest

from vrlib.answers import (
    extract_answer,
    find_numbers,
    parse_boxes,
    parse_glue,
    parse_letter,
    parse_number,
    parse_span,
)
from vrlib.evaluate import mean_relative_accuracy
from vrlib.rewards import REWARDS, accuracy_reward, format_reward, glue_iou_reward
from vrlib.scoring import box_iou, segments_iou, temporal_iou
from vrlib.schema import PROBLEM_TYPES


def sample(problem_type: str, solution: str) -> SimpleNamespace:
    return SimpleNamespace(problem_type=problem_type, solution=solution, problem_id="t-1")


def answer(text: str) -> str:
    return f"<think>let me think</think>\n<answer>{text}</answer>"


# One correct answer, one wrong, one partially right with its expected score, per problem_type.
SOLUTIONS = {
    "multiple choice": "<answer>B</answer>",
    "numerical": "<answer>3</answer>",
    "OCR": "<answer>hello world</answer>",
    "free-form": "<answer>the red circle moves left</answer>",
    "regression": "<answer>10</answer>",
    "temporal grounding": "<answer>2.0 to 5.0</answer>",
    "tracking": "<answer>[[0, 0, 1, 1], [0, 0, 0.5, 0.5]]</answer>",
    "grounded QA": "<answer>C</answer><glue>[(5.0, 10.0)]</glue>",
}
CASES = [
    # (problem_type, completion, expected accuracy, why)
    ("multiple choice", answer("B"), 1.0, "same letter"),
    ("multiple choice", answer("(B) the ball"), 1.0, "parenthesised letter and text"),
    ("multiple choice", answer("Answer: B."), 1.0, "prefix and period"),
    ("multiple choice", answer("C"), 0.0, "other letter"),
    ("multiple choice", answer("Because"), 0.0, "a word starting with B is not B"),
    ("numerical", answer("3.0"), 1.0, '"3" == "3.0" (Video-R1 scores this 0)'),
    ("numerical", answer("3.004"), 1.0, "round(3.004, 2) == 3.0"),
    ("numerical", answer("3.01"), 0.0, "differs at 2 decimals"),
    ("numerical", answer("three"), 0.0, "not a number"),
    ("OCR", answer("hello world"), 1.0, "WER 0"),
    ("OCR", answer("hello there"), 0.5, "1 substitution / 2 reference words"),
    ("OCR", answer("hello big world"), 0.5, "1 insertion / 2 reference words"),
    ("OCR", answer("a b c d e"), 0.0, "WER 5/2 = 2.5, clipped to 1 -> 0"),
    ("free-form", answer("the red circle moves left"), 1.0, "identical"),
    ("free-form", answer("The red circle moved left."), 1.0, "case, punctuation, stemming (moved -> move)"),
    # R1: P 3/3, R 3/5 -> F 0.75; R2: P 2/2, R 2/4 -> F 0.6667; RL: LCS 3 -> 0.75; mean 0.7222
    ("free-form", answer("the red circle"), (0.75 + 2 / 3 + 0.75) / 3, "prefix of the reference"),
    ("free-form", answer("blue square"), 0.0, "no shared word"),
    ("regression", answer("10"), 1.0, "exact"),
    ("regression", answer("12"), 0.8, "relative error 0.2"),
    ("regression", answer("25"), 0.0, "relative error 1.5, clipped to 1"),
    ("temporal grounding", answer("2.0 to 5.0"), 1.0, "same span"),
    ("temporal grounding", answer("3 and 6"), 0.5, "intersection [3, 5] = 2, union [2, 6] = 4"),
    ("temporal grounding", answer("from 0 to 1, no: 2.0 to 5.0"), 1.0, "the last span counts"),
    ("temporal grounding", answer("5.0 to 2.0"), 0.0, "start > end"),
    ("temporal grounding", answer("soon"), 0.0, "no span"),
    ("tracking", answer("[[0, 0, 1, 1], [0, 0, 0.5, 0.5]]"), 1.0, "same boxes"),
    ("tracking", answer("[[0, 0, 1, 1], [0, 0, 1, 1]]"), 0.625, "IoU 1 and 0.25/1 -> mean 0.625"),
    ("tracking", answer("[[0, 0, 1, 1]]"), 0.0, "wrong box count"),
    ("tracking", answer("[[0, 0, 1, 1], [0, 0, 0.5, 0.5], [0, 0, 1, 1]]"), 0.0, "wrong box count"),
    ("tracking", answer("[[0, 0, 1], [0, 0, 0.5, 0.5]]"), 0.0, "a box with 3 numbers"),
    ("grounded QA", answer("C") + "<glue>[(5.0, 7.5)]</glue>", 1.0, "letter right"),
    ("grounded QA", answer("A") + "<glue>[(5.0, 10.0)]</glue>", 0.0, "letter wrong"),
]


@pytest.mark.parametrize("problem_type,completion,expected,why", CASES)
def test_accuracy(problem_type, completion, expected, why):
    score = accuracy_reward(completion, sample(problem_type, SOLUTIONS[problem_type]))
    assert score == pytest.approx(expected, abs=1e-4), why


@pytest.mark.parametrize("problem_type", PROBLEM_TYPES)
def test_no_answer_tag_scores_zero(problem_type):
    correct = extract_answer(SOLUTIONS[problem_type])
    assert accuracy_reward(correct, sample(problem_type, SOLUTIONS[problem_type])) == 0.0


def test_accuracy_number_forms():
    s = sample("numerical", "<answer>1200</answer>")
    assert accuracy_reward(answer("1,200"), s) == 1.0      # thousands comma
    assert accuracy_reward(answer("1,200.0"), s) == 1.0
    assert accuracy_reward(answer("1,2000"), s) == 0.0     # not a thousands grouping -> unparsable
    s = sample("regression", "<answer>0</answer>")
    assert accuracy_reward(answer("0"), s) == 1.0          # Video-R1's +1e-9 terms score this 0
    assert accuracy_reward(answer("0.1"), s) == 0.0


def test_multiple_choice_gt_in_parentheses():
    # VideoChat-R1 stores GT letters as "(C)"
    assert accuracy_reward(answer("C"), sample("multiple choice", "<answer>(C)</answer>")) == 1.0


def test_dance_is_not_d():
    s = sample("multiple choice", "<answer>D</answer>")
    assert parse_letter("Dance.") is None  # VideoChat-R1's extract_characters_regex reads D
    assert accuracy_reward(answer("Dance."), s) == 0.0
    assert accuracy_reward(answer("D. Dance."), s) == 1.0


# ----------------------------------------------------------------------------- format and glue
@pytest.mark.parametrize("completion,expected", [
    ("<think>a</think><answer>B</answer>", 1.0),
    ("  <think>a\nb</think>\n\n<answer>B</answer>\n", 1.0),   # stripped, newlines inside
    ("Sure! <think>a</think><answer>B</answer>", 0.0),        # leading text
    ("<think>a</think><answer>B</answer> done", 0.0),         # trailing text
    ("<answer>B</answer>", 0.0),                              # no think
    ("<think>a</think>", 0.0),                                # no answer
    ("<think>a</think><answer>C</answer><glue>[(1, 2)]</glue>", 0.0),  # glue only for grounded QA
])
def test_format(completion, expected):
    assert format_reward(completion, sample("multiple choice", SOLUTIONS["multiple choice"])) == expected


@pytest.mark.parametrize("glue,expected", [
    ("<glue>[(5.0, 7.5)]</glue>", 1.0),
    ("\n<glue>[(1, 2), (3.5, 4)]</glue>", 1.0),
    ("<glue>[]</glue>", 1.0),                  # an empty list is valid, as VideoChat-R1
    ("", 0.0),                                 # glue missing
    ("<glue>[(10, 5)]</glue>", 0.0),           # start > end
    ("<glue>(5, 10)</glue>", 0.0),             # not a list
    ("<glue>[(-1, 5)]</glue>", 0.0),           # negative times are not allowed
    ("<glue>__import__('os')</glue>", 0.0),    # never evaluated
])
def test_format_grounded_qa(glue, expected):
    s = sample("grounded QA", SOLUTIONS["grounded QA"])
    assert format_reward(answer("C") + glue, s) == expected


def test_glue_iou_reward():
    s = sample("grounded QA", SOLUTIONS["grounded QA"])
    # GT [5, 10]; pred [5, 7.5]: intersection 2.5, union 5 -> 0.5
    assert glue_iou_reward(answer("A") + "<glue>[(5.0, 7.5)]</glue>", s) == pytest.approx(0.5)
    # pred [0, 6] and [9, 20]: intersection 1 + 1 = 2, union 6 + 11 + 5 - 2 = 20 -> 0.1
    assert glue_iou_reward(answer("C") + "<glue>[(0, 6), (9, 20)]</glue>", s) == pytest.approx(0.1)
    assert glue_iou_reward(answer("C"), s) == 0.0                                    # no glue
    assert glue_iou_reward(answer("C") + "<glue>[(7, 6)]</glue>", s) == 0.0          # invalid
    assert glue_iou_reward(answer("B"), sample("multiple choice", "<answer>B</answer>")) == 0.0  # other type


# ----------------------------------------------------------------------------- helpers
def test_temporal_iou():
    assert temporal_iou((1.0, 3.0), (2.0, 4.0)) == pytest.approx(1 / 3)   # overlap 1, hull 3
    assert temporal_iou((0.0, 1.0), (2.0, 4.0)) == 0.0                    # disjoint
    assert temporal_iou((5.0, 2.0), (2.0, 5.0)) == 0.0                    # start > end
    assert temporal_iou((3.0, 3.0), (3.0, 3.0)) == 1.0                    # union 0, identical
    assert temporal_iou((3.0, 3.0), (4.0, 4.0)) == 0.0                    # union 0, different
    assert temporal_iou((float("nan"), 3.0), (1.0, 3.0)) == 0.0


def test_box_iou():
    assert box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)     # 1 / (4 + 4 - 1)
    assert box_iou([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    assert box_iou([1, 1, 0, 0], [0, 0, 1, 1]) == 0.0                      # inverted box


def test_segments_iou():
    # pred merges to [0, 3]; gt [2, 4]: intersection 1, union 3 + 2 - 1 = 4
    assert segments_iou([(0, 2), (1, 3)], [(2, 4)]) == pytest.approx(0.25)
    # unmerged, the overlaps with [0, 3] would count 2 + 2 = 4 > union; merged: identical
    assert segments_iou([(0, 2), (1, 3)], [(0, 3)]) == pytest.approx(1.0)
    # two pieces inside one: intersection 1 + 1 = 2, union 2 + 3 - 2 = 3
    assert segments_iou([(0, 1), (2, 3)], [(0, 3)]) == pytest.approx(2 / 3)
    assert segments_iou([(2, 1)], [(0, 3)]) == 0.0
    assert segments_iou([], [(0, 3)]) == 0.0


def test_mean_relative_accuracy():
    assert mean_relative_accuracy(10.3, 10) == 1.0   # relative error 0.03 < 1 - C for every C <= 0.95
    # relative error 0.22 < 1 - C for C in 0.50..0.75 (6 of 10)
    assert mean_relative_accuracy(12.2, 10) == pytest.approx(0.6)
    assert mean_relative_accuracy(30, 10) == 0.0
    assert mean_relative_accuracy(0, 0) == 1.0
    assert mean_relative_accuracy(1, 0) == 0.0
    assert mean_relative_accuracy(float("nan"), 10) == 0.0
    assert mean_relative_accuracy(12.2, 10, thresholds=(0.5,)) == 1.0


# ----------------------------------------------------------------------------- errors and garbage
def test_unknown_problem_type_raises():
    for reward in (format_reward, accuracy_reward, glue_iou_reward):
        with pytest.raises(ValueError, match="known: multiple choice, numerical"):
            reward(answer("B"), sample("multiple-choice", "<answer>B</answer>"))


def test_one_reward_table():
    assert REWARDS == {"format": format_reward, "accuracy": accuracy_reward, "glue_iou": glue_iou_reward}


def test_bad_solution_raises():
    with pytest.raises(ValueError, match="t-1"):
        accuracy_reward(answer("3"), sample("numerical", "3"))            # no <answer> in the solution
    with pytest.raises(ValueError, match="glue"):
        glue_iou_reward(answer("C"), sample("grounded QA", "<answer>C</answer>"))


NASTY = [
    "", " ", "\x00", "\n\n", "<answer>", "</answer>", "</answer><answer>", "<answer></answer>",
    "<think></think><answer></answer>", "<answer>nan</answer>", "<answer>inf</answer>", "<answer>-inf to inf</answer>",
    "<answer>1e999</answer>", "<answer>" + "9" * 5000 + "</answer>", "<answer>" + "9" * 400 + ".0 to 1</answer>",
    "<answer>[[" + "9" * 5000 + ", 0, 0, 0], [0, 0, 1, 1]]</answer>",
    "<answer>[[1e999, 0, 0, 0], [0, 0, 1, 1]]</answer>", "<answer>[[0, 0, 1, 1], [0, 0, 1, 1]</answer>",
    answer("C") + "<glue>[(" + "9" * 5000 + ", 1)]</glue>",
    answer("C") + "<glue>[(" + "9" * 400 + ".0, " + "9" * 401 + ".0)]</glue>",
    "<answer>" + "[" * 10000 + "</answer>", "<answer>" + "1" * 100000 + "</answer>",
    "<answer>" + "1" * 50000 + "." + "1" * 50000 + "</answer>", "<answer>1" + " " * 50000 + "x</answer>",
    "<answer>٣</answer>", "<answer>３</answer>", "<answer>Ｂ</answer>", "<answer>😀 Ünïcödé \u202e</answer>",
    "<answer>\ud800</answer>", "<glue>__import__('os').system('echo pwned')</glue>",
    "<answer>B</answer>" * 1000, "<think>" + "</think><answer>" * 500 + "</answer>",
    answer("C") + "<glue>" + "[(1, 2)," * 5000 + "</glue>", "<answer>" + "x" * 200000 + "</answer>",
]


def fuzz_strings(n=300, seed=0):
    rng = random.Random(seed)
    pieces = ["<think>", "</think>", "<answer>", "</answer>", "<glue>", "</glue>", "(", ")", "[", "]", ",", " ",
              "1.5", "0", "-3", " to ", " and ", "B", "B.", "Dance", "nan", "1e999", "😀", "\n", "'", '"']
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(n)]


@pytest.mark.parametrize("problem_type", PROBLEM_TYPES)
def test_nasty_strings_never_raise(problem_type):
    s = sample(problem_type, SOLUTIONS[problem_type])
    for text in NASTY + fuzz_strings():
        for reward in (format_reward, accuracy_reward, glue_iou_reward):
            value = reward(text, s)
            assert isinstance(value, float) and 0.0 <= value <= 1.0 and not math.isnan(value), (reward, text[:80])


def test_parsers_never_raise_on_nasty_strings():
    for text in NASTY + fuzz_strings():
        for parse in (extract_answer, parse_span, parse_glue, parse_boxes, parse_number, parse_letter,
                      find_numbers):
            parse(text)


def test_length_bonus_only_when_more_than_one_answer_is_correct():
    from vrlib.grpo import length_bonus

    kw = dict(omega=0.2, l_min=3, l_max=5)
    assert length_bonus([1, 1, 0, 0.05], [4, 9, 4, 4], **kw) == [0.2, 0.0, 0.0, 0.0]
    assert length_bonus([1, 0, 0, 0], [4, 4, 4, 4], **kw) == [0.0] * 4  # one correct: none
    assert length_bonus([0.5, 0.2], [3, 5], **kw) == [0.2, 0.2]           # bounds inclusive
    with pytest.raises(ValueError):
        length_bonus([1.0], [1, 2])


def test_free_form_text_equal_to_the_reference_scores_1_whatever_its_length():
    """ROUGE-2 of a one-word reference is 0, so Video-R1's mean gave the exact answer 0.667."""
    for gold in ("No.", "Wetsuit", "the red circle moves left"):
        s = sample("free-form", f"<answer>{gold}</answer>")
        assert accuracy_reward(answer(gold), s) == 1.0
        assert accuracy_reward(answer(gold.lower().rstrip(".")), s) == 1.0  # the same tokens
    assert accuracy_reward(answer("Yes."), sample("free-form", "<answer>No.</answer>")) == 0.0
    assert 0 < accuracy_reward(answer("the red circle"), sample("free-form", SOLUTIONS["free-form"])) < 1
