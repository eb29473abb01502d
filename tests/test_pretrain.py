"""The tiny base's pretraining (vrlib.pretrain): probes scored by hand, a resumed run equal bit
for bit to an uninterrupted one, and the committed base checked against its card."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from vrlib import config, pretrain, world
from vrlib.world import Actor, Scene

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / config.PretrainParams().out_dir


def scene(*actors: tuple[str, str, int, int]) -> Scene:
    return Scene(duration=8, fps=4, width=112, height=112,
                 actors=[Actor(c, s, a, b, 10, 10, 10, 10, 25) for c, s, a, b in actors])


def test_read_inventory_reads_what_the_inventory_writes():
    sc = scene(("red", "circle", 2, 5), ("blue", "square", 0, 8))
    assert pretrain.read_inventory(world.inventory(sc)) == [("blue", "square", 0.0, 8.0), ("red", "circle", 2.0, 5.0)]
    assert pretrain.read_inventory("the the seconds 7.0") == []


def test_probe_scores_by_hand():
    a = scene(("red", "circle", 2, 5), ("blue", "square", 0, 8))  # blue first
    b = scene(("green", "triangle", 1, 3))                       # one object: no "first" question
    said_a = ("the blue square is first seen at 0.0 seconds and last seen before 8.0 seconds, so it is visible. "
              "the red circle is first seen at 3.0 seconds and last seen before 5.0 seconds, so ...")  # start off by 1 s
    said_b = "the green circle is first seen at 1.0 seconds and last seen before 3.0 seconds"      # wrong shape
    got = pretrain.score_inventories([said_a, said_b], [a, b])
    # pooled: tp 2 (blue square, red circle), fp 1 (green circle), fn 1 (green triangle): F1 = 4 / 6
    assert got["objects_f1"] == round(4 / 6, 4)
    assert got["span_acc"] == round(1 / 3, 4)  # blue square only: red's start is 1 s off, the triangle unnamed
    assert got["first_acc"] == 1.0 and got["n_first"] == 1
    assert pretrain.score_inventories(["", ""], [a, b])["objects_f1"] == 0.0  # unreadable text scores 0, never raises


def test_first_acc_needs_the_first_object_named_first_and_alone():
    a = scene(("red", "circle", 2, 5), ("blue", "square", 0, 8))
    tie = ("the blue square is first seen at 0.0 seconds and last seen before 8.0 seconds "
           "the red circle is first seen at 0.0 seconds and last seen before 5.0 seconds")
    assert pretrain.score_inventories([tie], [a])["first_acc"] == 0.0


def tiny_recipe(**kw) -> tuple[config.PretrainParams, config.DataParams]:
    kw = {"vision_steps": 0} | kw  # phase 0 only where a test asks for it
    cfg = dataclasses.replace(config.PretrainParams(), n_videos=8, n_tasks=11, n_corpus=1, n_probe=2, n_probe_val=2,
                              steps=4, tasks_steps=2, tasks_per_batch=1, batch_size=3, warmup=1, checkpoint_every=2, probe_batch=2, **kw)
    return cfg, config.DataParams()


def test_a_resumed_pretraining_gives_the_same_weights_bit_for_bit(tmp_path):
    """Killed after step 2 and started again, the run reloads step 2's checkpoint and ends with the
    weights of a run never stopped: the batch of step k is drawn from (seed, k), the optimizer and
    schedule states are saved with the weights."""
    cfg, dcfg = tiny_recipe()
    straight = pretrain.run(cfg, dcfg, state_dir=tmp_path / "a", live_dir=None, stop_after=4)
    pretrain.run(cfg, dcfg, state_dir=tmp_path / "b", live_dir=None, stop_after=2)
    assert sorted(p.name for p in (tmp_path / "b").glob("*.pt"))[-1].endswith("step2.pt")
    resumed = pretrain.run(cfg, dcfg, state_dir=tmp_path / "b", live_dir=None, stop_after=4)
    assert pretrain.state_hash(resumed["model"]) == pretrain.state_hash(straight["model"])
    assert [r["train/loss"] for r in resumed["log"]] == [r["train/loss"] for r in straight["log"]]
    fresh = pretrain.run(cfg, dcfg, state_dir=None, live_dir=None, stop_after=4)
    assert pretrain.state_hash(fresh["model"]) == pretrain.state_hash(straight["model"])  # deterministic from the recipe


def test_another_recipe_never_resumes_this_ones_checkpoint(tmp_path, capsys):
    cfg, dcfg = tiny_recipe()
    pretrain.run(cfg, dcfg, state_dir=tmp_path, live_dir=None, stop_after=2)
    pretrain.run(dataclasses.replace(cfg, lr=2e-3), dcfg, state_dir=tmp_path, live_dir=None, stop_after=2)
    assert "fresh start" in capsys.readouterr().out


def test_a_new_second_phase_starts_from_the_first_phases_checkpoints(tmp_path, capsys):
    """The first phase's checkpoints are named by its own keys: a change to the second phase
    resumes them, a change to the first does not; the card says where each phase started."""
    cfg, dcfg = tiny_recipe()
    spec = pretrain.tasks.WorldSpec.of(dcfg)
    sampling = dict(fps=dcfg.fps, min_frames=dcfg.min_frames, max_frames=dcfg.max_frames)
    _, key, first = pretrain.recipe_keys(cfg, spec, sampling)
    _, key2, first2 = pretrain.recipe_keys(dataclasses.replace(cfg, tasks_lr=3e-4), spec, sampling)
    assert first2 == first and key2 != key
    assert pretrain.recipe_keys(dataclasses.replace(cfg, lr=3e-4), spec, sampling)[2] != first
    cfg = dataclasses.replace(cfg, out_dir=str(tmp_path / "base"))
    card = pretrain.run(cfg, dcfg, state_dir=tmp_path / "state", live_dir=tmp_path / "live")
    assert card["resumed_from"] == {"vision": 0, "perception": 0, "tasks": 0}
    assert card["steps"] == {"vision": 0, "perception": cfg.steps, "tasks": cfg.tasks_steps}
    assert pretrain.read_card(tmp_path / "base")["sha256"] == card["sha256"]
    first_phase = sorted(p.name for p in (tmp_path / "state").glob(f"{first}-perception-step*.pt"))
    again = pretrain.run(dataclasses.replace(cfg, tasks_lr=3e-4), dcfg, state_dir=tmp_path / "state", live_dir=None)
    assert again["resumed_from"] == {"vision": 0, "perception": cfg.steps, "tasks": 0}
    assert sorted(p.name for p in (tmp_path / "state").glob(f"{first}-perception-step*.pt")) == first_phase
    assert again["sha256"] != card["sha256"]  # the new second phase trained: other weights


def test_phase_0_labels_the_token_under_each_object():
    """`object_tokens` names the merged token whose 2x2 patches show the object: its pixels, taken
    back out of the processor's patches, hold the object's colour; a token across the frame does
    not; an object is labelled in each temporal patch whose two frames both show it."""
    import numpy as np
    import torch

    from vrlib.model import load_processor

    proc = load_processor(BASE)
    red = Actor("red", "square", 1, 8, 84, 28, 84, 28, 25)  # top right, still, visible from 1 s
    sc = Scene(duration=8, fps=4, width=112, height=112, actors=[red])
    frames = world.render(sc)[::2]  # (16, H, W, 3): the study's 2 fps of a 4 fps video
    timestamps = np.arange(len(frames)) / 2.0
    out = proc.video_processor(videos=[frames], do_sample_frames=False, return_tensors="pt")
    labels = pretrain.object_tokens(sc, timestamps, out["video_grid_thw"][0], merge=proc.video_processor.merge_size,
                                    temporal=proc.video_processor.temporal_patch_size)
    assert [k // 16 for k, _, _ in labels] == list(range(1, 8))  # 1 s on: temporal patches 1..7 of 8
    assert {(s, c) for _, s, c in labels} == {(world.SHAPES.index("square"), pretrain.COLOURS.index("red"))}
    mean, std = (torch.tensor(v).view(3, 1, 1, 1) for v in (proc.video_processor.image_mean, proc.video_processor.image_std))
    patches = out["pixel_values_videos"].view(-1, 3, 2, 14, 14) * std + mean  # (patches, C, T, 14, 14), 0-1
    def rgb_near(token: int, colour) -> bool:
        px = patches[4 * token:4 * token + 4].permute(0, 2, 3, 4, 1).reshape(-1, 3) * 255
        return bool(((px - torch.tensor(colour, dtype=px.dtype)).abs().max(1).values < 40).any())
    k = labels[0][0]
    assert rgb_near(k, world.COLOURS["red"])
    assert not rgb_near(16 + 3 * 4 + 0, world.COLOURS["red"])  # temporal patch 1, bottom-left token


def test_phase_0_runs_first_and_is_carded(tmp_path):
    """With `vision_steps`, the vision tower trains alone first: the card counts its steps, its head's
    accuracy on the val videos, and its first steps are the card's first steps; a change to the
    phases after it resumes its checkpoints. Off (0), the recipe has no such key, so the committed
    recipe keeps its key."""
    cfg, dcfg = tiny_recipe(vision_steps=2, out_dir=str(tmp_path / "base"))
    card = pretrain.run(cfg, dcfg, state_dir=tmp_path / "state", live_dir=None)
    assert card["steps"]["vision"] == 2 and card["recipe"]["pretrain"]["vision_steps"] == 2
    again = pretrain.run(dataclasses.replace(cfg, vision_lr=3e-4), dcfg, state_dir=tmp_path / "state", live_dir=None)
    assert again["resumed_from"] == {"vision": 2, "perception": 0, "tasks": 0}  # a new first phase starts from phase 0
    assert again["first_steps"] == card["first_steps"] and again["vision_probe"] == card["vision_probe"]
    assert set(card["vision_probe"]) == {"shape_acc", "colour_acc", "n_objects"}
    first = pretrain.run(cfg, dcfg, state_dir=None, live_dir=None, stop_after=pretrain.FIRST_STEPS)
    assert "vision/loss" not in first["log"][0] and len(first["log"]) == pretrain.FIRST_STEPS
    assert pretrain.state_hash(first["model"]) == card["first_steps"]["sha256"]
    assert "vision_steps" not in pretrain.recipe_params(dataclasses.replace(cfg, vision_steps=0))


def test_a_trial_recipe_writes_under_its_own_folder(tmp_path, monkeypatch):
    """`python -m vrlib.pretrain --trial DIR pretrain.key=value`: another recipe's base, checkpoints
    and step logs under DIR, never the committed base's folder; overrides only with --trial."""
    import yaml

    cfg, _ = tiny_recipe()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["pretrain"] = dataclasses.asdict(cfg) | {"out_dir": "committed-base"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="need --trial"):
        pretrain.main(["pretrain.lr=0.002"])
    with pytest.raises(SystemExit, match="only pretrain keys"):
        pretrain.main(["--trial", "t", "sft.lr=0.1"])
    with pytest.raises(config.ParamsError, match=r"pretrain.lrr; known keys .*\blr\b"):
        pretrain.main(["--trial", "t", "pretrain.lrr=0.1"])
    pretrain.main(["--trial", "t", "pretrain.lr=0.002"])
    card = pretrain.read_card(tmp_path / "t" / "base")
    assert card["recipe"]["pretrain"]["lr"] == 0.002
    assert (tmp_path / "t" / "dvclive").is_dir() and any((tmp_path / "checkpoints/pretrain/frames").iterdir())
    assert not (tmp_path / "committed-base").exists() and not (tmp_path / "dvclive").exists()


