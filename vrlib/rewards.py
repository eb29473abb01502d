"""The training rewards: plain functions `(completion, sample) -> float` in [0, 1], summed
into a rollout's reward by `vrlib.rft` and logged as `reward/<name>/mean`.

This module is the training signal and nothing else: a reward experiment edits it
(docs/change-a-reward.md), and only RFT, the evaluation of its model and the analysis rerun.
By default each reward pays what the evaluation measures, the one score per problem type in
`vrlib.scoring` and the well-formedness of `vrlib.answers`; the evaluation reads those
modules, never this one, so a changed reward never changes the ruler it is measured with.
Model output never raises (garbage scores 0); a sample with an unknown problem_type or an
unparsable solution is a bug in the data and raises ValueError.

Rewards that need the whole group are in `vrlib.grpo`: Video-R1's length bonus, the T-GRPO and
relative bonuses, DAPO's overlong penalty.
"""

from __future__ import annotations

from vrlib import answers, scoring


def format_reward(completion: str, sample) -> float:
    """1 if the stripped completion is exactly <think>..</think> <answer>..</answer>
    (+ a valid <glue> list for grounded QA), else 0."""
    return float(answers.well_formed(completion, answers.problem_type(sample)))


def accuracy_reward(completion: str, sample) -> float:
    """The answer's score by problem_type (`scoring.accuracy`); 0 without an <answer>."""
    return scoring.accuracy(completion, sample)


def glue_iou_reward(completion: str, sample) -> float:
    """Multi-segment IoU of the <glue> evidence for grounded QA; 0 for other types."""
    return scoring.glue_iou(completion, sample)


REWARDS = {"format": format_reward, "accuracy": accuracy_reward, "glue_iou": glue_iou_reward}
"""Every per-sample reward under the name it is logged with (`reward/<name>/mean` in RFT)."""
