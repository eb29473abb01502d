"""The policy: a Qwen2.5-VL checkpoint directory, real or built offline, plus LoRA adapters.

Every stage loads the model with `AutoProcessor` / `AutoModelForImageTextToText` from a
directory, so the tiny embedded model and Qwen2.5-VL-7B take the same code path.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

# Qwen2.5-VL's special tokens (tokenizer_config.json of Qwen/Qwen2.5-VL-7B-Instruct).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen2-VL's chat template (the visual item becomes <|vision_start|><|video_pad|><|vision_end|>).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' %}{% set video_count.value = video_count.value + 1 %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class TinyShape:
    """Sizes of the embedded Qwen2.5-VL (about 1 M parameters)."""

    vocab_size: int = 1024
    """BPE vocabulary trained on the study's own text."""
    hidden_size: int = 128
    """text model width; the vision merger projects to it."""
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 384
    vision_hidden_size: int = 96
    vision_depth: int = 2
    vision_heads: int = 4
    vision_init_std: float = 0.1
    """std of the vision tower's random Linear/Conv weights (HF default 0.02). At 0.02 the
    frames' features barely differ and the tiny model learns the text prior, ignoring the video;
    at 0.1 it starts reading colours after ~300 pretraining steps. 0 keeps HF's init."""


QWEN_PRETOKENIZE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                    r"|\s*[\r\n]+|\s+(?!\S)|\s+")
r"""Qwen2's pre-tokenizer split (its tokenizer.json): every digit is a token of its own (`\p{N}`,
not GPT-2's `\p{N}+`), so "0.54" and "48" are read and written digit by digit, as the real
model does; GPT-2's split gave the tiny model one token per seen number."""


def train_tokenizer(corpus: list[str], vocab_size: int):
    """A byte-level BPE with Qwen's special tokens and Qwen2's pre-tokenizer, wrapped as a fast
    tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_bos_token": "<|vision_start|>",
                              "vision_eos_token": "<|vision_end|>"},
        chat_template=CHAT_TEMPLATE, padding_side="left", model_max_length=4096)


def build_processor(tokenizer, max_pixels: int):
    """Qwen2.5-VL's processor around `tokenizer`; frames are resized to at most `max_pixels`
    (Video-R1 trains at 128*28*28) and arrive already sampled."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    size = {"shortest_edge": 4 * 28 * 28 // 4, "longest_edge": max_pixels}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        # cap_pixels_per_frame: see load_processor (saved with the checkpoint, so no notice either)
        video_processor=Qwen2VLVideoProcessor(size=size, do_sample_frames=False, cap_pixels_per_frame=False),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build_tiny(out_dir: str | Path, corpus: list[str], *, max_pixels: int, seed: int,
               shape: TinyShape | None = None):
    """Write a random-weight Qwen2.5-VL checkpoint directory (model + processor) to `out_dir`."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    shape = shape or TinyShape()
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(corpus, shape.vocab_size)
    processor = build_processor(tokenizer, max_pixels)
    ids = tokenizer.convert_tokens_to_ids
    head_dim = shape.hidden_size // shape.num_attention_heads
    # mrope splits head_dim/2 rotary frequencies into (time, height, width), 1:1.5:1.5 as Qwen's [16, 24, 24].
    t = head_dim // 2 // 4
    mrope_section = [t, (head_dim // 2 - t) // 2, head_dim // 2 - t - (head_dim // 2 - t) // 2]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=shape.hidden_size,
            intermediate_size=shape.intermediate_size, num_hidden_layers=shape.num_hidden_layers,
            num_attention_heads=shape.num_attention_heads,
            num_key_value_heads=shape.num_key_value_heads, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                             "mrope_section": mrope_section},
            bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
            pad_token_id=ids("<|endoftext|>"), tie_word_embeddings=True),
        vision_config=dict(
            depth=shape.vision_depth, hidden_size=shape.vision_hidden_size,
            intermediate_size=2 * shape.vision_hidden_size, num_heads=shape.vision_heads,
            out_hidden_size=shape.hidden_size, fullatt_block_indexes=list(range(shape.vision_depth)),
            tokens_per_second=2),  # Qwen2.5-VL-7B's config: "tokens_per_second": 2
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True)
    model = Qwen2_5_VLForConditionalGeneration(config)
    if shape.vision_init_std > 0:
        with torch.no_grad():
            for module in model.model.visual.modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv3d)):
                    module.weight.normal_(0.0, shape.vision_init_std)
    # generate's pad and eos: transformers copies them from text_config into generation_config
    save_checkpoint(model, processor, out_dir)
    return model, processor


def save_checkpoint(model, processor, out_dir: str | Path, adapter: dict | None = None) -> None:
    """save_pretrained into a temp dir, then rename: a crash never leaves a half checkpoint.
    `adapter`: the trained adapter's weights, named as peft saves them, when the model's own are
    sharded (FSDP: gathered by `engine.Engine.adapter_state`); written in peft's layout."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    if adapter is None:
        stacked = len(getattr(model, "peft_config", {})) > 1  # only the trained adapter, not those below
        model.save_pretrained(tmp, **({"selected_adapters": [TRAINED]} if stacked else {}))
    else:
        from safetensors.torch import save_file

        config = copy.deepcopy(model.peft_config[TRAINED])
        config.inference_mode = True  # as peft's save_pretrained writes it
        config.save_pretrained(tmp)
        save_file({k: v.contiguous() for k, v in adapter.items()}, tmp / "adapter_model.safetensors",
                  metadata={"format": "pt"})
    if processor is not None:
        processor.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


