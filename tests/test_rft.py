"""The GRPO loop on the tiny model: every variant steps, a killed run resumes to the same
adapter and logs, a NaN stops before the update, and 2 processes (DDP, FSDP, DeepSpeed ZeRO-2
or ZeRO-3) make the same update as 1."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from peft import get_peft_model_state_dict

from vrlib.config import DataParams, RFTParams
from vrlib.model import add_lora, load_model, load_processor
from vrlib.engine import Engine, checkpoints, load_state
from vrlib.rft import (REWARD_FUNCS, Question, fingerprint, fresh_reason, grpo_step, load_kim_clips, score,
                       shuffle_clip, train_grpo)

REPO = Path(__file__).resolve().parents[1]
# A random-weight model's rollouts score 0 on the real rewards (zero advantages, no update);
# a reward that varies with the text gives the loop a signal.
VARIED = {**REWARD_FUNCS, "varied": lambda text, sample: float(len(text) % 3)}
SMALL = dict(prompts_per_step=2, group_size=4, max_completion_length=8, lr=1e-2, temperature=1.0, algo="grpo")


def fresh(tiny_dir):
    return add_lora(load_model(tiny_dir), r=4, alpha=8, dropout=0.0, seed=0)


def adapter(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def same_logs(a: list[dict], b: list[dict]) -> bool:
    strip = lambda h: [{k: v for k, v in m.items() if not k.startswith("time/")} for m in h]  # noqa: E731
    return strip(a) == strip(b)


@pytest.fixture(scope="module")
def split(world_split):
    root, samples, clips = world_split
    return samples, clips, load_kim_clips(samples, root / "eval.jsonl", DataParams())


@pytest.mark.parametrize("variant", [
    dict(algo="t_grpo", bonus_mode="reward"),
    dict(algo="t_grpo", bonus_mode="advantage", relative=True, relative_form="margin"),
    dict(loss_type="dapo", scale_rewards="batch", num_iterations=2, length_bonus=True,
         length_min=1, length_max=8),
    dict(loss_type="dr_grpo", scale_rewards="none", beta=0.0),
    dict(loss_type="bnpo", epsilon_high=0.28),
    dict(loss_type="cispo", importance_sampling="sequence", mask_truncated=True, overlong_buffer=4),
    dict(dynamic_sampling=True, max_draws=4),
])
def test_every_variant_steps_and_logs(tiny_dir, split, variant):
    samples, clips, kim = split
    model, processor = fresh(tiny_dir), load_processor(tiny_dir)
    before = adapter(model)
    cfg = RFTParams(**{**SMALL, **variant})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    questions = [Question(k, samples[k + 1], clips[k + 1], kim[k + 1]) for k in range(2)]
    metrics = grpo_step(model, processor, optimizer, questions, cfg, reward_funcs=VARIED)
    assert any(not torch.equal(before[k], v) for k, v in adapter(model).items())
    expected = ["reward/format/mean", "reward/accuracy/mean", "reward/glue_iou/mean",
                "group/frac_zero_std", "group/all_correct", "group/all_wrong",
                "completion/length_mean", "completion/clipped_frac", "policy/kl",
                "policy/clip_frac", "train/loss", "train/grad_norm", "time/generate_s", "time/update_s"]
    if cfg.algo == "t_grpo":
        expected += ["tgrpo/p", "tgrpo/p_shuffled", "tgrpo/bonus_applied", "tgrpo/advantage_changed"]
    if cfg.relative:
        expected += ["relative/gap", "relative/bonus_mean", "relative/advantage_changed"]
    assert set(expected) <= set(metrics) and all(map(torch.isfinite, map(torch.tensor, metrics.values())))
    if cfg.beta == 0:
        assert metrics["policy/kl"] == 0.0


def test_each_rewards_firing_is_logged_per_problem_type(tiny_dir, split, tmp_path):
    """A rule that pays on one problem type only shows as 0 on the others (docs/change-a-reward.md),
    in step logs DVCLive can write (its names nest at "/": a metric cannot also be a folder)."""
    from dvclive import Live

    from vrlib.logs import dvclive_logger

    samples, clips, kim = split
    mc = next(k for k, s in enumerate(samples) if s.problem_type == "multiple choice")
    other = next(k for k, s in enumerate(samples) if s.problem_type not in ("multiple choice", "grounded QA"))
    model, processor = fresh(tiny_dir), load_processor(tiny_dir)
    cfg = RFTParams(**SMALL)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    questions = [Question(0, samples[mc], clips[mc]), Question(1, samples[other], clips[other])]
    funcs = {**VARIED, "mc_only": lambda text, sample: float(sample.problem_type == "multiple choice")}
    metrics = grpo_step(model, processor, optimizer, questions, cfg, reward_funcs=funcs)
    kind = samples[other].problem_type.replace(" ", "_")
    assert metrics["reward/mc_only/fired_on/multiple_choice"] == 1.0
    assert metrics[f"reward/mc_only/fired_on/{kind}"] == 0.0
    assert metrics["reward/mc_only/fired"] == 0.5
    assert metrics["reward/glue_iou/fired_on/multiple_choice"] == 0.0  # evidence IoU: grounded QA only
    with Live(str(tmp_path / "live"), save_dvc_exp=False, dvcyaml=None) as live:
        dvclive_logger(live)(0, metrics)
    assert (tmp_path / "live/plots/metrics/reward/mc_only/fired_on/multiple_choice.tsv").is_file()


def test_each_sample_is_scored_by_its_own_problem_type(split):
    samples, _, _ = split
    by_type = {s.problem_type: s for s in samples}
    mixed = list(by_type.values())
    parts = score([s.process + s.solution for s in mixed], mixed)  # every sample's own solution
    assert parts["accuracy"].tolist() == [1.0] * len(mixed)
    assert parts["format"].tolist() == [1.0] * len(mixed)


def test_shuffle_clip_reorders_every_frame_array_together(split):
    import numpy as np

    _, clips, _ = split
    clip = clips[1]
    shuffled = shuffle_clip(clip, np.random.default_rng(0))
    order = [list(clip.indices).index(i) for i in shuffled.indices]
    assert order != sorted(order) and sorted(order) == list(range(len(order)))
    assert np.array_equal(shuffled.frames, clip.frames[order])
    assert np.array_equal(shuffled.timestamps, clip.timestamps[order])


def test_a_killed_run_resumes_to_the_same_adapter_and_logs(tiny_dir, split, tmp_path):
    samples, clips, _ = split
    processor = load_processor(tiny_dir)
    cfg = RFTParams(**{**SMALL, "algo": "t_grpo"}, steps=4, checkpoint_every=2, num_iterations=2)

    whole = fresh(tiny_dir)
    expected = train_grpo(whole, processor, samples, clips, cfg, seed=3, reward_funcs=VARIED,
                          checkpoint_dir=tmp_path / "a", fingerprint_="f")

    class Killed(Exception):
        pass

    def kill_at_step_2(step, metrics):  # after the checkpoint of step 2, mid-way through the run
        if step == 2:
            raise Killed
    with pytest.raises(Killed):
        train_grpo(fresh(tiny_dir), processor, samples, clips, cfg, seed=3, reward_funcs=VARIED,
                   checkpoint_dir=tmp_path / "b", fingerprint_="f", on_step=kill_at_step_2)
    assert [p.name for _, p in checkpoints(tmp_path / "b", "f")] == ["step_00002-f.pt"]

    replayed, said = [], []
    resumed = fresh(tiny_dir)  # a new process: fresh weights, the state comes from the checkpoint
    history = train_grpo(resumed, processor, samples, clips, cfg, seed=3, reward_funcs=VARIED,
                         checkpoint_dir=tmp_path / "b", fingerprint_="f",
                         on_step=lambda step, m: replayed.append(step), say=said.append)
    assert replayed == [0, 1, 2, 3]  # logged steps are replayed, so step logs are whole
    assert said[0].startswith("rft: resumed from step 2 of 4") and "2 steps to run" in said[0]
    assert same_logs(history, expected)
    a, b = adapter(whole), adapter(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # keep_checkpoints = 2; another fingerprint (other params or inputs) is never resumed
    assert [p.name for _, p in checkpoints(tmp_path / "b", "f")] == ["step_00002-f.pt", "step_00004-f.pt"]
    assert load_state(tmp_path / "b", "other", 4) is None


def test_a_shorter_run_never_loads_a_later_checkpoint(tiny_dir, split, tmp_path):
    """`-S rft.steps=2` after a 4-step run resumes step 2 (the same trajectory), never step 4's
    weights; `steps=1` finds nothing at or below 1 and trains from step 0, like a fresh run."""
    samples, clips, _ = split
    processor = load_processor(tiny_dir)
    cfg = RFTParams(**SMALL, steps=4, checkpoint_every=2)
    train_grpo(fresh(tiny_dir), processor, samples, clips, cfg, seed=1, reward_funcs=VARIED,
               checkpoint_dir=tmp_path, fingerprint_="f")
    said = []
    two = fresh(tiny_dir)
    history = train_grpo(two, processor, samples, clips, replace(cfg, steps=2), seed=1, reward_funcs=VARIED,
                         checkpoint_dir=tmp_path, fingerprint_="f", say=said.append)
    assert len(history) == 2 and said == [said[0]] and said[0].startswith("rft: resumed from step 2 of 2")
    assert all(torch.equal(v, load_state(tmp_path, "f", 2)["adapter"][k]) for k, v in adapter(two).items())
    one, alone = fresh(tiny_dir), fresh(tiny_dir)
    history = train_grpo(one, processor, samples, clips, replace(cfg, steps=1), seed=1, reward_funcs=VARIED,
                         checkpoint_dir=tmp_path, fingerprint_="f", say=said.append)
    assert len(history) == 1 and said[-1].startswith("rft: training from step 0 of 1: this recipe's checkpoints "
                                                     "(step 2, 4) are all past rft.steps=1"), said[-1]
    assert fresh_reason(tmp_path, "other", 1).startswith("the 3 checkpoints there came from other params")
    assert fresh_reason(tmp_path / "none", "f", 1) == "no checkpoint yet"
    train_grpo(alone, processor, samples, clips, replace(cfg, steps=1), seed=1, reward_funcs=VARIED)
    assert all(torch.equal(v, adapter(alone)[k]) for k, v in adapter(one).items())
    # the 4-step run's checkpoints are kept: they are further along the same trajectory
    assert [n for n, _ in checkpoints(tmp_path, "f")] == [1, 2, 4]


def test_the_fingerprint_covers_the_code_the_loop_runs(monkeypatch, tmp_path):
    """A changed reward or loss must not resume a checkpoint trained with the old one."""
    import vrlib.rft as loop

    seen = []
    monkeypatch.setattr(loop, "digest", lambda obj, files: seen.extend(Path(f).name for f in files) or "x")
    loop.fingerprint(RFTParams(), 0, [tmp_path / "rl.jsonl"])
    assert {"rl.jsonl", "rft.py", "rewards.py", "grpo.py", "rollout.py", "engine.py", "model.py"} <= set(seen)


def test_dynamic_sampling_keeps_only_groups_with_signal_and_draws_more(tiny_dir, split):
    """DAPO: a group whose rewards are all equal teaches nothing; more questions are drawn until
    prompts_per_step groups have signal or max_draws were tried."""
    samples, clips, _ = split
    choice = {"multiple choice"}  # only these questions get rewards that vary within a group
    reward = {"r": lambda text, s: float(len(text) % 3) if s.problem_type in choice else 0.0}
    cfg = RFTParams(**{**SMALL, "temperature": 1.5}, steps=2, dynamic_sampling=True, max_draws=10)
    history = train_grpo(fresh(tiny_dir), load_processor(tiny_dir), samples, clips, cfg, seed=0, reward_funcs=reward)
    n_choice = sum(s.problem_type in choice for s in samples)
    for m in history:
        assert m["group/kept"] <= 2 and m["group/drawn"] in (2, 4, 6, 8, 10)
        assert m["group/kept"] == 2 or m["group/drawn"] == 10 or n_choice < 2
    assert any(m["group/drawn"] > 2 for m in history)


def test_fingerprint_ignores_only_what_does_not_change_a_step(tmp_path):
    f = tmp_path / "rl.jsonl"
    f.write_text("{}\n")
    base = fingerprint(RFTParams(), 0, [f])
    assert fingerprint(RFTParams(steps=99, checkpoint_every=1, num_processes=2, prompts_per_step=4), 0, [f]) == base
    assert fingerprint(RFTParams(lr=1e-3), 0, [f]) != base
    assert fingerprint(RFTParams(), 1, [f]) != base
    f.write_text("{} \n")
    assert fingerprint(RFTParams(), 0, [f]) != base


def test_a_nan_loss_stops_before_the_update_and_keeps_the_last_good_checkpoint(tiny_dir, split, tmp_path):
    samples, clips, _ = split
    processor = load_processor(tiny_dir)
    cfg = RFTParams(**SMALL, steps=3, checkpoint_every=1)
    calls = []

    def nan_from_step_1(text, sample):  # 8 rollouts per step
        calls.append(1)
        return float("nan") if len(calls) > 8 else float(len(text) % 3)
    model = fresh(tiny_dir)
    with pytest.raises(FloatingPointError, match=r"step 1.*step_00001-f\.pt.*rft\.lr"):
        train_grpo(model, processor, samples, clips, cfg, seed=0, reward_funcs={"r": nan_from_step_1},
                   checkpoint_dir=tmp_path, fingerprint_="f")
    state = load_state(tmp_path, "f", 3)
    assert state["step"] == 1
    current = adapter(model)
    assert all(torch.equal(current[k], v) for k, v in state["adapter"].items())  # NaN step not applied


@pytest.fixture(scope="module")
def one_process(tiny_dir, world_split, tmp_path_factory):
    """tests/rft_script.py in one process: its configs' adapters (as written) and logs."""
    root, _, _ = world_split
    out = tmp_path_factory.mktemp("one") / "one.pt"
    subprocess.run([sys.executable, "tests/rft_script.py", str(tiny_dir), str(root / "eval.jsonl"), str(out)],
                   cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)},
                   check=True, capture_output=True)
    return torch.load(out, weights_only=True)


