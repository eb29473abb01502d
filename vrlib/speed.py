"""Speed: throughput of the data path and of a GRPO step, and the cost of a strict CPU mode
(scripts, not timed tests), each printing a markdown table with the machine:

    python -m vrlib.speed data [--n 20] [--repeat 3]
    python -m vrlib.speed grpo --shape {tiny,qwen2.5-vl-3b,qwen2.5-vl-7b} [--steps 3] [--prompts 1]
        [--completion 768] [--frames 16] [--max-pixels 100352] [--static-cache] [--compile [MODE]]
        [--json PATH]
    python -m vrlib.speed strict [--steps 30] [--threads N] [--tiny] [--json PATH]

`data` measures how fast the world generates items (frames rendered and MP4 written, per
family) and how fast our loader decodes the frames the model sees, against raw decord on the
same files and the same frame indices.

`grpo` times T-GRPO steps of the study's own step function (`vrlib.rft.grpo_step`) on a
random-weight model of Qwen2.5-VL-7B's or -3B's exact shape, loaded the way the study loads
a real one (4-bit QLoRA, gradient checkpointing), on synthetic videos; completions are held at
exactly `--completion` tokens so runs compare. It sets the rollout speed against the
memory-bandwidth bound of a 4-bit decode step. Each step's time goes to stderr as it ends, so a
run cut short still says how far it got; `--json` also writes the table's rows to a file.

`strict` asks what bit-for-bit results across x86 CPUs would cost. It runs the same short
pretraining (`pretrain.run`, the committed model on a 64-video world) once per setting of
`STRICT_SETTINGS`, each in a fresh process with the same thread count: the default (torch picks
the best its CPU has, AVX512 on the machine measured), an AVX2 CPU stood in for by capping
torch, oneDNN, MKL and numpy, the strict mode (`STRICT`), and the strict mode on that stand-in
AVX2 CPU. It prints seconds per step, the weights' sha256 and whether they are equal across
settings, and a verdict line: what strict mode costs and whether it gives the same weights from
both instruction sets.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from vrlib import data, tasks, video


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def time_world(root: Path, n: int, spec: tasks.WorldSpec) -> tuple[dict[str, float], list[Path]]:
    """Items per second for each family, through the data stage's own `build_split` (render +
    write), and the videos written."""
    rates, paths = {}, []
    for name in tasks.FAMILIES:
        t0 = time.perf_counter()
        samples = data.build_split(root, name, 0, n, families={name: 1}, spec=spec)
        rates[name] = n / (time.perf_counter() - t0)
        paths += [root / s.path for s in samples if s.data_type == "video"]
    return rates, paths


def time_decode(paths: list[Path], *, fps: float, min_frames: int, max_frames: int, repeat: int
                ) -> tuple[float, float]:
    """Frames per second: `video.sample_frames` vs raw decord (`VideoReader` + `get_batch` of the
    same indices); best of `repeat` passes, so the page cache is warm for both."""
    decord = video.import_decord()  # here, not at the top: the GPU benchmark machine has no decord
    indices = [video.sample_frames(p, fps=fps, min_frames=min_frames,
                                   max_frames=max_frames).indices.tolist() for p in paths]
    n_frames = sum(len(ix) for ix in indices)
    ours, raw = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in paths:
            video.sample_frames(p, fps=fps, min_frames=min_frames, max_frames=max_frames)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for p, ix in zip(paths, indices):
            decord.VideoReader(str(p), ctx=decord.cpu(0)).get_batch(ix).asnumpy()
        raw.append(time.perf_counter() - t0)
    return n_frames / min(ours), n_frames / min(raw)


def bench_data(n: int, repeat: int) -> str:
    spec = tasks.WorldSpec()
    with tempfile.TemporaryDirectory() as tmp:
        rates, paths = time_world(Path(tmp), n, spec)
        ours, raw = time_decode(paths, fps=2.0, min_frames=4, max_frames=16, repeat=repeat)
    lines = [f"machine: {machine()}; {n} items per family, {spec.duration} s at {spec.fps} fps, "
             f"{spec.size}x{spec.size}; decoding 2 fps, 4..16 frames, best of {repeat}", "",
             "| measure | value |", "|---|---|"]
    lines += [f"| generate `{name}` (items/s) | {r:.1f} |" for name, r in rates.items()]
    lines += [f"| generate, all families (items/s) | {len(rates) / sum(1 / r for r in rates.values()):.1f} |",
              f"| decode, `video.sample_frames` (frames/s) | {ours:.0f} |",
              f"| decode, raw decord `get_batch` (frames/s) | {raw:.0f} |",
              f"| our decode time / raw decord time (bar: <= 1.5) | {raw / ours:.2f} |"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- grpo
# config.json of Qwen/Qwen2.5-VL-7B-Instruct and Qwen/Qwen2.5-VL-3B-Instruct; built on the meta
# device they give the published 8,292,166,656 and 3,754,622,976 parameters (tests/test_speed.py)
QWEN_TEXT = {
    "qwen2.5-vl-7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                          num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                          tie_word_embeddings=False),
    "qwen2.5-vl-3b": dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008,
                          num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                          tie_word_embeddings=True),
}
QWEN_TEXT_COMMON = dict(
    hidden_act="silu", max_position_embeddings=128000, rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]})
QWEN_VISION = dict(  # the same vision tower in both; out_hidden_size = the text hidden_size
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, hidden_act="silu",
    patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2)
QWEN_TOKEN_IDS = dict(bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
                      image_token_id=151655, video_token_id=151656,
                      vision_start_token_id=151652, vision_end_token_id=151653)
SHAPES = ("tiny", *QWEN_TEXT)
BANDWIDTH_GBS = {"H200": 4800.0, "H100": 3350.0}
"""HBM bandwidth by GPU name, GB/s (NVIDIA datasheets, SXM parts; an H100 PCIe has 2000: pass
--bandwidth-gbs)."""
GRPO_ROWS = (
    "model", "prompt tokens (video tokens)", "rollouts per prompt (ordered + shuffled)",
    "completion tokens per rollout (measured mean)", "rollout tokens/s (measured)",
    "generate calls per step (rows each)", "rollout tokens/s, 4-bit bandwidth bound, these batches",
    "rollout tokens/s, bound with bitsandbytes dequantize + matmul",
    "tokens/s per sequence, bandwidth bound (batch 1)", "measured / 4-bit bound",
    "weights read per decode step (GB)", "KV cache per token per sequence (KB)",
    "step seconds per prompt", "generation share of the step", "update share of the step",
    "peak GPU memory (GiB)", "peak GPU memory reserved (GiB)",
)


def qwen_config(shape: str, tokenizer=None):
    """Qwen2.5-VL-7B's or -3B's config; with `tokenizer`, its special-token ids instead of Qwen's
    (the vocabulary stays the real size: the rows past the tokenizer's are never decoded)."""
    from transformers import Qwen2_5_VLConfig

    ids = dict(QWEN_TOKEN_IDS)
    if tokenizer is not None:
        t = tokenizer.convert_tokens_to_ids
        ids = dict(bos_token_id=t("<|endoftext|>"), eos_token_id=t("<|im_end|>"),
                   pad_token_id=t("<|endoftext|>"), image_token_id=t("<|image_pad|>"),
                   video_token_id=t("<|video_pad|>"), vision_start_token_id=t("<|vision_start|>"),
                   vision_end_token_id=t("<|vision_end|>"))
    text_ids = ("bos_token_id", "eos_token_id", "pad_token_id")
    text = QWEN_TEXT[shape] | QWEN_TEXT_COMMON | {k: ids[k] for k in text_ids}
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=QWEN_VISION | {"out_hidden_size": text["hidden_size"]},
        tie_word_embeddings=text["tie_word_embeddings"],
        **{k: v for k, v in ids.items() if k not in text_ids})


