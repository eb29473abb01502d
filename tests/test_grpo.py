"""vrlib.grpo against hand-computed numbers and a plain-Python loop."""

from __future__ import annotations

import math

import pytest
import torch

from vrlib.grpo import (batch_normalizer, bonus_advantages, group_advantages, policy_loss,
                        relative_bonus, temporal_bonus)


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


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
def test_micro_batch_losses_add_up_to_the_batch_loss(loss_type):
    logp, old, ref, adv, mask = random_batch(seed=1, B=4, T=6)
    kw = dict(beta=0.04, loss_type=loss_type, max_completion_length=6)
    whole, _ = policy_loss(logp, old, ref, adv, mask, **kw)
    norm = batch_normalizer(loss_type, 4, mask.sum().item(), 6)
    parts = sum(policy_loss(logp[s], old[s], ref[s], adv[s], mask[s], normalizer=norm, **kw)[0]
                for s in (slice(0, 1), slice(1, 4)))
    assert parts.item() == pytest.approx(whole.item(), abs=1e-6)
    with pytest.raises(ValueError):
        batch_normalizer("ppo", 1, 1)