# How `accelerate launch` starts each engine with 2 CPU processes (gloo). DeepSpeed through the
# shipped config files (on DeepSpeed's CPU accelerator, in fp32 to compare with one process).
MULTI_CPU = ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
LAUNCH = {
    "ddp": MULTI_CPU,
    "fsdp": MULTI_CPU,  # tests/rft_script.py switches accelerate's state to FSDP
    "zero2": ["--config_file", "vrlib/launch/zero2.yaml", "--mixed_precision", "no"],
    "zero3": ["--config_file", "vrlib/launch/zero3.yaml", "--mixed_precision", "no"],
}


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(LAUNCH))
def test_two_processes_make_the_same_update_as_one(tiny_dir, world_split, one_process, tmp_path, engine):
    """tests/rft_script.py under `accelerate launch` with 2 CPU processes (gloo), replicated (DDP),
    sharded (FSDP version 1, DeepSpeed ZeRO-3) or with sharded optimizer state (ZeRO-2), vs 1
    process, same global batch: T-GRPO + relative + advantage bonuses, dapo with batch scaling and
    2 iterations (the gathered normalisers), a run resumed from a checkpoint (the optimizer
    state, sharded under FSDP and ZeRO), and a NaN loss that stops every process before the
    update. The adapters compared are those written to disk (gathered from the shards under
    FSDP and ZeRO-3)."""
    root, _, _ = world_split
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    launch = [sys.executable, "-m", "accelerate.commands.launch", *LAUNCH[engine], "--num_processes", "2"]
    subprocess.run([*launch, "tests/rft_script.py", str(tiny_dir), str(root / "eval.jsonl"),
                    str(tmp_path / "two.pt"), engine], cwd=REPO, env=env, check=True, capture_output=True)
    # ZeRO-3 reduce-scatters the gradients in buckets, another summation order: Adam's first
    # steps (g / sqrt(v), lr 1e-2) turn a last-bit difference of a near-zero gradient into up to
    # ~6e-5 on 1 or 2 weights of ~1,500 (measured), and 1.0e-4 on 1 weight of 1,536 with the
    # rollouts of per-row seeds (measured on an AMD EPYC); every other engine agrees to 1e-6.
    atol = 2e-4 if engine == "zero3" else 1e-6
    one, two = one_process, torch.load(tmp_path / "two.pt", weights_only=True)
    assert set(one) == set(two) == {"grpo", "dapo_batch", "dynamic", "resumed", "resumed_dynamic", "nan"}
    for run in (one, two):  # a NaN loss at step 1 stops every process before that update
        assert "GRPO loss nan" in run["nan"]["error"] and "step 1" in run["nan"]["error"], run["nan"]
        assert run["nan"]["step"] == 1
    for k, v in one["nan"]["adapter"].items():
        assert torch.allclose(v, two["nan"]["adapter"][k], atol=atol), k
    for name in ("grpo", "dapo_batch", "dynamic", "resumed", "resumed_dynamic"):
        assert (one[name]["processes"], two[name]["processes"]) == (1, 2)
        assert one[name]["adapter"].keys() == two[name]["adapter"].keys()
        for k, v in one[name]["adapter"].items():
            assert torch.allclose(v, two[name]["adapter"][k], atol=atol), (name, k)
        assert any(v.abs().sum() > 0 for k, v in one[name]["adapter"].items() if "lora_B" in k)
        for a, b in zip(one[name]["history"], two[name]["history"], strict=True):
            for k in a:
                if not k.startswith("time/"):
                    assert a[k] == pytest.approx(b[k], abs=1e-5), (name, k)
    for run in (one, two):  # resuming after step 1 gives what two steps in one run give
        for whole, resumed in (("grpo", "resumed"), ("dynamic", "resumed_dynamic")):
            for k, v in run[whole]["adapter"].items():
                assert torch.allclose(v, run[resumed]["adapter"][k], atol=1e-6), (whole, k)


