"""Rollouts with HF `generate`, greedy decoding that survives a crash (`decode`), and the
forward pass that turns rollouts into per-token log-probs.

`decode` lives here, not beside the evaluation's scoring: the base and SFT stages decode their
probes with it, and must not depend on how the evaluation or the rewards score an answer (a
reward experiment reruns RFT, evaluation and analysis, never the models before RL).

The log-prob forward always receives the image and video tensors: TRL's GRPOTrainer drops them for
video prompts (huggingface/trl#5373, open as of trl 1.16), and Video-R1's trainer silently reran
without the video after a failure. Here a failing forward raises.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from vrlib.logs import progress
from vrlib.prompts import encode_prompts, take_visual, token_types, visual_inputs

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
                 "<|im_start|>")


@dataclass
class Rollouts:
    """Completions for a batch of prompts, each prompt repeated G times (contiguous groups)."""

    input_ids: torch.Tensor       # (N, P + C) left-padded prompt, then completion, then pad
    attention_mask: torch.Tensor  # (N, P + C)
    completion_mask: torch.Tensor  # (N, C) 1 up to and including the first EOS
    visual: dict                  # image and video tensors of the N rows (prompts.VISUAL_KEYS)
    texts: list[str]              # N decoded completions, special tokens removed
    truncated: torch.Tensor       # (N,) True where no EOS came within the length budget
    images: torch.Tensor          # (N,) True where the row's visual input is an image, else a video
    token_types: torch.Tensor     # (N, P + C) 1 on image tokens, 2 on video tokens, else 0: without
    # them (transformers' mm_token_type_ids) a forward cannot build Qwen2.5-VL's 3D positions and
    # falls back to 1D ones, scoring the rollouts under a model other than the one that sampled them

    @property
    def completion_ids(self) -> torch.Tensor:
        return self.input_ids[:, -self.completion_mask.shape[1]:]  # (N, C)

    def head(self, n: int) -> "Rollouts":
        return self.rows(0, n)

    def rows(self, a: int, b: int) -> "Rollouts":
        """Rows a..b-1, with their visual tensors (each row holds one image or one video, whose
        patches are contiguous in `pixel_values*`, images and videos each in row order), without
        the leading columns where all of them are padding nor the trailing ones where none of
        them has a completion token."""
        keep = int(self.completion_mask[a:b].sum(1).max())
        end = self.input_ids.shape[1] - (self.completion_mask.shape[1] - keep)
        start = int(self.attention_mask[a:b].any(0).int().argmax())  # left padding: the first real column
        visual = take_visual(self.visual, self.images.tolist(), range(a, b))
        return Rollouts(self.input_ids[a:b, start:end], self.attention_mask[a:b, start:end],
                        self.completion_mask[a:b, :keep], visual, self.texts[a:b], self.truncated[a:b],
                        self.images[a:b], self.token_types[a:b, start:end])


def row_seeds(key: list[int], n: int) -> list[int]:
    """n seeds from `key` (the GRPO loop's: seed, step, a question's position in the step's draws;
    the shuffle of its frames takes the first of [key], its rows' sampling those of [key, 1])."""
    return [int(x) for x in np.random.SeedSequence(key).generate_state(n)]


class RowSampler(LogitsProcessor):
    """Temperature, top-p and a multinomial draw per row, each row from a generator of its own,
    run as `generate`'s last logits processor under greedy search (the drawn token keeps score
    0, every other -inf), so what a row samples does not depend on the rows batched with it.
    HF's sampling draws every row from one global stream: there, batching the questions of a
    step in one call would change each question's rollouts."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.seeds, self.generators = seeds, None
        self.warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # scores (N, V)
        if self.generators is None:  # on the device the scores are on
            self.generators = [torch.Generator(scores.device).manual_seed(s) for s in self.seeds]
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        probs = scores.softmax(-1)                                                   # (N, V)
        drawn = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators)])
        return torch.full_like(scores, -math.inf).scatter_(1, drawn[:, None], 0.0)  # (N, V)


PLAIN_DECODING = dict(repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1)
"""What `generate` passes over the checkpoint's generation_config, which transformers applies
to every key a call leaves unset: Qwen2.5-VL-Instruct's sets repetition_penalty 1.05, which
would reshape greedy decoding and make a rollout's tokens come from another distribution than
the policy whose log-probs the loss takes (the tiny base's sets none)."""


@torch.no_grad()
def generate(model, processor, samples: list, clips: list, *, num_generations: int = 1,
             max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
             do_sample: bool = True, max_pixels: int | None = None, seeds: list[int] | None = None) -> Rollouts:
    """G rollouts per (sample, clip); row i*G + g is rollout g of sample i. With `seeds` (one per
    row) each row samples from its own generator (`RowSampler`); else from torch's global one."""
    rep_samples = [s for s in samples for _ in range(num_generations)]
    rep_clips = [c for c in clips for _ in range(num_generations)]
    batch = encode_prompts(processor, rep_samples, rep_clips, max_pixels).to(model.device)
    tok = processor.tokenizer
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if do_sample \
        else dict(do_sample=False)
    if do_sample and seeds is not None:
        if len(seeds) != len(rep_samples):
            raise ValueError(f"{len(seeds)} seeds for {len(rep_samples)} rows")
        sampling = dict(do_sample=False, logits_processor=LogitsProcessorList([RowSampler(seeds, temperature, top_p)]))
    was_training = model.training
    model.eval()
    out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, **PLAIN_DECODING,
                         # a vision token inside a completion would break the log-prob forward
                         suppress_tokens=tok.convert_tokens_to_ids(list(VISION_TOKENS)),
                         **sampling)  # (N, P + C)
    model.train(was_training)
    prompt_len = batch["input_ids"].shape[1]
    completion = out[:, prompt_len:]  # (N, C)
    is_eos = completion == tok.eos_token_id  # (N, C)
    first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), completion.shape[1])  # (N,)
    positions = torch.arange(completion.shape[1], device=completion.device).unsqueeze(0)  # (1, C)
    completion_mask = (positions <= first_eos.unsqueeze(1)).long()  # (N, C)
    attention_mask = torch.cat([batch["attention_mask"], completion_mask], dim=1)  # (N, P + C)
    texts = tok.batch_decode(completion.masked_fill(completion_mask == 0, tok.pad_token_id),
                             skip_special_tokens=True)
    return Rollouts(input_ids=out, attention_mask=attention_mask, completion_mask=completion_mask,
                    visual=visual_inputs(batch), texts=texts, truncated=~is_eos.any(1),
                    images=torch.tensor([s.data_type == "image" for s in rep_samples]),
                    token_types=token_types(processor, out))


