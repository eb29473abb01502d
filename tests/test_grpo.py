"""vrlib.grpo against hand-computed numbers and a plain-Python loop."""

from __future__ import annotations

import math

import pytest
import torch

from vrlib.grpo import (batch_normalizer, bonus_advantages, group_advantages, importance_ratio, mask_truncated,
                        overlong_penalty, policy_loss, relative_bonus, temporal_bonus)


# ----------------------------------------------------------------------------- advantages
def test_advantages_one_group():
    # mean 0.5; Bessel std = sqrt((4 * 0.25) / 3) = 0.5774; 0.5 / (0.5774 + 1e-4) = 0.8659
    adv = group_advantages(torch.tensor([1.0, 1.0, 0.0, 0.0]), group_size=4)
    assert torch.allclose(adv, torch.tensor([0.8659, 0.8659, -0.8659, -0.8659]), atol=1e-4)


def test_advantages_groups_are_contiguous_and_equal_group_is_zero():
    # group [1, 0]: mean 0.5, std sqrt(0.5) = 0.7071 -> +-0.5 / 0.7072 = +-0.7070
    # group [3, 3]: all equal -> 0 (not nan: the eps keeps 0 / 0 away)
    adv = group_advantages(torch.tensor([1.0, 0.0, 3.0, 3.0]), group_size=2)
    assert torch.allclose(adv, torch.tensor([0.7070, -0.7070, 0.0, 0.0]), atol=1e-4)


def test_advantages_batch_and_none_scales():
    rewards = torch.tensor([1.0, 0.0, 3.0, 3.0])
    # centred on the group means: [0.5, -0.5, 0, 0]
    assert torch.allclose(group_advantages(rewards, 2, scale="none"), torch.tensor([0.5, -0.5, 0.0, 0.0]))
    # batch std: mean 1.75, squared deviations 0.5625 + 3.0625 + 1.5625 + 1.5625 = 6.75, / 3 = 2.25 -> std 1.5
    expected = torch.tensor([0.5, -0.5, 0.0, 0.0]) / (1.5 + 1e-4)
    assert torch.allclose(group_advantages(rewards, 2, scale="batch"), expected, atol=1e-6)


def test_advantages_all_equal_is_zero():
    assert torch.equal(group_advantages(torch.full((8,), 0.7), group_size=4), torch.zeros(8))


def test_advantages_validate():
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.zeros(5), group_size=2)
    with pytest.raises(ValueError, match="known: group, batch, none"):
        group_advantages(torch.zeros(4), group_size=2, scale="z")
    with pytest.raises(ValueError, match="Bessel"):
        group_advantages(torch.zeros(4), group_size=1)


# ----------------------------------------------------------------------------- policy loss
def loop_policy_loss(logp, old_logp, ref_logp, adv, mask, beta, eps_low, eps_high, loss_type, max_len):
    """The same loss token by token, in Python floats."""
    B, T = len(logp), len(logp[0])
    per_seq, total, n_all, kl_sum, clip_n, ratio_sum = [], 0.0, 0, 0.0, 0, 0.0
    for b in range(B):
        seq_sum, n = 0.0, 0
        for t in range(T):
            if not mask[b][t]:
                continue
            ratio = math.exp(logp[b][t] - old_logp[b][t])
            clipped = min(max(ratio, 1 - eps_low), 1 + eps_high)
            obj = min(ratio * adv[b], clipped * adv[b])
            d = ref_logp[b][t] - logp[b][t]
            kl = math.exp(d) - d - 1
            tok = -obj + beta * kl
            seq_sum, n, total, n_all = seq_sum + tok, n + 1, total + tok, n_all + 1
            kl_sum, ratio_sum = kl_sum + kl, ratio_sum + ratio
            clip_n += (ratio > 1 + eps_high and adv[b] > 0) or (ratio < 1 - eps_low and adv[b] < 0)
        per_seq.append(seq_sum / max(n, 1))
    loss = {"grpo": sum(per_seq) / B, "bnpo": total / n_all, "dapo": total / n_all,
            "dr_grpo": total / (B * (max_len or 1))}[loss_type]
    stats = {"policy/kl": kl_sum / n_all, "policy/clip_frac": clip_n / n_all, "policy/ratio_mean": ratio_sum / n_all}
    return loss, stats