def synthetic_questions(n: int, *, frames: int, seed: int, height: int = 360, width: int = 640):
    """n multiple-choice questions on noise videos of `frames` frames sampled at 2 fps; the
    processor resizes each frame to the pixel budget, as for a real 640x360 video."""
    from vrlib.data import Sample
    from vrlib.rft import Question

    rng = np.random.default_rng(seed)
    questions = []
    for k in range(n):
        sample = Sample(problem_id=f"bench_{k}", problem="Which shape moves first?",
                        data_type="video", problem_type="multiple choice",
                        options=["A. circle", "B. square", "C. triangle", "D. star"],
                        solution="<answer>A</answer>", path="bench.mp4", data_source="bench",
                        duration=frames / 2.0, fps=2.0)
        clip = video.Clip(frames=rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
                          fps=2.0, indices=np.arange(frames), timestamps=np.arange(frames) / 2.0,
                          duration=frames / 2.0, native_fps=2.0, path="bench.mp4")
        questions.append(Question(k, sample, clip))
    return questions


def build_random(out_dir: Path, shape: str, *, max_pixels: int, seed: int, device: str) -> Path:
    """A random-weight checkpoint directory of `shape` (model in bf16 + processor), made on
    `device` and saved; nothing is downloaded."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vrlib.model import TinyShape, build_processor, build_tiny, save_checkpoint, train_tokenizer
    from vrlib.prompts import user_text

    corpus = [user_text(q.sample) for q in synthetic_questions(1, frames=2, seed=0, height=28, width=28)]
    corpus += ["<think>The circle moves first.</think><answer>A</answer>"]
    if shape == "tiny":
        build_tiny(out_dir, corpus * 20, max_pixels=max_pixels, seed=seed, shape=TinyShape())
        return out_dir
    tokenizer = train_tokenizer(corpus * 20, 1024)
    config = qwen_config(shape, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    save_checkpoint(model, build_processor(tokenizer, max_pixels), out_dir)
    return out_dir


def decode_weight_bytes(model) -> tuple[int, int]:
    """(bytes of weights one decode step reads, parameters held in 4 bits): the language model's
    layers (4-bit packed + quantization constants, or as stored), final norm and output head.
    Not the vision tower (it runs in the prefill only) nor the input embedding (a row lookup)."""
    from vrlib.model import unwrapped

    base = unwrapped(model)
    lm = base.model.language_model
    tensors = {id(p): p for m in (lm.layers, lm.norm) for p in m.parameters()}
    tensors[id(base.lm_head.weight)] = base.lm_head.weight  # tied (3B) or not, it is read whole
    total = quantized = 0
    for p in tensors.values():
        total += p.numel() * p.element_size()
        state = getattr(p, "quant_state", None)
        if state is not None:  # nf4: packed weights + absmax per 64 (double quant: 8-bit, + fp32 per 256)
            quantized += state.shape.numel()
            constants = [state.absmax, state.code]
            if state.nested:
                constants += [state.state2.absmax, state.state2.code]
            total += sum(t.numel() * t.element_size() for t in constants)
    return total, quantized


@dataclass
class DecodeBound:
    """Memory-bandwidth bound of decoding: a step reads every weight once for the whole batch,
    plus each sequence's KV cache; compute and the prefill are left out."""

    weight_bytes: int        # per decode step, batch-independent
    kv_bytes_per_token: int  # per sequence per context token: 2 (K, V) x layers x kv heads x head dim x dtype
    bandwidth: float         # bytes/s

    def seconds(self, batch: int, prompt: int, completion: int, extra_weight_bytes: int = 0) -> float:
        context = prompt + completion / 2  # the mean context over the completion
        step = self.weight_bytes + extra_weight_bytes + batch * self.kv_bytes_per_token * context
        return completion * step / self.bandwidth