POINTER = "pointer.json"
"""In `models/base` when the base is a real checkpoint kept elsewhere: {"path": ...}."""


def check_model_dir(model_dir: str | Path) -> Path:
    """The checkpoint directory, following a base-stage pointer; a clear error if absent."""
    path = Path(model_dir)
    if (path / POINTER).is_file():
        path = Path(json.loads((path / POINTER).read_text())["path"])
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no model checkpoint at '{path}' (config.json missing). Nothing is downloaded at run "
            "time: for the embedded study run the 'base' stage (`dvc repro base`); for a real "
            "model download it once, e.g. `hf download Qwen/Qwen2.5-VL-7B-Instruct --local-dir "
            f"{path}`, and set params.yaml `base.pretrained_dir` to that directory.")
    return path


def load_processor(model_dir: str | Path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(check_model_dir(model_dir), padding_side="left")
    # The frames come sampled and sized by vrlib.video and the `max_pixels` budget (as
    # qwen-vl-utils does for Video-R1): transformers' own per-frame cap stays off, said
    # explicitly (its default until v5.22, with a warning on every run while unset).
    processor.video_processor.cap_pixels_per_frame = False
    return processor


def best_attention() -> str:
    """"flash_attention_2" where the flash-attn package and a GPU are there, else PyTorch's "sdpa"."""
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available():
        return "flash_attention_2"
    return "sdpa"


def load_model(model_dir: str | Path, *, load_in_4bit: bool = False,
               dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               attn_implementation: str | None = None, quant_storage: torch.dtype | None = None):
    """AutoModelForImageTextToText from a local directory; nf4 + double quant when asked (QLoRA).

    On a GPU pass dtype=torch.bfloat16 (the 4-bit compute dtype too) and, under `accelerate
    launch`, `device=accelerator.device`: each process loads the whole model onto its own GPU.
    `quant_storage` is the dtype the packed 4-bit weights are stored in; FSDP and ZeRO-3 shard
    them with the other weights only when it equals `dtype` (bitsandbytes docs, "FSDP-QLoRA").
    """
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig
    from transformers.integrations import is_deepspeed_zero3_enabled

    quant = None
    if load_in_4bit:
        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=quant_storage,  # None: uint8
            # transformers 5 matches these from the start of a module's name (or as a suffix):
            # "visual" alone would quantize the vision tower
            llm_int8_skip_modules=["model.visual", "lm_head"])
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    # ZeRO-3 refuses a device_map; bitsandbytes then quantizes onto the current (local) GPU
    on_device = load_in_4bit and not is_deepspeed_zero3_enabled()
    model = AutoModelForImageTextToText.from_pretrained(
        check_model_dir(model_dir), dtype=dtype, quantization_config=quant,
        device_map={"": device} if on_device else None, **extra)
    if not load_in_4bit:
        model.to(device)
    else:
        import bitsandbytes as bnb

        # bitsandbytes 0.50 repacks a 4-bit weight for its AVX512-BF16 CPU kernel at the first
        # no-grad forward in eval mode; the repacked layer then fails in a training forward
        # ("a view of a leaf Variable ... in-place") and for widths not a multiple of 64. A
        # policy does both (rollouts, then the update): keep the format that trains.
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                module.support_avx512bf16_for_cpu = False
    return model