def random_batch(seed=0, B=4, T=6):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, T, generator=g, dtype=torch.float64) * 2            # (B, T)
    old_logp = logp + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)  # (B, T) ratio far from 1
    ref_logp = logp + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)  # (B, T)
    adv = torch.randn(B, generator=g, dtype=torch.float64)                     # (B,)
    lengths = torch.tensor([T, 3, 1, 5])[:B]
    mask = torch.arange(T)[None, :] < lengths[:, None]                         # (B, T) unequal lengths
    return logp, old_logp, ref_logp, adv, mask


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.2), (0.2, 0.28)])
def test_policy_loss_matches_loop(loss_type, eps_low, eps_high):
    logp, old_logp, ref_logp, adv, mask = random_batch()
    kwargs = dict(beta=0.04, epsilon_low=eps_low, epsilon_high=eps_high, loss_type=loss_type, max_completion_length=8)
    loss, stats = policy_loss(logp, old_logp, ref_logp, adv, mask, **kwargs)
    ref_loss, ref_stats = loop_policy_loss(logp.tolist(), old_logp.tolist(), ref_logp.tolist(), adv.tolist(),
                                           mask.tolist(), 0.04, eps_low, eps_high, loss_type, 8)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-9)
    assert stats == pytest.approx(ref_stats, rel=1e-9)
    assert 0 < stats["policy/clip_frac"] < 1  # the random ratios exercise both branches


def test_policy_loss_is_differentiable_and_on_policy_gradient():
    # On policy (old = logp.detach(), ratio 1), beta 0, grpo: dL/dlogp[b, t] = -A_b / (n_b * B)
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]], requires_grad=True)  # (2, 3)
    adv = torch.tensor([1.0, -2.0])                                                      # (2,)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])                                          # (2, 3)
    loss, stats = policy_loss(logp, logp.detach(), None, adv, mask, beta=0.0)
    loss.backward()
    expected = torch.tensor([[-1 / 6, -1 / 6, -1 / 6], [2 / 4, 2 / 4, 0.0]])
    assert torch.allclose(logp.grad, expected)
    assert stats == {"policy/kl": 0.0, "policy/clip_frac": 0.0, "policy/ratio_mean": 1.0}


def test_policy_loss_clipping_by_hand():
    # one token per sequence; ratios 1.5, 1.5, 0.5; advantages +1, -1, -1; eps 0.2
    old = torch.zeros(3, 1)                                                               # (3, 1)
    logp = torch.log(torch.tensor([[1.5], [1.5], [0.5]])).requires_grad_()               # (3, 1)
    adv = torch.tensor([1.0, -1.0, -1.0])                                                 # (3,)
    loss, stats = policy_loss(logp, old, None, adv, torch.ones(3, 1), beta=0.0)
    # seq 0: min(1.5, 1.2) = 1.2, clipped; seq 1: min(-1.5, -1.2) = -1.5, not clipped;
    # seq 2: min(-0.5, -0.8) = -0.8, clipped. loss = mean(-1.2, 1.5, 0.8) = 0.3667
    assert loss.item() == pytest.approx((-1.2 + 1.5 + 0.8) / 3, abs=1e-6)
    assert stats["policy/clip_frac"] == pytest.approx(2 / 3)
    assert stats["policy/ratio_mean"] == pytest.approx(3.5 / 3, abs=1e-6)
    loss.backward()
    # a clipped token gets no gradient; seq 1: d(1.5 * ratio)/dlogp / 3 = 1.5 / 3 = 0.5
    assert torch.allclose(logp.grad, torch.tensor([[0.0], [0.5], [0.0]]))


def test_k3_kl_by_hand():
    # logp = log 0.5, ref = log 0.25: d = ref - logp = log 0.5 = -0.6931,
    # kl = exp(d) - d - 1 = 0.5 + 0.6931 - 1 = 0.1931; A = 0 so loss = beta * kl = 0.01931
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    loss, stats = policy_loss(logp, logp, ref, torch.zeros(1), torch.ones(1, 1), beta=0.1)
    assert stats["policy/kl"] == pytest.approx(0.5 + math.log(2) - 1, abs=1e-6)
    assert loss.item() == pytest.approx(0.1 * (0.5 + math.log(2) - 1), abs=1e-6)


