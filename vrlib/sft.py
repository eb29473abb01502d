"""Supervised next-token training on (video, prompt) -> target, loss on the target tokens only.

The SFT cold start (LoRA, chain-of-thought targets); the tiny base's pretraining has its own
resumable loop (vrlib.pretrain). TRL's SFTTrainer has no video collator
(trl's `DataCollatorForVisionLanguageModeling` reads images only), and this loop is 30 lines.

The video processor's output depends only on the clip, so it is computed once per item and
reused every time the item is drawn (the same tensors `prompts.encode_examples` builds, as
tests/test_model.py checks): on a 2-core CPU this is a fifth of a step. So are the frozen
vision tower's visual tokens (`EncodeCache` with the model), and each batch runs as parts of
items of similar length (`sft.length_groups`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from transformers import get_cosine_schedule_with_warmup
from transformers.modeling_outputs import BaseModelOutputWithPooling

from vrlib.model import unwrapped
from vrlib.prompts import messages, target_labels, token_types, video_kwargs
from vrlib.schema import SFT_LOSSES


def vlm(model):
    """The Qwen2_5_VLModel under peft's wrappers: the vision tower (`.visual`) and the language model."""
    return unwrapped(model).model


def tower_frozen(model) -> bool:
    return not any(p.requires_grad for p in vlm(model).visual.parameters())


class EncodeCache:
    """Per-item image or video tensors and chat prompts for one (samples, clips) list pair.

    With `model` (its vision tower frozen, as `model.add_lora` leaves it; a training tower is
    refused), each clip's visual tokens are computed once, by that tower, and kept instead of its
    pixels: a batch hands them to the model as `mm_encoder_outputs` (transformers' precomputed
    encoder outputs), so the tower does not encode the same clip again every epoch (a tenth of
    an SFT step on 2 cores)."""

    def __init__(self, processor, samples: list, clips: list, model=None):
        self.processor, self.samples, self.clips = processor, samples, clips
        self.encoder = None if model is None else vlm(model)
        if self.encoder is not None and not tower_frozen(model):
            raise ValueError("EncodeCache: the vision tower trains, so its tokens cannot be computed once; "
                             "pass model=None to encode every batch from the pixels")
        self.visual: dict[int, dict] = {}  # id(clip) -> tensors; a clip shared by items is done once
        self.prompt: dict[int, str] = {}
        self.lengths: dict[int, int] = {}

    def length(self, i: int, target: str) -> int:
        """Tokens of item i's prompt + `target` + EOS: the row `encode_cached` makes of it."""
        if i not in self.lengths:
            tok = self.processor.tokenizer
            self.lengths[i] = len(tok(self.item(i)[0] + target + tok.eos_token)["input_ids"])
        return self.lengths[i]

    def item(self, i: int) -> tuple[str, dict]:
        p, clip, sample = self.processor, self.clips[i], self.samples[i]
        image = sample.data_type == "image"
        if id(clip) not in self.visual:
            if image:
                out = p.image_processor(images=[clip.frames[0]], return_tensors="pt")
                self.visual[id(clip)] = {"pixel_values": out["pixel_values"],
                                         "image_grid_thw": out["image_grid_thw"]}
            else:
                out = p.video_processor(**video_kwargs([clip]), return_tensors="pt")
                self.visual[id(clip)] = {"pixel_values_videos": out["pixel_values_videos"],
                                         "video_grid_thw": out["video_grid_thw"],
                                         "second_per_grid_ts": p.video_processor.temporal_patch_size
                                         / float(clip.fps)}
            if self.encoder is not None:
                self.visual[id(clip)] = self.encoded(self.visual[id(clip)], image)
        visual = self.visual[id(clip)]
        if i not in self.prompt:
            grid, token = (visual["image_grid_thw"], p.image_token) if image else \
                (visual["video_grid_thw"], p.video_token)
            n = int(grid[0].prod()) // p.video_processor.merge_size ** 2
            prompt = p.apply_chat_template(messages(sample), add_generation_prompt=True,
                                           tokenize=False)
            self.prompt[i] = prompt.replace(token, token * n, 1)
        return self.prompt[i], visual

    @torch.no_grad()
    def encoded(self, visual: dict, image: bool) -> dict:
        """`visual` with its pixels replaced by the visual tokens they make (kept on the CPU)."""
        pixels, grid = ("pixel_values", "image_grid_thw") if image else ("pixel_values_videos", "video_grid_thw")
        device = next(self.encoder.parameters()).device
        features = self.encoder.get_image_features if image else self.encoder.get_video_features
        tokens = features(visual[pixels].to(device), visual[grid].to(device)).pooler_output[0]  # (n, hidden)
        return {**{k: v for k, v in visual.items() if k != pixels}, "tokens": tokens.cpu()}