def test_one_generate_call_for_group_and_side_rollouts_keeps_each_rows_video(tiny_dir, split):
    """The group and its side rollouts are sampled in one batch; `Rollouts.head` hands the loss
    the group's rows with their own video patches (a wrong patch slice changes the log-probs)."""
    import numpy as np

    from vrlib.rollout import generate, token_logprobs

    samples, clips, _ = split
    video = next(i for i, s in enumerate(samples) if s.data_type == "video")
    shuffled = shuffle_clip(clips[video], np.random.default_rng(0))
    model = fresh(tiny_dir)
    torch.manual_seed(0)
    every = generate(model, load_processor(tiny_dir), [samples[video]] * 3, [clips[video], clips[video], shuffled],
                     max_new_tokens=6, temperature=1.0)
    head = every.head(2)
    assert head.visual["pixel_values_videos"].shape[0] == every.visual["pixel_values_videos"].shape[0] * 2 // 3
    assert head.texts == every.texts[:2] and head.completion_mask.shape[1] <= every.completion_mask.shape[1]
    with torch.no_grad():
        whole = token_logprobs(model, every)[:2, :head.completion_mask.shape[1]]   # (2, C')
        alone = token_logprobs(model, head)                                         # (2, C')
    mask = head.completion_mask.bool()
    torch.testing.assert_close(alone[mask], whole[mask], atol=1e-5, rtol=1e-5)


