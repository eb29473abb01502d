"""The GRPO core as pure tensor functions: advantages, the clipped loss, the T-GRPO bonus.

Log-probs come from a separate forward pass; these functions only do the arithmetic, so
they are checked against hand-computed numbers. Departures from the reference code:

1. The ratio is exp(logp - old_logp) with old_logp from the rollout policy, so clipping
   acts when num_iterations > 1. Video-R1 uses exp(logp - logp.detach()): ratio == 1 and
   epsilon never takes effect.
2. The k3 KL clamps ref_logp - logp to [-10, 10] as Video-R1 and EasyR1 do (TRL does not):
   at low sampling temperatures the unclamped exp overflowed to ~1e12 on the tiny model.
3. The aggregation is a parameter (loss_type, TRL names); Video-R1 is "grpo" (mean of
   per-sequence means, which favours short correct answers and long wrong ones, Dr. GRPO).
4. "dapo" is a token mean over this process's batch; TRL divides by the token count
   gathered over all processes (see policy_loss).
5. The T-GRPO bonus is decided per question group, not per device batch, with mu = 1.0
   (paper) rather than 0.8 (code).
"""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """A_i = r_i - mean(group), divided by std (TRL scale_rewards): "group" std of the
    group, "batch" std of the whole batch, "none" not divided (Dr. GRPO). Groups are
    contiguous runs of group_size; std is Bessel-corrected (torch default, as TRL)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    if rewards.dim() != 1 or group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be (B,) with B a multiple of group_size={group_size}, "
                         f"got {tuple(rewards.shape)}")
    if (scale == "group" and group_size < 2) or (scale == "batch" and rewards.numel() < 2):
        raise ValueError(f"scale={scale!r} needs at least 2 rewards per std (Bessel correction)")
    rewards = rewards.float()                                     # (B,)
    grouped = rewards.view(-1, group_size)                        # (B/G, G)
    centered = grouped - grouped.mean(dim=1, keepdim=True)        # (B/G, G)
    if scale == "group":
        centered = centered / (grouped.std(dim=1, keepdim=True) + eps)  # (B/G, G)
    elif scale == "batch":
        centered = centered / (rewards.std() + eps)               # (B/G, G)
    return centered.reshape(-1)                                   # (B,)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    loss_type: str = "grpo",
    max_completion_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate + beta * k3 KL per completion token, aggregated as TRL's loss_type.

    Per token: -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * KL, with
    rho = exp(logp - old_logp) and KL = exp(ref - logp) - (ref - logp) - 1 (Schulman's k3).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; known: {', '.join(LOSS_TYPES)}")
    if loss_type == "dr_grpo" and max_completion_length is None:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length")
    if beta != 0 and ref_logp is None:
        raise ValueError("beta != 0 needs ref_logp")
    mask = mask.to(logp.dtype)                                    # (B, T)
    adv = advantages.to(logp.dtype).unsqueeze(1)                  # (B, 1)
    ratio = torch.exp(logp - old_logp)                            # (B, T)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)  # (B, T)
    per_token_loss = -torch.min(ratio * adv, clipped * adv)      # (B, T)
    kl = None
    if ref_logp is not None:
        delta = torch.clamp(ref_logp - logp, -10.0, 10.0)         # (B, T) Video-R1's clamp
        kl = torch.exp(delta) - delta - 1                         # (B, T)
        if beta != 0:
            per_token_loss = per_token_loss + beta * kl           # (B, T)

    masked = per_token_loss * mask                                # (B, T)
    n_tokens = mask.sum().clamp(min=1)                            # ()
    if loss_type == "grpo":  # mean over sequences of per-sequence token means (Video-R1, GRPO paper)
        loss = (masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()  # ()
    elif loss_type in ("bnpo", "dapo"):
        # Both are a token mean. TRL's bnpo divides by the tokens of the local micro-batch,
        # dapo by the tokens of the whole generation batch gathered over processes (divided by
        # num_processes). In one process with the whole batch here they coincide.
        loss = masked.sum() / n_tokens                            # ()
    else:  # dr_grpo: a constant normaliser, no length bias (Dr. GRPO, Liu et al. 2025)
        loss = masked.sum() / (logp.shape[0] * max_completion_length)  # ()

    with torch.no_grad():
        # clipped branch taken: ratio above 1 + eps_high with A > 0, or below 1 - eps_low with A < 0 (TRL)
        is_clipped = ((ratio > 1 + epsilon_high) & (adv > 0)) | ((ratio < 1 - epsilon_low) & (adv < 0))  # (B, T)
        stats = {
            "policy/kl": 0.0 if kl is None else ((kl * mask).sum() / n_tokens).item(),
            "policy/clip_frac": ((is_clipped.to(mask.dtype) * mask).sum() / n_tokens).item(),
            "policy/ratio_mean": ((ratio * mask).sum() / n_tokens).item(),
        }
    return loss, stats


def temporal_bonus(
    acc_ordered: torch.Tensor,
    acc_shuffled: torch.Tensor,
    *,
    alpha: float = 0.3,
    mu: float = 1.0,
    threshold: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """T-GRPO (Video-R1 sec. 3.2): +alpha to each correct ordered rollout of a question whose
    ordered accuracy p is at least mu * the shuffled accuracy p~.

    alpha = 0.3 and "correct" = accuracy > 0.1 as Video-R1's code. mu = 1.0 as the paper;
    the code has 0.8, which the author called a debugging leftover (issues #43, #74, #96).
    Video-R1's code averages p and p~ over the device batch, right only with one question per
    device (per_device_train_batch_size=1, issue #96); here each question has its own p, p~.
    With binary accuracy and a constant format reward the bonus only rescales the correct
    rewards, so the group-normalised advantage is unchanged (issue #51).
    Returns (bonus (Q, G), applied (Q,) bool).
    """
    if acc_ordered.dim() != 2 or acc_shuffled.dim() != 2 or acc_ordered.shape[0] != acc_shuffled.shape[0]:
        raise ValueError(f"need (Q, G) and (Q, G~), got {tuple(acc_ordered.shape)} and {tuple(acc_shuffled.shape)}")
    if acc_shuffled.shape[1] == 0 or acc_ordered.shape[1] == 0:
        raise ValueError("each question needs at least one ordered and one shuffled rollout")
    acc_ordered = acc_ordered.float()                             # (Q, G)
    p = acc_ordered.mean(dim=1)                                   # (Q,)
    p_shuffled = acc_shuffled.float().mean(dim=1)                 # (Q,)
    applied = p >= mu * p_shuffled                                # (Q,)
    correct = acc_ordered > threshold                             # (Q, G)
    bonus = alpha * (applied.unsqueeze(1) & correct).float()      # (Q, G)
    return bonus, applied