def test_the_committed_base_matches_its_card():
    """The weights git tracks are the ones pretrained: their sha256 is the card's."""
    card = pretrain.read_card(BASE)  # raises if a weight file differs from the card's hash
    assert card is not None, f"{BASE} has no {pretrain.CARD}: run `make pretrain`"
    for key in ("params", "recipe", "steps", "wall_time_s", "probes", "probes_shuffled", "probes_swapped", "sha256"):
        assert key in card
    assert 2e6 <= card["params"] <= 20e6  # the issue: 2-20 M parameters
    assert pretrain.weights_mb(BASE) <= 50
    assert card["probes"]["n"] >= 300


def test_the_card_records_the_recipe_in_params_yaml():
    """`make pretrain` with params.yaml as committed rebuilds this base: the card's recipe is it."""
    card = json.loads((BASE / pretrain.CARD).read_text())
    params = config.load(ROOT / "params.yaml")
    assert card["recipe"]["pretrain"] == pretrain.recipe_params(params.pretrain)
    spec = pretrain.tasks.WorldSpec.of(params.data)
    sampling = dict(fps=params.data.fps, min_frames=params.data.min_frames, max_frames=params.data.max_frames)
    assert card["recipe"]["sampling"] == sampling
    assert pretrain.recipe_keys(params.pretrain, spec, sampling)[1] == card["recipe_key"]


@pytest.mark.slow
def test_the_first_steps_of_the_committed_recipe_rerun_bit_for_bit(tmp_path):
    """The recipe in the card, rerun for its first steps on this machine, gives the weights whose
    hash the card recorded. Float kernels differ between CPU kinds (like a new seed): on another
    CPU than the card's, this is skipped with the reason."""
    card = json.loads((BASE / pretrain.CARD).read_text())
    if card["cpu"] != pretrain.cpu_name():
        pytest.skip(f"the base was pretrained on {card['cpu']!r}, this is {pretrain.cpu_name()!r}: "
                    "bit-for-bit equality holds on the same CPU kind only")
    params = config.load(ROOT / "params.yaml")
    out = pretrain.run(params.pretrain, params.data, state_dir=tmp_path, live_dir=None,
                       stop_after=card["first_steps"]["steps"])
    assert pretrain.state_hash(out["model"]) == card["first_steps"]["sha256"]
