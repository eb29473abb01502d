"""vrlib.analysis: the failure taxonomy on hand-written traces, and the flips between models."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from vrlib.analysis import FAILURES, failure, flip_table, flips, read_models, reasoning_answer, taxonomy
from vrlib.schema import CORRECT

MC = SimpleNamespace(problem_type="multiple choice", duration=8.0,
                     options=["A. white square", "B. yellow square", "C. red circle"])
SPAN = SimpleNamespace(problem_type="temporal grounding", duration=8.0, options=[])
GQA = SimpleNamespace(problem_type="grounded QA", duration=8.0, options=["A. red", "B. blue"])
COUNT = SimpleNamespace(problem_type="numerical", duration=8.0, options=[])
OCR = SimpleNamespace(problem_type="OCR", duration=8.0, options=[])


def trace(completion, accuracy=0.0, fmt=1.0, truncated=False, pid="x", task="choice",
          problem_type="multiple choice"):
    return {"problem_id": pid, "completion": completion, "accuracy": accuracy, "format": fmt,
            "truncated": truncated, "task": task, "problem_type": problem_type}


@pytest.mark.parametrize("completion,sample,kw,expected", [
    ("<think>a</think><answer>B</answer>", MC, dict(accuracy=1.0), "ok"),
    ("<think>The white square appears", MC, dict(fmt=0.0, truncated=True), "truncated"),
    ("<think>It is B.</think>", MC, dict(fmt=0.0), "no answer tag"),
    ("<think>It is 2.</think><answer> ", COUNT, dict(fmt=0.0), "empty answer"),  # EOS after <answer>
    ("I think <answer>B</answer>", MC, dict(fmt=0.0), "wrong format"),
    ("<think>from 6.0 to 9.5</think><answer>6.0 to 9.5</answer>", SPAN, {}, "time outside the video"),
    ("<think>x</think><answer>A</answer><glue>[(1.0, 12.0)]</glue>", GQA, {}, "time outside the video"),
    ("<think>The yellow square appears at 1.0 seconds. The white square is first.</think>"
     "<answer>B</answer>", MC, {}, "answer not supported by the reasoning"),
    ("<think>I see the red circle. That is 2.</think><answer>3</answer>", COUNT, {},
     "answer not supported by the reasoning"),
    ("<think>visible from 2.0 to 5.0.</think><answer>1.0 to 3.0</answer>", SPAN, {},
     "answer not supported by the reasoning"),
    ("<think>The white square is first.</think><answer>A</answer>", MC, {}, "wrong answer, valid format"),
    ("<think>I read the word.</think><answer>cat</answer>", OCR, {}, "wrong answer, valid format"),
    ("<think>from 6.0 to 7.5</think><answer>6.0 to 7.5</answer>", SPAN, {}, "wrong answer, valid format"),
])
def test_failure_reasons_by_hand(completion, sample, kw, expected):
    assert failure(trace(completion, problem_type=sample.problem_type, **kw), sample) == expected


def test_wrong_format_is_the_parsers_verdict_not_the_logged_reward():
    """A format reward with partial credit must not move the taxonomy: it reads the completion."""
    well_formed = "<think>The white square is first.</think><answer>A</answer>"
    assert failure(trace(well_formed, fmt=0.5), MC) == "wrong answer, valid format"
    assert failure(trace("I think <answer>B</answer>", fmt=1.0), MC) == "wrong format"


def test_reasoning_answer_reads_the_last_option_number_or_span():
    assert reasoning_answer("<think>Not (A); it is (C)</think>", MC) == "C"
    assert reasoning_answer("<think>the red circle, then the white square</think>", MC) == "A"
    assert reasoning_answer("<think>no option here</think>", MC) is None
    assert reasoning_answer("<think>from (12, 30) to (50, 30), so 38.</think>", COUNT) == 38.0
    assert reasoning_answer("<think>2.0 to 5.0, or 3.0 and 4.0</think>", SPAN) == (3.0, 4.0)
    assert reasoning_answer("<think>anything</think>", OCR) is None
    assert reasoning_answer("no think at all", MC) is None


@pytest.mark.parametrize("said,answer", [("1,200", "1200"), (".5", "0.5"), ("1e3", "1000"), ("1,200", "1,200.0")])
def test_the_reasoning_reads_numbers_with_the_answer_grammar(said, answer):
    """A reasoning that concludes the answer supports it, whatever the number's form: the old
    grammar read "1,200" as 200, ".5" as 5 and "1e3" as 3."""
    completion = f"<think>I count {said}.</think><answer>{answer}</answer>"
    assert reasoning_answer(completion, COUNT) == float(answer.replace(",", ""))
    assert failure(trace(completion), COUNT) == "wrong answer, valid format"


def test_the_threshold_is_the_schema_one():
    half = [trace("", CORRECT, pid="a"), trace("", CORRECT - 0.01, pid="b")]
    assert taxonomy(half)["ok"] == 1 and failure(half[0]) == "ok"
    later = [trace("", CORRECT - 0.01, pid="a"), trace("", CORRECT, pid="b")]
    assert flips(half, later) == {"fixed": ["b"], "broken": ["a"]}


def test_taxonomy_counts_add_up_and_wrong_ones_are_the_wrong_items():
    samples = {"a": MC, "b": SPAN, "c": COUNT, "d": MC}
    traces = [trace("<think>x</think><answer>B</answer>", 1.0, pid="a"),
              trace("<think>from 6.0 to 9.5</think><answer>6.0 to 9.5</answer>", pid="b"),
              trace("<think>That is 2.</think><answer>3</answer>", pid="c"),
              trace("<think>x", fmt=0.0, truncated=True, pid="d")]
    counts = taxonomy(traces, samples)
    assert list(counts) == list(FAILURES)
    assert sum(counts.values()) == 4 and counts["ok"] == 1
    assert sum(v for k, v in counts.items() if k != "ok") == sum(t["accuracy"] < CORRECT for t in traces)
    assert counts["time outside the video"] == counts["answer not supported by the reasoning"] == 1
    # without the data records the two checks that need them are skipped, never guessed
    assert taxonomy(traces)["wrong answer, valid format"] == 2


def test_flips_between_models():
    before = [trace("", 1.0, pid="a"), trace("", 0.0, pid="b"), trace("", 1.0, pid="c")]
    after = [trace("", 0.0, pid="a"), trace("", 0.9, pid="b"), trace("", 1.0, pid="c")]
    assert flips(before, after) == {"fixed": ["b"], "broken": ["a"]}


def test_flip_table_counts_fixed_and_broken_per_task_for_every_pair_in_order():
    def model(*accuracies):  # items a, b (choice) and c, d (count)
        return [trace("", acc, pid=pid, task=task)
                for acc, (pid, task) in zip(accuracies, [("a", "choice"), ("b", "choice"), ("c", "count"), ("d", "count")])]
    by_model = {"base": model(0, 0, 0, 1), "sft": model(1, 0, 1, 1), "rft": model(0, 1, 1, 0)}
    table = flip_table(by_model)
    assert list(table.columns) == ["pair", "task", "fixed", "broken"]
    got = {(r.pair, r.task): (r.fixed, r.broken) for r in table.itertuples()}
    assert got == {("base_to_sft", "choice"): (1, 0), ("base_to_sft", "count"): (1, 0), ("base_to_sft", "all"): (2, 0),
                   ("base_to_rft", "choice"): (1, 0), ("base_to_rft", "count"): (1, 1), ("base_to_rft", "all"): (2, 1),
                   ("sft_to_rft", "choice"): (1, 1), ("sft_to_rft", "count"): (0, 1), ("sft_to_rft", "all"): (1, 2)}
    # the "all" row is flips() itself
    assert got[("sft_to_rft", "all")] == tuple(len(v) for v in flips(by_model["sft"], by_model["rft"]).values())
    only = flip_table(by_model, pairs=[("rft", "sft")])
    assert list(only.pair.unique()) == ["rft_to_sft"] and only.fixed.tolist() == [1, 1, 2]


def test_read_models_puts_the_study_order_first(tmp_path):
    for name in ("rft_tcr", "sft", "base", "rft"):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps(trace("", pid=name)) + "\n\n")
    by_model = read_models(tmp_path)
    assert list(by_model) == ["base", "sft", "rft", "rft_tcr"]
    assert [t["problem_id"] for t in by_model["rft_tcr"]] == ["rft_tcr"]