def encode_cached(cache: EncodeCache, idx, targets: list[str]) -> dict:
    """`prompts.encode_examples` for items `idx` of the cache (targets aligned with idx).

    Same keys and values: input_ids, attention_mask, mm_token_type_ids (1 on image tokens,
    2 on video tokens), the image and video tensors, and labels (-100 but on the target + EOS).
    """
    p = cache.processor
    tok = p.tokenizer
    eos = tok.eos_token
    items = [cache.item(int(i)) for i in idx]
    texts = [prompt + t + eos for (prompt, _), t in zip(items, targets)]
    batch = dict(tok(texts, padding=True, return_tensors="pt"))
    ids = batch["input_ids"]  # (B, L)
    batch["mm_token_type_ids"] = token_types(p, ids)
    images = [v for _, v in items if "image_grid_thw" in v]
    videos = [v for _, v in items if "video_grid_thw" in v]
    encoded = {}  # modality -> the visual tokens computed before (EncodeCache with a model)
    if images:
        batch["image_grid_thw"] = torch.cat([v["image_grid_thw"] for v in images])
        if "tokens" in images[0]:
            encoded["image"] = BaseModelOutputWithPooling(pooler_output=tuple(v["tokens"] for v in images))
        else:
            batch["pixel_values"] = torch.cat([v["pixel_values"] for v in images])
    if videos:
        batch["video_grid_thw"] = torch.cat([v["video_grid_thw"] for v in videos])
        batch["second_per_grid_ts"] = torch.tensor([v["second_per_grid_ts"] for v in videos])
        if "tokens" in videos[0]:
            encoded["video"] = BaseModelOutputWithPooling(pooler_output=tuple(v["tokens"] for v in videos))
        else:
            batch["pixel_values_videos"] = torch.cat([v["pixel_values_videos"] for v in videos])
    if encoded:
        batch["mm_encoder_outputs"] = encoded
    batch["labels"] = target_labels(tok, ids, targets)
    return batch


def train_supervised(model, processor, samples: list, clips: list, targets: list[str], *,
                     steps: int, batch_size: int, lr: float, grad_clip: float, seed: int,
                     grad_accum: int = 1, on_step: Callable[[int, dict], None] | None = None,
                     warmup_frac: float = 0.05, loss_mode: str = "token", length_groups: int = 1) -> list[float]:
    """AdamW with warmup + cosine decay; `grad_accum` micro-batches of `batch_size` per step,
    drawn from `np.random.default_rng(seed)`; `loss_mode` as `supervised_loss` says.

    Each micro-batch runs as `length_groups` parts, its items sorted by length, each part padded
    to its own longest, and every part's loss divided by the whole micro-batch's normaliser:
    the loss and the gradient of the micro-batch, up to float rounding, with less padding."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, int(steps * warmup_frac)), steps)
    cache = EncodeCache(processor, samples, clips, model if tower_frozen(model) else None)  # else from the pixels
    model.train()
    losses = []
    for step in range(steps):
        loss = 0.0
        for _ in range(grad_accum):
            idx = rng.choice(len(samples), size=min(batch_size, len(samples)), replace=False)
            idx = sorted(idx, key=lambda i: cache.length(i, targets[i]))  # stable: ties keep the draw's order
            parts = [encode_cached(cache, part, [targets[i] for i in part])
                     for part in np.array_split(idx, min(length_groups, len(idx)))]
            norm = normaliser_of([p["labels"] for p in parts], loss_mode)
            for part in parts:
                batch = {k: to(v, model.device) for k, v in part.items()}
                micro = supervised_loss(model, batch, loss_mode, normaliser=norm) / grad_accum
                if not torch.isfinite(micro):
                    raise FloatingPointError(f"supervised loss is {micro.item()} at step {step}")
                micro.backward()
                loss = loss + micro.detach()
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


def to(value, device):
    """A batch's tensor, or its precomputed encoder outputs (`mm_encoder_outputs`), on `device`."""
    if isinstance(value, dict):
        return {m: BaseModelOutputWithPooling(pooler_output=tuple(t.to(device) for t in out.pooler_output))
                for m, out in value.items()}
    return value.to(device)