def test_loss_types_differ_by_normalisation():
    # seq 0: 3 tokens of loss -1 (A = 1, ratio 1); seq 1: 1 token of loss +1 (A = -1)
    logp = torch.zeros(2, 3)                                                              # (2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])                                           # (2, 3)
    adv = torch.tensor([1.0, -1.0])                                                       # (2,)
    loss = {lt: policy_loss(logp, logp, None, adv, mask, beta=0.0, loss_type=lt, max_completion_length=4)[0].item()
            for lt in ["grpo", "bnpo", "dapo", "dr_grpo"]}
    assert loss["grpo"] == pytest.approx((-1 + 1) / 2)        # mean of sequence means: 0
    assert loss["bnpo"] == pytest.approx((-3 + 1) / 4)        # token mean: -0.5
    assert loss["dapo"] == loss["bnpo"]                       # one process: the same token mean
    assert loss["dr_grpo"] == pytest.approx((-3 + 1) / (2 * 4))  # / (B * max_completion_length) = -0.25


def test_policy_loss_validates():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="max_completion_length"):
        policy_loss(x, x, None, torch.zeros(1), torch.ones(1, 2), beta=0.0, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(x, x, None, torch.zeros(1), torch.ones(1, 2), beta=0.1)
    with pytest.raises(ValueError, match="known: grpo, bnpo, dapo, dr_grpo"):
        policy_loss(x, x, None, torch.zeros(1), torch.ones(1, 2), beta=0.0, loss_type="ppo")


# ----------------------------------------------------------------------------- T-GRPO
def test_temporal_bonus_per_question():
    # q0: p = 2/4 = 0.5 >= p~ = 0/2 -> bonus 0.3 on its two correct rollouts
    # q1: p = 1/4 = 0.25 <  p~ = 2/2 -> no bonus
    acc = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])   # (2, 4)
    acc_shuffled = torch.tensor([[0.0, 0.0], [1.0, 1.0]])              # (2, 2)
    bonus, applied = temporal_bonus(acc, acc_shuffled)
    assert applied.tolist() == [True, False]
    assert torch.allclose(bonus, torch.tensor([[0.3, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    # Video-R1's code pools the device batch: p = 3/8 = 0.375 < 0.8 * p~ = 0.8 * 2/4 = 0.4,
    # so neither question would get the bonus although q0 clearly uses the frame order.
    assert not (acc.mean() >= 0.8 * acc_shuffled.mean())


def test_temporal_bonus_mu_and_threshold():
    acc = torch.tensor([[0.9, 0.6, 0.05, 0.0]])        # (1, 4) continuous rewards; p = 0.3875
    acc_shuffled = torch.tensor([[0.5, 0.3]])           # (1, 2) p~ = 0.4
    _, applied = temporal_bonus(acc, acc_shuffled)      # 0.3875 < 1.0 * 0.4
    assert applied.tolist() == [False]
    bonus, applied = temporal_bonus(acc, acc_shuffled, mu=0.8)  # 0.3875 >= 0.32 (Video-R1 code)
    assert applied.tolist() == [True]
    # 0.05 and 0.0 are not "correct" (accuracy > 0.1)
    assert torch.allclose(bonus, torch.tensor([[0.3, 0.3, 0.0, 0.0]]))


def test_temporal_bonus_issue_51_binary_rewards_unchanged_advantage():
    # binary accuracy + constant format: the bonus maps rewards 2 -> 2.3 and 1 -> 1, an affine
    # map of the group, so the z-scored advantage is the same (up to the 1e-4 eps).
    acc = torch.tensor([[1.0, 1.0, 0.0, 1.0]])                   # (1, 4)
    bonus, applied = temporal_bonus(acc, torch.zeros(1, 2))
    assert applied.item()
    rewards = (acc + 1.0).flatten()                              # (4,) accuracy + format
    with_bonus = (acc + bonus + 1.0).flatten()                   # (4,)
    assert not torch.equal(rewards, with_bonus)
    assert torch.allclose(group_advantages(rewards, 4), group_advantages(with_bonus, 4), atol=1e-3)
    assert torch.allclose(group_advantages(rewards, 4, eps=0.0), group_advantages(with_bonus, 4, eps=0.0), atol=1e-6)
    # with continuous accuracy the bonus is not affine and does change the advantage
    acc = torch.tensor([[0.9, 0.5, 0.05, 0.0]])                  # (1, 4)
    bonus, _ = temporal_bonus(acc, torch.zeros(1, 2))
    changed = group_advantages((acc + bonus).flatten(), 4)
    assert not torch.allclose(group_advantages(acc.flatten(), 4), changed, atol=1e-2)


def test_temporal_bonus_validates():
    with pytest.raises(ValueError):
        temporal_bonus(torch.zeros(2, 4), torch.zeros(3, 2))
    with pytest.raises(ValueError):
        temporal_bonus(torch.zeros(2, 4), torch.zeros(2, 0))


# ----------------------------------------------------------------------------- bonus variants
def test_issue_51_variants_under_which_the_temporal_bonus_survives():
    # two questions, binary accuracy + format 1; the bonus fires on question 0 only
    acc = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]])      # (2, 4)
    bonus, applied = temporal_bonus(acc, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert applied.tolist() == [True, False]
    rewards, flat_bonus = (acc + 1.0).flatten(), bonus.flatten()          # (8,)
    # Video-R1: added to the reward, group-normalised -> unchanged (issue #51)
    adv, changed = bonus_advantages(rewards, flat_bonus, 4, scale="group", mode="reward")
    assert not changed.any() and torch.allclose(adv, group_advantages(rewards, 4), atol=1e-3)
    # added after normalisation: +0.3 on the correct answers of question 0, by hand
    adv, changed = bonus_advantages(rewards, flat_bonus, 4, scale="group", mode="advantage")
    plain = 0.5 / math.sqrt(1 / 3) / (1 + 1e-4 / math.sqrt(1 / 3))       # (1 - 0.5) / (std + eps)
    assert adv[:4].tolist() == pytest.approx([plain + 0.3, -plain, plain + 0.3, -plain], abs=1e-5)
    assert changed.tolist() == [True, False, True, False] + [False] * 4
    # not divided by the std (Dr. GRPO): the correct answers of question 0 get 1.3 - 0.65
    adv, changed = bonus_advantages(rewards, flat_bonus, 4, scale="none", mode="reward")
    assert adv[:4].tolist() == pytest.approx([0.65, -0.65, 0.65, -0.65], abs=1e-6)
    assert changed[:4].all() and not changed[4:].any()
    # batch std: question 0's gap grows relative to question 1's
    adv, changed = bonus_advantages(rewards, flat_bonus, 4, scale="batch", mode="reward")
    assert adv[0] / adv[4] == pytest.approx(1.3, abs=1e-4) and changed.all()
    with pytest.raises(ValueError, match="known: reward, advantage"):
        bonus_advantages(rewards, flat_bonus, 4, mode="nope")


def test_relative_bonus_by_hand():
    full = torch.tensor([[1.0, 0.5, 0.2, 0.0]])                           # (1, 4)
    missing = torch.tensor([[0.5, 0.1]])                                  # mean 0.3
    bonus, gap = relative_bonus(full, missing, alpha=0.3)
    assert bonus[0].tolist() == pytest.approx([0.3, 0.3, 0.0, 0.0])
    assert gap.item() == pytest.approx(0.425 - 0.3)
    bonus, _ = relative_bonus(full, missing, alpha=0.3, form="margin")
    assert bonus[0].tolist() == pytest.approx([0.3 * 0.7, 0.3 * 0.2, 0.0, 0.0])
    with pytest.raises(ValueError):
        relative_bonus(full, torch.zeros(1, 0))
    with pytest.raises(ValueError, match="indicator, margin"):
        relative_bonus(full, missing, form="ratio")


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo", "cispo"])
@pytest.mark.parametrize("importance_sampling", ["token", "sequence"])
def test_micro_batch_losses_add_up_to_the_batch_loss(loss_type, importance_sampling):
    logp, old, ref, adv, mask = random_batch(seed=1, B=4, T=6)
    kw = dict(beta=0.04, loss_type=loss_type, max_completion_length=6, importance_sampling=importance_sampling,
              cispo_cap=1.3)
    whole, _ = policy_loss(logp, old, ref, adv, mask, **kw)
    norm = batch_normalizer(loss_type, 4, mask.sum().item(), 6)
    parts = sum(policy_loss(logp[s], old[s], ref[s], adv[s], mask[s], normalizer=norm, **kw)[0]
                for s in (slice(0, 1), slice(1, 4)))
    assert parts.item() == pytest.approx(whole.item(), abs=1e-6)
    with pytest.raises(ValueError):
        batch_normalizer("ppo", 1, 1)



# ----------------------------------------------------------------------------- issue 18: GSPO, CISPO, DAPO
def policy_loss_before_issue_18(logp, old_logp, ref_logp, advantages, mask, *, beta, epsilon_low=0.2,
                                epsilon_high=0.2, loss_type="grpo", max_completion_length=None, normalizer=None):
    """policy_loss as committed before issue 18 (token ratio only), frozen to pin today's numbers."""
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype).unsqueeze(1)
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token_loss = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if ref_logp is not None:
        delta = torch.clamp(ref_logp - logp, -10.0, 10.0)
        kl = torch.exp(delta) - delta - 1
        if beta != 0:
            per_token_loss = per_token_loss + beta * kl
    masked = per_token_loss * mask
    n_tokens = mask.sum().clamp(min=1)
    if normalizer is None:
        normalizer = {"grpo": float(logp.shape[0]), "bnpo": float(max(n_tokens.item(), 1)),
                      "dapo": float(max(n_tokens.item(), 1)),
                      "dr_grpo": float(logp.shape[0] * (max_completion_length or 0))}[loss_type]
    if loss_type == "grpo":
        loss = (masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum() / normalizer
    else:
        loss = masked.sum() / normalizer
    with torch.no_grad():
        is_clipped = ((ratio > 1 + epsilon_high) & (adv > 0)) | ((ratio < 1 - epsilon_low) & (adv < 0))
        stats = {"policy/kl": 0.0 if kl is None else ((kl * mask).sum() / n_tokens).item(),
                 "policy/clip_frac": ((is_clipped.to(mask.dtype) * mask).sum() / n_tokens).item(),
                 "policy/ratio_mean": ((ratio * mask).sum() / n_tokens).item()}
    return loss, stats


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_token_importance_sampling_gives_exactly_todays_numbers(loss_type, dtype):
    for seed, (eps_low, eps_high), beta, with_ref, normalizer in [
            (0, (0.2, 0.2), 0.04, True, None), (1, (0.2, 0.28), 0.0, False, None),
            (2, (0.1, 0.3), 0.1, True, 7.0), (3, (0.2, 0.2), 0.0, True, None)]:
        logp, old, ref, adv, mask = (x.to(dtype) if x.is_floating_point() else x for x in random_batch(seed))
        kw = dict(beta=beta, epsilon_low=eps_low, epsilon_high=eps_high, loss_type=loss_type,
                  max_completion_length=8, normalizer=normalizer)
        results = []
        for fn, extra in [(policy_loss_before_issue_18, {}), (policy_loss, {"importance_sampling": "token"}),
                          (policy_loss, {})]:
            x = logp.clone().requires_grad_()
            loss, stats = fn(x, old, ref if with_ref else None, adv, mask, **kw, **extra)
            loss.backward()
            results.append((loss.detach(), x.grad, stats))
        for loss, grad, stats in results[1:]:
            assert torch.equal(loss, results[0][0]) and torch.equal(grad, results[0][1])
            assert stats == results[0][2]


def loop_loss_autograd(logp, old_logp, ref_logp, adv, mask, *, beta, eps_low, eps_high, loss_type, level, cap,
                       max_len):
    """policy_loss token by token on 0-d tensors (autograd gives the gradient), and its stats in floats."""
    B, T = logp.shape
    seq_means, total, n_all, kl_sum, clip_n, capped_n, ratio_sum = [], 0.0, 0, 0.0, 0, 0, 0.0
    for b in range(B):
        tokens = [t for t in range(T) if mask[b][t]]
        # GSPO: s_b = exp(mean over its tokens of logp - old_logp), the same on every token of b
        s_b = torch.exp(sum((logp[b, t] - old_logp[b, t] for t in tokens), torch.tensor(0.0)) / max(len(tokens), 1))
        seq_sum = 0.0
        for t in tokens:
            rho = s_b if level == "sequence" else torch.exp(logp[b, t] - old_logp[b, t])
            if loss_type == "cispo":
                tok = -min(rho.item(), cap) * adv[b] * logp[b, t]      # a float weight: no gradient through it
            else:
                clipped = min(max(rho, 1 - eps_low), 1 + eps_high)      # a float when clipped: no gradient
                tok = -min(rho * adv[b], clipped * adv[b])
            d = torch.clamp(ref_logp[b, t] - logp[b, t], -10.0, 10.0)
            kl = torch.exp(d) - d - 1
            tok = tok + beta * kl
            seq_sum, total, n_all = seq_sum + tok, total + tok, n_all + 1
            kl_sum, ratio_sum = kl_sum + kl.item(), ratio_sum + rho.item()
            a, r = adv[b].item(), rho.item()
            clip_n += (r > 1 + eps_high and a > 0) or (r < 1 - eps_low and a < 0)
            capped_n += loss_type == "cispo" and rho.item() > cap
        seq_means.append(seq_sum / max(len(tokens), 1))
    loss = {"grpo": sum(seq_means) / B, "bnpo": total / n_all, "dapo": total / n_all, "cispo": total / n_all,
            "dr_grpo": total / (B * max_len)}[loss_type]
    stats = {"policy/kl": kl_sum / n_all, "policy/clip_frac": clip_n / n_all, "policy/ratio_mean": ratio_sum / n_all}
    if loss_type == "cispo":
        stats["policy/cispo_capped_frac"] = capped_n / n_all
    return loss, stats


def random_ragged_batch(seed, B=12, T=7):
    """Log-probs far from on-policy, and lengths from 0 (an empty completion) to T."""
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, T, generator=g, dtype=torch.float64) * 2                 # (B, T)
    old_logp = logp + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)    # (B, T)
    ref_logp = logp + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)    # (B, T)
    adv = torch.randn(B, generator=g, dtype=torch.float64)                         # (B,)
    lengths = torch.randint(1, T + 1, (B,), generator=g)                           # (B,)
    lengths[0] = 0
    mask = torch.arange(T)[None, :] < lengths[:, None]                             # (B, T)
    return logp, old_logp, ref_logp, adv, mask


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo", "cispo"])
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("seed", [0, 1])
def test_policy_loss_value_and_gradient_match_loop(loss_type, level, seed):
    logp, old, ref, adv, mask = random_ragged_batch(seed)
    eps_low, eps_high, cap = 0.2, 0.28, 1.3
    x = logp.clone().requires_grad_()
    loss, stats = policy_loss(x, old, ref, adv, mask, beta=0.04, epsilon_low=eps_low, epsilon_high=eps_high,
                              loss_type=loss_type, max_completion_length=7, importance_sampling=level, cispo_cap=cap)
    loss.backward()
    y = logp.clone().requires_grad_()
    ref_loss, ref_stats = loop_loss_autograd(y, old, ref, adv, mask.tolist(), beta=0.04, eps_low=eps_low,
                                             eps_high=eps_high, loss_type=loss_type, level=level, cap=cap, max_len=7)
    ref_loss.backward()
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-12)
    assert torch.allclose(x.grad, y.grad, rtol=1e-10, atol=1e-14)
    assert stats == pytest.approx(ref_stats, rel=1e-12)
    assert 0 < stats["policy/clip_frac"] < 1                   # both branches of the clip are exercised
    if loss_type == "cispo":
        assert 0 < stats["policy/cispo_capped_frac"] < 1       # and both sides of the cap
        assert (x.grad[mask] != 0).all()                       # no token loses its gradient


