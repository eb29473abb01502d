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
