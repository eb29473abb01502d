"""The GRPO loop, read top to bottom: rollout_groups -> grpo_step -> train_grpo -> run.

A step draws questions, samples G completions each (plus G/2 on shuffled frames for T-GRPO,
or on the key-information-missing video for the relative reward), scores them, turns the
rewards into group advantages, and makes one clipped policy update with a k3 KL to the
reference (the same model, adapter off). Processes, sharding and checkpoint files are in
`vrlib.engine`; the pure maths in `vrlib.grpo` and `vrlib.rewards`.

Our own loop rather than TRL's GRPOTrainer: TRL feeds no video tensors to the loss and
reference forwards of video prompts, so it optimises a video-blind policy
(huggingface/trl#5373).

Departures from Video-R1's trainer, each on purpose:
- Every rollout is sampled from its own seed (seed, step, its question's position in the
  step's draws, its row), the questions of a process in one batch, and each question is
  forwarded as its own micro-batch, so a run gives the same rollouts and update, up to float
  rounding, whether its questions are spread over one process or several (a batch's shape can
  change a kernel), and a resumed run replays exactly what an uninterrupted one does.
- Rewards are computed per sample from its own problem_type (Video-R1 uses the batch's first).
- Shuffled (T-GRPO) and key-information-missing (relative) rollouts are scored with the same
  rewards and never enter the loss, as in Video-R1.
- A NaN loss or gradient stops the run before the optimizer step: the last checkpoint
  stays the last good one. Video-R1 would apply it.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from vrlib import config, rewards, sources
from vrlib.config import BaseParams, RFTParams
from vrlib.data import digest, load_kim_clips, load_split
from vrlib.engine import Engine, checkpoints, fresh_reason, load_state, make_accelerator
from vrlib.grpo import (batch_normalizer, bonus_advantages, length_bonus, mask_truncated, overlong_penalty,
                        policy_loss, relative_bonus, temporal_bonus)
from vrlib.logs import step_logs, untimed
from vrlib.model import STACK, add_lora, check_model_dir, load_kwargs, load_policy, load_processor, reference
from vrlib.rollout import Rollouts, generate, row_seeds, token_logprobs
from vrlib.schema import CORRECT, PROBLEM_TYPES
from vrlib.stage import quiet
from vrlib.video import Clip, shuffle_clip

REWARD_FUNCS = rewards.REWARDS
"""The rewards summed into a rollout's reward, by the name they are logged under
(`reward/<name>/mean`). Video-R1 and VideoChat-R1 sum format and accuracy (IoU for grounding,
mean box IoU for tracking); VideoChat-R1 adds the evidence IoU for grounded QA (0 for every
other type). To try another reward, change `vrlib.rewards` (docs/change-a-reward.md)."""


def score(texts: list[str], samples: list, reward_funcs: dict = REWARD_FUNCS) -> dict[str, torch.Tensor]:
    """Each completion scored against its own sample (not the batch's first problem type)."""
    return {name: torch.tensor([fn(t, s) for t, s in zip(texts, samples)], dtype=torch.float32)  # (N,)
            for name, fn in reward_funcs.items()}


@dataclass
class Question:
    position: int  # in the step's draws (global over processes)
    sample: object
    clip: Clip
    kim_clip: Clip | None = None


@dataclass
class Group:
    """One question's rollouts and scores."""

    position: int                      # the question's place in the step's draws
    problem_type: str                  # the question's (each reward's branches are per type)
    rollouts: Rollouts                 # the G ordered rollouts (the only ones that are trained)
    parts: dict[str, torch.Tensor]     # reward name -> (G,)
    reward: torch.Tensor               # (G,) sum of parts + length bonus + overlong penalty
    temporal: torch.Tensor             # (G,) T-GRPO bonus (0 without shuffled rollouts)
    relative: torch.Tensor             # (G,) relative bonus (0 without a kim clip)
    p: float = math.nan                # T-GRPO: accuracy of the ordered rollouts (nan: no shuffled ones)
    p_shuffled: float = math.nan       # T-GRPO: accuracy of the shuffled rollouts
    bonus_applied: float = math.nan    # T-GRPO: 1.0 where p >= mu * p~ fired
    relative_gap: float = math.nan     # relative reward: mean acc - mean acc on the kim video

    def summary(self) -> torch.Tensor:
        """(G, 5 + parts) columns [reward, temporal, relative, length, truncated, *parts]: what
        every process needs to see of a group's rollouts."""
        ro = self.rollouts
        cols = [self.reward, self.temporal, self.relative, ro.completion_mask.sum(1).float().cpu(),
                ro.truncated.float().cpu(), *self.parts.values()]
        return torch.stack([c.float().cpu() for c in cols], 1)                     # (G, 5 + parts)


def rollout_groups(policy, processor, questions: list[Question], cfg: RFTParams, *, seed: int, step: int,
                   reward_funcs: dict = REWARD_FUNCS) -> list[Group]:
    """G rollouts of each question, + G/2 on shuffled frames (T-GRPO) and G/2 on the key-information-missing
    video (relative reward) when asked and possible, in one `generate` call (4 questions of 12 rows: 3.9 s
    on 2 cores, one by one 6.3 s); each row samples from its own seed, whatever else is in the batch."""
    G, n_side = cfg.group_size, max(1, cfg.group_size // 2)
    keys = [[seed, step, q.position] for q in questions]  # where a question sits in the draws, not which process runs it
    ordered = [cfg.algo == "t_grpo" and q.sample.data_type == "video" and len(q.clip.frames) > 1 for q in questions]
    sides = [(shuffle_clip(q.clip, np.random.default_rng(row_seeds(k, 1)[0])) if o else None,
              q.kim_clip if cfg.relative else None) for q, k, o in zip(questions, keys, ordered)]  # (shuffled, kim)
    rows = [[q.clip] * G + [c for c in side if c is not None for _ in range(n_side)]  # [G | G/2 shuffled | G/2 kim]
            for q, side in zip(questions, sides)]
    every = generate(policy, processor, [q.sample for q, r in zip(questions, rows) for _ in r], sum(rows, []),
                     max_new_tokens=cfg.max_completion_length, temperature=cfg.temperature, top_p=cfg.top_p,
                     seeds=[s for k, r in zip(keys, rows) for s in row_seeds([*k, 1], len(r))])
    ends = np.cumsum([0] + [len(r) for r in rows]).tolist()
    return [score_group(q, every.rows(a, a + G), every.texts[a + G:b], *side, cfg, reward_funcs)
            for q, side, a, b in zip(questions, sides, ends, ends[1:])]


def score_group(q: Question, ro: Rollouts, side_texts: list[str], shuffled: Clip | None, kim: Clip | None,
                cfg: RFTParams, reward_funcs: dict) -> Group:
    """A question's group: its G rollouts' rewards, and the bonuses from its side rollouts' accuracy."""
    G, n_side = cfg.group_size, max(1, cfg.group_size // 2)
    parts = score(ro.texts, [q.sample] * G, reward_funcs)                       # name -> (G,)
    reward, accuracy = sum(parts.values()), parts.get("accuracy", torch.zeros(G))  # (G,), (G,)
    lengths = ro.completion_mask.sum(1)                                          # (G,)
    if cfg.length_bonus:
        reward = reward + torch.tensor(length_bonus(
            accuracy.tolist(), lengths.tolist(), omega=cfg.length_omega,
            l_min=cfg.length_min, l_max=cfg.length_max, threshold=cfg.temporal_threshold))
    if cfg.overlong_buffer:
        reward = reward + overlong_penalty(lengths.float().cpu(), max_length=cfg.max_completion_length,
                                           buffer=cfg.overlong_buffer)
    side = iter(score(side_texts, [q.sample] * len(side_texts),  # (G/2,) each: never in the loss
                      {"a": rewards.accuracy_reward})["a"].split(n_side))
    group = Group(q.position, q.sample.problem_type, ro, parts, reward, torch.zeros(G), torch.zeros(G))
    if shuffled is not None:
        acc_shuffled = next(side)
        bonus, fired = temporal_bonus(accuracy[None], acc_shuffled[None], alpha=cfg.temporal_alpha,
                                      mu=cfg.temporal_mu, threshold=cfg.temporal_threshold)
        group.temporal, group.bonus_applied = bonus[0], float(fired[0])
        group.p, group.p_shuffled = accuracy.mean().item(), acc_shuffled.mean().item()
    if kim is not None:
        bonus, diff = relative_bonus(accuracy[None], next(side)[None],
                                     alpha=cfg.relative_alpha, form=cfg.relative_form)
        group.relative, group.relative_gap = bonus[0], diff[0].item()
    return group


@dataclass
class Batch:
    """What every process knows of a step's drawn groups, in draw order (gathered)."""

    reward: torch.Tensor     # (D, G)
    temporal: torch.Tensor   # (D, G)
    relative: torch.Tensor   # (D, G)
    lengths: torch.Tensor    # (D, G) completion tokens
    truncated: torch.Tensor  # (D, G) 1.0 where no EOS came
    parts: dict              # reward name -> (D, G)
    stats: dict              # p, p_shuffled, bonus_applied, relative_gap -> (D,) (nan: not computed)
    kept: torch.Tensor       # (D,) bool: the groups the update uses
    types: torch.Tensor      # (D,) each group's problem type, its index in schema.PROBLEM_TYPES


STATS = ("p", "p_shuffled", "bonus_applied", "relative_gap")


def gather_groups(engine: Engine, groups: list[Group]) -> Batch:
    """Every process's groups of one round of draws, in draw order; kept: all of them."""
    rows = engine.gather(torch.stack([g.summary() for g in groups]))              # (Q, G, 5 + parts)
    stats = engine.gather(torch.tensor([[getattr(g, s) for s in STATS] for g in groups]))  # (Q, 4)
    types = engine.gather(torch.tensor([PROBLEM_TYPES.index(g.problem_type) for g in groups]))  # (Q,)
    return Batch(*rows[..., :5].unbind(-1), parts=dict(zip(groups[0].parts, rows[..., 5:].unbind(-1))),
                 stats=dict(zip(STATS, stats.unbind(-1))), kept=torch.ones(len(rows), dtype=torch.bool),
                 types=types)


def concat(batches: list[Batch]) -> Batch:
    def cat(xs: list) -> torch.Tensor | dict:  # tensors, or dicts of them
        return {k: torch.cat([x[k] for x in xs]) for k in xs[0]} if isinstance(xs[0], dict) else torch.cat(xs)
    return Batch(**{f.name: cat([getattr(b, f.name) for b in batches]) for f in fields(Batch)})


def has_signal(reward: torch.Tensor) -> torch.Tensor:
    """(D,) True where a group's rewards are not all equal: only those teach (DAPO)."""
    return reward.std(dim=1) > 1e-6 if reward.shape[1] > 1 else torch.zeros(len(reward), dtype=torch.bool)


# ----------------------------------------------------------------------------- the step
def grpo_step(model, processor, optimizer, questions: list[Question], cfg: RFTParams, *,
              seed: int = 0, step: int = 0, reward_funcs: dict = REWARD_FUNCS, engine: Engine | None = None,
              more: Iterator[list[Question]] = iter(())) -> dict:
    """One GRPO step on this process's questions; every process returns the same metrics.

    With `cfg.dynamic_sampling` (DAPO, Yu et al. 2025 sec. 3.2), groups whose rewards are all
    equal are left out and further rounds of questions are taken from `more` until the step has
    `prompts_per_step` groups with signal or `more` runs dry (`max_draws`)."""
    engine = engine or Engine()
    policy = engine.unwrap(model)
    t0 = time.perf_counter()

    # 1. rollouts and rewards, one round of draws after another
    groups, rounds, with_signal = [], [], 0
    for chunk in [questions, *more] if cfg.dynamic_sampling else [questions]:
        with engine.full_weights(model):
            new = rollout_groups(policy, processor, chunk, cfg, seed=seed, step=step, reward_funcs=reward_funcs)
        groups += new
        rounds.append(gather_groups(engine, new))
        with_signal += int(has_signal(rounds[-1].reward).sum())
        if cfg.dynamic_sampling and with_signal >= cfg.prompts_per_step:
            break
    batch = concat(rounds)                                                         # D drawn groups
    if cfg.dynamic_sampling:  # the first prompts_per_step groups with signal, in draw order
        signal = has_signal(batch.reward)                                          # (D,)
        batch.kept = signal & (signal.cumsum(0) <= cfg.prompts_per_step)           # (D,)
    t_gen = time.perf_counter() - t0

    # 2. advantages over the kept groups of every process, so scale="batch" sees every reward
    G, kept = cfg.group_size, batch.kept
    adv, changed = bonus_advantages(batch.reward[kept].reshape(-1),
                                    {"temporal": batch.temporal[kept].reshape(-1),
                                     "relative": batch.relative[kept].reshape(-1)},
                                    G, scale=cfg.scale_rewards, mode=cfg.bonus_mode)  # (K*G,), name -> (K*G,)
    row = {int(p): i for i, p in enumerate(torch.nonzero(kept).flatten())}         # draw position -> kept row
    mine = [g for g in groups if g.position in row]
    local_adv = [adv.view(-1, G)[row[g.position]] for g in mine]                   # [(G,)]

    # 3. the update: one micro-batch per kept question, normalisers of the whole kept batch
    torch.manual_seed(row_seeds([seed, step, 2], 1)[0])  # LoRA dropout's masks, the same after a resume
    t1 = time.perf_counter()
    totals = update(model, optimizer, mine, local_adv, cfg, engine, batch, policy, pad=groups[0])
    metrics = step_metrics(batch, changed, totals, cfg, engine)
    metrics.update({"time/generate_s": t_gen, "time/update_s": time.perf_counter() - t1})
    return metrics


TOKEN_STATS = {"kl": "policy/kl", "clip": "policy/clip_frac", "ratio": "policy/ratio_mean",
               "capped": "policy/cispo_capped_frac"}
SUMS = ("loss", *TOKEN_STATS, "tokens")
"""What `update` sums over micro-batches and processes: the loss, and token-weighted KL, clip
fraction, ratio mean and CISPO's capped fraction, with their weight (`tokens`)."""


def update(model, optimizer, mine: list[Group], local_adv: list[torch.Tensor], cfg: RFTParams,
           engine: Engine, batch: Batch, policy, pad: Group) -> dict[str, float]:
    """`num_iterations` clipped updates on this process's kept groups; the step's loss and token
    statistics summed over processes. Every process makes as many micro-batches (sharded
    engines gather weights in each forward): one with fewer kept groups pads with a drawn group
    (`pad`) whose loss counts 0."""
    kept_lengths = batch.lengths[batch.kept]                                       # (K, G)
    if cfg.mask_truncated:  # the tokens that carry a loss
        kept_lengths = kept_lengths * (1 - batch.truncated[batch.kept])             # (K, G)
    n_micro = engine.most(len(mine))
    if n_micro == 0:  # dynamic sampling found no group with signal: no update
        return dict.fromkeys([*SUMS, "grad_norm"], 0.0)
    if cfg.loss_type == "bnpo":  # TRL: a token mean over this process's batch
        norm = max(sum(loss_mask(g, cfg).sum().item() for g in mine), 1.0)
    else:  # gradients are averaged over processes, hence the / n
        norm = batch_normalizer(cfg.loss_type, kept_lengths.numel(), kept_lengths.sum().item(),
                                cfg.max_completion_length) / engine.n
    micro = [(g, a, 1.0) for g, a in zip(mine, local_adv)]
    micro += [(pad, torch.zeros(cfg.group_size), 0.0)] * (n_micro - len(mine))
    with torch.no_grad(), engine.full_weights(model):
        old = [token_logprobs(policy, g.rollouts, cfg.temperature) if cfg.num_iterations > 1 else None
               for g, _, _ in micro]
        ref = [None] * len(micro)
        if cfg.beta > 0:
            with reference(policy):  # the model RFT started from: LoRA off (model.reference)
                ref = [token_logprobs(policy, g.rollouts, cfg.temperature) for g, _, _ in micro]
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    for _ in range(cfg.num_iterations):
        sums = dict.fromkeys(SUMS, 0.0)
        for i, (g, a, weight) in enumerate(micro):
            with engine.no_sync(model, last=i == len(micro) - 1):
                logp = token_logprobs(model, g.rollouts, cfg.temperature)         # (G, C)
                mask = loss_mask(g, cfg).to(logp.device)                          # (G, C)
                loss, st = policy_loss(
                    logp, logp.detach() if old[i] is None else old[i], ref[i], a.to(logp.device), mask,
                    beta=cfg.beta, epsilon_low=cfg.epsilon_low, epsilon_high=cfg.epsilon_high,
                    loss_type=cfg.loss_type, max_completion_length=cfg.max_completion_length,
                    normalizer=norm, importance_sampling=cfg.importance_sampling, cispo_cap=cfg.cispo_cap)
                engine.backward(model, loss * weight)
            w = mask.sum().item() * weight
            sums["loss"] += loss.item() * weight
            for key, name in TOKEN_STATS.items():
                sums[key] += st.get(name, 0.0) * w
            sums["tokens"] += w
        totals = engine.sum(sums)  # every process decides alike: gradients are synced, the loss is gathered
        totals["grad_norm"] = engine.update(model, optimizer, params, cfg.grad_clip, totals["loss"]).item()
    model.eval()
    return totals


def loss_mask(g: Group, cfg: RFTParams) -> torch.Tensor:
    """(G, C) the completion tokens that carry a loss: all of them, or none of a completion cut
    at the length budget (`rft.mask_truncated`, TRL's mask_truncated_completions)."""
    mask = g.rollouts.completion_mask.float()                                      # (G, C)
    return mask_truncated(mask, g.rollouts.truncated.to(mask.device)) if cfg.mask_truncated else mask


def step_metrics(batch: Batch, changed: dict[str, torch.Tensor], totals: dict, cfg: RFTParams,
                 engine: Engine) -> dict[str, float]:
    """The step's logged metrics (docs/metrics.md): rewards, groups and lengths
    over every drawn group (what the policy did), loss statistics over the update."""
    G, reward = cfg.group_size, batch.reward                                       # (D, G)
    correct = batch.parts.get("accuracy", torch.zeros_like(reward)) >= CORRECT        # (D, G)
    tokens = max(totals["tokens"], 1.0)
    metrics = {f"reward/{name}/mean": v.mean().item() for name, v in batch.parts.items()}
    # how often each reward pays at all, and on each problem type of the step (a reward's branches):
    # a rule that never fires shows as 0 (docs/change-a-reward.md)
    for name, v in batch.parts.items():                                           # v: (D, G)
        metrics[f"reward/{name}/fired"] = (v > 0).float().mean().item()
        for k in batch.types.unique().tolist():
            kind = PROBLEM_TYPES[k].replace(" ", "_")
            metrics[f"reward/{name}/fired_on/{kind}"] = (v[batch.types == k] > 0).float().mean().item()
    metrics.update({
        "reward/mean": reward.mean().item(),
        "reward/std": reward.std().item() if reward.numel() > 1 else 0.0,
        "group/frac_zero_std": (~has_signal(reward)).float().mean().item(),
        "group/all_correct": correct.all(dim=1).float().mean().item(),
        "group/all_wrong": (~correct).all(dim=1).float().mean().item(),
        "completion/length_mean": batch.lengths.mean().item(),
        "completion/clipped_frac": batch.truncated.mean().item(),
        "policy/kl": totals["kl"] / tokens,
        "policy/clip_frac": totals["clip"] / tokens,
        "policy/ratio_mean": totals["ratio"] / tokens,
        "train/loss": totals["loss"] / engine.n,  # the mean of the processes' losses, as DDP's gradient
        "train/grad_norm": totals["grad_norm"],
    })
    if cfg.loss_type == "cispo":
        metrics["policy/cispo_capped_frac"] = totals["capped"] / tokens
    if cfg.dynamic_sampling:
        metrics.update({"group/drawn": float(len(reward)), "group/kept": float(batch.kept.sum())})

    def nanmean(x: torch.Tensor) -> float:
        x = x[~torch.isnan(x)]
        return x.mean().item() if x.numel() else 0.0

    def changed_frac(name: str, stat: str) -> float:  # among kept groups that computed the bonus
        has = ~torch.isnan(batch.stats[stat][batch.kept])                         # (K,)
        return changed[name].view(-1, G)[has].float().mean().item() if has.any() else 0.0

    if cfg.algo == "t_grpo":
        metrics.update({"tgrpo/p": nanmean(batch.stats["p"]),
                        "tgrpo/p_shuffled": nanmean(batch.stats["p_shuffled"]),
                        "tgrpo/bonus_applied": nanmean(batch.stats["bonus_applied"]),
                        "tgrpo/advantage_changed": changed_frac("temporal", "p")})
    if cfg.relative:
        metrics.update({"relative/gap": nanmean(batch.stats["relative_gap"]),
                        "relative/bonus_mean": batch.relative.mean().item(),
                        "relative/advantage_changed": changed_frac("relative", "relative_gap")})
    return metrics


# ----------------------------------------------------------------------------- the run
RESUME_IGNORES = ("steps", "checkpoint_every", "keep_checkpoints", "num_processes", "accelerate_config")
"""Params that do not change what a step computes: a run with more steps resumes a shorter
one (the learning rate is constant, so step k does not depend on the total)."""


def fingerprint(cfg: RFTParams, seed: int, files: list = ()) -> str:
    """What a checkpoint must match to be resumed: the params that shape the steps, the seed,
    the bytes of the inputs (RL split, starting weights) and the code of every vrlib module the
    loop runs (a changed reward or loss trains from step 0)."""
    shape = {k: v for k, v in asdict(cfg).items() if k not in RESUME_IGNORES}
    code = sources.closure(Path(__file__).read_text()) + [Path(__file__)]
    return digest([shape, seed], [*files, *sorted(set(code))])


def draws(samples: list, clips: list, kim_clips: list | None, cfg: RFTParams, engine: Engine, *,
          seed: int, step: int) -> Iterator[list[Question]]:
    """This process's questions of a step, one round of `prompts_per_step` draws after another
    (more than one only under dynamic sampling, up to `max_draws`). The draws come from
    `np.random.default_rng([seed, step])`, each round split over processes in contiguous blocks."""
    Q, per = cfg.prompts_per_step, cfg.prompts_per_step // engine.n
    n = min(cfg.max_draws, len(samples)) if cfg.dynamic_sampling else Q
    idx = np.random.default_rng([seed, step]).choice(len(samples), size=n, replace=False)
    for start in range(0, n - Q + 1, Q):
        mine = range(start + engine.rank * per, start + (engine.rank + 1) * per)
        yield [Question(k, samples[idx[k]], clips[idx[k]], None if kim_clips is None else kim_clips[idx[k]])
               for k in mine]


def train_grpo(model, processor, samples: list, clips: list, cfg: RFTParams, *, seed: int,
               kim_clips: list | None = None, checkpoint_dir: str | Path | None = None,
               fingerprint_: str = "run", on_step: Callable[[int, dict], None] | None = None,
               reward_funcs: dict = REWARD_FUNCS, accelerator=None, out: str | Path | None = None,
               say: Callable[[str], None] = print) -> list[dict]:
    """`cfg.steps` GRPO steps. With `out`, the trained adapter is written there at the end
    (peft's format); here, where the wrapped model is, because under FSDP every process takes
    part in gathering it.

    With `checkpoint_dir`, the state is saved every `cfg.checkpoint_every` steps and at the end,
    and a run resumes from the newest checkpoint with its fingerprint at or below `cfg.steps`
    (replaying its logged steps to `on_step`); it says which (`say`, on the main process)."""
    engine = Engine(accelerator)
    say = say if engine.rank == 0 else (lambda _: None)
    if cfg.prompts_per_step % engine.n:
        raise ValueError(f"rft.prompts_per_step={cfg.prompts_per_step} must be a multiple of the "
                         f"{engine.n} processes")
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    on_step = on_step or (lambda step, metrics: None)
    state = load_state(checkpoint_dir, fingerprint_, cfg.steps) if checkpoint_dir is not None else None
    model, optimizer = engine.prepare(model, optimizer, cfg.grad_clip, state)
    history: list[dict] = state["history"][:state["step"]] if state is not None else []
    for step, metrics in enumerate(history):  # replayed: the step logs are whole
        on_step(step, metrics)
    if state is not None:
        say(f"rft: resumed from step {state['step']} of {cfg.steps} ({checkpoint_dir}, fingerprint "
            f"{fingerprint_}), {cfg.steps - state['step']} steps to run")
    elif checkpoint_dir is not None:
        say(f"rft: training from step 0 of {cfg.steps}: {fresh_reason(checkpoint_dir, fingerprint_, cfg.steps)} "
            f"({checkpoint_dir}, fingerprint {fingerprint_})")
    for step in range(len(history), cfg.steps):
        rounds = draws(samples, clips, kim_clips, cfg, engine, seed=seed, step=step)
        try:
            metrics = grpo_step(model, processor, optimizer, next(rounds), cfg, seed=seed, step=step,
                                reward_funcs=reward_funcs, engine=engine, more=rounds)
        except FloatingPointError as err:
            last = checkpoints(checkpoint_dir, fingerprint_)[-1:] if checkpoint_dir is not None else []
            raise FloatingPointError(
                f"RFT stopped at step {step}: {err}. The last good checkpoint is "
                f"{last[0][1] if last else 'none (none was written yet)'}; lower rft.lr or raise "
                "rft.temperature, then rerun to resume from it.") from err
        history.append(metrics)
        on_step(step, metrics)
        done = step + 1
        if checkpoint_dir is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            engine.save(checkpoint_dir, fingerprint_, done, model, optimizer, history=history,
                        keep=cfg.keep_checkpoints)
    if out is not None:
        engine.save_adapter(model, out)
    return history


# ----------------------------------------------------------------------------- the stage
HISTORY = "history.json"  # the step logs next to the adapter, untimed: the same run gives the same bytes


def run(seed: int, dcfg, cfg: RFTParams, bcfg=None, *, base: str = "models/base", sft: str = "models/sft",
        split: str = "data/rl.jsonl", out: str = "models/rft", checkpoint_dir: str = "checkpoints/rft",
        live_dir: str | None = "dvclive/rft") -> list[dict]:
    """The rft stage in this process (one of several under `accelerate launch`): load the split
    and the policy, train (resuming a matching checkpoint), write the adapter, the adapter
    stack it sits on (`stack.json`) and the step logs. `bcfg` (params' base section) says how
    the model is loaded: dtype, attention, 4-bit storage."""
    accelerator = make_accelerator()
    processor = load_processor(base)
    samples, clips = load_split(split, fps=dcfg.fps, min_frames=dcfg.min_frames, max_frames=dcfg.max_frames,
                                families=cfg.families)
    kim_clips = load_kim_clips(samples, split, dcfg) if cfg.relative else None
    below = [sft] if cfg.init == "sft" else []
    policy = load_policy(base, below, load_in_4bit=cfg.load_in_4bit,
                         **load_kwargs(bcfg or BaseParams(), device=accelerator.device))
    model = add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, seed=seed,
                     gradient_checkpointing=cfg.gradient_checkpointing)
    inputs = [split, check_model_dir(base) / "config.json", *[Path(a) / "adapter_model.safetensors" for a in below]]
    with step_logs("rft", cfg.steps, live_dir, keys=("reward/mean", "reward/accuracy/mean", "policy/kl"),
                   main=accelerator.is_main_process, logged=untimed) as on_step:
        history = train_grpo(model, processor, samples, clips, cfg, seed=seed, kim_clips=kim_clips,
                             checkpoint_dir=checkpoint_dir, fingerprint_=fingerprint(cfg, seed, inputs),
                             on_step=on_step, accelerator=accelerator, out=out)
    if accelerator.is_main_process:
        (Path(out) / STACK).write_text(json.dumps({"below": below}))
        (Path(out) / HISTORY).write_text(json.dumps([untimed(m) for m in history]))
    accelerator.wait_for_everyone()
    return history


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="the rft stage, e.g. under `accelerate launch -m vrlib.rft`")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    quiet()  # each launched process would print the notebook kernel's notices again
    params = config.load(args.params)
    run(params.rft.seed, params.data, params.rft, params.base)  # the RL seed: data, base and SFT are done


if __name__ == "__main__":
    main()
