"""How fast can the tiny base's vision tower learn shape when told it directly? A fresh tower and a
linear head on the merged token under each object's centre, cross-entropy on its shape and colour,
constant rate, accuracy on the probe stream's 300 held-out videos every 100 steps. Needs the frames
`make pretrain` caches (checkpoints/pretrain/frames).

    python scripts/vision_alone.py steps=1500 ntrain=2000       # 0.93 shape at 1,000 steps, 7 min
    python scripts/vision_alone.py steps=300 width=192          # also depth=6, init=0.02, lr=3e-3

docs/results.md ("The base: does it see?") quotes what it printed; `pretrain.VisionWarmup` is
phase 0 made of it."""
import sys, json, time
import numpy as np, torch
from vrlib import model as M, pretrain as P, world, tasks

args = dict(a.split("=") for a in sys.argv[1:])
width = int(args.get("width", 96)); depth = int(args.get("depth", 3)); init = float(args.get("init", 0.1))
lr = float(args.get("lr", 1e-3)); steps = int(args.get("steps", 300)); ntrain = int(args.get("ntrain", 1000))
torch.manual_seed(0)
card = json.load(open("models/tiny-base/card.json"))
samp = card["recipe"]["sampling"]
spec = tasks.WorldSpec(**card["recipe"]["world"])
kw = dict(fps=samp["fps"], min_frames=samp["min_frames"], max_frames=samp["max_frames"], cache="checkpoints/pretrain/frames")
train_v = P.world_videos(0, P.STREAMS[0], 5000, spec, **kw)
test_v = P.world_videos(0, P.STREAMS[2], 300, spec, **kw)
proc = M.load_processor("models/tiny-base")
SH, CO = world.SHAPES, P.COLOURS

def prep(vids, idx):
    pix, lab = [], []
    for i in idx:
        f = np.asarray(vids.frames[i])
        out = proc.video_processor(videos=[f], do_sample_frames=False, return_tensors="pt")
        pix.append(out["pixel_values_videos"]); g = out["video_grid_thw"][0].tolist()
        lab.append(P.object_tokens(vids.scenes[i], vids.timestamps, g, merge=proc.video_processor.merge_size,
                                   temporal=proc.video_processor.temporal_patch_size))
    return pix, g, lab
t = time.time()
trp, grid, trl = prep(train_v, range(ntrain)); tep, _, tel = prep(test_v, range(300))
print("prep", round(time.time() - t), "s", flush=True)
from transformers import Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
cfg = Qwen2_5_VLConfig(vision_config=dict(depth=depth, hidden_size=width, intermediate_size=2 * width, num_heads=4,
        out_hidden_size=192, fullatt_block_indexes=list(range(depth)), tokens_per_second=2)).vision_config
vis = Qwen2_5_VisionTransformerPretrainedModel._from_config(cfg)
if init > 0:
    with torch.no_grad():
        for m in vis.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv3d)):
                m.weight.normal_(0.0, init)
head = torch.nn.Linear(192, len(SH) + len(CO))
norm = torch.nn.RMSNorm(192)
opt = torch.optim.AdamW(list(vis.parameters()) + list(head.parameters()) + list(norm.parameters()), lr=lr, weight_decay=0.0)
gthw = torch.tensor([grid])
def run(pix, labs):
    px = torch.cat(pix); g = gthw.repeat(len(pix), 1)
    out = vis(px, grid_thw=g)
    h = out.pooler_output if hasattr(out, "pooler_output") else out
    n = h.shape[0] // len(pix); h = h.reshape(len(pix), n, -1)
    rows = [(b, k, s, c) for b, L in enumerate(labs) for k, s, c in L]
    b, k, s, c = (torch.tensor(x) for x in zip(*rows))
    z = head(norm(h[b, k]))
    return z, s, c
def evaluate():
    vis.eval(); acc_s = acc_c = n = 0
    with torch.no_grad():
        for i in range(0, 300, 50):
            z, s, c = run(tep[i:i + 50], tel[i:i + 50])
            acc_s += (z[:, :3].argmax(1) == s).sum().item(); acc_c += (z[:, 3:].argmax(1) == c).sum().item(); n += len(s)
    vis.train(); return round(acc_s / n, 3), round(acc_c / n, 3)
rng = np.random.default_rng(0); t = time.time()
for step in range(1, steps + 1):
    idx = rng.choice(ntrain, 16, replace=False)
    z, s, c = run([trp[i] for i in idx], [trl[i] for i in idx])
    loss = torch.nn.functional.cross_entropy(z[:, :3], s) + torch.nn.functional.cross_entropy(z[:, 3:], c)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(vis.parameters(), 1.0); opt.step()
    if step % 100 == 0:
        print(args, step, round(loss.item(), 3), "test shape/colour", evaluate(), f"{(time.time() - t) / step:.2f}s/step", flush=True)
