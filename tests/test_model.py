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


def test_video_encoding_prints_no_transformers_notice(tiny_dir, world_split):
    """transformers warns on every run while `cap_pixels_per_frame` is unset; the study sizes its
    frames itself and says so, for a loaded checkpoint (`load_processor`) and for the processor
    the base stage builds and uses before saving it (`build_processor`)."""
    import logging

    from vrlib.model import build_processor

    _, samples, clips = world_split
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    logging.Logger.warning_once.cache_clear()  # transformers prints it once per process: maybe before
    try:
        processor = load_processor(tiny_dir)
        built = build_processor(processor.tokenizer, max_pixels=56 * 56)
        for p in (processor, built):
            assert p.video_processor.cap_pixels_per_frame is False
            encode_prompts(p, samples[:1], clips[:1])
    finally:
        logger.removeHandler(handler)
    assert not [r for r in records if "cap_pixels_per_frame" in r.getMessage()]


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


def test_decoding_ignores_the_checkpoints_generation_config(tiny_dir, world_split, monkeypatch):
    """Qwen2.5-VL-Instruct's generation_config sets repetition_penalty 1.05, which transformers
    applies to every call that leaves it unset: greedy answers and seeded rollouts must come from
    the policy alone, whatever the checkpoint's config says."""
    from vrlib import rollout

    _, samples, clips = world_split
    processor, model = load_processor(tiny_dir), load_model(tiny_dir)

    def texts():
        greedy = generate(model, processor, samples[:2], clips[:2], max_new_tokens=12, do_sample=False)
        drawn = generate(model, processor, samples[:2], clips[:2], num_generations=2, max_new_tokens=12,
                         seeds=[1, 2, 3, 4])
        return greedy.texts + drawn.texts

    plain = texts()
    model.generation_config.repetition_penalty = 100.0
    model.generation_config.no_repeat_ngram_size = 1
    assert texts() == plain
    monkeypatch.setattr(rollout, "PLAIN_DECODING", {})
    assert texts() != plain  # transformers does apply the checkpoint's config where a call is silent


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
        # the vision tower and the output head stay in the compute dtype (QLoRA quantizes the LM)
        skipped = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)
                   and (".visual." in n or n.endswith("lm_head"))]
        assert not skipped, skipped
    before = lora_state(model)
    # PEFT initialises B = 0; one step moves B away from zero.
    losses = train_supervised(model, processor, samples, clips,
                              [s.process + s.solution for s in samples], steps=2, batch_size=4,
                              lr=1e-2, grad_clip=1.0, seed=0)
    assert all(l > 0 for l in losses)
    assert changed(before, model)
    vision_frozen = all(not p.requires_grad for n, p in model.named_parameters() if "visual" in n)
    assert vision_frozen


def test_sequence_loss_weighs_each_example_once(tiny_dir, world_split):
    """sft.loss: "token" is transformers' own mean over the batch's target tokens; "sequence" is
    the mean of each example's own mean, whatever the answers' lengths."""
    from vrlib.sft import supervised_loss

    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    model = load_model(tiny_dir)
    targets = [s.process + s.solution for s in samples[:2]]
    targets[1] += " " + " ".join(["long"] * 30)  # unequal lengths: the two means differ
    batch = encode_examples(processor, samples[:2], clips[:2], targets)
    with torch.no_grad():
        token = supervised_loss(model, batch, "token")
        sequence = supervised_loss(model, batch, "sequence")
        alone = [supervised_loss(model, encode_examples(processor, samples[i:i + 1], clips[i:i + 1],
                                                        targets[i:i + 1]), "token") for i in range(2)]
    torch.testing.assert_close(token, model(**batch).loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sequence, (alone[0] + alone[1]) / 2, rtol=1e-4, atol=1e-5)
    assert not torch.isclose(token, sequence, rtol=1e-3)
    with pytest.raises(ValueError, match="token"):
        supervised_loss(model, batch, "tokens")


