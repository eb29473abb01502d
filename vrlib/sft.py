"""Supervised next-token training on (video, prompt) -> target, loss on the target tokens only.

Used twice: the tiny base model's perception pretraining (all weights, caption targets) and
the SFT cold start (LoRA, chain-of-thought targets). TRL's SFTTrainer has no video collator
(research/ecosystem-facts.md sec. 1.4), and this loop is 30 lines.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from transformers import get_cosine_schedule_with_warmup

from vrlib.prompts import encode_examples


def train_supervised(model, processor, samples: list, clips: list, targets: list[str], *,
                     steps: int, batch_size: int, lr: float, grad_clip: float, seed: int,
                     on_step: Callable[[int, dict], None] | None = None) -> list[float]:
    """AdamW with warmup + cosine decay; batches drawn from `np.random.default_rng(seed)`."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, steps // 20), steps)
    model.train()
    losses = []
    for step in range(steps):
        idx = rng.choice(len(samples), size=min(batch_size, len(samples)), replace=False)
        batch = encode_examples(processor, [samples[i] for i in idx], [clips[i] for i in idx],
                                [targets[i] for i in idx])
        loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"supervised loss is {loss.item()} at step {step}")
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, {"train/loss": loss.item(), "train/grad_norm": grad_norm.item(),
                           "train/lr": schedule.get_last_lr()[0]})
    model.eval()
    return losses
