"""vrlib.evaluate: per-task metrics on hand-computed traces, and the README tables."""
from __future__ import annotations

import numpy as np
import pytest

from vrlib.data import Sample
from vrlib.evaluate import headline, overview_table, results_table, score_traces, task_metrics


def sample(i, problem_type, solution, source, options=()):
    return Sample(problem_id=f"q{i}", problem="?", data_type="video", problem_type=problem_type,
                  options=list(options), solution=solution, path="x.mp4", data_source=source,
                  duration=8.0, fps=4.0)


def wrap(answer):
    return f"<think>t</think><answer>{answer}</answer>"



def test_eval_scores_do_not_read_the_training_rewards(monkeypatch):
    """A reward experiment (partial credit in format_reward, another accuracy_reward) leaves what
    the evaluation measures unchanged: `format` is the share of well-formed outputs, `accuracy`
    the data contract's score, and the evaluation's code does not import vrlib.rewards."""
    from vrlib import rewards, sources

    monkeypatch.setattr(rewards, "format_reward", lambda completion, sample: 0.5)
    monkeypatch.setattr(rewards, "accuracy_reward", lambda completion, sample: 0.25)
    monkeypatch.setitem(rewards.REWARDS, "format", rewards.format_reward)
    monkeypatch.setitem(rewards.REWARDS, "accuracy", rewards.accuracy_reward)
    items = [sample(0, "multiple choice", "<answer>B</answer>", "world/choice/x", ["A. a", "B. b"]),
             sample(1, "multiple choice", "<answer>B</answer>", "world/choice/x", ["A. a", "B. b"])]
    traces = score_traces("rft", items, [wrap("B"), "B"], [False, False])
    assert [(t.format, t.accuracy) for t in traces] == [(1.0, 1.0), (0.0, 1.0)]
    assert task_metrics(traces, [0.5])["choice"]["format"] == 50.0
    assert "rewards.py" not in {p.name for p in sources.closure("import vrlib.evaluate")}

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


def _scores(order, count):
    """One model's per-item headline scores: 4 `order` items and 4 `count` items."""
    return {"order": {f"o{i}": float(v) for i, v in enumerate(order)},
            "count": {f"c{i}": float(v) for i, v in enumerate(count)}}


SFT = _scores([0, 0, 0, 0], [50, 50, 50, 50])  # order 0, count 50: 25 over tasks


def _record(name_set, seed, order, *, val_order=None, log=None):
    """A run record as `run_record` writes it; `val_order` gives val its own RFT order scores."""
    return {"set": name_set, "seed": seed, "key": "k", "log": log or {},
            "scores": {"val": {"sft": SFT, "rft": _scores(order if val_order is None else val_order, [50] * 4)},
                       "eval": {"sft": SFT, "rft": _scores(order, [50] * 4)}}}


def _runs():
    from vrlib.ablations import COMMITTED

    log = {"tgrpo/advantage_changed": 0.125, "tgrpo/p": 0.25, "tgrpo/p_shuffled": 0.5}
    return {COMMITTED: [_record([], s, [0, 0, 0, 0], log=log) for s in range(3)],  # RFT = SFT item for item
            "grpo": [_record(["rft.algo=grpo"], s, [100] * 4) for s in range(3)],  # every order item right
            "noisy": [_record(["rft.loss_type=dr_grpo"], s, o, val_order=[0, 0, 0, 0])
                      for s, o in enumerate(([100, 0, 100, 0], [0, 0, 100, 0], [100, 100, 100, 0]))]}


def test_ablation_table_by_hand():
    from vrlib.ablations import summarize, table

    results = summarize(_runs())
    rows = table(results, "eval").splitlines()
    assert rows[0].startswith("| variant | `dvc exp run -S` | rft, mean over tasks (3 seeds: mean ± sd) |")
    # every item and seed the same as SFT: a zero-width interval at 0, not an effect
    assert rows[2] == ("| committed params.yaml | (committed params) | 25.0 ± 0.0 (sft 25.0) | +0.0 [+0.0, +0.0] | - "
                       "| +0.0 [+0.0, +0.0] | - | 12.5% | 0.250 / 0.500 |")
    # every order item 0 -> 100 in every seed, count unchanged: +50 over tasks, an effect (bold)
    assert rows[3] == ("| grpo | `rft.algo=grpo` | 75.0 ± 0.0 (sft 25.0) | **+50.0 [+50.0, +50.0]** "
                       "| **+50.0 [+50.0, +50.0]** | **+100.0 [+100.0, +100.0]** | **+100.0 [+100.0, +100.0]** | - | - |")
    # seeds at 50, 37.5 and 62.5 over tasks: mean 50, sd 12.5
    assert rows[4].startswith("| noisy | `rft.loss_type=dr_grpo` | 50.0 ± 12.5 (sft 25.0) | ")
    noisy = results["variants"]["noisy"]["eval"]
    assert noisy["rft"]["per_seed"] == [50.0, 37.5, 62.5]
    assert noisy["rft - sft"]["over tasks"]["diff"] == 25.0 and noisy["rft - sft"]["order"]["diff"] == 50.0
    iv = noisy["rft - sft"]["over tasks"]
    assert iv["low"] <= 25.0 <= iv["high"] and iv["n"] == 8