def test_prompts_given_several_times_are_processed_once_into_the_same_tensors(tiny_dir, world_split):
    """encode_prompts on a GRPO-like batch (rows repeated, images and videos mixed, a shuffled
    copy of a clip) gives exactly what the processor gives on every row."""
    from vrlib.prompts import messages, visual_kwargs
    from vrlib.video import shuffle_clip
    import numpy as np

    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    image = next(i for i, s in enumerate(samples) if s.data_type == "image")
    v0, v1 = [i for i, s in enumerate(samples) if s.data_type == "video"][:2]
    shuffled = shuffle_clip(clips[v0], np.random.default_rng(0))
    rows = [(v0, clips[v0])] * 3 + [(v0, shuffled)] * 2 + [(image, clips[image])] * 2 + [(v1, clips[v1]), (v0, clips[v0])]
    rep_samples, rep_clips = [samples[i] for i, _ in rows], [c for _, c in rows]
    got = encode_prompts(processor, rep_samples, rep_clips)
    texts = [processor.apply_chat_template(messages(s), add_generation_prompt=True, tokenize=False) for s in rep_samples]
    want = processor(text=texts, padding=True, return_tensors="pt", **visual_kwargs(rep_samples, rep_clips))
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


@pytest.mark.parametrize("mode", ["token", "sequence"])
def test_a_batch_run_in_length_groups_has_the_gradient_of_one(tiny_dir, world_split, mode):
    """sft.length_groups: a micro-batch run as parts of items of similar length, each part's
    loss divided by the whole micro-batch's normaliser, gives the loss and the gradient of the
    micro-batch run whole (up to float rounding), with rows padded to their part's longest."""
    import numpy as np

    from vrlib.sft import EncodeCache, encode_cached, normaliser_of, supervised_loss

    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    targets = [s.process + s.solution + " long" * (4 * i) for i, s in enumerate(samples)]
    model = add_lora(load_model(tiny_dir), r=4, alpha=8, dropout=0.0, seed=0)
    for p in model.parameters():  # LoRA's B starts at 0: move it, so that A has a gradient too
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.02)
    cache = EncodeCache(processor, samples, clips)
    idx = sorted(range(len(samples)), key=lambda i: cache.length(i, targets[i]))
    assert [encode_cached(cache, [i], [targets[i]])["input_ids"].shape[1] for i in idx] == \
        [cache.length(i, targets[i]) for i in idx]

    def run(parts) -> tuple[torch.Tensor, dict, int]:
        model.zero_grad()
        batches = [encode_cached(cache, part, [targets[i] for i in part]) for part in parts]
        norm = normaliser_of([b["labels"] for b in batches], mode)
        loss = sum(supervised_loss(model, b, mode, normaliser=norm) for b in batches)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return loss.detach(), grads, sum(b["input_ids"].numel() for b in batches)

    whole, g_whole, padded_whole = run([idx])
    parts, g_parts, padded_parts = run(np.array_split(idx, 3))
    assert padded_parts < padded_whole
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(whole, supervised_loss(model, encode_cached(cache, idx, [targets[i] for i in idx]), mode).detach())
    assert any(g.abs().sum() > 0 for g in g_whole.values())
    for name, g in g_whole.items():
        torch.testing.assert_close(g_parts[name], g, rtol=1e-4, atol=1e-7, msg=name)


def test_format_tokens_are_the_tag_pieces_of_the_targets(tiny_dir, world_split):
    from vrlib.model import format_token_ids

    _, samples, _ = world_split
    tok = load_processor(tiny_dir).tokenizer
    targets = [s.process + s.solution for s in samples]
    ids = format_token_ids(tok, targets)
    pieces = [tok.decode([i]) for i in ids]
    assert ids and all("<" in p or ">" in p for p in pieces), pieces
    assert not set(ids) & set(tok.all_special_ids)
    in_targets = {i for t in targets for i in tok(t)["input_ids"]}
    assert set(ids) <= in_targets
    for t in targets:  # the token that opens the answer, merged with it or not ('>B', '>'), is one
        t_ids = tok(t)["input_ids"]
        opens = [k + 1 for k in range(1, len(t_ids) - 1) if tok.decode(t_ids[k - 1:k + 1]) == "><answer"]
        assert opens and t_ids[opens[0]] in ids


