"""From a sample and its decoded clip to the token ids the model sees.

The user turn is Video-R1's layout: the visual item first, then the question, its options
("Options:" then one per line) and an answer-format sentence per problem_type, shortened for
the tiny model's context (Video-R1's TYPE_TEMPLATE in `src/r1-v/src/open_r1/grpo.py`). The
video is handed to the processor as decoded frames with their real sampled fps, in
training and evaluation alike, so Qwen2.5-VL's time positions (`second_per_grid_ts`) are
right (Video-R1's training forgot the fps; docs/design.md, "Video in").
"""
from __future__ import annotations

import itertools
import re

import torch
from transformers import BatchFeature
from transformers.video_utils import VideoMetadata


THINK = "Think inside <think></think>, then answer inside <answer></answer>."
ANSWER_FORMAT = {
    "multiple choice": "Answer with the option letter.",
    "numerical": "Answer with a number.",
    "OCR": "Answer with the text shown.",
    "free-form": "Answer in words.",
    "regression": "Answer with a number.",
    "temporal grounding": 'Answer with the time span in seconds as "start to end".',
    "tracking": "Answer with one box [x0, y0, x1, y1] per time asked, as a list, in 0-1 units.",
    "grounded QA": "Answer with the option letter, then the evidence spans in seconds as "
                   "<glue>[(start, end)]</glue>.",
}


def user_text(sample) -> str:
    """Question, options, then how to answer: "What colour is the circle?\nOptions:\nA. red ..."."""
    options = "\nOptions:\n" + "\n".join(sample.options) if sample.options else ""
    return f"{sample.problem}{options}\n{THINK} {ANSWER_FORMAT[sample.problem_type]}"


def plain_target(sample) -> str:
    """The chain of thought and the answer as plain text, tags removed: the tiny base model's
    pretraining target, so it learns to perceive and answer the way a real base model can,
    and the SFT cold start only has to add the <think>/<answer> structure.

    "<think>It is yellow.</think>" + "<answer>D</answer>" -> "It is yellow. D"
    """
    text = re.sub(r"</?(?:think|answer|glue)>", " ", f"{sample.process} {sample.solution}")
    return " ".join(text.split())


def longer_than(tokenizer, samples, limit: int) -> list[str]:
    """The problem_ids whose reference completion (chain of thought, answer, EOS) is more than
    `limit` tokens (`rft.max_completion_length`, `evaluation.max_new_tokens`): a model that
    answers as the reference does is cut before `</answer>` there and scores 0. Real data's
    chains of thought are long (Video-R1-CoT: hundreds of tokens); the world's fit
    (tests/test_tasks.py)."""
    eos = tokenizer.eos_token
    return [s.problem_id for s in samples
            if len(tokenizer(s.process + s.solution + eos)["input_ids"]) > limit]


def messages(sample) -> list[dict]:
    """The user turn: the image or video first, then the question (Video-R1's layout)."""
    return [{"role": "user", "content": [{"type": sample.data_type},
                                         {"type": "text", "text": user_text(sample)}]}]


def video_kwargs(clips) -> dict:
    # do_sample_frames=False: the clip is already sampled; the metadata carries its real fps.
    metadata = [VideoMetadata(total_num_frames=len(c.frames), fps=float(c.fps),
                              frames_indices=list(range(len(c.frames)))) for c in clips]
    return dict(videos=[c.frames for c in clips], video_metadata=metadata,
                do_sample_frames=False)


def visual_kwargs(samples, clips) -> dict:
    """The processor's `images` and `videos` arguments for a batch mixing both, in item order."""
    images = [c.frames[0] for s, c in zip(samples, clips) if s.data_type == "image"]
    videos = [c for s, c in zip(samples, clips) if s.data_type != "image"]
    return ({"images": images} if images else {}) | (video_kwargs(videos) if videos else {})


