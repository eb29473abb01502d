"""vrlib.evaluate: per-task metrics on hand-computed traces, and the README tables."""
from __future__ import annotations

import pytest

from vrlib.data import Sample
from vrlib.evaluate import overview_table, results_table, score_traces, task_metrics


def sample(i, problem_type, solution, source, options=()):
    return Sample(problem_id=f"q{i}", problem="?", data_type="video", problem_type=problem_type,
                  options=list(options), solution=solution, path="x.mp4", data_source=source,
                  duration=8.0, fps=4.0)


def wrap(answer):
    return f"<think>t</think><answer>{answer}</answer>"


def test_task_metrics_by_hand():
    samples = [
        sample(0, "temporal grounding", "<answer>2.0 to 6.0</answer>", "world/grounding/span"),
        sample(1, "temporal grounding", "<answer>0.0 to 4.0</answer>", "world/grounding/span"),
        sample(2, "regression", "<answer>40</answer>", "world/distance/path"),
        sample(3, "grounded QA", "<answer>B</answer><glue>[(2.0, 6.0)]</glue>", "world/gqa/colour",
               ["A. red", "B. blue"]),
        sample(4, "tracking", "<answer>[[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]]</answer>", "GoT"),
    ]
    texts = [wrap("3.0 to 6.0"),  # IoU 3/4
             "no tags",  # IoU 0, format 0
             wrap("30"),  # 1 - 10/40 = 0.75; MRA: rel err 0.25 < 1 - C for C in 0.50..0.70 -> 5/10
             wrap("B") + "<glue>[(4.0, 6.0)]</glue>",  # letter right, glue IoU 2/4
             wrap("[[0, 0, 0.5, 0.5], [0, 0, 0.25, 0.5]]")]  # box IoUs 1 and 0.5 -> 0.75
    traces = score_traces("sft", samples, texts, [False] * 5)
    m = task_metrics(traces, [0.3, 0.5, 0.7])
    assert m["grounding"] == {"mIoU": 37.5, "format": 50.0, "R@0.3": 50.0, "R@0.5": 50.0,
                              "R@0.7": 50.0, "n": 2, "problem_type": "temporal grounding"}
    assert m["distance"] == {"accuracy": 75.0, "format": 100.0, "MRA": 50.0, "n": 1,
                             "problem_type": "regression"}
    assert m["gqa"]["accuracy"] == 100.0 and m["gqa"]["glue_mIoU"] == 50.0
    assert m["GoT"]["accuracy"] == 75.0 and m["GoT"]["R@0.5"] == 100.0
    assert sum(v["n"] for v in m.values()) == len(samples)

    metrics = {"rft": m, "base": m, "sft": m}
    overview = overview_table(metrics)
    assert overview.splitlines()[0] == "| task | metric | n | base | sft | rft |"
    assert "| distance | MRA | 1 | 50.0 | 50.0 | 50.0 |" in overview
    assert "| grounding | mIoU | 2 | 37.5 | 37.5 | 37.5 |" in overview
    assert overview.splitlines()[-1] == "| **mean over tasks** | | | " + " | ".join(
        [f"{(37.5 + 50 + 100 + 75) / 4:.1f}"] * 3) + " |"
    assert results_table(metrics, "grounding").splitlines()[2] == (
        "| base | 37.5 | 50.0 | 50.0 | 50.0 | 50.0 | 2 |")


@pytest.mark.parametrize("text", ["", "<answer></answer>", "<answer>1e999</answer>", "<answer>x</answer>"])
def test_mra_never_raises_on_model_output(text):
    s = sample(0, "regression", "<answer>40</answer>", "world/distance/path")
    assert score_traces("m", [s], [text], [True])[0].mra == 0.0


def test_ablation_table_by_hand():
    from vrlib.ablations import table

    def model(order, describe):
        return {"order": {"accuracy": order, "problem_type": "multiple choice", "n": 2},
                "describe": {"accuracy": describe, "problem_type": "free-form", "n": 2}}
    runs = {"t_grpo": {"set": ["rft.algo=t_grpo"], "eval": {"sft": model(25.0, 10.0), "rft": model(50.0, 20.0)},
                       "log": {"tgrpo/advantage_changed": 0.125, "tgrpo/p": 0.25, "tgrpo/p_shuffled": 0.5}},
            "grpo": {"set": [], "eval": {"sft": model(25.0, 10.0), "rft": model(0.0, 10.0)}}}
    rows = table(runs).splitlines()
    assert rows[2] == "| t_grpo | `rft.algo=t_grpo` | 35.0 (17.5) | +17.5 | 50.0 (25.0) | +25.0 | 12.5% | 0.250 / 0.500 |"
    assert rows[3] == "| grpo | (committed params) | 5.0 (17.5) | -12.5 | 0.0 (25.0) | -25.0 | - | - |"


def test_ablation_log_means_reads_dvclive_tsv(tmp_path):
    from vrlib.ablations import log_means

    path = tmp_path / "plots/metrics/tgrpo/p.tsv"
    path.parent.mkdir(parents=True)
    path.write_text("step\tp\n0\t0.5\n1\t0.25\n")
    assert log_means(tmp_path) == {"tgrpo/p": 0.375}


def test_settings_default_to_training_and_record_overrides():
    from vrlib.config import DataParams, EvalParams
    from vrlib.evaluate import settings

    same = settings(DataParams(), EvalParams())
    assert (same["fps"], same["min_frames"], same["max_frames"], same["max_pixels"]) == (2.0, 4, 16, 3136)
    assert same["decoding"] == "greedy" and same["max_new_tokens"] == 96
    more = settings(DataParams(), EvalParams(max_frames=64, max_pixels=256 * 28 * 28))
    assert (more["max_frames"], more["max_pixels"], more["fps"]) == (64, 200704, 2.0)


def test_an_output_without_answer_tag_is_scored_without_its_reasoning():
    s = sample(0, "multiple choice", "<answer>B</answer>", "world/choice/colour", ["A. red", "B. blue"])
    right, wrong = score_traces("m", [s, s], ["<think>not A</think> B", "<think>surely B</think> A"],
                                [False, False])
    assert (right.accuracy, right.format, right.answer) == (1.0, 0.0, "B")
    assert (wrong.accuracy, wrong.answer) == (0.0, "A")  # the B inside the reasoning is not read
