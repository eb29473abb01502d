"""vrlib.tasks: every family is reproducible, self-consistent, and scored right by the rewards."""
from __future__ import annotations

import numpy as np
import pytest

from vrlib import answers, rewards, tasks, world
from vrlib.data import Sample
from vrlib.tasks import FAMILIES, WorldSpec

SPEC = WorldSpec()
QUESTION_FAMILIES = [f for f in FAMILIES if f != "inventory"]


def as_sample(item: tasks.Item, i: int = 0) -> Sample:
    return Sample(problem_id=f"q{i}", problem=item.problem, data_type=item.data_type,
                  problem_type=item.problem_type, options=item.options, solution=item.solution,
                  path="x.mp4", data_source="world", duration=8.0, fps=4.0, process=item.process)


@pytest.mark.parametrize("family", QUESTION_FAMILIES)
def test_family_is_reproducible_and_its_solution_scores_full_marks(family):
    kinds = set()
    for i in range(12):
        item = FAMILIES[family](3, i, SPEC)
        again = FAMILIES[family](3, i, SPEC)
        assert (item.problem, item.solution, item.process) == (again.problem, again.solution, again.process)
        np.testing.assert_array_equal(item.frames, again.frames)
        n = 1 if item.data_type == "image" else SPEC.duration * SPEC.fps
        assert item.frames.shape == (n, SPEC.size, SPEC.size, 3) and item.frames.dtype == np.uint8
        sample = as_sample(item, i)
        completion = item.process + item.solution
        assert rewards.format_reward(completion, sample) == 1.0, completion
        assert rewards.accuracy_reward(completion, sample) == 1.0, completion
        if item.problem_type == "grounded QA":
            assert rewards.glue_iou_reward(completion, sample) == 1.0
        for k, option in enumerate(item.options):
            assert option.startswith(f"{chr(65 + k)}. ")
        assert all(0 <= k < n for k in item.key_frames)
        kinds.add(item.kind)
    if family in ("order", "cups", "choice", "image"):
        assert len(kinds) > 1, kinds  # every kind of question shows up


def test_grounding_is_the_pinned_instance():
    item = tasks.grounding(0, 0, SPEC)
    assert item.problem == "When does the red circle appear?"
    assert item.solution == "<answer>2.0 to 6.0</answer>"


# ----------------------------------------------------------------------------- order
def answer_from_frames(item: tasks.Item, frames: np.ndarray) -> str:
    """Read an order question's answer off the pixels, as a viewer of `frames` would."""
    if item.kind == "first":
        names = [o.split(". ", 1)[1] for o in item.options]
        first_seen = [np.flatnonzero(world.observe(frames, n.split()[0])[0]).min() for n in names]
        return chr(65 + int(np.argmin(first_seen)))
    colour = item.problem.split("the ")[1].split()[0]
    visible, centre = world.observe(frames, colour)
    seen = np.flatnonzero(visible)
    dx, dy = centre[seen[-1]] - centre[seen[0]]
    direction = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
    return chr(65 + tasks.DIRECTIONS.index(direction))


def test_shuffling_frames_changes_the_answer_of_order_questions():
    """The case T-GRPO exists for: the answer depends on the order of the frames."""
    changed_by_shuffle = 0
    items = [tasks.order(0, i, SPEC) for i in range(40)]
    assert {it.kind for it in items} == {"first", "direction"}
    for i, item in enumerate(items):
        gold = answers.extract_answer(item.solution)
        assert answer_from_frames(item, item.frames) == gold  # the pixels say what the solution says
        assert answer_from_frames(item, item.frames[::-1]) != gold  # reversed time, other answer
        perm = np.random.default_rng(i).permutation(len(item.frames))
        changed_by_shuffle += answer_from_frames(item, item.frames[perm]) != gold
    assert changed_by_shuffle >= 0.5 * len(items), changed_by_shuffle


def test_order_free_questions_survive_reversal():
    for i in range(20):
        item = tasks.choice(0, i, SPEC)
        name = item.problem.split("the ")[1].rstrip("?").split()[0]  # shape or colour word
        letter = answers.extract_answer(item.solution)
        answer = item.options[ord(letter) - 65].split(". ", 1)[1]
        colour = answer if item.kind == "colour" else name
        assert world.observe(item.frames[::-1], colour)[0].any()  # still there, whatever the order


# ----------------------------------------------------------------------------- the other families
def test_tracking_boxes_follow_the_drawn_shape():
    for i in range(10):
        item = tasks.tracking(0, i, SPEC)
        boxes = answers.parse_boxes(answers.extract_answer(item.solution))
        assert len(boxes) == SPEC.track_boxes
        assert "[" + ", ".join(f"{v:.2f}" for v in boxes[0]) + "]" in item.problem  # first box given
        colour = item.problem.split("the ")[1].split()[0]
        visible, centre = world.observe(item.frames, colour)
        assert visible.all()  # the target never leaves
        ks = np.linspace(0, len(item.frames) - 1, SPEC.track_boxes).round().astype(int)
        for k, (x0, y0, x1, y1) in zip(ks, boxes):
            cx, cy = centre[k] / SPEC.size
            assert x0 <= cx <= x1 and y0 <= cy <= y1