def load_kwargs(cfg, device: str | torch.device | None = None) -> dict:
    """`load_model`'s keyword arguments from params.yaml's `base` section (dtype,
    attn_implementation, quant_storage); `device` defaults to the GPU where there is one."""
    attn = best_attention() if cfg.attn_implementation == "auto" else cfg.attn_implementation or None
    return dict(dtype=getattr(torch, cfg.dtype), attn_implementation=attn,
                quant_storage=getattr(torch, cfg.quant_storage) if cfg.quant_storage else None,
                device=device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")


LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
"""LoRA on the language model's linears; the vision tower stays frozen (EasyR1 does the same)."""


def unwrapped(model):
    """The transformers model under peft's wrappers (the model itself when it has none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def freeze_vision(model) -> None:
    """Stop training Qwen2.5-VL's vision tower (`model.model.visual`), e.g. to keep what
    perception pretraining taught while the language model learns new text."""
    for p in model.model.visual.parameters():
        p.requires_grad_(False)


def add_lora(model, *, r: int, alpha: int, dropout: float, seed: int,
             gradient_checkpointing: bool = False, token_ids: list[int] = ()):
    """Wrap `model` with a fresh LoRA adapter (B = 0, so the policy starts equal to the base).

    With `gradient_checkpointing` each layer's activations are recomputed in the backward pass
    (non-reentrant checkpoints, which need no inputs that require grads).
    A 4-bit model on an fp32 (or fp16) base goes through peft's `prepare_model_for_kbit_training`,
    as QLoRA does. A bf16 base stays bf16: that function would upcast the vision tower, the
    embeddings, norms and lm_head to fp32 (for fp16's range, which bf16 already has), turning
    the residual stream, attention and the KV cache fp32; FSDP and ZeRO-3 also need one dtype.
    The adapter itself is fp32 either way (peft's default; bf16 would round lr-1e-6 steps away).
    `token_ids`: embedding rows trained beside the LoRA (peft's trainable tokens; the tied
    output rows follow them), saved in the adapter and merged with it (`format_token_ids`).
    """
    import types

    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    stacked = isinstance(model, PeftModel)  # a 4-bit base with earlier adapters (load_policy)
    base = model.get_base_model() if stacked else model
    checkpointing = {"use_reentrant": False}
    if getattr(base, "is_loaded_in_4bit", False) and base.dtype != torch.bfloat16:
        base = prepare_model_for_kbit_training(
            base, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs=checkpointing)
    elif gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=LORA_TARGETS, task_type="CAUSAL_LM",
                        trainable_token_indices=sorted(token_ids) or None)
    if stacked:  # the new adapter is "default" and the only one that trains
        model.add_adapter(TRAINED, config)
        _activate(model, [*_below(model), TRAINED])
    else:
        model = get_peft_model(base, config)
    # The vision tower is frozen and has no LoRA: run it without autograd. Checkpointing makes
    # every input embedding's output require grads, the vision patches' too, which would take the
    # backward pass through all the vision blocks for nothing (the LoRA gradients are the same
    # bit for bit without it).
    visual = model.get_base_model().model.visual
    visual.forward = types.MethodType(torch.no_grad()(once_per_input(type(visual).forward)), visual)
    return model


def once_per_input(forward):
    """The vision tower's `forward`, run once per distinct image or video of a batch: a GRPO
    group is G copies of one video, and its rollouts 1.5 G, which the tower would encode G times
    over (a fifth of an RL step on 2 cores). Copies are found by value (the same grid, equal
    patches); each gets the merged tokens (`pooler_output`, all the model reads) of its first."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    def run(self, hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs):
        sizes = grid_thw.prod(-1).tolist()
        chunks = hidden_states.split(sizes)                                   # per input: (patches, D)
        firsts, of = {}, []  # (grid, sum) -> indices of distinct inputs with it; each input's first copy
        for i, chunk in enumerate(chunks):
            same = firsts.setdefault((tuple(grid_thw[i].tolist()), float(chunk.sum())), [])
            j = next((j for j in same if torch.equal(chunks[j], chunk)), None)
            if j is None:
                same.append(i)
            of.append(i if j is None else j)
        distinct = sorted(set(of))
        if len(distinct) == len(chunks):
            return forward(self, hidden_states, grid_thw, **kwargs)
        out = forward(self, torch.cat([chunks[j] for j in distinct]), grid_thw[distinct], **kwargs)
        merged = dict(zip(distinct, out.pooler_output.split([sizes[j] // self.spatial_merge_size ** 2
                                                             for j in distinct])))
        return BaseModelOutputWithPooling(pooler_output=torch.cat([merged[j] for j in of]))
    return run


def format_token_ids(tokenizer, targets: list[str]) -> list[int]:
    """The tokens of `targets` that carry a tag character ('<' or '>'): `<think`, `><`, `</`,
    and the merges of a tag with the answer (`>B`, `>I`). The tiny base never produced them (its
    pretraining targets are plain text, `prompts.plain_target`), so their tied embedding rows are
    untrained and no LoRA on the projections can raise their logits: the SFT model gave the
    gold `>C` of a choice item 0.003 and every tag token about 0.08 (sft.format_tokens)."""
    special = set(tokenizer.all_special_ids)
    ids = {i for t in targets for i in tokenizer(t)["input_ids"]} - special
    return sorted(i for i in ids if re.search(r"[<>]", tokenizer.decode([i])))


TRAINED = "default"
"""peft's name of the adapter being trained; earlier adapters kept beside a 4-bit base are
`below0`, `below1`, ..."""


def _below(model) -> list[str]:
    return [name for name in model.peft_config if name != TRAINED]


def _activate(model, names: list[str]) -> None:
    """Make `names` the active adapters (their effects add up); only TRAINED's weights train."""
    model.base_model.set_adapter(names)  # (it marks every active adapter trainable)
    for name, p in model.named_parameters():
        p.requires_grad_(f".{TRAINED}." in name and "lora_" in name)


@contextlib.contextmanager
def reference(policy):
    """The policy RFT started from, without a second copy in memory: the trained adapter off
    and, on a 4-bit base, the earlier adapters still on."""
    below = _below(policy)
    if not below:
        with policy.disable_adapter():
            yield
        return
    _activate(policy, below)
    try:
        yield
    finally:
        _activate(policy, [*below, TRAINED])


def load_policy(model_dir, adapters: list[str | Path] = (), **load_args):
    """Base model with trained adapters applied in order (base -> +SFT -> +RFT).

    Merged into the weights, so a new LoRA starts on top and "adapter disabled" means "the
    previous stage's model", the reference policy GRPO wants (Video-R1: the SFT model).

    On a 4-bit base (`load_in_4bit=True`) they are kept beside the weights instead, frozen and
    active (`below0`, ...; `reference` switches the trained one off): merging is lossy there
    (peft 0.21 dequantises each layer, adds B @ A and quantises to nf4 again, so an update
    smaller than an nf4 step is rounded away; on the tiny model an adapter trained at lr 1e-4
    keeps ~5% of its effect on the logits once merged, tests/test_model.py).
    """
    from peft import PeftModel

    model = load_model(model_dir, **load_args)
    for adapter_dir in adapters:
        if not (Path(adapter_dir) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"no LoRA adapter at '{adapter_dir}' (adapter_config.json "
                                    "missing): run the stage that writes it first")
    if not getattr(model, "is_loaded_in_4bit", False) or not adapters:
        for adapter_dir in adapters:
            model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        return model
    names = [f"below{i}" for i in range(len(adapters))]
    model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
    for name, adapter_dir in zip(names[1:], adapters[1:]):
        model.load_adapter(adapter_dir, adapter_name=name)
    model.base_model.set_adapter(names)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


STACK = "stack.json"
"""In an RFT adapter directory: {"below": [adapter dirs merged under it, in order]}."""


def adapter_stack(adapter_dir: str | Path) -> list[Path]:
    """The adapters to merge, in order, to get the policy an adapter was trained on top of, then
    the adapter itself (e.g. [models/sft, models/rft], or [models/rft] for RFT from the base)."""
    path = Path(adapter_dir) / STACK
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' missing: '{adapter_dir}' was not written by the rft stage; "
                                "rerun it (`dvc repro rft`)")
    return [Path(p) for p in json.loads(path.read_text())["below"]] + [Path(adapter_dir)]
