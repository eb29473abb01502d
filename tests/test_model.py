"""The tiny model on real videos: build, load, forward, generate, one SFT and one GRPO step.

Run: `.venv/bin/pytest tests/test_model.py`
"""
from __future__ import annotations

import pytest
import torch

from vrlib.model import add_lora, check_model_dir, load_model, load_policy, load_processor
from vrlib.prompts import encode_examples, encode_prompts
from vrlib.rollout import generate, token_logprobs
from vrlib.sft import train_supervised


def lora_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def changed(before: dict, model) -> bool:
    after = lora_state(model)
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_loads_like_a_real_checkpoint(tiny_dir):
    processor = load_processor(tiny_dir)
    model = load_model(tiny_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert processor.tokenizer.convert_tokens_to_ids("<|video_pad|>") == model.config.video_token_id
    assert processor.tokenizer.eos_token == "<|im_end|>"


def test_missing_model_dir_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="hf download"):
        check_model_dir(tmp_path / "nope")


def test_forward_on_a_real_video_uses_its_fps(tiny_dir, world_split):
    _, samples, clips = world_split
    processor, model = load_processor(tiny_dir), load_model(tiny_dir)
    batch = encode_prompts(processor, samples[:2], clips[:2])
    # 16 frames at 2 fps, temporal patch 2 -> 8 slots of 1 s each
    assert batch["video_grid_thw"][0].tolist() == [8, 4, 4]
    assert torch.allclose(batch["second_per_grid_ts"], torch.tensor([1.0, 1.0]))
    n_video_tokens = (batch["input_ids"] == model.config.video_token_id).sum(1)
    assert n_video_tokens.tolist() == [8 * 4 * 4 // 4] * 2  # 2x2 spatial merge
    out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape
    # the video matters: other frames give other logits
    other = encode_prompts(processor, samples[:2], clips[2:4])
    assert not torch.allclose(model(**other).logits[:, -1], out.logits[:, -1])


def test_generate_and_logprobs_agree(tiny_dir, world_split):
    _, samples, clips = world_split
    processor, model = load_processor(tiny_dir), load_model(tiny_dir)
    ro = generate(model, processor, samples[:2], clips[:2], num_generations=3, max_new_tokens=6)
    assert ro.input_ids.shape[0] == 6 and len(ro.texts) == 6
    logp = token_logprobs(model, ro)  # (6, C)
    assert logp.shape == ro.completion_mask.shape
    assert (logp <= 0).all()
    # greedy: the argmax token has the highest log-prob at the first step
    greedy = generate(model, processor, samples[:1], clips[:1], num_generations=1,
                      max_new_tokens=1, do_sample=False)
    full = model(**encode_prompts(processor, samples[:1], clips[:1])).logits[0, -1]
    assert greedy.completion_ids[0, 0].item() == full.argmax().item()


def test_labels_cover_only_the_assistant_target(tiny_dir, world_split):
    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    target = samples[0].process + samples[0].solution
    batch = encode_examples(processor, samples[:1], clips[:1], [target])
    labelled = batch["labels"][0] != -100
    assert processor.tokenizer.decode(batch["input_ids"][0][labelled]) == target + "<|im_end|>"


@pytest.mark.parametrize("load_in_4bit", [False, True])
def test_one_sft_step_changes_the_adapter(tiny_dir, world_split, load_in_4bit):
    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    model = add_lora(load_model(tiny_dir, load_in_4bit=load_in_4bit), r=4, alpha=8, dropout=0.0,
                     seed=0)
    if load_in_4bit:  # real bitsandbytes nf4 layers, on CPU
        import bitsandbytes as bnb
        assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    before = lora_state(model)
    # PEFT initialises B = 0; one step moves B away from zero.
    losses = train_supervised(model, processor, samples, clips,
                              [s.process + s.solution for s in samples], steps=2, batch_size=4,
                              lr=1e-2, grad_clip=1.0, seed=0)
    assert all(l > 0 for l in losses)
    assert changed(before, model)
    vision_frozen = all(not p.requires_grad for n, p in model.named_parameters() if "visual" in n)
    assert vision_frozen


def test_merged_adapters_reproduce_the_trained_policy(tiny_dir, world_split, tmp_path):
    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    model = add_lora(load_model(tiny_dir), r=4, alpha=8, dropout=0.0, seed=0)
    train_supervised(model, processor, samples, clips, [s.solution for s in samples], steps=2,
                     batch_size=4, lr=1e-2, grad_clip=1.0, seed=0)
    model.save_pretrained(tmp_path / "sft")
    batch = encode_prompts(processor, samples[:2], clips[:2])
    with torch.no_grad():
        expected = model(**batch).logits
        merged = load_policy(tiny_dir, [tmp_path / "sft"])(**batch).logits
    assert torch.allclose(expected, merged, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="adapter"):
        load_policy(tiny_dir, [tmp_path / "missing"])


def test_cached_encoding_equals_the_processor(tiny_dir, world_split):
    from vrlib.sft import EncodeCache, encode_cached

    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    idx = [0, 10, 3]  # video, image, video: a mixed batch
    assert [samples[i].data_type for i in idx] == ["video", "image", "video"]
    targets = [samples[i].process + samples[i].solution for i in idx]
    direct = encode_examples(processor, [samples[i] for i in idx], [clips[i] for i in idx], targets)
    cached = encode_cached(EncodeCache(processor, samples, clips), idx, targets)
    assert direct.keys() == cached.keys()
    for key in direct:
        assert torch.allclose(direct[key].float(), cached[key].float()), key
