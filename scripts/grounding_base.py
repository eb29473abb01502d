"""Does the base read the times of the grounding items' videos? Its greedy inventory of each of
the 60 `eval` grounding videos (the probes' prompt), the asked object's span in it ("first seen
at ... last seen before ..."), mIoU against the item's solution. After `make study`:

    python scripts/grounding_base.py     # about a minute on 2 cores

docs/results.md ("Every task family") quotes what it printed."""
import re

from vrlib import config, pretrain
from vrlib.answers import parse_span
from vrlib.data import load_split
from vrlib.model import load_model, load_processor
from vrlib.rollout import generate
from vrlib.scoring import temporal_iou

params = config.load("params.yaml")
d = params.data
samples, clips = load_split("data/eval.jsonl", fps=d.fps, min_frames=d.min_frames, max_frames=d.max_frames,
                            families=["grounding"])
model, processor = load_model(params.base.pretrained_dir).eval(), load_processor(params.base.pretrained_dir)
texts = []
for i in range(0, len(samples), 20):
    texts += generate(model, processor, [pretrain.prompt()] * len(clips[i:i + 20]), clips[i:i + 20],
                      max_new_tokens=160, do_sample=False).texts
total, found = 0.0, 0
for s, text in zip(samples, texts):
    asked = re.match(r"When does the (\w+) (\w+) appear\?", s.problem).groups()
    named = {(c, shape): (a, b) for c, shape, a, b in pretrain.read_inventory(text)}
    if asked in named:
        found += 1
        total += temporal_iou(named[asked], parse_span(s.solution))
print(len(samples), "asked object named", found, "base inventory span mIoU", round(100 * total / len(samples), 1))
print(texts[0][:300]); print(samples[0].problem, samples[0].solution)