def test_ocr_word_is_drawn_only_while_said():
    for i in range(10):
        item = tasks.ocr(0, i, SPEC)
        text = (np.abs(item.frames.astype(int) - world.TEXT_COLOUR) < 30).all(-1).sum((1, 2))  # (T,)
        assert set(np.flatnonzero(text > 0)) == set(item.key_frames)
        word = answers.extract_answer(item.solution)
        assert word in world.WORDS and text.max() == world.word_mask(word, SPEC.size // 20).sum()


def test_cups_answers_follow_the_swaps():
    game = world.CupGame(ball=0, swaps=[(0, 1), (1, 2), (0, 2)])
    assert [world.ball_after(game, n) for n in range(4)] == [0, 1, 2, 0]
    frames = world.render_cups(game, duration=8, fps=4, size=112)
    ball = world.observe(frames, "red")[0]
    assert ball[:4].all() and not ball[4:].any()  # shown in the first second only
    with pytest.raises(ValueError, match="do not fit"):
        world.render_cups(world.CupGame(0, [(0, 1)] * 7), duration=8, fps=4, size=112)
    kinds = {tasks.cups(0, i, SPEC).kind for i in range(30)}
    assert kinds == {"recall", "infer", "predict"}


def test_missing_key_frames_hides_what_the_answer_needs():
    item = tasks.grounding(0, 0, SPEC)  # the red circle on [2, 6)
    degraded = tasks.missing_key_frames(item.frames, item.key_frames)
    assert world.observe(item.frames, "red")[0].any() and not world.observe(degraded, "red")[0].any()
    keep = [k for k in range(len(item.frames)) if k not in item.key_frames]
    np.testing.assert_array_equal(degraded[keep], item.frames[keep])
    # nearest non-key frame, the earlier on a tie: frames 8..23 are key, 15 -> 7, 16 -> 24
    assert item.key_frames == list(range(8, 24))
    np.testing.assert_array_equal(degraded[15], item.frames[7])
    np.testing.assert_array_equal(degraded[16], item.frames[24])
    assert tasks.missing_key_frames(item.frames, []) is None
    assert tasks.missing_key_frames(item.frames, list(range(len(item.frames)))) is None


def test_mixture_is_balanced_and_checked():
    assert tasks.mixture({"grounding": 2, "ocr": 1}, 5) == ["grounding", "ocr", "grounding", "grounding", "ocr"]
    plan = tasks.mixture({f: 1 for f in QUESTION_FAMILIES}, 2 * len(QUESTION_FAMILIES))
    assert sorted(plan) == sorted(QUESTION_FAMILIES * 2)
    with pytest.raises(ValueError, match="unknown task families.*known: grounding"):
        tasks.mixture({"groundnig": 1}, 3)
    with pytest.raises(ValueError, match="integers >= 0"):
        tasks.mixture({"grounding": 0}, 3)


def test_plain_target_drops_only_the_tags():
    from vrlib.prompts import plain_target

    item = tasks.gqa(0, 0, SPEC)
    text = plain_target(as_sample(item))
    assert "<" not in text and text.startswith("The ") and text.endswith("[(0.0, 8.0)]")
    assert plain_target(as_sample(tasks.inventory(0, 0, SPEC))) == world.inventory(world.make_scene(0, 0))


def test_every_target_fits_the_completion_limits():
    """The longest chain of thought + answer of each family, in the committed base's tokens, fits
    in what RL samples and evaluation decodes: a cap below a family's targets scores the whole
    family 0 (96 tokens cut every tracking answer, 113 tokens with EOS)."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from vrlib import config

    root = Path(__file__).resolve().parents[1]
    params = config.load(root / "params.yaml")
    tok = AutoTokenizer.from_pretrained(root / params.base.pretrained_dir)
    spec = WorldSpec.of(params.data)
    longest = {family: max(len(tok(item.process + item.solution)["input_ids"]) + 1  # + EOS
                           for item in (FAMILIES[family](5, i, spec) for i in range(20)))
               for family in QUESTION_FAMILIES}
    assert longest["tracking"] == max(longest.values()) > 96
    for cap in (params.rft.max_completion_length, params.evaluation.max_new_tokens):
        assert max(longest.values()) <= cap, (cap, longest)


def test_the_stages_name_the_items_whose_reference_answer_is_cut():
    """`prompts.longer_than`, which the rft and eval stages print (real data's chains of thought
    can be longer than the caps): the items whose chain of thought + answer + EOS passes the cap."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from vrlib import config
    from vrlib.prompts import longer_than

    root = Path(__file__).resolve().parents[1]
    tok = AutoTokenizer.from_pretrained(root / config.load(root / "params.yaml").base.pretrained_dir)
    samples = [as_sample(FAMILIES[f](5, 0, SPEC), i) for i, f in enumerate(["tracking", "count"])]
    sizes = [len(tok(s.process + s.solution)["input_ids"]) + 1 for s in samples]
    assert sizes[1] < sizes[0]
    assert longer_than(tok, samples, sizes[0]) == []
    assert longer_than(tok, samples, sizes[0] - 1) == ["q0"]
    assert longer_than(tok, samples, sizes[1] - 1) == ["q0", "q1"]