def encode_prompts(processor, samples, clips, max_pixels: int | None = None):
    """Left-padded prompts ready for `generate`: input_ids, attention_mask and the video tensors.
    `max_pixels` overrides the processor's pixel budget per frame (evaluation settings).
    A (sample, clip) pair given several times (a GRPO group's G rows) is processed once and its
    rows repeated: the same tensors as processing every row (tests/test_model.py)."""
    firsts, rows = {}, []  # (id(sample), id(clip)) -> its index among the distinct pairs; each row's
    for s, c in zip(samples, clips):
        rows.append(firsts.setdefault((id(s), id(c)), len(firsts)))
    distinct = [rows.index(u) for u in range(len(firsts))]  # the first row of each distinct pair
    samples, clips = [samples[k] for k in distinct], [clips[k] for k in distinct]
    texts = [processor.apply_chat_template(messages(s), add_generation_prompt=True,
                                           tokenize=False) for s in samples]
    size = {} if max_pixels is None else {"size": {
        "shortest_edge": processor.video_processor.size["shortest_edge"], "longest_edge": max_pixels}}
    batch = processor(text=texts, padding=True, return_tensors="pt", **size, **visual_kwargs(samples, clips))
    if len(distinct) == len(rows):
        return batch
    out = {k: v[rows] for k, v in batch.items() if k not in VISUAL_KEYS}  # input_ids, attention_mask, ...
    return BatchFeature(out | take_visual(batch, [s.data_type == "image" for s in samples], rows))


def encode_examples(processor, samples, clips, targets: list[str]):
    """Prompt + assistant target; `labels` are -100 everywhere but the assistant's tokens."""
    prompts = [processor.apply_chat_template(messages(s), add_generation_prompt=True,
                                             tokenize=False) for s in samples]
    eos = processor.tokenizer.eos_token
    texts = [p + t + eos for p, t in zip(prompts, targets)]
    batch = processor(text=texts, padding=True, return_tensors="pt", **visual_kwargs(samples, clips))
    batch["labels"] = target_labels(processor.tokenizer, batch["input_ids"], targets)
    return batch


def target_labels(tokenizer, input_ids: torch.Tensor, targets: list[str]) -> torch.Tensor:
    """Labels for left-padded `prompt + target + EOS` rows: -100 but on the target + EOS."""
    lens = [len(tokenizer(t + tokenizer.eos_token)["input_ids"]) for t in targets]
    labels = torch.full_like(input_ids, -100)  # (B, L)
    for i, n in enumerate(lens):  # left padding: the target is the last n tokens
        labels[i, -n:] = input_ids[i, -n:]
    return labels


VISUAL_KEYS = ("pixel_values", "image_grid_thw",
               "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


def visual_inputs(batch) -> dict:
    """The image and video tensors of a batch, for every forward that must see them."""
    return {k: batch[k] for k in VISUAL_KEYS if k in batch}


def take_visual(visual, images, rows) -> dict:
    """The image and video tensors of a batch's `rows`, in that order (a row may repeat).

    Each row of the batch holds one image or one video (`images[r]` says which):
    `image_grid_thw` has a line per image row, `video_grid_thw` and `second_per_grid_ts` one per
    video row, in row order, and `pixel_values` / `pixel_values_videos` their patches, row after
    row of the kind."""
    out = {}
    for pixels, grid, kind in (("pixel_values", "image_grid_thw", True),
                               ("pixel_values_videos", "video_grid_thw", False)):
        line = {r: j for j, r in enumerate(r for r, image in enumerate(images) if bool(image) == kind)}
        lines = [line[r] for r in rows if r in line]  # the rows of this kind, in `rows`' order
        if not lines or grid not in visual:
            continue
        ends = list(itertools.accumulate(visual[grid].prod(-1).tolist()))  # patch ends, row by row of the kind
        starts = [0, *ends[:-1]]
        if lines == list(range(lines[0], lines[-1] + 1)):  # a run of rows (`Rollouts.rows`): a view, no copy
            out[pixels] = visual[pixels][starts[lines[0]]:ends[lines[-1]]]
        else:
            out[pixels] = torch.cat([visual[pixels][starts[j]:ends[j]] for j in lines])
        out[grid] = visual[grid][lines]
        if not kind and "second_per_grid_ts" in visual:
            out["second_per_grid_ts"] = visual["second_per_grid_ts"][lines]
    return out


def token_types(processor, ids: torch.Tensor) -> torch.Tensor:
    """transformers' `mm_token_type_ids` of `ids`: 1 on image tokens, 2 on video tokens, else 0
    (without them a forward cannot build Qwen2.5-VL's 3D positions)."""
    tok = processor.tokenizer
    return ((ids == tok.convert_tokens_to_ids(processor.image_token)).long()
            + 2 * (ids == tok.convert_tokens_to_ids(processor.video_token)).long())
