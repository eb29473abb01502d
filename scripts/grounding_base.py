"""Does the base read the times of the grounding items' videos? Its greedy inventory of each of
the 60 `eval` grounding videos (the probes' prompt), the asked object's span in it ("first seen
at ... last seen before ..."), mIoU against the item's solution. After `make study`:

    python scripts/grounding_base.py     # about a minute on 2 cores

docs/results.md ("Every task family") quotes what it printed."""
import json, re
from vrlib import data, pretrain, model as M
from vrlib.rollout import generate
params_fps, mn, mx = 2.0, 4, 16
recs = [json.loads(l) for l in open("data/eval.jsonl")]
g = [r for r in recs if r["problem_type"] == "temporal grounding"][:60]
m = M.load_model("models/tiny-base").eval(); proc = M.load_processor("models/tiny-base")
clips = [data.load_media("data/" + r["path"], "video", fps=params_fps, min_frames=mn, max_frames=mx) for r in g]
texts = []
for i in range(0, len(g), 20):
    texts += generate(m, proc, [pretrain.prompt()] * len(clips[i:i+20]), clips[i:i+20], max_new_tokens=160, do_sample=False).texts
def iou(a, b):
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0])); union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0
tot, found = 0.0, 0
for r, t in zip(g, texts):
    col, shp = re.match(r"When does the (\w+) (\w+) appear\?", r["problem"]).groups()
    sol = [float(x) for x in re.findall(r"[\d.]+", r["solution"])[:2]]
    inv = {(c, s): (a, b) for c, s, a, b in pretrain.read_inventory(t)}
    if (col, shp) in inv:
        found += 1; tot += iou(inv[(col, shp)], sol)
print(len(g), "asked object named", found, "base inventory span mIoU", round(100 * tot / len(g), 1))
print(texts[0][:300]); print(g[0]["problem"], g[0]["solution"])