@pytest.mark.parametrize("with_tokens", [False, True])
def test_merged_adapters_reproduce_the_trained_policy(tiny_dir, world_split, tmp_path, with_tokens):
    from vrlib.model import format_token_ids

    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    targets = [s.process + s.solution for s in samples]
    token_ids = format_token_ids(processor.tokenizer, targets) if with_tokens else ()
    base_rows = load_model(tiny_dir).get_input_embeddings().weight.detach().clone()
    model = add_lora(load_model(tiny_dir), r=4, alpha=8, dropout=0.0, seed=0, token_ids=token_ids)
    train_supervised(model, processor, samples, clips, targets, steps=2,
                     batch_size=4, lr=1e-2, grad_clip=1.0, seed=0)
    model.save_pretrained(tmp_path / "sft")
    merged_model = load_policy(tiny_dir, [tmp_path / "sft"])
    rows = merged_model.get_input_embeddings().weight.detach()
    moved = sorted(torch.nonzero((rows != base_rows).any(1)).flatten().tolist())
    assert moved == list(token_ids)  # the tag tokens' rows trained, no other row
    assert merged_model.lm_head.weight.data_ptr() == merged_model.get_input_embeddings().weight.data_ptr()
    batch = encode_prompts(processor, samples[:2], clips[:2])
    with torch.no_grad():
        expected = model(**batch).logits
        merged = merged_model(**batch).logits
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


def test_sft_with_a_training_vision_tower_encodes_from_the_pixels(tiny_dir, world_split):
    """Tokens computed once would leave a training tower without gradient: the cache refuses it,
    and `train_supervised` encodes every batch from the pixels instead, so the tower learns."""
    from vrlib.sft import EncodeCache

    _, samples, clips = world_split
    processor, model = load_processor(tiny_dir), load_model(tiny_dir)  # every weight trains
    with pytest.raises(ValueError, match="the vision tower trains"):
        EncodeCache(processor, samples, clips, model)
    tower = {k: v.detach().clone() for k, v in model.model.visual.named_parameters()}
    train_supervised(model, processor, samples[:4], clips[:4], [s.solution for s in samples[:4]], steps=2,
                     batch_size=4, lr=1e-2, grad_clip=1.0, seed=0)
    assert any(not torch.equal(tower[k], v) for k, v in model.model.visual.named_parameters())


def test_visual_tokens_computed_once_give_the_logits_of_the_pixels(tiny_dir, world_split):
    """EncodeCache with the model keeps each clip's visual tokens, not its pixels, and hands them
    to the model as `mm_encoder_outputs`: the logits of a mixed batch are those the pixels give."""
    from vrlib.sft import EncodeCache, encode_cached, to

    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    model = add_lora(load_model(tiny_dir), r=4, alpha=8, dropout=0.0, seed=0)
    idx = [0, 10, 3]  # video, image, video
    targets = [samples[i].process + samples[i].solution for i in idx]
    direct = encode_examples(processor, [samples[i] for i in idx], [clips[i] for i in idx], targets)
    cache = EncodeCache(processor, samples, clips, model)
    cached = encode_cached(cache, idx, targets)
    assert "pixel_values_videos" not in cached and set(cached["mm_encoder_outputs"]) == {"image", "video"}
    assert not any("pixel_values" in k for v in cache.visual.values() for k in v)
    for key in ("input_ids", "attention_mask", "labels", "video_grid_thw", "image_grid_thw"):
        assert torch.equal(direct[key], cached[key]), key
    with torch.no_grad():
        want = model(**direct).logits
        got = model(**{k: to(v, model.device) for k, v in cached.items()}).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_the_vision_tower_encodes_each_distinct_video_of_a_batch_once(tiny_dir, world_split):
    """model.once_per_input: a batch of copies (a GRPO group) runs the tower on the distinct
    videos only, and every copy gets the visual tokens it would get alone."""
    import numpy as np

    from vrlib.video import shuffle_clip

    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    model = add_lora(load_model(tiny_dir), r=4, alpha=8, dropout=0.0, seed=0)
    inner = model.get_base_model().model
    v0, v1 = [i for i, s in enumerate(samples) if s.data_type == "video"][:2]
    shuffled = shuffle_clip(clips[v0], np.random.default_rng(0))
    rows = [clips[v0], clips[v1], clips[v0], shuffled, clips[v0], clips[v1]]
    batch = encode_prompts(processor, [samples[v0]] * len(rows), rows)
    grid, sizes = batch["video_grid_thw"], batch["video_grid_thw"].prod(-1).tolist()
    seen = []
    hook = inner.visual.patch_embed.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    with torch.no_grad():
        tokens = inner.get_video_features(batch["pixel_values_videos"], grid).pooler_output
        alone = [inner.get_video_features(p, grid[k:k + 1]).pooler_output[0]
                 for k, p in enumerate(batch["pixel_values_videos"].split(sizes))]
    hook.remove()
    per_video = int(batch["video_grid_thw"][0].prod())
    assert seen[0] == 3 * per_video  # v0, v1 and the shuffled copy: 3 distinct of 6
    assert len(tokens) == len(rows)
    for got, want in zip(tokens, alone):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(tokens[0], tokens[2]) and not torch.equal(tokens[0], tokens[3])


