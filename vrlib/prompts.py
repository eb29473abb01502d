"""From a sample and its decoded clip to the token ids the model sees.

The video is handed to the processor as decoded frames with their real sampled fps, in
training and evaluation alike, so Qwen2.5-VL's time positions (`second_per_grid_ts`) are
right (Video-R1's training forgot the fps; DESIGN.md "Video in").
"""
from __future__ import annotations

import torch
from transformers.video_utils import VideoMetadata


def messages(sample) -> list[dict]:
    """The user turn: the video first, then the question (Video-R1's layout)."""
    return [{"role": "user", "content": [{"type": "video"},
                                         {"type": "text", "text": sample.problem}]}]


def video_kwargs(clips) -> dict:
    # do_sample_frames=False: the clip is already sampled; the metadata carries its real fps.
    metadata = [VideoMetadata(total_num_frames=len(c.frames), fps=float(c.fps),
                              frames_indices=list(range(len(c.frames)))) for c in clips]
    return dict(videos=[c.frames for c in clips], video_metadata=metadata,
                do_sample_frames=False)


def encode_prompts(processor, samples, clips):
    """Left-padded prompts ready for `generate`: input_ids, attention_mask and the video tensors."""
    texts = [processor.apply_chat_template(messages(s), add_generation_prompt=True,
                                           tokenize=False) for s in samples]
    return processor(text=texts, padding=True, return_tensors="pt", **video_kwargs(clips))


def encode_examples(processor, samples, clips, targets: list[str]):
    """Prompt + assistant target; `labels` are -100 everywhere but the assistant's tokens."""
    prompts = [processor.apply_chat_template(messages(s), add_generation_prompt=True,
                                             tokenize=False) for s in samples]
    eos = processor.tokenizer.eos_token
    texts = [p + t + eos for p, t in zip(prompts, targets)]
    batch = processor(text=texts, padding=True, return_tensors="pt", **video_kwargs(clips))
    batch["labels"] = target_labels(processor.tokenizer, batch["input_ids"], targets)
    return batch


def target_labels(tokenizer, input_ids: torch.Tensor, targets: list[str]) -> torch.Tensor:
    """Labels for left-padded `prompt + target + EOS` rows: -100 but on the target + EOS."""
    lens = [len(tokenizer(t + tokenizer.eos_token)["input_ids"]) for t in targets]
    labels = torch.full_like(input_ids, -100)  # (B, L)
    for i, n in enumerate(lens):  # left padding: the target is the last n tokens
        labels[i, -n:] = input_ids[i, -n:]
    return labels


VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


def video_inputs(batch) -> dict:
    """The video tensors of a batch, to pass to every forward that must see the video."""
    return {k: batch[k] for k in VIDEO_KEYS if k in batch}