def machine_gpu() -> str:
    import bitsandbytes
    import transformers

    versions = (f"torch {torch.__version__}, transformers {transformers.__version__}, "
                f"bitsandbytes {bitsandbytes.__version__}")
    if not torch.cuda.is_available():
        return f"{machine()}; no GPU; {versions}"
    p = torch.cuda.get_device_properties(0)
    return (f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
            f"compute capability {p.major}.{p.minor}; {versions}")


def compile_generation(model, mode: str) -> None:
    """torch.compile the forward that `generate` calls; the training forward stays eager.
    (transformers only compiles the decode step itself for quantizers it marks compileable, and
    bitsandbytes 4-bit is not one.)"""
    base = model.get_base_model()
    eager, compiled, generate = base.forward, torch.compile(base.forward, mode=mode), base.generate

    def generate_compiled(*args, **kwargs):
        base.forward = compiled
        try:
            return generate(*args, **kwargs)
        finally:
            base.forward = eager

    base.generate = generate_compiled


def record_generate(model) -> list[tuple[int, int, int]]:
    """Log (rows, prompt length, new tokens) of every `generate` call the rollouts make, so the
    bound is computed for the batches the step really decodes."""
    base = model.get_base_model()
    calls, generate = [], base.generate

    def recorded(*args, **kwargs):
        out = generate(*args, **kwargs)
        prompt = kwargs["input_ids"].shape[1]
        calls.append((out.shape[0], prompt, out.shape[1] - prompt))
        return out

    base.generate = recorded
    return calls


