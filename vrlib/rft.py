"""The GRPO loop: rollout -> rewards -> group advantages -> clipped update with a k3 KL.

Our own loop rather than TRL's GRPOTrainer: TRL 1.16 feeds no video tensors to the loss and
reference forwards of video prompts, so it optimises a video-blind policy
(research/ecosystem-facts.md sec. 1.1, trl#5373). The pure pieces live in `vrlib.grpo`
and `vrlib.rewards`; this file only wires them to the model.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vrlib import rewards
from vrlib.config import RFTParams
from vrlib.grpo import group_advantages, policy_loss
from vrlib.rollout import Rollouts, generate, token_logprobs

REWARD_FUNCS = {"format": rewards.format_reward, "accuracy": rewards.accuracy_reward}
"""Video-R1 and VideoChat-R1 sum format and accuracy (IoU for grounding)."""


def score(texts: list[str], samples: list, reward_funcs: dict = REWARD_FUNCS
          ) -> dict[str, torch.Tensor]:
    """Each completion scored against its own sample (not the batch's first problem type)."""
    return {name: torch.tensor([fn(t, s) for t, s in zip(texts, samples)])  # (N,)
            for name, fn in reward_funcs.items()}


def grpo_step(model, processor, optimizer, samples: list, clips: list, cfg: RFTParams,
              reward_funcs: dict = REWARD_FUNCS) -> dict:
    """One GRPO step on a batch of questions; returns the logged metrics."""
    t0 = time.perf_counter()
    G = cfg.group_size
    ro: Rollouts = generate(model, processor, samples, clips, num_generations=G,
                            max_new_tokens=cfg.max_completion_length,
                            temperature=cfg.temperature, top_p=cfg.top_p)
    t_gen = time.perf_counter() - t0
    group_samples = [s for s in samples for _ in range(G)]
    parts = score(ro.texts, group_samples, reward_funcs)  # name -> (N,)
    reward = sum(parts.values())  # (N,)
    advantages = group_advantages(reward, G, scale=cfg.scale_rewards)  # (N,)
    mask = ro.completion_mask.float()  # (N, C)

    with torch.no_grad():
        old_logp = token_logprobs(model, ro, cfg.temperature) if cfg.num_iterations > 1 else None
        ref_logp = None
        if cfg.beta > 0:
            with model.disable_adapter():  # reference = the SFT model, LoRA off
                ref_logp = token_logprobs(model, ro, cfg.temperature)  # (N, C)
    t1 = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    for _ in range(cfg.num_iterations):
        logp = token_logprobs(model, ro, cfg.temperature)  # (N, C)
        loss, stats = policy_loss(
            logp, logp.detach() if old_logp is None else old_logp, ref_logp, advantages, mask,
            beta=cfg.beta, epsilon_low=cfg.epsilon_low, epsilon_high=cfg.epsilon_high,
            loss_type=cfg.loss_type, max_completion_length=cfg.max_completion_length)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"GRPO loss is {loss.item()}")
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()

    group_std = reward.view(-1, G).std(dim=1)  # (Q,)
    lengths = mask.sum(1)  # (N,)
    metrics = {f"reward/{name}/mean": v.mean().item() for name, v in parts.items()}
    metrics.update({
        "reward/mean": reward.mean().item(),
        "reward/std": reward.std().item(),
        "group/frac_zero_std": (group_std < 1e-6).float().mean().item(),
        "completion/length_mean": lengths.mean().item(),
        "completion/clipped_frac": ro.truncated.float().mean().item(),
        "train/loss": loss.item(),
        "train/grad_norm": grad_norm.item(),
        "time/generate_s": t_gen,
        "time/update_s": time.perf_counter() - t1,
        **stats,
    })
    return metrics


def train_grpo(model, processor, samples: list, clips: list, cfg: RFTParams, *, seed: int,
               checkpoint_dir: str | Path | None = None,
               on_step: Callable[[int, dict], None] | None = None) -> list[dict]:
    """`cfg.steps` GRPO steps; questions drawn from `np.random.default_rng([seed, step])`."""
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    history = []
    for step in range(cfg.steps):
        rng = np.random.default_rng([seed, step])
        idx = rng.choice(len(samples), size=cfg.prompts_per_step, replace=False)
        metrics = grpo_step(model, processor, optimizer, [samples[i] for i in idx],
                            [clips[i] for i in idx], cfg)
        history.append(metrics)
        if on_step is not None:
            on_step(step, metrics)
        if checkpoint_dir is not None and (step + 1) % cfg.checkpoint_every == 0:
            model.save_pretrained(Path(checkpoint_dir) / f"step_{step + 1:05d}")
    return history
