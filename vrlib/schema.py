"""The names every stage shares: the data contract's (docs/design.md, "Data contract"): the
record, its problem and data types, the tags a solution and a completion are written in, the
world's task families and the study's models; and the choices of the RL loss (`vrlib.grpo`),
which `vrlib.config` checks params.yaml against.

It imports nothing from vrlib, so every stage reads the same names without depending on how
answers are scored: the data stage validates records here, not beside the rewards.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields

PROBLEM_TYPES = (
    "multiple choice",
    "numerical",
    "OCR",
    "free-form",
    "regression",
    "temporal grounding",
    "tracking",
    "grounded QA",
)
"""Video-R1's five answer types, VideoChat-R1's grounding and tracking, and grounded QA
(NExT-GQA as VideoChat-R1 asks it: a letter plus <glue> evidence segments)."""

DATA_TYPES = ("video", "image")

FAMILIES = ("grounding", "tracking", "choice", "order", "count", "distance", "ocr",
            "describe", "gqa", "cups", "image")
"""The question families of the synthetic world, the default mix of `data.families`;
`vrlib.tasks.FAMILIES` holds their generators, plus the pretraining `inventory` (vrlib.pretrain)."""

SPLITS = ("sft", "rl", "val", "eval")
"""The data stage's splits: the SFT cold start, RL, validation (every choice is made there) and
the held-out test split `eval`. The tiny base's pretraining draws its own streams
(`vrlib.pretrain.STREAMS`), outside the study."""

ON_BAD_MEDIA = ("stop", "skip")
"""What an import does with a missing or undecodable media file (`data.on_bad_media`)."""

MODELS = ("base", "sft", "rft", "rft_tcr")
"""The study's models in order, each trained from the one before (rft_tcr: the RFT model
evaluated with VideoChat-R1's two-pass TCR). Tables and analyses read them in this order,
then any other model by name."""

CORRECT = 0.5
"""An answer is right when its accuracy reward is >= CORRECT: the taxonomy, the flips, the
explorer and RFT's `group/all_correct` log. Letters and numbers score 0 or 1, so only graded
types care: IoU 0.5 for spans and boxes (Charades-STA's R@1 at IoU 0.5, GoT's success rate),
half the words for OCR and free-form. T-GRPO's bonus keeps Video-R1's own cut,
`rft.temporal_threshold` (accuracy > 0.1), a parameter of that method only."""


@dataclass
class Sample:
    """One question about one video or image, in the format the model must answer."""

    problem_id: str  # unique within a file
    problem: str  # the question; `prompts.user_text` adds the options and the answer format
    data_type: str  # "video" | "image"
    problem_type: str  # one of PROBLEM_TYPES; picks the reward
    options: list[str]  # ["A. ...", ...] for multiple choice, else []
    solution: str  # "<answer>...</answer>" (+ "<glue>...</glue>" for grounded QA)
    path: str  # media file, relative to the JSONL's directory (absolute kept as is)
    data_source: str  # where it came from, e.g. "world/grounding"
    duration: float  # seconds; 0.0 for images
    fps: float  # the file's native fps; 0.0 for images
    process: str = ""  # "<think>...</think>" chain of thought for the SFT cold start, or ""
    kim_path: str = ""  # the key-information-missing copy of the video (VideoPerceiver), or ""


FIELDS = tuple(f.name for f in fields(Sample))
OPTIONAL = ("process", "kim_path")

# The tags, each matched whole (fullmatch). A record's solution and chain of thought:
SOLUTION = re.compile(r"<answer>.*</answer>", re.DOTALL)
SOLUTION_GLUE = re.compile(r"<answer>.*</answer><glue>.*</glue>", re.DOTALL)  # grounded QA
PROCESS = re.compile(r"<think>.*</think>", re.DOTALL)
# A completion: <think> then <answer> and nothing else (Video-R1 grpo.py format_reward), plus
# the <glue> evidence after the answer for grounded QA (VideoChat-R1 gqa_format).
_THINK_ANSWER = r"<think>.*?</think>\s*<answer>.*?</answer>"
FORMAT = re.compile(_THINK_ANSWER, re.DOTALL)
FORMAT_GLUE = re.compile(_THINK_ANSWER + r"\s*<glue>.*?</glue>", re.DOTALL)

# The RL loss's choices (docs of each in vrlib.grpo and config.RFTParams):
SCALES = ("group", "batch", "none")  # advantage normalisation
LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo", "cispo")  # loss aggregation (CISPO: its own loss)
SFT_LOSSES = ("token", "sequence")  # SFT cross-entropy: one mean over tokens, or per example first
IMPORTANCE_SAMPLING = ("token", "sequence")  # PPO's token ratio or GSPO's sequence ratio
BONUS_MODES = ("reward", "advantage")  # where T-GRPO's and the relative bonus are added
RELATIVE_FORMS = ("indicator", "margin")  # the relative reward's form