def test_each_row_samples_from_its_own_seed_whatever_is_batched_with_it(tiny_dir, split):
    """rollout.RowSampler: a row's rollout depends on its seed, not on the rows beside it (the
    GRPO loop samples a step's questions in one `generate` call), and another seed draws
    another rollout."""
    from vrlib.rollout import generate, row_seeds

    samples, clips, _ = split
    model, processor = fresh(tiny_dir), load_processor(tiny_dir)
    image = next(i for i, s in enumerate(samples) if s.data_type == "image")
    video = next(i for i, s in enumerate(samples) if s.data_type == "video")
    seeds = row_seeds([0, 0, 0, 1], 4)
    kw = dict(max_new_tokens=12, temperature=1.0, top_p=0.95)
    together = generate(model, processor, [samples[video], samples[video], samples[image], samples[image]],
                        [clips[video], clips[video], clips[image], clips[image]], seeds=seeds, **kw)
    torch.manual_seed(123)  # the global stream plays no part
    alone = generate(model, processor, [samples[image]] * 2, [clips[image]] * 2, seeds=seeds[2:], **kw)
    first = generate(model, processor, [samples[video]], [clips[video]], seeds=seeds[:1], **kw)
    assert together.texts[2:] == alone.texts and together.texts[:1] == first.texts
    assert len(set(together.texts[:2])) == 2  # two seeds, two rollouts of one prompt
    with pytest.raises(ValueError, match="seeds"):
        generate(model, processor, [samples[image]], [clips[image]], seeds=seeds, **kw)


