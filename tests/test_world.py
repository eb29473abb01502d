"""vrlib.world: scenes are pure functions of (seed, index) and render what they say."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from vrlib import world
from vrlib.video import sample_frames, write_mp4
from vrlib.tasks import WorldSpec, grounding
from vrlib.world import COLOURS, SHAPES, Actor, Scene, caption, make_scene, render


def test_worked_instance_is_pinned():
    """The docstring's example; a change here changes every generated data set."""
    assert make_scene(0, 0) == Scene(
        duration=8,
        fps=4,
        width=112,
        height=112,
        actors=[
            Actor("yellow", "square", start=5, end=7, x0=84, y0=15, x1=84, y1=74, size=25),
            Actor("red", "circle", start=2, end=6, x0=38, y0=96, x1=38, y1=45, size=25),
            Actor("green", "triangle", start=0, end=8, x0=22, y0=16, x1=22, y1=16, size=25),
        ],
    )
    task = grounding(0, 0, WorldSpec())
    assert task.solution == "<answer>2.0 to 6.0</answer>"
    assert task.process == (
        "<think>I look for the red circle. It is first seen at 2.0 seconds and last seen before "
        "6.0 seconds, so it is visible from 2.0 to 6.0.</think>"
    )


def test_same_seed_and_index_give_the_same_scene_and_frames():
    a, b = make_scene(7, 3), make_scene(7, 3)
    assert a == b
    np.testing.assert_array_equal(render(a), render(b))
    assert make_scene(7, 4) != a and make_scene(8, 3) != a


def test_global_rng_is_untouched():
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    make_scene(1, 2)
    grounding(1, 2, WorldSpec())
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_scenes_respect_the_rules():
    lengths = collections.Counter()
    counts = collections.Counter()
    for i in range(300):
        scene = make_scene(0, i)
        counts[len(scene.actors)] += 1
        assert 1 <= len(scene.actors) <= 3
        assert len({a.colour for a in scene.actors}) == len(scene.actors)
        assert len({a.shape for a in scene.actors}) == len(scene.actors)
        for a in scene.actors:
            assert a.colour in COLOURS and a.shape in SHAPES
            assert 0 <= a.start < a.end <= scene.duration
            assert a.size == 25  # 22% of 112
            for c in (a.x0, a.y0, a.x1, a.y1):
                assert a.size // 2 <= c and c + a.size // 2 < 112  # whole shape in frame
            lengths[a.end - a.start] += 1
    assert set(lengths) == set(range(1, 9))  # every length occurs
    assert set(counts) == {1, 2, 3}


def test_render_draws_an_actor_exactly_on_start_to_end():
    scene = Scene(8, 4, 112, 112, [Actor("red", "square", 2, 5, 56, 56, 56, 56, 25)])
    frames = render(scene)
    assert frames.shape == (32, 112, 112, 3) and frames.dtype == np.uint8
    centre = frames[:, 56, 56]  # (T, 3)
    for k in range(32):
        expected = COLOURS["red"] if 2 <= k / 4 < 5 else world.BACKGROUND
        assert tuple(centre[k]) == expected, k


def test_render_moves_linearly_and_masks_shapes():
    scene = Scene(4, 2, 112, 112, [Actor("blue", "triangle", 0, 4, 20, 50, 90, 50, 25)])
    frames = render(scene)
    blue = np.all(frames == COLOURS["blue"], axis=-1)  # (T, H, W)
    xs = [np.flatnonzero(blue[k].any(0)).mean() for k in range(8)]
    np.testing.assert_allclose(xs, 20 + np.arange(8) / 8 * 70, atol=1)  # centre at time k / fps
    assert blue[0, 38, 20] and not blue[0, 38, 28] and blue[0, 62, 28]  # apex narrow, base wide
    assert blue[0].sum() < 25 * 25 * 0.6