def token_logprobs(model, rollouts: Rollouts, temperature: float = 1.0) -> torch.Tensor:
    """log pi(token | prefix, video) for every completion token: (N, C)."""
    n_completion = rollouts.completion_mask.shape[1]
    logits = model(input_ids=rollouts.input_ids, attention_mask=rollouts.attention_mask,
                   mm_token_type_ids=rollouts.token_types, **rollouts.visual,
                   logits_to_keep=n_completion + 1).logits  # (N, C + 1, V)
    logits = logits[:, :-1].float() / temperature  # (N, C, V) position t predicts token t + 1
    logp = torch.log_softmax(logits, dim=-1)  # (N, C, V)
    return logp.gather(-1, rollouts.completion_ids.unsqueeze(-1)).squeeze(-1)  # (N, C)


# ----------------------------------------------------------------------------- greedy decoding
def decoded(partial: Path | None, key: str) -> dict[str, tuple[str, bool]]:
    """Items a crashed run already decoded: problem_id -> (completion, truncated), when the
    partial file was written for the same model, items and settings (`key`)."""
    if partial is None or not partial.is_file():
        return {}
    lines = partial.read_text(encoding="utf-8").splitlines()
    try:
        if not lines or json.loads(lines[0]).get("key") != key:
            return {}
    except json.JSONDecodeError:
        return {}
    done = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the line a crash cut short: decoded again
            break
        done[row["problem_id"]] = (row["completion"], row["truncated"])
    return done


def decode(model, processor, samples: list, clips: list, *, batch_size: int,
           max_new_tokens: int, max_pixels: int | None = None, partial: str | Path | None = None,
           key: str = "", name: str = "") -> tuple[list[str], list[bool]]:
    """Greedy completions in fixed batches of `batch_size` items, the items taken in the order of
    their `data_source` (one family, one kind of answer: a batch stops when its longest completion
    does, so mixing 86-token tracking answers into every batch made a decode ~2x slower); returned
    in the order of `samples`. With `partial`, each finished batch is appended to that file
    (fsynced) and a rerun with the same `key` decodes only the batches not finished: a crash loses
    at most one batch, and the batches, hence the outputs, are the same as in an uninterrupted run."""
    order = sorted(range(len(samples)), key=lambda k: samples[k].data_source)
    given, samples, clips = samples, [samples[k] for k in order], [clips[k] for k in order]
    partial = None if partial is None else Path(partial)
    done = decoded(partial, key)
    if partial is not None and not done:
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"key": key}) + "\n", encoding="utf-8")
    show = progress(name, math.ceil(len(samples) / batch_size), keys=(), unit="batch") if name else None
    for i in range(0, len(samples), batch_size):
        chunk = samples[i:i + batch_size]
        if all(s.problem_id in done for s in chunk):
            continue
        ro = generate(model, processor, chunk, clips[i:i + batch_size], num_generations=1,
                      max_new_tokens=max_new_tokens, do_sample=False, max_pixels=max_pixels)
        rows = [{"problem_id": s.problem_id, "completion": t, "truncated": bool(tr)}
                for s, t, tr in zip(chunk, ro.texts, ro.truncated.tolist())]
        done.update({r["problem_id"]: (r["completion"], r["truncated"]) for r in rows})
        if partial is not None:
            with open(partial, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))
                f.flush()
                os.fsync(f.fileno())
        if show is not None:
            show(i // batch_size, {})
    return [done[s.problem_id][0] for s in given], [done[s.problem_id][1] for s in given]