def bench_grpo(args, command: str) -> str:
    from vrlib.config import RFTParams
    from vrlib.model import add_lora, best_attention, load_model, load_processor
    from vrlib.prompts import encode_prompts
    from vrlib.rft import grpo_step

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    t_load = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.cache_dir or tmp) / f"{args.shape}-px{args.max_pixels}"
        if not (model_dir / "config.json").is_file():
            build_random(model_dir, args.shape, max_pixels=args.max_pixels, seed=0, device=device)
        processor = load_processor(model_dir)
        base = load_model(model_dir, load_in_4bit=not args.no_4bit, dtype=dtype, device=device,
                          attn_implementation=best_attention())
    n_params = sum(p.quant_state.shape.numel() if hasattr(p, "quant_state") else p.numel()
                   for p in base.parameters())
    model = add_lora(base, r=16, alpha=32, dropout=0.0, seed=0, gradient_checkpointing=True)
    gen = base.generation_config  # generate reads its defaults here, also through the PEFT wrapper
    gen.min_new_tokens = args.completion  # every rollout exactly `completion` tokens
    gen.disable_compile = True  # no silent auto-compile: --compile says what is compiled
    if args.static_cache:
        gen.cache_implementation = "static"
    if args.compile:
        compile_generation(model, args.compile)
    calls = record_generate(model)
    log(f"model built and loaded in {time.perf_counter() - t_load:.0f} s")

    # Video-R1's RL recipe: G = 8 (+ 4 shuffled for T-GRPO), lr 1e-6, beta 0.04, 768 tokens
    cfg = RFTParams(prompts_per_step=args.prompts, group_size=8, algo="t_grpo", temperature=1.0,
                    max_completion_length=args.completion, lr=1e-6, beta=0.04)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    questions = synthetic_questions(args.prompts, frames=args.frames, seed=0)
    batch = encode_prompts(processor, [questions[0].sample], [questions[0].clip])
    prompt_len = batch["input_ids"].shape[1]
    video_tokens = (batch["input_ids"] == base.config.video_token_id).sum().item()

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    runs = []
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            calls.clear()
            if cuda:  # free the blocks cached by the model's build, so the reserved peak is the steps'
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.perf_counter()
        metrics = grpo_step(model, processor, optimizer, questions, cfg, seed=0, step=step)
        sync()
        seconds = time.perf_counter() - t0
        log(f"step {step}{' (warm-up)' if step < args.warmup else ''}: {seconds:.1f} s, "
            f"generate {metrics['time/generate_s']:.1f} s, update {metrics['time/update_s']:.1f} s"
            + (f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""))
        if step >= args.warmup:
            runs.append((seconds, metrics))
    wall = np.mean([w for w, _ in runs])
    t_gen = np.mean([m["time/generate_s"] for _, m in runs])
    t_upd = np.mean([m["time/update_s"] for _, m in runs])
    length = np.mean([m["completion/length_mean"] for _, m in runs])
    tokens = sum(rows * new for rows, _, new in calls) / args.steps  # per step
    measured = tokens / t_gen

    weight_bytes, n_quantized = decode_weight_bytes(model)
    text = base.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    kv = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * dtype.itemsize
    gpu = torch.cuda.get_device_name(0) if cuda else ""
    gbs = args.bandwidth_gbs or next((v for k, v in BANDWIDTH_GBS.items() if k in gpu), None)
    fmt = lambda x, f: "n/a" if x is None else format(x, f)  # noqa: E731
    bound = dequant = per_seq = None
    if gbs:
        b = DecodeBound(weight_bytes, kv, gbs * 1e9)
        total = sum(rows * new for rows, _, new in calls)
        bound = total / sum(b.seconds(rows, prompt, new) for rows, prompt, new in calls)
        # bitsandbytes multiplies more than one row by a dequantized copy: + write and read it
        extra = 2 * dtype.itemsize * n_quantized
        dequant = total / sum(b.seconds(rows, prompt, new, extra if rows > 1 else 0)
                              for rows, prompt, new in calls)
        per_seq = args.completion / b.seconds(1, prompt_len, args.completion)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else None
    kinds = ", ".join(sorted({str(rows) for rows, _, _ in calls}, key=int))
    values = {
        "model": f"{args.shape}, {n_params / 1e9:.3g} B params, {str(dtype)[6:] if args.no_4bit else 'nf4'}"
                 f" + LoRA r16, {base.config._attn_implementation}",
        "prompt tokens (video tokens)": f"{prompt_len} ({video_tokens})",
        "rollouts per prompt (ordered + shuffled)": f"{cfg.group_size} + {max(1, cfg.group_size // 2)}",
        "completion tokens per rollout (measured mean)": f"{args.completion} ({length:.0f})",
        "rollout tokens/s (measured)": f"{measured:.1f}",
        "generate calls per step (rows each)": f"{len(calls) / args.steps:g} ({kinds})",
        "rollout tokens/s, 4-bit bandwidth bound, these batches": fmt(bound, ".1f"),
        "rollout tokens/s, bound with bitsandbytes dequantize + matmul": fmt(dequant, ".1f"),
        "tokens/s per sequence, bandwidth bound (batch 1)": fmt(per_seq, ".1f"),
        "measured / 4-bit bound": "n/a" if bound is None else f"{measured / bound:.3g}",
        "weights read per decode step (GB)": f"{weight_bytes / 1e9:.3f}",
        "KV cache per token per sequence (KB)": f"{kv / 1e3:.1f}",
        "step seconds per prompt": f"{wall / args.prompts:.2f}",
        "generation share of the step": f"{t_gen / wall:.2f}",
        "update share of the step": f"{t_upd / wall:.2f}",
        "peak GPU memory (GiB)": fmt(peak, ".1f"),
        "peak GPU memory reserved (GiB)": fmt(reserved, ".1f"),
    }
    assert tuple(values) == GRPO_ROWS
    settings = (f"{args.steps} timed step(s) after {args.warmup} warm-up, {args.frames} frames at 2 fps, "
                f"<= {args.max_pixels} px per frame, bandwidth {fmt(gbs, '.0f')} GB/s")
    host = machine_gpu()
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": host, "command": command, "settings": settings, "rows": values}, indent=1))
    lines = [f"machine: {host}", "", f"command: `{command}`; {settings}", "",
             "| measure | value |", "|---|---|"]
    lines += [f"| {row} | {v} |" for row, v in values.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- strict
STRICT = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}
"""A strict, portable CPU mode: torch's kernels without vectors (`default`), MKL's conditional
numerical reproducibility branch that any x86 CPU runs (`COMPATIBLE`), oneDNN held to SSE4.1
(the patch embedding's Conv3d)."""
AVX2_CPU = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "NPY_DISABLE_CPU_FEATURES": "X86_V4,AVX512_ICL,AVX512_SPR"}
"""What an AVX2-only CPU holds back by itself, besides the knobs each setting names: MKL's and
numpy's own dispatch (numpy 2.x's dispatch groups above AVX2)."""
STRICT_SETTINGS = {
    "default": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", **AVX2_CPU},
    "strict": STRICT,
    "strict, avx2 machine": {**STRICT, **AVX2_CPU},
}
"""Each setting's environment, read by torch, MKL, oneDNN and numpy at process start (so each
runs in a process of its own). "avx2" stands in for an AVX2-only CPU in the default mode. In
strict mode torch, MKL's results and oneDNN are already held below AVX2, so an AVX2 machine in
strict mode differs from this one only in what strict mode leaves free: MKL's and numpy's
dispatch ceiling (AVX2_CPU). FFmpeg's (PyAV's and decord's) SIMD has no such switch: a real
AVX2 CPU is the only test of the data path."""
STRICT_DATA = dict(n_videos=64, n_tasks=22, n_probe=2, n_probe_val=2, n_corpus=2, vision_steps=0)
"""The committed recipe's model on a small world: the recipe's kernels, a short setup; the first
phase's steps (most of a run's time), phase 0 skipped."""
STRICT_TINY = dict(hidden_size=32, num_hidden_layers=1, intermediate_size=64, vision_hidden_size=32,
                   vision_depth=1, n_videos=4, n_tasks=11, batch_size=3, tasks_per_batch=1)