def test_actor_colour_survives_mp4_at_the_sampled_times(tmp_path):
    scene = Scene(8, 4, 112, 112, [Actor("red", "circle", 2, 5, 40, 40, 80, 80, 25)])
    path = tmp_path / "scene.mp4"
    write_mp4(path, render(scene), scene.fps)
    clip = sample_frames(path)
    assert len(clip.frames) == 16 and clip.fps == 2.0
    for frame, t in zip(clip.frames, clip.timestamps):
        alpha = min(max((t - 2) / 3, 0.0), 1.0)  # where it is, or was, or will be
        cx = cy = round(40 + alpha * 40)
        patch = frame[cy - 5 : cy + 5, cx - 5 : cx + 5].reshape(-1, 3).mean(0)
        expected = COLOURS["red"] if 2 <= t < 5 else world.BACKGROUND
        np.testing.assert_allclose(patch, expected, atol=15, err_msg=f"t={t}")


def test_same_scene_decodes_to_identical_frames(tmp_path):
    for name in ("a", "b"):
        write_mp4(tmp_path / f"{name}.mp4", render(make_scene(3, 9)), 4)
    a, b = sample_frames(tmp_path / "a.mp4"), sample_frames(tmp_path / "b.mp4")
    np.testing.assert_array_equal(a.frames, b.frames)


def test_grounding_spells_the_task():
    scene = make_scene(0, 5)
    task = grounding(0, 5, WorldSpec())
    again = grounding(0, 5, WorldSpec())
    assert (again.problem, again.solution) == (task.problem, task.solution)
    np.testing.assert_array_equal(again.frames, task.frames)
    target = next(a for a in scene.actors if f"the {a.colour} {a.shape} appear?" in task.problem)
    assert task.problem == f"When does the {target.colour} {target.shape} appear?"
    assert task.solution == f"<answer>{target.start:.1f} to {target.end:.1f}</answer>"
    assert task.process.startswith("<think>") and task.process.endswith("</think>")
    assert len(task.process.split()) < 40
    assert task.problem_type == "temporal grounding" and task.options == []


def test_targets_vary_across_indices():
    picked = collections.Counter()
    for i in range(200):
        scene = make_scene(0, i)
        task = grounding(0, i, WorldSpec())
        picked[[f"<answer>{a.start:.1f}" in task.solution for a in scene.actors].index(True)] += 1
    assert set(picked) == {0, 1, 2}


def test_caption_sorted_by_start_with_motion():
    scene = Scene(
        8,
        4,
        112,
        112,
        [
            Actor("blue", "square", 5, 8, 50, 50, 50, 50, 25),
            Actor("red", "circle", 2, 5, 80, 40, 30, 40, 25),
            Actor("green", "triangle", 0, 1, 50, 80, 50, 30, 25),
        ],
    )
    assert caption(scene) == (
        "a green triangle is seen from 0.0 to 1.0 and moves up. "
        "a red circle is seen from 2.0 to 5.0 and moves left. "
        "a blue square is seen from 5.0 to 8.0 and stays."
    )


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_actors"):
        make_scene(0, 0, n_actors=(1, 4))
    with pytest.raises(ValueError, match="shape"):
        world.shape_mask("hexagon", 10)


def test_the_in_memory_items_are_world_splits_items(world_split, world_in_memory):
    """The GPU tests' fixture (no MP4) holds the same questions as the MP4 split, so the tiny
    model built from it is the one every other test uses; its clips have as many frames, close
    to the decoded ones (every second frame, where `load_split` spreads rounded indices)."""
    import numpy as np

    _, disk, disk_clips = world_split
    memory, clips = world_in_memory
    keys = ("problem_id", "problem", "options", "solution", "process", "problem_type", "data_type",
            "data_source", "duration", "fps")
    assert [[getattr(s, k) for k in keys] for s in memory] == [[getattr(s, k) for k in keys] for s in disk]
    for a, b in zip(clips, disk_clips):
        assert a.frames.shape == b.frames.shape and a.fps == b.fps
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 8  # the MP4 is yuv420p