def test_gspo_sequence_ratio_by_hand():
    # completion 0: token ratios 2 and 0.5 -> s_0 = exp((ln 2 + ln 0.5) / 2) = 1; completion 1: one token, 1.5
    logp = torch.log(torch.tensor([[2.0, 0.5], [1.5, 1.0]]))                  # (2, 2) old_logp = 0
    mask = torch.tensor([[1, 1], [1, 0]])                                      # (2, 2)
    adv = torch.tensor([1.0, -1.0])                                            # (2,)
    s = importance_ratio(logp, torch.zeros(2, 2), mask.float(), "sequence")   # (2, 1)
    assert torch.allclose(s, torch.tensor([[1.0], [1.5]]))
    out = {}
    for level in ("token", "sequence"):
        x = logp.clone().requires_grad_()
        loss, stats = policy_loss(x, torch.zeros(2, 2), None, adv, mask, beta=0.0, importance_sampling=level)
        loss.backward()
        out[level] = (loss.item(), x.grad, stats)
    # token: completion 0: ratio 2 clipped to 1.2 (no gradient), ratio 0.5 kept: mean(-1.2, -0.5) = -0.85;
    # completion 1: A = -1, min(-1.5, -1.2) = -1.5 -> 1.5. grpo: (-0.85 + 1.5) / 2 = 0.325.
    # d/dlogp = -rho A / (n_i B): [0, -0.5 / 4], [1.5 / 2]
    loss, grad, stats = out["token"]
    assert loss == pytest.approx(0.325, abs=1e-6)
    assert torch.allclose(grad, torch.tensor([[0.0, -0.125], [0.75, 0.0]]))
    assert stats["policy/clip_frac"] == pytest.approx(1 / 3) and stats["policy/ratio_mean"] == pytest.approx(4 / 3)
    # sequence: s_0 = 1, not clipped: -1 on both tokens; completion 1 as before. grpo: (-1 + 1.5) / 2 = 0.25.
    # d s_0 / d logp_0t = s_0 / 2, so d/dlogp_0t = -A s_0 / 2 / B = -0.25 on both tokens, the clipped one included
    loss, grad, stats = out["sequence"]
    assert loss == pytest.approx(0.25, abs=1e-6)
    assert torch.allclose(grad, torch.tensor([[-0.25, -0.25], [0.75, 0.0]]))
    assert stats["policy/clip_frac"] == 0.0 and stats["policy/ratio_mean"] == pytest.approx(3.5 / 3)