def test_the_loss_scores_each_rollout_as_the_sampler_drew_it(split, monkeypatch):
    """token_logprobs gives every sampled token the log-prob it was drawn with: the same 3D
    positions of the video tokens (transformers' mm_token_type_ids; without them the forward
    falls back to 1D positions, several nats off on a model that learned to see), the same visual
    input, for questions of different lengths batched (left padding) and sliced back into groups.
    On the committed base: a random-weight model hardly depends on positions. The sampler's
    log-prob is higher by -log(1 - m), m the mass of the vision tokens it may not draw
    (`suppress_tokens`): under 0.05 here."""
    from vrlib import rollout

    tiny_dir = REPO / "models" / "tiny-base"

    seen, call = [], rollout.RowSampler.__call__
    monkeypatch.setattr(rollout.RowSampler, "__call__",
                        lambda self, ids, scores: (seen.append(scores.clone()), call(self, ids, scores))[1])
    samples, clips, _ = split
    model, processor = fresh(tiny_dir), load_processor(tiny_dir)
    image = next(i for i, s in enumerate(samples) if s.data_type == "image")
    video = next(i for i, s in enumerate(samples) if s.data_type == "video")
    T = 0.7
    every = rollout.generate(model, processor, [samples[video]] * 2 + [samples[image]] * 2,
                             [clips[video]] * 2 + [clips[image]] * 2, max_new_tokens=8, temperature=T,
                             seeds=rollout.row_seeds([0], 4))
    assert not every.attention_mask[2:, 0].any()  # the image rows are left-padded
    drawn = torch.log_softmax(torch.stack(seen, 1) / T, -1).gather(-1, every.completion_ids[..., None])[..., 0]
    for a in (0, 2):
        part = every.rows(a, a + 2)
        with torch.no_grad():
            got = rollout.token_logprobs(model, part, T)                            # (2, C')
        mask = part.completion_mask.bool()
        gap = drawn[a:a + 2, :mask.shape[1]][mask] - got[mask]
        assert gap.min() > -1e-4 and gap.max() < 0.05, (a, gap)


