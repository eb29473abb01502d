"""params.yaml as typed dataclasses: one section per stage, a docstring per field.

Notebooks receive each section as a dict (papermill `-f params.yaml`) and parse it here, so
an unknown or misspelt key stops the stage with the list of the known ones.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vrlib.schema import (BONUS_MODES, FAMILIES, IMPORTANCE_SAMPLING, LOSS_TYPES, ON_BAD_MEDIA, RELATIVE_FORMS,
                          SCALES, SFT_LOSSES, SPLITS)


class ParamsError(ValueError):
    """A params.yaml section has a key no stage reads, or a value of the wrong kind."""


DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class DataParams:
    """Stage `data`: the synthetic video world (or imported real data) and how videos are
    sampled for the model."""

    n_sft: int = 330
    """items with a chain of thought for the SFT cold start, drawn from `families`."""
    n_rl: int = 500
    """items (question + solution) for GRPO, drawn from `families`."""
    n_eval: int = 660
    """held-out items for evaluation (never seen in training), drawn from `families`."""
    n_val: int = 220
    """validation items, drawn like `eval` from a stream of their own: every choice of recipe,
    checkpoint or variant is made on them, so `eval` (the test split) only reports."""
    families: dict = field(default_factory=lambda: {f: 1 for f in FAMILIES})
    """task family -> integer weight in the sft, rl and eval splits (vrlib.tasks; 0 leaves it out)."""
    kim: bool = True
    """write a key-information-missing copy of each rl video (VideoPerceiver), named in `kim_path`."""
    track_boxes: int = 4
    """boxes asked per tracking item, first and last frame included (VideoChat-R1: 8)."""
    duration: int = 8
    """length of each synthetic video, seconds."""
    render_fps: int = 4
    """frame rate of the written MP4 files."""
    size: int = 112
    """width and height of the rendered frames, pixels."""
    fps: float = 2.0
    """target sampling rate given to the model (Video-R1: 2 fps)."""
    min_frames: int = 4
    """fewest frames sampled from a video (Video-R1: 4)."""
    max_frames: int = 16
    """most frames sampled from a video (Video-R1: 16)."""
    max_pixels: int = 112 * 112
    """pixel budget per frame handed to the processor (Video-R1: 128*28*28). The world's 112x112
    frames whole: at 56x56 (32 visual tokens per video) the tiny base never learnt to see."""
    imports: dict = field(default_factory=dict)
    """split -> list of {format, path, media_root}: real data replacing that world split, e.g.
    {eval: [{format: charades_sta, path: /data/charades/test.txt, media_root: /data/charades/videos}]}
    (formats: vrlib.importers.FORMATS)."""
    on_bad_media: str = "stop"
    """stop | skip: what an import does with a missing or undecodable media file (skips are
    counted in metrics/data.json)."""
    on_bad_record: str = "stop"
    """stop | skip: what an import does with a record that breaks the schema (a moment with
    start > end, a letter that is not an option); skips are listed as file:where: why in
    metrics/data.json."""

    def __post_init__(self):
        for name in ("on_bad_media", "on_bad_record"):
            if getattr(self, name) not in ON_BAD_MEDIA:
                raise ParamsError(f"params.yaml: data.{name}={getattr(self, name)!r}; known: 'stop', 'skip'")
        unknown = sorted(set(self.imports) - set(SPLITS))
        if unknown:
            raise ParamsError(f"params.yaml: data.imports has unknown split(s) {', '.join(unknown)}; "
                              f"known: {', '.join(SPLITS)}")


@dataclass
class BaseParams:
    """Stage `base`: check the base checkpoint, point the study at it, probe whether it sees."""

    pretrained_dir: str = "models/tiny-base"
    """the base checkpoint directory: the committed tiny Qwen2.5-VL (`make pretrain` writes it,
    with card.json), or a local real checkpoint such as checkpoints/Qwen2.5-VL-7B-Instruct."""
    probe_videos: int = 300
    """held-out videos of the perception probes (metrics/base.json), from the base's own probe
    stream, never in a training or study split; a base without card.json is not probed."""
    probe_batch: int = 32
    """videos per greedy batch in the probes."""
    dtype: str = "float32"
    """float32 | bfloat16 | float16: weights outside the 4-bit layers and the 4-bit compute dtype,
    in every stage that loads the model (bfloat16 on a GPU)."""
    attn_implementation: str = ""
    """empty: transformers' default (sdpa); auto: flash_attention_2 when installed on a GPU, else
    sdpa; or any value transformers accepts."""
    quant_storage: str = ""
    """bnb_4bit_quant_storage of the 4-bit weights (empty: uint8). FSDP and DeepSpeed ZeRO-3 shard
    4-bit weights only when it equals `dtype` (bitsandbytes' FSDP-QLoRA guide)."""

    def __post_init__(self):
        for name, known in {"dtype": DTYPES, "quant_storage": ("",) + DTYPES}.items():
            if getattr(self, name) not in known:
                raise ParamsError(f"params.yaml: base.{name}={getattr(self, name)!r}; known: {', '.join(map(repr, known))}")


@dataclass
class SFTParams:
    """Stage `sft`: LoRA cold start on chain-of-thought targets, loss on assistant tokens only."""

    seed: int = 0
    """the SFT run's seed (batch order, LoRA init), apart from the study's `seed` (data, base):
    `-S sft.seed=1` retrains SFT on the same data; `make claims` runs 0, 1, 2 (with `rft.seed`).
    0, the study's `seed`, is the SFT run every earlier version of the study made."""
    splits: list = field(default_factory=lambda: ["sft"])
    """the data splits SFT trains on (`process` + `solution` of each record): sft, or also rl, the
    SFT arm of an equal-data comparison with GRPO (`make claims`, VideoChat-R1); never val or eval."""
    families: list = field(default_factory=list)
    """task families SFT trains on (`data.family`); empty: every family of `splits`. [grounding]:
    VideoChat-R1's grounding-only SFT (`make claims`)."""
    steps: int = 480
    """optimizer steps of the LoRA cold start (real models: 1000, about one pass over a small set).
    For the tiny base 240 at 6e-3 was chosen on `val` first (metrics/choices/sft-steps-lr.json:
    25.5 over tasks, against 2.5 for 120 at 3e-3), then 480 against 240 with 3 SFT seeds on `val`
    (metrics/choices/sft-steps-seeds.json: +6.3 [+2.0, +11.0], the well-formed answers 94-97%
    against 61-87%)."""
    batch_size: int = 16
    """examples per micro-batch."""
    grad_accum: int = 1
    """micro-batches per optimizer step (Video-R1's SFT: batch 1, accumulation 2)."""
    length_groups: int = 4
    """each micro-batch runs as this many parts of items of similar length, each padded to its
    own longest (`sft.train_supervised`): the same loss and gradient as one part, up to float
    rounding. The tiny study's items run from 108 to 394 tokens; one part of 16 was a third
    padding, and 4 parts made a step 1.4x faster on 2 cores (docs/results.md). 1: one part."""
    lr: float = 6e-3
    """AdamW learning rate of the LoRA weights (Video-R1's full fine-tune: 1e-6)."""
    grad_clip: float = 1.0
    """gradient norm clip (Video-R1: 5)."""
    loss: str = "sequence"
    """token | sequence: the mean over every target token of a batch (transformers', TRL's SFT),
    or over each example's tokens first, so a long answer (tracking: 113 tokens, a quarter of
    the tiny study's target tokens) weighs as much as a short one (count: 24; `sft.supervised_loss`).
    sequence chosen on `val` (metrics/choices/sft-loss.json): 29.7 over tasks against 28.2,
    +1.5 [-3.2, +6.3], format 87% against 81%, count 50 against 25."""
    lora_r: int = 16
    """LoRA rank on the language model's projections (the vision tower stays frozen)."""
    lora_alpha: int = 32
    """LoRA scale numerator: the update is scaled by lora_alpha / lora_r."""
    lora_dropout: float = 0.0
    """dropout on the LoRA input; 0 keeps a step deterministic."""
    load_in_4bit: bool = False
    """QLoRA: nf4 + double quantisation of the base weights (bitsandbytes)."""
    gradient_checkpointing: bool = False
    """recompute activations in the backward pass: less memory, ~30% more time (real models)."""
    format_tokens: bool = True
    """also train the embedding rows of the targets' tag tokens (`<think`, `><`, `>B`, ...;
    `model.format_token_ids`): the tiny base never produced them, and LoRA alone left the SFT
    model giving the gold `>C` of a choice item p = 0.003. False for a real checkpoint, whose
    base has trained every row."""

    def __post_init__(self):
        wrong = [s for s in self.splits if s not in ("sft", "rl")]
        if wrong or not self.splits:
            raise ParamsError(f"params.yaml: sft.splits={self.splits!r}; each of 'sft', 'rl' (val and eval "
                              "are never trained on)")
        if self.loss not in SFT_LOSSES:
            raise ParamsError(f"params.yaml: sft.loss={self.loss!r}; known: {', '.join(SFT_LOSSES)}")
        small = [f"sft.{k}={getattr(self, k)}" for k in ("steps", "batch_size", "grad_accum", "length_groups")
                 if getattr(self, k) < 1]
        if small:
            raise ParamsError(f"params.yaml: {', '.join(small)}; each must be at least 1")


@dataclass
class RFTParams:
    """Stage `rft`: GRPO on the RL split, starting from the SFT model (its adapter merged)."""

    seed: int = 0
    """the RL run's seed (question order, rollout sampling, LoRA init), apart from the study's
    `seed` (data, base) and `sft.seed`: `-S rft.seed=1` reruns RL alone; `make ablations` runs 0, 1, 2."""
    families: list = field(default_factory=list)
    """task families of the RL split trained on (`data.family`); empty: all. [grounding]:
    VideoChat-R1's grounding-only GRPO (`make claims`)."""
    steps: int = 40
    """policy-update steps; raising it extends a run from its last checkpoint (Video-R1: ~1k)."""
    prompts_per_step: int = 4
    """questions per step; each gets `group_size` rollouts."""
    group_size: int = 8
    """G, rollouts per question (Video-R1: 8)."""
    temperature: float = 0.7
    """sampling temperature of the rollouts; log-probs use the same (as TRL). Chosen on `val` among
    0.2, 0.7 and 1.0 (Video-R1's) on the SFT model with its tag tokens trained (sft.format_tokens):
    35.5 over tasks against 31.0 and 31.9, 92% of the groups with a signal against 55% at 0.2
    (metrics/choices/rft.json). Before those rows trained, every sample at 1.0 was malformed."""
    top_p: float = 1.0
    """nucleus sampling of the rollouts (Video-R1: 0.95 at temperature 1)."""
    max_completion_length: int = 128
    """most new tokens per rollout (Video-R1: 768 on real models); the world's longest target, a
    tracking chain of thought and four boxes, is 113 tokens with EOS (96 cut every one of them)."""
    lr: float = 1e-4
    """AdamW learning rate of the RFT adapter; 5e-4 made greedy evaluation worse within 25 steps."""
    grad_clip: float = 1.0
    """gradient norm clip (Video-R1: 5)."""
    beta: float = 0.04
    """k3 KL coefficient to the reference policy (Video-R1: 0.04); 0 skips the reference forward."""
    epsilon_low: float = 0.2
    """the ratio is clipped below at 1 - epsilon_low (PPO)."""
    epsilon_high: float = 0.2
    """the ratio is clipped above at 1 + epsilon_high (DAPO's clip-higher: 0.28)."""
    loss_type: str = "grpo"
    """grpo | bnpo | dapo | dr_grpo (aggregation as TRL documents it)."""
    scale_rewards: str = "group"
    """group | batch | none: what the advantage is divided by."""
    num_iterations: int = 1
    """policy updates per batch of rollouts (mu in the GRPO paper); the rollout policy's
    log-probs are kept, so clipping acts from the second update on."""
    init: str = "sft"
    """sft | base: the policy RFT starts from (base = the "no SFT cold start" ablation)."""
    algo: str = "t_grpo"
    """grpo | t_grpo (Video-R1's T-GRPO: group_size // 2 extra rollouts per video on shuffled
    frames, a bonus for correct answers when the ordered video helps)."""
    temporal_alpha: float = 0.3
    """T-GRPO's bonus for a correct answer when the ordered video helps (Video-R1 sec. 3.2: 0.3)."""
    temporal_mu: float = 1.0
    """bonus when p >= mu * p~ (paper: 1.0; Video-R1's code: 0.8)."""
    temporal_threshold: float = 0.1
    """an answer is "correct" when its accuracy reward exceeds this (Video-R1)."""
    relative: bool = False
    """relative reward (VideoPerceiver, our hypothesis): group_size // 2 extra rollouts per
    video on its key-information-missing copy (`kim_path`)."""
    relative_alpha: float = 0.3
    """size of the relative bonus, as `temporal_alpha`."""
    relative_form: str = "indicator"
    """indicator | margin (grpo.relative_bonus)."""
    bonus_mode: str = "advantage"
    """reward | advantage: where the temporal and relative bonuses are added (grpo.bonus_advantages).
    Video-R1 adds them to the reward, where group normalisation erases a bonus on a binary
    accuracy (Video-R1 issue #51); on the advantage it survives."""
    length_bonus: bool = False
    """Video-R1's length control: +length_omega to correct answers of length_min..length_max tokens."""
    length_omega: float = 0.2
    """the length bonus (Video-R1: 0.2)."""
    length_min: int = 320
    """shortest completion, in tokens, that earns the length bonus (Video-R1: 320)."""
    length_max: int = 512
    """longest completion, in tokens, that earns the length bonus (Video-R1: 512)."""
    importance_sampling: str = "token"
    """token | sequence: one ratio per token (PPO, GRPO) or per completion, the exp of its mean
    token log-ratio (GSPO, Zheng et al. 2025, arXiv 2507.18071; the paper clips it at
    3e-4 / 4e-4: set epsilon_low / epsilon_high so)."""
    cispo_cap: float = 5.0
    """loss_type cispo (MiniMax-M1, arXiv 2506.13585): the cap on the detached importance weight
    (TRL and ms-swift take epsilon_high = 5.0 for it)."""
    dynamic_sampling: bool = False
    """DAPO's dynamic sampling (Yu et al. 2025, arXiv 2503.14476 sec. 3.2): groups whose rewards
    are all equal are left out and more questions are drawn, `prompts_per_step` at a time, until
    `prompts_per_step` groups have signal or `max_draws` questions were tried."""
    max_draws: int = 12
    """most questions drawn per step under dynamic sampling (a multiple of prompts_per_step)."""
    overlong_buffer: int = 0
    """DAPO's soft overlong punishment (grpo.overlong_penalty): the last `overlong_buffer`
    tokens before max_completion_length cost up to -1 reward; 0 turns it off (DAPO: 4096 of 20480)."""
    mask_truncated: bool = False
    """no loss on a completion cut at max_completion_length (TRL's mask_truncated_completions)."""
    lora_r: int = 16
    """LoRA rank of the RFT adapter, stacked on the frozen SFT adapter."""
    lora_alpha: int = 32
    """LoRA scale numerator: the update is scaled by lora_alpha / lora_r."""
    lora_dropout: float = 0.0
    """dropout on the LoRA input; 0 keeps rollouts and the update on the same function."""
    load_in_4bit: bool = False
    """QLoRA: nf4 + double quantisation of the base weights (bitsandbytes)."""
    gradient_checkpointing: bool = False
    """recompute activations in the backward pass: less memory, more time (real models)."""
    checkpoint_every: int = 10
    """steps between checkpoints (adapter + optimizer + step logs); a rerun resumes from the
    last one whose params match."""
    keep_checkpoints: int = 2
    """newest checkpoints kept per run; older ones are deleted."""
    num_processes: int = 1
    """> 1: the notebook runs the loop under `accelerate launch` with this many processes."""
    accelerate_config: str = ""
    """an accelerate config file for the launch (empty: DDP on the local devices)."""

    def __post_init__(self):
        choices = {"algo": ("grpo", "t_grpo"), "init": ("sft", "base"), "loss_type": LOSS_TYPES,
                   "importance_sampling": IMPORTANCE_SAMPLING, "scale_rewards": SCALES,
                   "bonus_mode": BONUS_MODES, "relative_form": RELATIVE_FORMS}
        for name, known in choices.items():
            if getattr(self, name) not in known:
                raise ParamsError(f"params.yaml: rft.{name}={getattr(self, name)!r}; known: {', '.join(known)}")
        if self.num_processes < 1 or self.prompts_per_step % self.num_processes:
            raise ParamsError(f"params.yaml: rft.prompts_per_step={self.prompts_per_step} must be a "
                              f"multiple of rft.num_processes={self.num_processes}")
        if self.dynamic_sampling and (self.max_draws < self.prompts_per_step or self.max_draws % self.prompts_per_step):
            raise ParamsError(f"params.yaml: rft.max_draws={self.max_draws} must be a multiple of "
                              f"rft.prompts_per_step={self.prompts_per_step}")


@dataclass
class EvalParams:
    """Stage `evaluation` (not `eval`: papermill would shadow the builtin)."""

    max_new_tokens: int = 128
    """most new tokens per greedy answer (Video-R1's evaluation: 1024); as rft.max_completion_length."""
    batch_size: int = 32
    """items per greedy `generate` call; a crash resumes after the last finished batch."""
    recalls: list = field(default_factory=lambda: [0.3, 0.5, 0.7])
    """IoU thresholds of the R@k metrics (Charades-STA convention)."""
    fps: float = 0.0
    """frame sampling rate at evaluation; 0: as in training (`data.fps`)."""
    max_frames: int = 0
    """most frames per video at evaluation (Video-R1 reports 16, 32 and 64); 0: `data.max_frames`."""
    max_pixels: int = 0
    """pixel budget per frame at evaluation (Video-R1's eval: 256*28*28); 0: `data.max_pixels`."""
    tcr: bool = True
    """also evaluate the RFT model with Temporal Clue-driven Reasoning (VideoChat-R1), as `rft_tcr`."""
    shuffled: bool = True
    """also the SFT and RFT models on the video items with their frames shuffled
    (`rft.shuffle_clip`, one seeded order per item): how much each family's score depends on
    the frame order, which is what T-GRPO's bonus rewards (`metrics/eval_order.json`)."""
    tcr_low: float = 0.5
    """first pass: fps and pixel budget times this (the paper gives no value)."""
    tcr_high: float = 4.0
    """second pass, on the clue segments: fps and pixel budget times this (no value in the paper)."""
    tcr_pad: float = 0.5
    """seconds added before and after each clue segment (the paper gives no padding)."""


@dataclass
class PretrainParams:
    """`make pretrain`, not a study stage: the embedded tiny Qwen2.5-VL, pretrained once to see the
    world and committed in `out_dir` with its card (vrlib.pretrain). The study starts from it as a
    real study starts from Qwen's weights; a new version is committed only when this recipe changes."""

    seed: int = 0
    """initial weights and the order of the batches."""
    data_seed: int = 0
    """the world's pretraining streams (`pretrain.STREAMS`), disjoint from every study split."""
    out_dir: str = "models/tiny-base"
    """the git-tracked checkpoint directory `base.pretrained_dir` names."""
    n_videos: int = 5000
    """training videos (8 s, 1-3 shapes each), decoded once and cached as arrays."""
    image_frac: float = 0.3
    """share of each batch given as one frame (an image: "the red circle. the blue square."):
    shape is one token in a video's inventory; frames make it dense at an eighth of the cost."""
    n_tasks: int = 440
    """items of the study's task families (40 each), answered as plain text in the second phase."""
    n_corpus: int = 200
    """items per family whose text trains the tokenizer."""
    n_probe: int = 300
    """held-out videos of the final probes (card.json)."""
    n_probe_val: int = 64
    """held-out videos probed every `probe_every` steps (the choices are made on these)."""
    vocab_size: int = 1024
    """BPE vocabulary, trained on the world's text with Qwen's special tokens."""
    hidden_size: int = 192
    """text model width; the vision merger projects to it."""
    num_hidden_layers: int = 4
    """text decoder layers (4 x 192 wide: with the vision tower, 2.4 M parameters)."""
    intermediate_size: int = 512
    """the text MLP's width."""
    vision_hidden_size: int = 96
    """the vision tower's width (patch 14 px, 2x2 merge, 2-frame temporal patches, as Qwen2.5-VL)."""
    vision_depth: int = 3
    """vision blocks, all with full attention."""
    vision_init_std: float = 0.1
    """std of the vision tower's random Linear/Conv weights (HF's 0.02 left it blind)."""
    vision_steps: int = 1200
    """phase 0, before the first: the vision tower alone, with a linear head naming the shape and
    colour under each object's centre token (a real VLM starts from a pretrained encoder); 0 skips
    it; at `lr`, cosine decay to 0. Through captions alone the tower encodes shape slowly
    (docs/results.md)."""
    steps: int = 3600
    """first phase: all weights, videos and frames of the world, cosine decay to 0."""
    batch_size: int = 16
    """examples per step, in both phases (the second's task items included)."""
    lr: float = 1e-3
    """AdamW, linear warmup then cosine decay to 0 (the tiny model stayed at chance without clipping)."""
    vision_lr: float = 1e-4
    """the vision tower's rate in the first phase (patch embedding, blocks, merger). After phase 0, 1e-3
    undid what it taught: a linear probe read shape from its tokens 92% of the time, 50% after 900
    first-phase steps."""
    warmup: int = 100
    """steps of linear warmup before the cosine decay."""
    grad_clip: float = 1.0
    """gradient norm clip."""
    tasks_steps: int = 600
    """second phase: all weights at `tasks_lr`, perception with `tasks_per_batch` task items in each
    batch (a phase of 200 steps at 1e-3, vision frozen, half task items, cost the probes)."""
    tasks_lr: float = 1e-4
    """the second phase's peak rate (warmup over a tenth of it, cosine decay to 0): the first
    phase's val probes rose fastest while its rate fell from 3e-4 to 3e-5."""
    tasks_per_batch: int = 2
    """task items (every family but the inventory, answered as plain text) in each second-phase batch."""
    tasks_probe_every: int = 100
    """steps between the second phase's validation probes."""
    probe_every: int = 400
    """steps between the validation probes (dvclive/pretrain: the probes over steps)."""
    probe_batch: int = 32
    """videos per greedy batch in the probes."""
    checkpoint_every: int = 100
    """resume point (checkpoints/pretrain/): a killed run goes on from here."""


@dataclass
class AnalysisParams:
    """Stage `analysis`: how many best and worst items to show with their frames."""

    n_show: int = 3
    """best and worst items per model shown with their frames."""


@dataclass
class Params:
    """The whole params.yaml."""

    scale: str = "tiny"
    """model and budget preset: tiny, or a key of `presets`; `tiny` runs the study on a laptop CPU as the sections
    are written, any other applies `presets[scale]` over them."""
    presets: dict = field(default_factory=dict)
    """scale -> section -> {key: value} replacing the section's value at that scale."""
    seed: int = 0
    """one seed for the study; each stage derives its own streams from it."""
    data: DataParams = field(default_factory=DataParams)
    """stage `data` (01_data)."""
    base: BaseParams = field(default_factory=BaseParams)
    """stage `base` (02_base_model); its dtype and attention settings hold for every stage."""
    sft: SFTParams = field(default_factory=SFTParams)
    """stage `sft` (03_sft_cold_start)."""
    rft: RFTParams = field(default_factory=RFTParams)
    """stage `rft` (04_rft)."""
    evaluation: EvalParams = field(default_factory=EvalParams)
    """stage `eval` (05_eval)."""
    analysis: AnalysisParams = field(default_factory=AnalysisParams)
    """stage `analysis` (06_error_analysis)."""
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    """`make pretrain` (vrlib.pretrain), outside the study's stages."""


def parse(cls, values: dict | None, where: str = ""):
    """Build dataclass `cls` from a dict; unknown keys and wrong kinds raise ParamsError."""
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    dotted = (lambda k: f"{where}.{k}") if where else (lambda k: k)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParamsError(f"params.yaml: unknown key(s) {', '.join(map(dotted, unknown))}; "
                          f"known keys{' of ' + repr(where) if where else ''}: {', '.join(known)}")
    out = {}
    for name, value in values.items():
        f = known[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            out[name] = parse(type(default), value, dotted(name))
            continue
        kind = type(default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is float and isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value):
            value = float(value)  # YAML 1.1 (PyYAML) reads 1e-4, without a dot, as a string
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ParamsError(f"params.yaml: '{dotted(name)}' must be {kind.__name__}, got {value!r}")
        out[name] = value
    return cls(**out)


SECTIONS = {"data": DataParams, "base": BaseParams, "sft": SFTParams, "rft": RFTParams,
            "evaluation": EvalParams, "analysis": AnalysisParams, "pretrain": PretrainParams}


def preset(scale: str, presets: dict, name: str) -> dict:
    """The keys `scale` sets in section `name` ({} for tiny)."""
    if scale != "tiny" and scale not in presets:
        raise ParamsError(f"params.yaml: scale={scale!r} has no preset; known scales: "
                          f"{', '.join(['tiny', *presets])}")
    return dict((presets.get(scale) or {}).get(name) or {})


def section(name: str, values: dict | None, scale: str = "tiny", presets: dict | None = None):
    """One stage's section as its dataclass, the scale's preset applied over it: what a notebook
    does with the dicts papermill injects (`config.section("rft", rft, scale, presets)`)."""
    return parse(SECTIONS[name], {**(values or {}), **preset(scale, presets or {}, name)}, name)


def load(path: str | Path = "params.yaml") -> Params:
    """Read and check the whole params file, the scale's preset applied."""
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    params = parse(Params, raw, "")
    for scale, sections in params.presets.items():  # a misspelt key fails now, not on a GPU later
        for name, values in (sections or {}).items():
            if name not in SECTIONS:
                raise ParamsError(f"params.yaml: presets.{scale}.{name} is not a section; known: {', '.join(SECTIONS)}")
            parse(SECTIONS[name], values, f"presets.{scale}.{name}")  # over the defaults: keys and kinds
    for name in SECTIONS:
        setattr(params, name, section(name, raw.get(name), params.scale, params.presets))
    return params