# ----------------------------------------------------------------------------- QLoRA at scale
def checkpointed(model) -> bool:
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def test_defaults_load_fp32_without_quantization_or_checkpointing(tiny_dir):
    from vrlib.model import best_attention

    model = add_lora(load_model(tiny_dir), r=4, alpha=8, dropout=0.0, seed=0)
    assert model.dtype == torch.float32 and getattr(model.config, "quantization_config", None) is None
    assert not checkpointed(model)
    if not torch.cuda.is_available():
        assert best_attention() == "sdpa"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_qlora_with_gradient_checkpointing_trains_lora_only(tiny_dir, world_split, dtype):
    import bitsandbytes as bnb

    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    model = add_lora(load_model(tiny_dir, load_in_4bit=True, dtype=dtype, attn_implementation="sdpa"),
                     r=4, alpha=8, dropout=0.0, seed=0, gradient_checkpointing=True)
    assert checkpointed(model) and any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    # a bf16 base is not upcast to fp32 (add_lora's docstring); the adapter itself is fp32
    frozen = {p.dtype for n, p in model.named_parameters() if "lora_" not in n and p.dtype.is_floating_point}
    assert frozen == {dtype}
    assert {p.dtype for n, p in model.named_parameters() if "lora_" in n} == {torch.float32}
    # the frozen vision tower stays out of the backward pass (no input-grad hook on its patches)
    seen = []
    hook = model.get_base_model().model.visual.register_forward_hook(
        lambda m, i, out: seen.append(out.pooler_output.requires_grad))
    before = lora_state(model)
    train_supervised(model, processor, samples, clips, [s.process + s.solution for s in samples],
                     steps=2, batch_size=4, lr=1e-2, grad_clip=1.0, seed=0)  # step 0 is warm-up (lr 0)
    hook.remove()
    assert changed(before, model)
    assert seen and not any(seen)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