def test_gspo_clips_whole_completions_with_the_papers_range():
    # GSPO's range [1 - 3e-4, 1 + 4e-4]: token log-ratios +1e-3 and -5e-4, A = 1.
    logp = torch.tensor([[1e-3, -5e-4]], dtype=torch.float64)                  # (1, 2) old_logp = 0
    kw = dict(beta=0.0, epsilon_low=3e-4, epsilon_high=4e-4)
    x = logp.clone().requires_grad_()
    loss, stats = policy_loss(x, torch.zeros_like(logp), None, torch.ones(1), torch.ones(1, 2), **kw)
    loss.backward()
    assert stats["policy/clip_frac"] == 0.5 and x.grad[0, 0] == 0.0            # token: exp(1e-3) > 1 + 4e-4, clipped
    x = logp.clone().requires_grad_()
    loss, stats = policy_loss(x, torch.zeros_like(logp), None, torch.ones(1), torch.ones(1, 2),
                              importance_sampling="sequence", **kw)
    loss.backward()
    s = math.exp((1e-3 - 5e-4) / 2)                                            # 1.00025: inside the range
    assert stats["policy/clip_frac"] == 0.0 and loss.item() == pytest.approx(-s, rel=1e-12)
    assert x.grad[0].tolist() == pytest.approx([-s / 2, -s / 2], rel=1e-12)   # d s / d logp_t = s / 2
    # a completion moved too far as a whole loses every token's gradient
    x = torch.full((1, 2), 1e-3, dtype=torch.float64, requires_grad=True)
    loss, stats = policy_loss(x, torch.zeros(1, 2, dtype=torch.float64), None, torch.ones(1), torch.ones(1, 2),
                              importance_sampling="sequence", **kw)
    loss.backward()
    assert stats["policy/clip_frac"] == 1.0 and x.grad.abs().max().item() == 0.0