def test_the_recipe_is_chosen_on_val_only():
    from vrlib.ablations import COMMITTED, choose, summarize

    variants = summarize(_runs())["variants"]
    # on eval `noisy` also beats the committed recipe; on val it equals it: grpo is chosen
    assert choose(variants)["recipe"] == "grpo" and choose(variants)["split"] == "val"
    for e in variants.values():  # the test split changed, or gone: the same choice
        e.pop("eval")
    assert choose(variants)["recipe"] == "grpo"
    runs = _runs()
    runs["grpo"] = [_record(["rft.algo=grpo"], s, [100] * 4, val_order=[0, 0, 100, 0]) for s in range(3)]
    assert choose(summarize(runs)["variants"])["recipe"] == COMMITTED  # better on eval only: not chosen


def test_ablations_resume_without_redoing_finished_runs(tmp_path, monkeypatch):
    import json

    from vrlib import ablations
    from vrlib.data import digest

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    (tmp_path / "dvc.lock").write_text("stages: {}\n")
    calls = []

    def fake_run(cmd):  # `dvc exp run` writes the traces of both splits, as the eval stage does
        calls.append(cmd)
        if cmd[:3] == ["dvc", "exp", "run"]:
            for split, folder in ablations.TRACES.items():
                folder.mkdir(parents=True, exist_ok=True)
                for model in ("sft", "rft"):
                    rows = [{"task": "order", "problem_type": "multiple choice", "problem_id": f"{split}{i}",
                             "accuracy": float(i % 2), "mra": 0.0} for i in range(4)]
                    (folder / f"{model}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    monkeypatch.setattr(ablations, "_run", fake_run)
    key = digest([ablations.COMMON], ["params.yaml", "dvc.lock"])
    done = ablations.RUNS / ablations.slug(ablations.COMMITTED) / "seed0.json"
    done.parent.mkdir(parents=True)
    fake_run(["dvc", "exp", "run"])
    done.write_text(json.dumps(ablations.run_record([], 0, key)))  # finished before a kill
    calls.clear()
    ablations.main(["--seeds", "1"])
    exps = [c for c in calls if c[:3] == ["dvc", "exp", "run"]]
    assert len(exps) == len(ablations.ABLATIONS)  # the committed recipe's seed 0 was kept
    common = [a for s in [*ablations.COMMON, "rft.seed=0"] for a in ("-S", s)]
    assert all(common == c[3:3 + len(common)] for c in exps)
    assert json.loads(ablations.OUT.read_text())["seeds"] == [0]
    calls.clear()
    ablations.main(["--seeds", "1"])  # everything done: nothing reruns
    assert not [c for c in calls if c[:3] == ["dvc", "exp", "run"]]
    assert ablations.slug("t_grpo, bonus on the reward (Video-R1)") == "t_grpo-bonus-on-the-reward-video-r1"


def test_ablations_put_head_back_on_its_branch(tmp_path, monkeypatch):
    import subprocess

    import pytest

    from vrlib import ablations

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], check=True,
                       capture_output=True)

    monkeypatch.chdir(tmp_path)
    assert ablations.branch() is None  # not a repository: nothing to do
    ablations.back_on(None)
    git("init", "-q", "-b", "main")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("commit", "-qm", "one")
    git("checkout", "-q", "--detach")  # what a killed `dvc exp run` leaves
    assert ablations.branch() is None
    ablations.back_on("main")
    assert ablations.branch() == "main"
    git("checkout", "-q", "--detach")
    git("commit", "-q", "--allow-empty", "-m", "elsewhere")  # HEAD moved: never reattached silently
    with pytest.raises(RuntimeError, match="HEAD moved"):
        ablations.back_on("main")
    with pytest.raises(RuntimeError, match="is gone"):
        ablations.back_on("no-such-branch")


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
    assert (same["fps"], same["min_frames"], same["max_frames"], same["max_pixels"]) == (2.0, 4, 16, 112 * 112)
    assert same["decoding"] == "greedy" and same["max_new_tokens"] == EvalParams().max_new_tokens == 128
    more = settings(DataParams(), EvalParams(max_frames=64, max_pixels=256 * 28 * 28))
    assert (more["max_frames"], more["max_pixels"], more["fps"]) == (64, 200704, 2.0)


