"""The GRPO core as pure tensor functions: advantages, the loss (GRPO, GSPO, CISPO), the bonuses.

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
6. A bonus can be added to the normalised advantage instead of the reward (`bonus_mode`
   "advantage"): with binary accuracy, a bonus shared by every correct answer of a group
   is erased by group normalisation (Video-R1 issue #51); after it, it survives.
7. The relative reward of VideoPerceiver has no public code or formula: `relative_bonus` is
   our hypothesis, written like T-GRPO's bonus (VideoPerceiver, arXiv 2511.18823; docs/design.md).
8. CISPO's cap on the importance weight is `cispo_cap`; TRL reuses `epsilon_high` for it (and
   MiniMax-M1 writes it 1 + eps_high^IS). Its logged capped fraction counts every capped token;
   TRL's `cispo_clip_ratio` counts only those with A > 0.
"""

from __future__ import annotations

from typing import Sequence

import torch

from vrlib.schema import BONUS_MODES, IMPORTANCE_SAMPLING, LOSS_TYPES, RELATIVE_FORMS, SCALES


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


def importance_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
                     level: str = "token") -> torch.Tensor:
    """The ratio pi_theta / pi_old of each token, rho_it = exp(logp_it - old_logp_it), (B, T); or,
    level "sequence" (GSPO, Zheng et al. 2025, arXiv 2507.18071), one per completion, the
    geometric mean of its token ratios: s_i = exp(sum_t mask_it (logp_it - old_logp_it) / |o_i|), (B, 1)."""
    if level not in IMPORTANCE_SAMPLING:
        raise ValueError(f"unknown importance_sampling {level!r}; known: {', '.join(IMPORTANCE_SAMPLING)}")
    log_ratio = logp - old_logp                                   # (B, T)
    if level == "token":
        return torch.exp(log_ratio)                               # (B, T)
    lengths = mask.sum(dim=1, keepdim=True).clamp(min=1)          # (B, 1)
    return torch.exp((log_ratio * mask).sum(dim=1, keepdim=True) / lengths)  # (B, 1)


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
    normalizer: float | None = None,
    importance_sampling: str = "token",
    cispo_cap: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate + beta * k3 KL per completion token, aggregated as TRL's loss_type.

    Per token: -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * KL, with
    rho = exp(logp - old_logp) and KL = exp(ref - logp) - (ref - logp) - 1 (Schulman's k3).
    importance_sampling="sequence" is GSPO: rho is the completion's s_i (`importance_ratio`) on
    every token, aggregated as loss_type; the paper clips it to [1 - 3e-4, 1 + 4e-4].
    loss_type="cispo" is CISPO (MiniMax-M1, arXiv 2506.13585): per token
    -sg(min(rho, cispo_cap)) * A * logp + beta * KL, a token mean as dapo; the weight is a
    constant, so no token loses its gradient to a clip (TRL's epsilon_high for cispo; it
    recommends 5.0, ScaleRL's eps_max).
    `normalizer` replaces the denominator (sequences for grpo, tokens for bnpo/dapo/cispo,
    sequences * max_completion_length for dr_grpo) when logp is one micro-batch of a larger
    batch: the micro-batch losses then add up to the whole batch's (`batch_normalizer`).
    Stats: policy/kl, policy/clip_frac (tokens on PPO's flat branch; under cispo those PPO
    would have dropped), policy/ratio_mean, and under cispo policy/cispo_capped_frac (rho > cap).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; known: {', '.join(LOSS_TYPES)}")
    if loss_type == "dr_grpo" and max_completion_length is None:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length")
    if loss_type == "cispo" and cispo_cap is None:
        raise ValueError("loss_type='cispo' needs cispo_cap")
    if beta != 0 and ref_logp is None:
        raise ValueError("beta != 0 needs ref_logp")
    mask = mask.to(logp.dtype)                                    # (B, T)
    adv = advantages.to(logp.dtype).unsqueeze(1)                  # (B, 1)
    ratio = importance_ratio(logp, old_logp, mask, importance_sampling).expand_as(logp)  # (B, T)
    if loss_type == "cispo":  # REINFORCE weighted by a detached, capped ratio
        per_token_loss = -torch.clamp(ratio, max=cispo_cap).detach() * adv * logp  # (B, T)
    else:
        clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)  # (B, T)
        per_token_loss = -torch.min(ratio * adv, clipped * adv)  # (B, T)
    kl = None
    if ref_logp is not None:
        delta = torch.clamp(ref_logp - logp, -10.0, 10.0)         # (B, T) Video-R1's clamp
        kl = torch.exp(delta) - delta - 1                         # (B, T)
        if beta != 0:
            per_token_loss = per_token_loss + beta * kl           # (B, T)

    masked = per_token_loss * mask                                # (B, T)
    n_tokens = mask.sum().clamp(min=1)                            # ()
    if normalizer is None:
        normalizer = batch_normalizer(loss_type, logp.shape[0], n_tokens.item(), max_completion_length)
    if loss_type == "grpo":  # mean over sequences of per-sequence token means (Video-R1, GRPO paper)
        loss = (masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum() / normalizer  # ()
    else:
        # bnpo/dapo/cispo: a token mean. TRL's bnpo divides by the tokens of the local batch, dapo
        # by the tokens gathered over processes (divided by num_processes); in one process they
        # coincide. dr_grpo: a constant denominator, no length bias (Dr. GRPO, Liu et al. 2025).
        loss = masked.sum() / normalizer                          # ()

    with torch.no_grad():
        # clipped branch taken: ratio above 1 + eps_high with A > 0, or below 1 - eps_low with A < 0 (TRL)
        is_clipped = ((ratio > 1 + epsilon_high) & (adv > 0)) | ((ratio < 1 - epsilon_low) & (adv < 0))  # (B, T)
        stats = {
            "policy/kl": 0.0 if kl is None else ((kl * mask).sum() / n_tokens).item(),
            "policy/clip_frac": ((is_clipped.to(mask.dtype) * mask).sum() / n_tokens).item(),
            "policy/ratio_mean": ((ratio * mask).sum() / n_tokens).item(),
        }
        if loss_type == "cispo":
            capped = (ratio > cispo_cap).to(mask.dtype)           # (B, T)
            stats["policy/cispo_capped_frac"] = ((capped * mask).sum() / n_tokens).item()
    return loss, stats


def batch_normalizer(loss_type: str, n_sequences: int, n_tokens: float,
                     max_completion_length: int | None = None) -> float:
    """What loss_type divides the batch's summed loss by: sequences (grpo), completion tokens
    (bnpo, dapo, cispo) or sequences * max_completion_length (dr_grpo)."""
    if loss_type == "grpo":
        return float(n_sequences)
    if loss_type in ("bnpo", "dapo", "cispo"):
        return float(max(n_tokens, 1))
    if loss_type == "dr_grpo":
        return float(n_sequences * max_completion_length)
    raise ValueError(f"unknown loss_type {loss_type!r}; known: {', '.join(LOSS_TYPES)}")


def overlong_penalty(lengths: torch.Tensor, *, max_length: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476), added to the reward:
    0 up to max_length - buffer tokens, then (max_length - buffer - L) / buffer down to -1 at
    max_length, -1 beyond. DAPO: max_length 20480, buffer 4096. E.g. max_length=10, buffer=4:
    lengths [6, 7, 8, 10, 12] -> [0, -0.25, -0.5, -1, -1]."""
    if not 0 < buffer <= max_length:
        raise ValueError(f"need 0 < buffer <= max_length, got buffer={buffer}, max_length={max_length}")
    lengths = lengths.float()                                     # (B,)
    return ((max_length - buffer - lengths) / buffer).clamp(-1.0, 0.0)  # (B,)


def length_bonus(accuracy: Sequence[float], lengths: Sequence[int], *, omega: float = 0.2,
                 l_min: int = 320, l_max: int = 512, threshold: float = 0.1) -> list[float]:
    """Video-R1's length-control reward for one group: +omega to each correct answer
    (accuracy > threshold) of length l_min..l_max tokens (EOS included), only when more than
    one answer of the group is correct. Paper: omega 0.2, 320..512 tokens.

    As Video-R1 grpo_trainer.py (len_control); it needs the group, so it lives with the other
    group bonuses, not with the per-sample rewards.
    """
    if len(accuracy) != len(lengths):
        raise ValueError(f"{len(accuracy)} accuracies for {len(lengths)} lengths")
    correct = [a > threshold for a in accuracy]
    if sum(correct) <= 1:
        return [0.0] * len(accuracy)
    return [omega if c and l_min <= n <= l_max else 0.0 for c, n in zip(correct, lengths)]


def mask_truncated(mask: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """The completion mask with the truncated completions (no EOS within the budget) zeroed, so
    they get no loss: DAPO's overlong filtering, TRL's mask_truncated_completions."""
    return mask * (~truncated.bool()).unsqueeze(1).to(mask.dtype)  # (B, T)


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


def relative_bonus(
    acc_full: torch.Tensor,
    acc_missing: torch.Tensor,
    *,
    alpha: float = 0.3,
    form: str = "indicator",
) -> tuple[torch.Tensor, torch.Tensor]:
    """VideoPerceiver's relative reward, as a HYPOTHESIS (no public code or formula): a rollout
    on the full video earns a bonus when it beats the mean of the rollouts on the
    key-information-missing video of the same question.

    "indicator": alpha * 1[acc_i > mean_j acc~_j]; "margin": alpha * clip(acc_i - mean_j acc~_j, 0, 1).
    Returns (bonus (Q, G), gap (Q,) = mean acc - mean acc~, > 0 where the full video helps).
    """
    if form not in RELATIVE_FORMS:
        raise ValueError(f"unknown relative form {form!r}; known: {', '.join(RELATIVE_FORMS)}")
    if acc_full.dim() != 2 or acc_missing.dim() != 2 or acc_full.shape[0] != acc_missing.shape[0] \
            or acc_missing.shape[1] == 0:
        raise ValueError(f"need (Q, G) and (Q, G~) with G~ > 0, got {tuple(acc_full.shape)} "
                         f"and {tuple(acc_missing.shape)}")
    acc_full = acc_full.float()                                   # (Q, G)
    missing_mean = acc_missing.float().mean(dim=1, keepdim=True)  # (Q, 1)
    if form == "indicator":
        bonus = alpha * (acc_full > missing_mean).float()         # (Q, G)
    else:
        bonus = alpha * (acc_full - missing_mean).clamp(0.0, 1.0)  # (Q, G)
    return bonus, acc_full.mean(dim=1) - missing_mean.squeeze(1)


def bonus_advantages(
    rewards: torch.Tensor,
    bonus: torch.Tensor | dict[str, torch.Tensor],
    group_size: int,
    *,
    scale: str = "group",
    mode: str = "reward",
    eps: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor | dict[str, torch.Tensor]]:
    """Advantages with a bonus (T-GRPO, relative), and where the bonus changed them.

    mode "reward" (Video-R1): A = normalise(r + bonus). With binary accuracy and scale
    "group" a bonus shared by every correct answer only rescales the group and A is unchanged
    (issue #51); with scale "batch" or "none" it survives as a weight between groups.
    mode "advantage": A = normalise(r) + bonus, so it survives whatever the scale; an
    all-correct group whose bonus fired now gets a positive push instead of nothing.
    Returns (advantages (B,), changed (B,) bool: |A - A without bonus| > 1e-3). With several
    bonuses by name (B,) each, A uses their sum and `changed` says, per name, where that bonus
    alone would have changed A.
    """
    if mode not in BONUS_MODES:
        raise ValueError(f"unknown bonus mode {mode!r}; known: {', '.join(BONUS_MODES)}")
    plain = group_advantages(rewards, group_size, scale, eps)     # (B,)

    def with_bonus(b: torch.Tensor) -> torch.Tensor:              # (B,)
        if mode == "reward":
            return group_advantages(rewards.float() + b.float(), group_size, scale, eps)
        return plain + b.float()

    # 1e-3: Video-R1's eps = 1e-4 in the std leaves a ~1e-4 relative trace of a rescaling
    if isinstance(bonus, torch.Tensor):
        adv = with_bonus(bonus)
        return adv, (adv - plain).abs() > 1e-3
    adv = with_bonus(sum(bonus.values()))                          # (B,)
    return adv, {name: (with_bonus(b) - plain).abs() > 1e-3 for name, b in bonus.items()}