def test_rows_hand_each_slice_its_own_images_and_videos(tiny_dir, split):
    """`Rollouts.rows` on a batch mixing images and videos: a slice's log-probs are those its rows
    have in the whole batch (a wrong patch slice or position would change them), with the
    leading columns where the slice is all padding left out."""
    from vrlib.rollout import generate, row_seeds, token_logprobs

    samples, clips, _ = split
    model, processor = fresh(tiny_dir), load_processor(tiny_dir)
    image = next(i for i, s in enumerate(samples) if s.data_type == "image")
    videos = [i for i, s in enumerate(samples) if s.data_type == "video"][:2]
    mirrored = replace(clips[image], frames=clips[image].frames[:, :, ::-1].copy())  # a second image
    order = [(videos[0], clips[videos[0]]), (image, clips[image]), (videos[1], clips[videos[1]]), (image, mirrored)]
    every = generate(model, processor, [samples[i] for i, _ in order], [c for _, c in order],
                     max_new_tokens=6, temperature=1.0, seeds=row_seeds([0], 4))
    assert not torch.equal(*every.visual["pixel_values"].chunk(2))  # two different images
    with torch.no_grad():
        whole = token_logprobs(model, every)                                        # (4, C)
        for a, b in ((0, 1), (1, 3), (2, 4), (1, 2)):
            part = every.rows(a, b)
            assert part.texts == every.texts[a:b] and part.images.tolist() == every.images[a:b].tolist()
            assert bool(part.attention_mask[:, 0].any())  # no column of padding only
            mask = part.completion_mask.bool()
            torch.testing.assert_close(token_logprobs(model, part)[mask],
                                       whole[a:b, :mask.shape[1]][mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("engine, shards", [("deepspeed", 2), ("fsdp", 2), ("torch", None)])
def test_an_optimizer_state_resumes_only_under_the_engine_that_wrote_it(tiny_dir, engine, shards):
    """A sharded optimizer state cannot be loaded by one plain process (nor a plain one by
    sharded processes): a clear error says how it was written, instead of a wrong resume."""
    model = fresh(tiny_dir)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    state = {"engine": engine, "optimizer": [optimizer.state_dict()] * shards if shards else optimizer.state_dict()}
    if engine == "torch":
        Engine(None).load_optimizer_state(optimizer, state)  # the same engine loads
        return
    with pytest.raises(ValueError, match=f"written by {shards} {engine} process.*rft.accelerate_config"):
        Engine(None).load_optimizer_state(optimizer, state)