"""`--tiny`: the tests' size, seconds on a CPU."""
STRICT_ROWS = ("setting", "capability", "threads", "s_per_step", "first_step_s", "loss", "weights_sha256",
               "inputs_sha256", "env")


def strict_child(setting: str, *, steps: int, threads: int, tiny: bool, params: str = "params.yaml") -> dict:
    """`steps` steps of the tiny base's pretraining (`pretrain.run`), in this process's environment.

    Timed by the clock at each step's end, through `pretrain.train_phase` wrapped here (`run`
    itself unchanged): the world's rendering and decoding and the model's build are not counted,
    and s/step is the mean of steps 2..K (the first, with its one-off warm-up, is `first_step_s`;
    a 3600-step run pays it once). Step 2 includes the one weight hash `run` takes there. The
    inputs hash is of step 0's batch, drawn once more before the loop (it shares no RNG with
    training: tests/test_speed.py checks the weights against `run` unwrapped)."""
    from unittest import mock

    from vrlib import config, pretrain

    loaded = config.load(params)
    cfg = replace(loaded.pretrain, **STRICT_DATA | (STRICT_TINY if tiny else {}))
    torch.set_num_threads(threads)
    ends, inputs = [], []  # ends: the clock before step 1, then after each step
    train_phase = pretrain.train_phase

    def timed(model, batch_of, *, on_step, **kw):
        def stamped(step: int, row: dict) -> None:
            on_step(step, row)
            ends.append(time.perf_counter())

        inputs.append(pretrain.tensors_hash(batch_of(0)))
        ends.append(time.perf_counter())
        return train_phase(model, batch_of, on_step=stamped, **kw)

    with mock.patch.object(pretrain, "train_phase", timed), contextlib.redirect_stdout(sys.stderr):
        out = pretrain.run(cfg, loaded.data, state_dir=None, live_dir=None, stop_after=steps)
    steady = (ends[-1] - ends[1]) / (len(ends) - 2) if len(ends) > 2 else ends[-1] - ends[0]
    row = {"setting": setting, "capability": torch.backends.cpu.get_cpu_capability(),
           "threads": torch.get_num_threads(), "s_per_step": steady, "first_step_s": ends[1] - ends[0],
           "loss": out["log"][-1]["train/loss"], "weights_sha256": pretrain.state_hash(out["model"]),
           "inputs_sha256": inputs[0], "env": STRICT_SETTINGS[setting]}
    assert tuple(row) == STRICT_ROWS
    return row