def test_quant_storage_reaches_the_4bit_weights(tiny_dir):
    import bitsandbytes as bnb

    model = load_model(tiny_dir, load_in_4bit=True, dtype=torch.bfloat16, quant_storage=torch.bfloat16)
    assert model.config.quantization_config.bnb_4bit_quant_storage == torch.bfloat16
    packed = [m.weight for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert packed and all(w.dtype == torch.bfloat16 for w in packed)  # FSDP sees one dtype
    default = load_model(tiny_dir, load_in_4bit=True).config.quantization_config
    assert default.bnb_4bit_quant_storage == torch.uint8


def test_a_4bit_base_keeps_earlier_adapters_beside_it_exactly(tiny_dir, world_split, tmp_path):
    """peft merges into a 4-bit layer by dequantising, adding B @ A and quantising again: a
    small update (lr 1e-4 here; RFT uses 1e-6) mostly falls inside one nf4 step and is lost.
    So `load_policy` keeps earlier adapters unmerged on a 4-bit base: the policy is the trained
    one exactly, RFT's new adapter trains alone on top, and `reference` is the SFT policy."""
    from peft import PeftModel

    from vrlib.model import reference, save_checkpoint

    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    base = load_model(tiny_dir, load_in_4bit=True)
    batch = encode_prompts(processor, samples[:2], clips[:2])
    with torch.no_grad():
        base_logits = base(**batch).logits
    model = add_lora(base, r=4, alpha=8, dropout=0.0, seed=0)
    train_supervised(model, processor, samples, clips, [s.solution for s in samples], steps=2,
                     batch_size=4, lr=1e-4, grad_clip=1.0, seed=0)
    model.save_pretrained(tmp_path / "sft")
    with torch.no_grad():
        trained = model(**batch).logits
        lossy = PeftModel.from_pretrained(load_model(tiny_dir, load_in_4bit=True), tmp_path / "sft")
        lossy = lossy.merge_and_unload()(**batch).logits
    effect = (trained - base_logits).norm()
    assert effect > 0 and (lossy - base_logits).norm() < 0.5 * effect  # merged: nearly the base

    policy = load_policy(tiny_dir, [tmp_path / "sft"], load_in_4bit=True)
    rft = add_lora(policy, r=4, alpha=8, dropout=0.0, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(rft(**batch).logits, trained)  # the new adapter starts at B = 0
    assert all(".default." in n for n, p in rft.named_parameters() if p.requires_grad)
    before = lora_state(rft)
    train_supervised(rft, processor, samples, clips, [s.process + s.solution for s in samples],
                     steps=2, batch_size=4, lr=1e-2, grad_clip=1.0, seed=0)
    assert changed(before, rft)
    with torch.no_grad():
        assert not torch.allclose(rft(**batch).logits, trained)
        with reference(rft):
            torch.testing.assert_close(rft(**batch).logits, trained)  # the SFT policy, exactly
    assert all(".default." in n for n, p in rft.named_parameters() if p.requires_grad)  # re-frozen
    save_checkpoint(rft, None, tmp_path / "rft")
    assert (tmp_path / "rft" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "rft" / "below0").exists()  # only the trained adapter is written


def test_a_4bit_base_keeps_an_adapter_with_trained_token_rows_exactly(tiny_dir, world_split, tmp_path):
    """sft.format_tokens on a 4-bit base: the SFT adapter's token rows stay beside the base with its
    LoRA, the policy is the trained one, and RFT's adapter starts from it and trains alone."""
    from vrlib.model import format_token_ids, reference

    _, samples, clips = world_split
    processor = load_processor(tiny_dir)
    targets = [s.process + s.solution for s in samples]
    token_ids = format_token_ids(processor.tokenizer, targets)
    batch = encode_prompts(processor, samples[:2], clips[:2])
    model = add_lora(load_model(tiny_dir, load_in_4bit=True), r=4, alpha=8, dropout=0.0, seed=0,
                     token_ids=token_ids)
    train_supervised(model, processor, samples, clips, targets, steps=2, batch_size=4, lr=1e-2,
                     grad_clip=1.0, seed=0)
    model.save_pretrained(tmp_path / "sft")
    with torch.no_grad():
        trained = model(**batch).logits
    policy = load_policy(tiny_dir, [tmp_path / "sft"], load_in_4bit=True)
    with torch.no_grad():
        torch.testing.assert_close(policy(**batch).logits, trained)
    rft = add_lora(policy, r=4, alpha=8, dropout=0.0, seed=1)
    assert all(".default." in n for n, p in rft.named_parameters() if p.requires_grad)
    train_supervised(rft, processor, samples, clips, targets, steps=2, batch_size=4, lr=1e-2,
                     grad_clip=1.0, seed=0)
    with torch.no_grad(), reference(rft):
        torch.testing.assert_close(rft(**batch).logits, trained)  # the SFT policy, token rows included


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_on_cuda_in_bf16_trains(tiny_dir, world_in_memory):
    from vrlib.model import best_attention

    samples, clips = world_in_memory  # the GPU machine has no av or decord
    processor = load_processor(tiny_dir)
    model = add_lora(load_model(tiny_dir, load_in_4bit=True, dtype=torch.bfloat16, device="cuda",
                                attn_implementation=best_attention(), quant_storage=torch.bfloat16),
                     r=4, alpha=8, dropout=0.0, seed=0, gradient_checkpointing=True)
    before = lora_state(model)
    train_supervised(model, processor, samples, clips, [s.process + s.solution for s in samples],
                     steps=2, batch_size=4, lr=1e-2, grad_clip=1.0, seed=0)  # step 0 is warm-up (lr 0)
    assert changed(before, model)


def test_the_tiny_tokenizer_writes_numbers_digit_by_digit_as_qwen():
    from vrlib.model import train_tokenizer

    tok = train_tokenizer(["the box [0.71, 0.24] at (48, 73) from 2.0 to 15.0 seconds"] * 20, 300)
    ids = tok("[0.71, 0.24] at (48, 73) 1200")["input_ids"]
    pieces = [tok.decode([i]) for i in ids]
    assert all(len(p.strip()) == 1 for p in pieces if any(c.isdigit() for c in p)), pieces
    assert tok.decode(ids) == "[0.71, 0.24] at (48, 73) 1200"