def test_cispo_keeps_the_gradient_ppo_clips_by_hand():
    # ratios 1.5 (A = +1), 0.5 (A = -1), 8 (A = +1): PPO's clip drops all three; cap 5
    logp = torch.log(torch.tensor([[1.5], [0.5], [8.0]]))                     # (3, 1) old_logp = 0
    adv = torch.tensor([1.0, -1.0, 1.0])                                       # (3,)
    old, mask = torch.zeros(3, 1), torch.ones(3, 1)
    x = logp.clone().requires_grad_()
    policy_loss(x, old, None, adv, mask, beta=0.0, loss_type="dapo")[0].backward()
    assert x.grad.abs().max().item() == 0.0
    x = logp.clone().requires_grad_()
    loss, stats = policy_loss(x, old, None, adv, mask, beta=0.0, loss_type="cispo", cispo_cap=5.0)
    loss.backward()
    # per token -sg(min(rho, 5)) A logp: -1.5 ln 1.5, +0.5 ln 0.5 (A = -1), -5 ln 8; a token mean
    expected = (-1.5 * math.log(1.5) + 0.5 * math.log(0.5) - 5 * math.log(8.0)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # d/dlogp = -min(rho, 5) A / 3
    assert torch.allclose(x.grad, torch.tensor([[-1.5 / 3], [0.5 / 3], [-5.0 / 3]]))
    assert stats == pytest.approx({"policy/kl": 0.0, "policy/clip_frac": 1.0, "policy/ratio_mean": 10 / 3,
                                   "policy/cispo_capped_frac": 1 / 3})


def test_cispo_aggregates_as_dapo():
    assert batch_normalizer("cispo", 4, 17, 8) == batch_normalizer("dapo", 4, 17, 8) == 17.0
    # on policy (rho = 1 <= cap) CISPO's gradient is dapo's: -A / n_tokens on every token
    logp, _, ref, adv, mask = random_batch(seed=2)
    grads = {}
    for lt in ("dapo", "cispo"):
        x = logp.clone().requires_grad_()
        policy_loss(x, logp, ref, adv, mask, beta=0.04, loss_type=lt, cispo_cap=5.0)[0].backward()
        grads[lt] = x.grad
    assert torch.allclose(grads["cispo"], grads["dapo"], atol=1e-12)


def test_new_options_validate():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="known: token, sequence"):
        policy_loss(x, x, None, torch.zeros(1), torch.ones(1, 2), beta=0.0, importance_sampling="tokens")
    with pytest.raises(ValueError, match="cispo_cap"):
        policy_loss(x, x, None, torch.zeros(1), torch.ones(1, 2), beta=0.0, loss_type="cispo")
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(torch.tensor([3]), max_length=10, buffer=0)
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(torch.tensor([3]), max_length=10, buffer=11)