def strict_env(setting: str) -> dict[str, str]:
    """This process's environment with the setting's variables, and none of the other settings'
    inherited (a shell's MKL_CBWR would otherwise change the "default" run)."""
    knobs = {k for env in STRICT_SETTINGS.values() for k in env}
    return {k: v for k, v in os.environ.items() if k not in knobs} | STRICT_SETTINGS[setting]


def run_strict_child(setting: str, *, steps: int, threads: int, tiny: bool, params: str) -> dict:
    """`strict_child` in a fresh process with `strict_env(setting)`; its one JSON line back."""
    cmd = [sys.executable, "-m", "vrlib.speed", "strict", "--child", setting, "--steps", str(steps),
           "--threads", str(threads), "--params", str(Path(params).resolve())] + (["--tiny"] if tiny else [])
    done = subprocess.run(cmd, env=strict_env(setting), cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"strict {setting!r} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def strict_table(rows: list[dict]) -> tuple[list[str], dict]:
    """The markdown table of the settings' rows (`STRICT_SETTINGS` order) and the verdict."""
    by = {r["setting"]: r for r in rows}
    base, strict = by["default"], by["strict"]

    def yes(a: dict, b: dict, key: str = "weights_sha256") -> str:
        return "yes" if a[key] == b[key] else "no"

    lines = ["| setting | capability | s/step | x default | weights equal to default | weights equal to strict "
             "| step-0 inputs equal to default |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['capability']} | {r['s_per_step']:.3f} "
              f"| {r['s_per_step'] / base['s_per_step']:.2f} | {yes(r, base)} | {yes(r, strict)} "
              f"| {yes(r, base, 'inputs_sha256')} |" for r in rows]
    verdict = {"strict_cost": strict["s_per_step"] / base["s_per_step"],
               "strict_same_across_isas": yes(strict, by["strict, avx2 machine"]),
               "default_same_across_isas": yes(base, by["avx2"])}
    return lines, verdict


def bench_strict(args, command: str) -> str:
    rows = []
    for setting in STRICT_SETTINGS:
        rows.append(run_strict_child(setting, steps=args.steps, threads=args.threads, tiny=args.tiny,
                                     params=args.params))
        log(f"{setting}: {rows[-1]['capability']}, {rows[-1]['s_per_step']:.3f} s/step, "
            f"weights {rows[-1]['weights_sha256'][:12]}")
    lines, verdict = strict_table(rows)
    settings = (f"{args.steps} pretraining steps of the {'tiny test' if args.tiny else 'committed'} shape "
                f"({', '.join(f'{k}={v}' for k, v in (STRICT_DATA | (STRICT_TINY if args.tiny else {})).items())}), "
                f"{rows[0]['threads']} threads in every setting; s/step: the mean of steps 2..{args.steps}, "
                "training only (not the world's rendering nor the model's build)")
    host = f"{machine()}; torch {torch.__version__}"
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": host, "command": command, "settings": settings,
                                               "rows": rows, "verdict": verdict}, indent=1))
    said = (f"strict costs {verdict['strict_cost']:.2f}x; same weights across ISAs in strict mode: "
            f"{verdict['strict_same_across_isas']}; default mode across ISAs: {verdict['default_same_across_isas']}")
    return "\n".join([f"machine: {host}", "", f"command: `{command}`; {settings}", "", *lines, "", said])


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vrlib.speed", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    data = sub.add_parser("data", help="world generation and frame decoding speed")
    data.add_argument("--n", type=int, default=20, help="items per family")
    data.add_argument("--repeat", type=int, default=3, help="decoding passes; the best is kept")
    grpo = sub.add_parser("grpo", help="T-GRPO step speed at Qwen2.5-VL shapes (random weights)")
    grpo.add_argument("--shape", choices=SHAPES, default="tiny")
    grpo.add_argument("--steps", type=int, default=3, help="timed steps")
    grpo.add_argument("--warmup", type=int, default=1, help="untimed steps first (CUDA init, compile)")
    grpo.add_argument("--prompts", type=int, default=1, help="questions per step")
    grpo.add_argument("--completion", type=int, default=768, help="tokens per rollout, fixed (Video-R1: 768)")
    grpo.add_argument("--frames", type=int, default=16, help="frames per video (Video-R1: 16)")
    grpo.add_argument("--max-pixels", type=int, default=128 * 28 * 28,
                      help="pixels per frame (Video-R1 training: 128*28*28)")
    grpo.add_argument("--static-cache", action="store_true",
                      help='generation_config.cache_implementation="static"')
    grpo.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                      help="torch.compile the generation forward (mode: default, reduce-overhead, ...)")
    grpo.add_argument("--no-4bit", action="store_true", help="the base in bf16 (fp32 on CPU), not nf4")
    grpo.add_argument("--bandwidth-gbs", type=float, default=None,
                      help="GPU memory bandwidth, GB/s (default by name: H100 3350, H200 4800)")
    grpo.add_argument("--cache-dir", default=None, help="keep the random checkpoint here between runs")
    grpo.add_argument("--json", default=None, metavar="PATH", help="also write the table's rows to this JSON file")
    strict = sub.add_parser("strict", help="cost of a strict, portable CPU mode; same weights across ISAs?")
    strict.add_argument("--steps", type=int, default=30, help="pretraining steps per setting")
    strict.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, in every setting")
    strict.add_argument("--tiny", action="store_true", help="a model of the tests' size (STRICT_TINY)")
    strict.add_argument("--params", default="params.yaml", help="its `pretrain` and `data` sections")
    strict.add_argument("--json", default=None, metavar="PATH", help="also write the rows to this JSON file")
    strict.add_argument("--child", choices=STRICT_SETTINGS, default=None,
                        help="(internal) run one setting in this process; print its row as JSON")
    args = parser.parse_args(argv)
    np.random.seed(0)
    argv = sys.argv[1:] if argv is None else argv
    if args.what == "data":
        print(bench_data(args.n, args.repeat))
    elif args.what == "grpo":
        print(bench_grpo(args, "python -m vrlib.speed " + " ".join(argv)))
    elif args.child:
        from vrlib.stage import quiet

        quiet()
        print(json.dumps(strict_child(args.child, steps=args.steps, threads=args.threads, tiny=args.tiny,
                                      params=args.params)))
    else:
        print(bench_strict(args, "python -m vrlib.speed " + " ".join(argv)))


if __name__ == "__main__":
    main()
