"""The GRPO loop: rollout -> rewards (+ T-GRPO, relative, length bonuses) -> group advantages
-> clipped update with a k3 KL -> checkpoint; one process or several under `accelerate launch`.

Our own loop rather than TRL's GRPOTrainer: TRL 1.16 feeds no video tensors to the loss and
reference forwards of video prompts, so it optimises a video-blind policy
(research/ecosystem-facts.md sec. 1.1, trl#5373). The pure pieces live in `vrlib.grpo`
and `vrlib.rewards`; this file wires them to the model.

Departures from Video-R1's trainer, each on purpose:
- Every question is sampled with its own seed (seed, step, position in the step's batch) and
  forwarded as its own micro-batch, so a run gives the same rollouts and the same update
  whether its questions are spread over one process or several, and a resumed run replays
  exactly what an uninterrupted one does.
- Rewards are computed per sample from its own problem_type (Video-R1 uses the batch's first).
- Shuffled (T-GRPO) and key-information-missing (relative) rollouts are scored with the same
  rewards and never enter the loss, as in Video-R1.
- A NaN loss or gradient stops the run before the optimizer step: the last checkpoint
  stays the last good one. Video-R1 would apply it.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vrlib import rewards
from vrlib.config import RFTParams
from vrlib.data import digest
from vrlib.grpo import batch_normalizer, bonus_advantages, policy_loss, relative_bonus, temporal_bonus
from vrlib.model import TRAINED, reference
from vrlib.rollout import Rollouts, generate, token_logprobs
from vrlib.video import Clip, atomic_path

REWARD_FUNCS = {"format": rewards.format_reward, "accuracy": rewards.accuracy_reward,
                "glue_iou": rewards.glue_iou_reward}
"""Video-R1 and VideoChat-R1 sum format and accuracy (IoU for grounding, mean box IoU for
tracking); VideoChat-R1 adds the evidence IoU for grounded QA (0 for every other type)."""


def score(texts: list[str], samples: list, reward_funcs: dict = REWARD_FUNCS
          ) -> dict[str, torch.Tensor]:
    """Each completion scored against its own sample (not the batch's first problem type)."""
    return {name: torch.tensor([fn(t, s) for t, s in zip(texts, samples)], dtype=torch.float32)  # (N,)
            for name, fn in reward_funcs.items()}


def shuffle_clip(clip: Clip, rng: np.random.Generator) -> Clip:
    """The same frames in a random order other than the original (T-GRPO). Frames are shuffled
    before the processor, as in Video-R1, so temporal patches fuse random pairs of frames."""
    n = len(clip.frames)
    order = np.arange(n)
    while n > 1 and np.array_equal(order, np.arange(n)):
        order = rng.permutation(n)
    return replace(clip, frames=clip.frames[order], indices=clip.indices[order],
                   timestamps=clip.timestamps[order])


def question_seed(seed: int, step: int, position: int) -> int:
    """The sampling seed of one question: where it sits in the step's global batch, not which
    process runs it."""
    return int(np.random.SeedSequence([seed, step, position]).generate_state(1)[0])


@dataclass
class Question:
    position: int  # in the step's global batch
    sample: object
    clip: Clip
    kim_clip: Clip | None = None


@dataclass
class Group:
    """One question's rollouts and scores."""

    rollouts: Rollouts                 # the G ordered rollouts (the only ones that are trained)
    parts: dict[str, torch.Tensor]     # reward name -> (G,)
    reward: torch.Tensor               # (G,) sum of parts + length bonus
    temporal: torch.Tensor             # (G,) T-GRPO bonus (0 without shuffled rollouts)
    relative: torch.Tensor             # (G,) relative bonus (0 without a kim clip)
    stats: torch.Tensor                # (4,) p, p~, bonus applied, relative gap (nan where not computed)


def rollout_group(policy, processor, q: Question, cfg: RFTParams, *, seed: int, step: int,
                  reward_funcs: dict = REWARD_FUNCS) -> Group:
    """G rollouts of a question, plus G/2 on shuffled frames (T-GRPO) and G/2 on the
    key-information-missing video (relative reward) when asked and possible."""
    G, n_side = cfg.group_size, max(1, cfg.group_size // 2)
    shuffled = None
    if cfg.algo == "t_grpo" and q.sample.data_type == "video" and len(q.clip.frames) > 1:
        shuffled = shuffle_clip(q.clip, np.random.default_rng(question_seed(seed, step, q.position)))
    kim = q.kim_clip if cfg.relative else None
    # One `generate` call for the group and its side rollouts (faster than three: one prefill,
    # one decode loop); rows are [G ordered | G/2 shuffled | G/2 key-information-missing].
    clips = [q.clip] * G + [shuffled] * n_side * (shuffled is not None) + [kim] * n_side * (kim is not None)
    torch.manual_seed(question_seed(seed, step, q.position))
    every = generate(policy, processor, [q.sample] * len(clips), clips, max_new_tokens=cfg.max_completion_length,
                     temperature=cfg.temperature, top_p=cfg.top_p)
    ro, side_texts = every.head(G), every.texts[G:]
    parts = score(ro.texts, [q.sample] * G, reward_funcs)   # name -> (G,)
    reward = sum(parts.values())                             # (G,)
    accuracy = parts.get("accuracy", torch.zeros(G))         # (G,)
    if cfg.length_bonus:
        reward = reward + torch.tensor(rewards.length_bonus(
            accuracy.tolist(), ro.completion_mask.sum(1).tolist(), omega=cfg.length_omega,
            l_min=cfg.length_min, l_max=cfg.length_max, threshold=cfg.temporal_threshold))

    def side_accuracy() -> torch.Tensor:  # (G/2,) the next side rollouts; they never enter the loss
        texts = [side_texts.pop(0) for _ in range(n_side)]
        return score(texts, [q.sample] * n_side, {"a": rewards.accuracy_reward})["a"]

    temporal, relative = torch.zeros(G), torch.zeros(G)
    p = p_shuffled = applied = gap = float("nan")
    if shuffled is not None:
        acc_shuffled = side_accuracy()
        bonus, fired = temporal_bonus(accuracy[None], acc_shuffled[None], alpha=cfg.temporal_alpha,
                                      mu=cfg.temporal_mu, threshold=cfg.temporal_threshold)
        temporal, applied = bonus[0], float(fired[0])
        p, p_shuffled = accuracy.mean().item(), acc_shuffled.mean().item()
    if kim is not None:
        bonus, diff = relative_bonus(accuracy[None], side_accuracy()[None],
                                     alpha=cfg.relative_alpha, form=cfg.relative_form)
        relative, gap = bonus[0], diff[0].item()
    return Group(ro, parts, reward, temporal, relative, torch.tensor([p, p_shuffled, applied, gap]))


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return x.mean().item() if x.numel() else 0.0


class _Procs:
    """The few collective operations the step needs: one process, or an Accelerator running DDP,
    FSDP (version 1) or DeepSpeed ZeRO (stages 1-3). Under DeepSpeed the loop owns the update:
    accelerate's `backward` would step the engine after every micro-batch, while a GRPO step here
    is one micro-batch per question, one update, and a finite check before it, so `backward` and
    `step` go to the engine directly, with DeepSpeed's `managed_gradient_accumulation: false`."""

    def __init__(self, accelerator=None):
        self.acc = accelerator
        self.n = 1 if accelerator is None else accelerator.num_processes
        self.rank = 0 if accelerator is None else accelerator.process_index
        from accelerate.utils import DistributedType

        kind = None if accelerator is None else accelerator.distributed_type
        self.fsdp = kind == DistributedType.FSDP
        self.deepspeed = kind == DistributedType.DEEPSPEED
        self.zero3 = self.deepspeed and accelerator.state.deepspeed_plugin.zero_stage == 3
        self.engine = "fsdp" if self.fsdp else "deepspeed" if self.deepspeed else "torch"
        """What an optimizer state in a checkpoint is: torch's, or a list of each process's shard."""

    def configure(self, model, cfg: RFTParams) -> None:
        """Before `accelerator.prepare`. FSDP: LoRA weights (fp32, trainable) in units of their
        own, then the layers (peft's docs). DeepSpeed: the loop marks the accumulation boundary
        (each backward only accumulates; `step` reduces, clips at rft.grad_clip, skips a
        non-finite norm, updates); the batch sizes are nominal, there is no data loader."""
        if self.fsdp:
            from peft.utils.other import fsdp_auto_wrap_policy

            self.acc.state.fsdp_plugin.auto_wrap_policy = fsdp_auto_wrap_policy(self.unwrap(model))
        if self.deepspeed:
            ds = self.acc.state.deepspeed_plugin.deepspeed_config
            ds.update(train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, train_batch_size=self.n,
                      gradient_clipping=cfg.grad_clip, managed_gradient_accumulation=False)
            if ds.get("bf16", {}).get("enabled") in (True, "auto"):
                ds["bf16"]["check_grad_overflow"] = True  # a NaN gradient skips the update
            if self.zero3:  # the adapter is gathered whole for checkpoints (accelerator.get_state_dict)
                ds.setdefault("zero_optimization", {})["stage3_gather_16bit_weights_on_model_save"] = True

    def gather(self, x: torch.Tensor) -> torch.Tensor:  # concatenated in process order
        return x if self.n == 1 else self.acc.gather(x.to(self.acc.device)).cpu()

    def backward(self, model, loss: torch.Tensor) -> None:
        if self.deepspeed:  # accumulate only; the loss already carries the batch's normaliser
            model.backward(loss, scale_wrt_gas=False)
        else:
            loss.backward() if self.acc is None else self.acc.backward(loss)

    def no_sync(self, model, last: bool):
        quiet = self.n == 1 or last or self.deepspeed  # DeepSpeed: the boundary is `step`
        return contextlib.nullcontext() if quiet else self.acc.no_sync(model)

    def unwrap(self, model):
        return model if self.acc is None else self.acc.unwrap_model(model)

    def full_weights(self, model):
        """Around a forward of the unwrapped model (generation, the no-grad forwards). Under FSDP
        the root unit's weights (embeddings, final norm, lm_head, vision merger) are sharded
        outside the wrapper's forward: gather them (TRL does the same); the layers' own units
        gather theirs in their forward. Under ZeRO-3 every weight is gathered for the rollouts
        at once, as TRL does (layer by layer generation would gather each layer per token)."""
        if self.fsdp:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            return FSDP.summon_full_params(model, recurse=False, writeback=False)
        if self.zero3:
            import deepspeed

            return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
        return contextlib.nullcontext()

    def update(self, model, optimizer, params: list, max_norm: float, total_loss: float) -> torch.Tensor:
        """Clip to max_norm and step; the gradient norm before clipping. A non-finite loss or
        norm raises FloatingPointError with nothing applied. FSDP's gradients are sharded, and its
        own clip reduces the norm over processes (accelerate's clip_grad_norm_ finds the model by
        comparing parameter lists, which fails once a process has prepared two models); DeepSpeed
        clips and checks inside its step, and skips an update whose norm is not finite."""
        if self.deepspeed:
            norm = float("nan")
            if np.isfinite(total_loss):
                model.step()
                norm = model.get_global_grad_norm() if model.was_step_applied() else float("nan")
            grad_norm = torch.as_tensor(float(norm))
        else:
            grad_norm = model.clip_grad_norm_(max_norm) if self.fsdp else \
                torch.nn.utils.clip_grad_norm_(params, max_norm)
        if not (np.isfinite(total_loss) and torch.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"GRPO loss {total_loss} / gradient norm {grad_norm.item()} "
                                     "is not finite; the update was not applied")
        if not self.deepspeed:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return grad_norm

    @property
    def gathers_adapter(self) -> bool:
        """Whether the adapter is sharded, so that every process must take part in reading it."""
        return self.fsdp or self.zero3

    def adapter_state(self, model) -> dict:
        """The trained adapter's weights, whole (on every process when they are replicated; on
        process 0 under FSDP and ZeRO-3, where every process must call this: the shards are
        gathered)."""
        from peft import get_peft_model_state_dict

        if not self.gathers_adapter:
            return get_peft_model_state_dict(self.unwrap(model))
        full = self.acc.get_state_dict(model)  # gathered, with the wrappers' names removed
        if self.rank != 0:
            return {}
        # peft's get_peft_model_state_dict(state_dict=full) finds the LoRA weights by module name,
        # and inside FSDP's nested units those names carry `_fsdp_wrapped_module.`, so it selects
        # nothing: select the trained weights here, named as peft names them (adapter name removed)
        trained = {n.replace("_fsdp_wrapped_module.", "") for n, p in self.unwrap(model).named_parameters()
                   if p.requires_grad}
        return {k.replace(f".{TRAINED}.", "."): v for k, v in full.items() if k in trained}

    def optimizer_state(self, optimizer) -> dict | list[dict]:
        """The optimizer's state. Under FSDP and DeepSpeed every process must call this: it is the
        list of each process's own shard, which process 0 gets. FSDP.optim_state_dict, which would
        gather it whole, wrote exp_avg_sq in place of exp_avg for the LoRA B weights here (torch
        2.15, use_orig_params), so the shards are kept as they are; ZeRO's state is per process."""
        if self.engine == "torch":
            return optimizer.state_dict()
        from accelerate.utils import gather_object, send_to_device

        own = send_to_device(optimizer.state_dict(), "cpu")  # pickled to process 0
        return gather_object([own])

    def load_optimizer_state(self, optimizer, state: dict) -> None:
        engine = state.get("engine", "torch")  # checkpoints before FSDP have none
        shards = state["optimizer"] if engine != "torch" else None
        if engine != self.engine or (shards is not None and len(shards) != self.n):
            raise ValueError(
                f"the checkpoint's optimizer state was written by {len(shards) if shards else 1} "
                f"{engine} process(es); resume it the same way (rft.accelerate_config, "
                "rft.num_processes) or move it away")
        if self.deepspeed:  # ZeRO reads its own shard; fp32 master weights from it, not from the bf16 model
            optimizer.optimizer.load_state_dict(shards, load_from_fp32_weights=True)
        else:
            optimizer.load_state_dict(state["optimizer"] if shards is None else shards[self.rank])



def grpo_step(model, processor, optimizer, questions: list[Question], cfg: RFTParams, *,
              seed: int = 0, step: int = 0, reward_funcs: dict = REWARD_FUNCS,
              accelerator=None) -> dict:
    """One GRPO step on this process's questions; every process returns the same metrics."""
    procs = _Procs(accelerator)
    policy = procs.unwrap(model)
    t0 = time.perf_counter()
    with procs.full_weights(model):
        groups = [rollout_group(policy, processor, q, cfg, seed=seed, step=step,
                                reward_funcs=reward_funcs) for q in questions]
    t_gen = time.perf_counter() - t0
    G = cfg.group_size
    stack = lambda f: procs.gather(torch.stack([f(g).cpu() for g in groups]))  # noqa: E731  (Q, ...) on CPU
    reward, temporal, relative = stack(lambda g: g.reward), stack(lambda g: g.temporal), stack(lambda g: g.relative)
    parts = {name: stack(lambda g, n=name: g.parts[n]) for name in groups[0].parts}
    qstats = stack(lambda g: g.stats)                                              # (Q, 4)
    lengths = stack(lambda g: g.rollouts.completion_mask.sum(1).float())           # (Q, G)
    truncated = stack(lambda g: g.rollouts.truncated.float())                      # (Q, G)

    # Advantages over the whole (gathered) batch, so scale="batch" sees every reward
    flat = reward.reshape(-1)                                                      # (Q*G,)
    adv, _ = bonus_advantages(flat, (temporal + relative).reshape(-1), G,
                              scale=cfg.scale_rewards, mode=cfg.bonus_mode)        # (Q*G,)
    _, t_changed = bonus_advantages(flat, temporal.reshape(-1), G, scale=cfg.scale_rewards, mode=cfg.bonus_mode)
    _, r_changed = bonus_advantages(flat, relative.reshape(-1), G, scale=cfg.scale_rewards, mode=cfg.bonus_mode)
    local = adv.view(-1, G)[procs.rank * len(groups):(procs.rank + 1) * len(groups)]  # (Ql, G)

    # One micro-batch per question; normalisers of the whole batch, so the parts add up to it
    n_tokens = lengths.sum().item()
    if cfg.loss_type == "bnpo":  # TRL: a token mean over this process's batch
        norm = max(sum(g.rollouts.completion_mask.sum().item() for g in groups), 1.0)
    else:  # gradients are averaged over processes, hence the / n
        norm = batch_normalizer(cfg.loss_type, reward.numel(), n_tokens, cfg.max_completion_length) / procs.n
    t1 = time.perf_counter()
    with torch.no_grad(), procs.full_weights(model):
        old = [token_logprobs(policy, g.rollouts, cfg.temperature) if cfg.num_iterations > 1 else None
               for g in groups]
        ref = [None] * len(groups)
        if cfg.beta > 0:
            with reference(policy):  # the model RFT started from: LoRA off (model.reference)
                ref = [token_logprobs(policy, g.rollouts, cfg.temperature) for g in groups]
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    for _ in range(cfg.num_iterations):
        loss_sum, sums = 0.0, torch.zeros(4)  # kl, clip, ratio (token-weighted), tokens
        for i, g in enumerate(groups):
            with procs.no_sync(model, last=i == len(groups) - 1):
                logp = token_logprobs(model, g.rollouts, cfg.temperature)         # (G, C)
                mask = g.rollouts.completion_mask.float()                         # (G, C)
                loss, st = policy_loss(
                    logp, logp.detach() if old[i] is None else old[i], ref[i], local[i].to(logp.device), mask,
                    beta=cfg.beta, epsilon_low=cfg.epsilon_low, epsilon_high=cfg.epsilon_high,
                    loss_type=cfg.loss_type, max_completion_length=cfg.max_completion_length,
                    normalizer=norm)
                procs.backward(model, loss)
            loss_sum += loss.item()
            w = mask.sum().item()
            sums += torch.tensor([st["policy/kl"] * w, st["policy/clip_frac"] * w, st["policy/ratio_mean"] * w, w])
        # every process decides alike: gradients are synced, the loss is gathered
        totals = procs.gather(torch.tensor([[loss_sum, *sums.tolist()]])).sum(0)  # (5,)
        grad_norm = procs.update(model, optimizer, params, cfg.grad_clip, totals[0].item())
    model.eval()

    accuracy = parts.get("accuracy", torch.zeros_like(reward))
    correct = accuracy > cfg.temporal_threshold                                    # (Q, G)
    has_shuffled = ~torch.isnan(qstats[:, 0])
    metrics = {f"reward/{name}/mean": v.mean().item() for name, v in parts.items()}
    metrics.update({
        "reward/mean": reward.mean().item(),
        "reward/std": reward.std().item() if reward.numel() > 1 else 0.0,
        "group/frac_zero_std": (reward.std(dim=1) < 1e-6).float().mean().item() if G > 1 else 1.0,
        "group/all_correct": correct.all(dim=1).float().mean().item(),
        "group/all_wrong": (~correct).all(dim=1).float().mean().item(),
        "completion/length_mean": lengths.mean().item(),
        "completion/clipped_frac": truncated.mean().item(),
        "policy/kl": (totals[1] / totals[4].clamp(min=1)).item(),
        "policy/clip_frac": (totals[2] / totals[4].clamp(min=1)).item(),
        "policy/ratio_mean": (totals[3] / totals[4].clamp(min=1)).item(),
        "train/loss": totals[0].item() / procs.n,  # the mean of the processes' losses, as DDP's gradient
        "train/grad_norm": grad_norm.item(),
        "time/generate_s": t_gen,
        "time/update_s": time.perf_counter() - t1,
    })
    if cfg.algo == "t_grpo":
        metrics.update({
            "tgrpo/p": _nanmean(qstats[:, 0]),
            "tgrpo/p_shuffled": _nanmean(qstats[:, 1]),
            "tgrpo/bonus_applied": _nanmean(qstats[:, 2]),
            "tgrpo/advantage_changed": t_changed.view(-1, G)[has_shuffled].float().mean().item()
            if has_shuffled.any() else 0.0,
        })
    if cfg.relative:
        has_kim = ~torch.isnan(qstats[:, 3])
        metrics.update({
            "relative/gap": _nanmean(qstats[:, 3]),
            "relative/bonus_mean": relative.mean().item(),
            "relative/advantage_changed": r_changed.view(-1, G)[has_kim].float().mean().item()
            if has_kim.any() else 0.0,
        })
    return metrics


# ----------------------------------------------------------------------------- checkpoints
RESUME_IGNORES = ("steps", "checkpoint_every", "keep_checkpoints", "num_processes", "accelerate_config")
"""Params that do not change what a step computes: a run with more steps resumes a shorter one."""


def fingerprint(cfg: RFTParams, seed: int, files: list[str | os.PathLike] = ()) -> str:
    """What a checkpoint must match to be resumed: the params that shape the steps, the seed,
    and the bytes of the inputs (RL split, starting weights)."""
    shape = {k: v for k, v in asdict(cfg).items() if k not in RESUME_IGNORES}
    return digest([shape, seed], files)


def checkpoints(checkpoint_dir: str | os.PathLike, print_: str) -> list[Path]:
    """This run's checkpoints, oldest first: `step_<n>-<fingerprint>.pt`."""
    return sorted(Path(checkpoint_dir).glob(f"step_*-{print_}.pt"))


def save_state(path: Path, adapter: dict, optimizer: dict, engine: str, step: int, history: list[dict],
               print_: str) -> None:
    """`adapter` and `optimizer` as `_Procs.adapter_state` / `optimizer_state` give them; `engine`
    says what the optimizer state is ("torch": torch's; "fsdp", "deepspeed": a list of each
    process's shard)."""
    state = {"step": step, "fingerprint": print_, "history": history, "adapter": adapter,
             "optimizer": optimizer, "engine": engine}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a crash while writing leaves the previous checkpoint intact
        torch.save(state, tmp)


def load_state(checkpoint_dir: str | os.PathLike, print_: str) -> dict | None:
    """The newest checkpoint written for these params and inputs, or None."""
    import pickle

    found = checkpoints(checkpoint_dir, print_)
    if not found:
        return None
    try:
        with torch.serialization.safe_globals(_zero_state_classes()):
            return torch.load(found[-1], map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # DeepSpeed's classes are allowed only in a DeepSpeed run
        raise ValueError(f"{found[-1]} cannot be read here ({err.__class__.__name__}); a checkpoint "
                         "written under DeepSpeed resumes only under DeepSpeed (rft.accelerate_config) "
                         "with as many processes: run it so, or move it away") from err


def _zero_state_classes() -> list:
    """What a ZeRO optimizer's state pickles besides tensors (DeepSpeed loads its own checkpoints
    with weights_only=False). A run under DeepSpeed has imported it; any other needs none."""
    if "deepspeed" not in sys.modules:
        return []
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


def train_grpo(model, processor, samples: list, clips: list, cfg: RFTParams, *, seed: int,
               kim_clips: list | None = None, checkpoint_dir: str | Path | None = None,
               fingerprint_: str = "run", on_step: Callable[[int, dict], None] | None = None,
               reward_funcs: dict = REWARD_FUNCS, accelerator=None, out: str | Path | None = None) -> list[dict]:
    """`cfg.steps` GRPO steps; the step's questions are drawn from
    `np.random.default_rng([seed, step])` and split over processes in contiguous blocks. With
    `out`, the trained adapter is written there at the end (peft's format); it is written here,
    where the wrapped model is, because under FSDP every process takes part in gathering it.

    With `checkpoint_dir`, the state is saved every `cfg.checkpoint_every` steps and at the end,
    and a run finds the newest checkpoint with its fingerprint and resumes from it (replaying
    its logged steps to `on_step`); checkpoints of other params are left alone and never loaded.
    """
    from peft import set_peft_model_state_dict

    procs = _Procs(accelerator)
    if cfg.prompts_per_step % procs.n:
        raise ValueError(f"rft.prompts_per_step={cfg.prompts_per_step} must be a multiple of the "
                         f"{procs.n} processes")
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    history: list[dict] = []
    state = load_state(checkpoint_dir, fingerprint_) if checkpoint_dir is not None else None
    if state is not None:  # the weights before wrapping: every process holds the whole model
        set_peft_model_state_dict(model, state["adapter"])
    if accelerator is not None:
        procs.configure(model, cfg)
        model, optimizer = accelerator.prepare(model, optimizer)
    if state is not None:  # under FSDP the optimizer state is sharded like the wrapped model
        procs.load_optimizer_state(optimizer, state)
        history = state["history"][:cfg.steps]
        for step, metrics in enumerate(history):
            if on_step is not None:
                on_step(step, metrics)
    per_process = cfg.prompts_per_step // procs.n
    for step in range(len(history), cfg.steps):
        rng = np.random.default_rng([seed, step])
        idx = rng.choice(len(samples), size=cfg.prompts_per_step, replace=False)
        mine = range(procs.rank * per_process, (procs.rank + 1) * per_process)
        questions = [Question(k, samples[idx[k]], clips[idx[k]],
                              None if kim_clips is None else kim_clips[idx[k]]) for k in mine]
        try:
            metrics = grpo_step(model, processor, optimizer, questions, cfg, seed=seed, step=step,
                                reward_funcs=reward_funcs, accelerator=accelerator)
        except FloatingPointError as err:
            last = checkpoints(checkpoint_dir, fingerprint_)[-1:] if checkpoint_dir is not None else []
            raise FloatingPointError(
                f"RFT stopped at step {step}: {err}. The last good checkpoint is "
                f"{last[0] if last else 'none (none was written yet)'}; lower rft.lr or raise "
                "rft.temperature, then rerun to resume from it.") from err
        history.append(metrics)
        if on_step is not None:
            on_step(step, metrics)
        done = step + 1
        if checkpoint_dir is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            adapter, optim = procs.adapter_state(model), procs.optimizer_state(optimizer)  # collective
            if procs.rank == 0:
                save_state(Path(checkpoint_dir) / f"step_{done:05d}-{fingerprint_}.pt", adapter, optim,
                           procs.engine, done, history, fingerprint_)
                for old in checkpoints(checkpoint_dir, fingerprint_)[:-max(1, cfg.keep_checkpoints)]:
                    old.unlink()
            if accelerator is not None:
                accelerator.wait_for_everyone()
    if out is not None:
        from vrlib.model import save_checkpoint

        adapter = procs.adapter_state(model) if procs.gathers_adapter else None  # a collective
        if procs.rank == 0:
            save_checkpoint(procs.unwrap(model), None, out, adapter=adapter)
        if accelerator is not None:
            accelerator.wait_for_everyone()
    return history


# ----------------------------------------------------------------------------- the stage
def load_kim_clips(samples: list, jsonl_path, dcfg) -> list[Clip | None]:
    """The key-information-missing clip of each sample that has one (`kim_path`), else None."""
    from vrlib.data import load_media, video_path

    return [None if not getattr(s, "kim_path", None) else
            load_media(video_path(s, jsonl_path, "kim_path"), s.data_type, fps=dcfg.fps,
                       min_frames=dcfg.min_frames, max_frames=dcfg.max_frames) for s in samples]


def launch_command(cfg: RFTParams, params_path: str = "params.yaml") -> list[str]:
    """`accelerate launch` of this module with cfg.num_processes processes: cfg.accelerate_config
    when given, else DDP on the local devices (gloo on a machine without GPUs)."""
    how = ["--config_file", cfg.accelerate_config] if cfg.accelerate_config else \
        ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return [sys.executable, "-m", "accelerate.commands.launch", *how,
            "--num_processes", str(cfg.num_processes), "-m", "vrlib.rft", "--params", params_path]


def make_accelerator():
    """The Accelerator of this process, as `accelerate launch` set it up: on GPUs, or on the CPU
    (gloo). accelerate turns DeepSpeed on for accelerators only; without a GPU it is run on
    DeepSpeed's CPU accelerator (`DS_ACCELERATOR=cpu`) over gloo, as the tests do, instead of
    silently falling back to DDP."""
    from accelerate import Accelerator, PartialState

    if torch.cuda.is_available():
        return Accelerator()
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        PartialState(backend="gloo")  # the shared state the Accelerator below takes up
        return Accelerator()
    return Accelerator(cpu=True)


def run(seed: int, dcfg, cfg: RFTParams, bcfg=None, *, base: str = "models/base", sft: str = "models/sft",
        split: str = "data/rl.jsonl", out: str = "models/rft", checkpoint_dir: str = "checkpoints/rft",
        live_dir: str | None = "dvclive/rft") -> list[dict]:
    """The rft stage in this process (one of several under `accelerate launch`): load the split
    and the policy, train (resuming a matching checkpoint), write the adapter, the adapter
    stack it sits on (`stack.json`) and the step logs. `bcfg` (params' base section) says how
    the model is loaded: dtype, attention, 4-bit storage."""
    from vrlib.data import load_split
    from vrlib.logs import dvclive_logger
    from vrlib.config import BaseParams
    from vrlib.model import STACK, add_lora, check_model_dir, load_kwargs, load_policy, load_processor

    accelerator = make_accelerator()
    processor = load_processor(base)
    samples, clips = load_split(split, fps=dcfg.fps, min_frames=dcfg.min_frames, max_frames=dcfg.max_frames)
    kim_clips = load_kim_clips(samples, split, dcfg) if cfg.relative else None
    below = [sft] if cfg.init == "sft" else []
    policy = load_policy(base, below, load_in_4bit=cfg.load_in_4bit,
                         **load_kwargs(bcfg or BaseParams(), device=accelerator.device))
    model = add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, seed=seed,
                     gradient_checkpointing=cfg.gradient_checkpointing)
    inputs = [split, check_model_dir(base) / "config.json", *[Path(a) / "adapter_model.safetensors" for a in below]]
    main = accelerator.is_main_process
    with contextlib.ExitStack() as stack:
        on_step = None
        if main and live_dir is not None:
            from dvclive import Live

            on_step = dvclive_logger(stack.enter_context(Live(live_dir, save_dvc_exp=False, dvcyaml=None)))
        history = train_grpo(model, processor, samples, clips, cfg, seed=seed, kim_clips=kim_clips,
                             checkpoint_dir=checkpoint_dir, fingerprint_=fingerprint(cfg, seed, inputs),
                             on_step=on_step, accelerator=accelerator, out=out)
    if main:
        (Path(out) / STACK).write_text(json.dumps({"below": below}))
        (Path(out) / "history.json").write_text(json.dumps(history))
    accelerator.wait_for_everyone()
    return history


def main(argv: list[str] | None = None) -> None:
    import argparse

    from vrlib import config

    ap = argparse.ArgumentParser(description="the rft stage, e.g. under `accelerate launch -m vrlib.rft`")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = config.load(args.params)
    run(params.seed, params.data, params.rft, params.base)


if __name__ == "__main__":
    main()