def supervised_loss(model, batch: dict, mode: str = "token", normaliser: float | None = None) -> torch.Tensor:
    """Cross-entropy on the target tokens. "token": the mean over every target token of the
    batch (transformers' own loss, TRL's SFT), so a 113-token tracking answer weighs five
    count answers; "sequence": each example's mean, then the mean over examples, so every
    example weighs the same however long its answer. With `normaliser` (a micro-batch run in
    parts: `normaliser` of all its parts' labels) the sum is divided by it instead."""
    if mode not in SFT_LOSSES:
        raise ValueError(f"sft loss {mode!r}: expected one of {SFT_LOSSES}")
    labels = batch["labels"][:, 1:]                                                 # (B, L-1)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float()
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                           reduction="none")  # (B, L-1), 0 where ignored
    n = (labels != -100).sum(1)                                                     # (B,)
    total = ce.sum() if mode == "token" else (ce.sum(1) / n.clamp(min=1)).sum()
    return total / (normaliser if normaliser is not None else normaliser_of([batch["labels"]], mode))


def normaliser_of(labels: list[torch.Tensor], mode: str) -> float:
    """What `supervised_loss` divides by for a micro-batch whose parts have these `labels`:
    its target tokens ("token") or its examples ("sequence")."""
    if mode == "token":
        return float(max(1, sum(int((lab[:, 1:] != -100).sum()) for lab in labels)))
    return float(sum(len(lab) for lab in labels))


def examples(dcfg, cfg) -> tuple[list, list, list[str]]:
    """The SFT items of `cfg.splits` (only `cfg.families` when set), their clips, and their
    targets: the chain of thought, then the answer."""
    from vrlib.data import load_split

    samples, clips = [], []
    for split in cfg.splits:  # [sft] by default; the equal-data arm of `make claims` adds rl (sft.splits)
        more = load_split(f"data/{split}.jsonl", fps=dcfg.fps, min_frames=dcfg.min_frames,
                          max_frames=dcfg.max_frames, families=cfg.families)
        samples, clips = samples + more[0], clips + more[1]
    return samples, clips, [s.process + s.solution for s in samples]


def run(dcfg, bcfg, cfg, *, base: str = "models/base", out: str = "models/sft",
        on_step: Callable[[int, dict], None] | None = None, items: tuple | None = None):
    """The sft stage: LoRA on the base (4-bit when asked), `train_supervised` on `examples`
    (or `items`, what `examples` returned before), the adapter written to `out`.
    Returns (model, processor, losses)."""
    from vrlib.model import add_lora, format_token_ids, load_kwargs, load_model, load_processor, save_checkpoint

    torch.manual_seed(cfg.seed)  # the SFT run's seed; the data's is the study's `seed`
    processor = load_processor(base)
    samples, clips, targets = items or examples(dcfg, cfg)
    model = add_lora(load_model(base, load_in_4bit=cfg.load_in_4bit, **load_kwargs(bcfg)), r=cfg.lora_r,
                     alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, seed=cfg.seed,
                     gradient_checkpointing=cfg.gradient_checkpointing,
                     token_ids=format_token_ids(processor.tokenizer, targets) if cfg.format_tokens else ())
    losses = train_supervised(model, processor, samples, clips, targets, steps=cfg.steps,
                              batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, lr=cfg.lr,
                              grad_clip=cfg.grad_clip, seed=cfg.seed, on_step=on_step, loss_mode=cfg.loss,
                              length_groups=cfg.length_groups)
    save_checkpoint(model, None, out)
    return model, processor, losses