def test_overlong_penalty_by_hand_and_loop():
    # max_length 10, buffer 4: 0 up to 6 tokens, then -1/4 per token, -1 at 10 and beyond
    pen = overlong_penalty(torch.tensor([0, 6, 7, 8, 9, 10, 11, 50]), max_length=10, buffer=4)
    assert pen.tolist() == [0.0, 0.0, -0.25, -0.5, -0.75, -1.0, -1.0, -1.0]
    lengths = torch.randint(0, 40, (200,), generator=torch.Generator().manual_seed(0))  # (200,)
    for max_length, buffer in [(30, 7), (30, 30), (25, 1)]:
        loop = [0.0 if L <= max_length - buffer else (max_length - buffer - L) / buffer if L <= max_length else -1.0
                for L in lengths.tolist()]                                 # DAPO's three cases, as written
        assert overlong_penalty(lengths, max_length=max_length, buffer=buffer).tolist() == pytest.approx(loop)


def test_mask_truncated_zeroes_truncated_completions():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # (3, 3)
    out = mask_truncated(mask, torch.tensor([False, True, False]))           # (3, 3)
    assert torch.equal(out, torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    # a fully masked completion adds nothing to the loss, with or without a normaliser
    logp, old, ref, adv, _ = random_batch(seed=3, B=3, T=3)
    full = policy_loss(logp, old, ref, adv, out, beta=0.04, loss_type="dapo")[0]
    kept = policy_loss(logp[[0, 2]], old[[0, 2]], ref[[0, 2]], adv[[0, 2]], out[[0, 2]], beta=0.04, loss_type="dapo")[0]
    assert full.item() == pytest.approx(kept.item(), rel=1e-12)