def test_an_output_without_answer_tag_is_scored_without_its_reasoning():
    s = sample(0, "multiple choice", "<answer>B</answer>", "world/choice/colour", ["A. red", "B. blue"])
    right, wrong = score_traces("m", [s, s], ["<think>not A</think> B", "<think>surely B</think> A"],
                                [False, False])
    assert (right.accuracy, right.format, right.answer) == (1.0, 0.0, "B")
    assert (wrong.accuracy, wrong.answer) == (0.0, "A")  # the B inside the reasoning is not read


def test_item_scores_average_to_the_headline():
    from vrlib.evaluate import item_scores

    samples = [sample(0, "temporal grounding", "<answer>2.0 to 6.0</answer>", "world/grounding/span"),
               sample(1, "temporal grounding", "<answer>0.0 to 4.0</answer>", "world/grounding/span"),
               sample(2, "regression", "<answer>40</answer>", "world/distance/path")]
    traces = score_traces("sft", samples, [wrap("3.0 to 6.0"), "no tags", wrap("30")], [False] * 3)
    scores = item_scores(traces)
    assert scores == {"distance": {"q2": 50.0}, "grounding": {"q0": 75.0, "q1": 0.0}}  # MRA, IoU
    m = task_metrics(traces, [0.5])
    assert all(np.mean(list(scores[t].values())) == headline(m[t]) for t in m)


def _traces(name, order, count):
    rows = [("order", "multiple choice", v) for v in order] + [("count", "numerical", v) for v in count]
    return [{"model": name, "task": t, "problem_type": k, "problem_id": f"{t}{i}", "accuracy": v, "mra": 0.0}
            for i, (t, k, v) in enumerate(rows)]


def test_paired_differences_and_the_readme_table():
    from vrlib.evaluate import differences, sizes_table

    traces = {"base": _traces("base", [0, 0], [0, 1]), "sft": _traces("sft", [1, 1], [0, 1])}
    diffs = differences(traces, split="eval", seed=0)
    assert diffs["split"] == "eval" and diffs["confidence"] == 0.95 and list(diffs["differences"]) == ["sft - base"]
    d = diffs["differences"]["sft - base"]  # every order item +100, every count item 0
    assert d["order"] == {"diff": 100.0, "low": 100.0, "high": 100.0, "half_width": 0.0, "n": 2}
    assert d["over tasks"]["diff"] == 50.0 and (d["over tasks"]["low"], d["over tasks"]["high"]) == (50.0, 50.0)
    metrics = {name: {"order": {"accuracy": a, "problem_type": "multiple choice", "n": 2},
                      "count": {"accuracy": 50.0, "problem_type": "numerical", "n": 2}}
               for name, a in (("base", 0.0), ("sft", 100.0))}
    rows = overview_table(metrics, diffs).splitlines()
    assert rows[0] == "| task | metric | n | base | sft | sft - base |"
    assert rows[3] == "| order | accuracy | 2 | 0.0 | 100.0 | +100.0 [+100.0, +100.0] |"
    assert rows[-1] == "| **mean over tasks** | | | 25.0 | 75.0 | +50.0 [+50.0, +50.0] |"
    assert differences(traces, split="eval", seed=0) == diffs  # seeded: the same interval every time
    assert sizes_table([diffs]).splitlines()[2] == "| sft - base | eval | 4 | 0.0 | 0.0 (0.0) |"
    traces["sft"] = traces["sft"][:-1]
    with pytest.raises(ValueError, match="same items"):
        differences(traces, split="eval", seed=0)


def test_val_and_eval_share_no_item(tmp_path):
    from vrlib.data import build_split, load_media
    from vrlib.tasks import WorldSpec

    mix = {"order": 1, "count": 1, "grounding": 1}
    val = build_split(tmp_path / "val", "val", 0, 6, families=mix, spec=WorldSpec())
    test = build_split(tmp_path / "eval", "eval", 0, 6, families=mix, spec=WorldSpec())
    assert not {s.problem_id for s in val} & {s.problem_id for s in test}
    frames = {split: [load_media(tmp_path / split / s.path, s.data_type, fps=2, min_frames=4, max_frames=16).frames
                      for s in rows] for split, rows in (("val", val), ("eval", test))}
    assert not any(np.array_equal(a, b) for a in frames["val"] for b in frames["eval"])
