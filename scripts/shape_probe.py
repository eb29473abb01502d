"""Where does a base lose shape? Linear probes (logistic regression) of each object's shape and
colour from the merged visual token under its centre (key L: after decoder layer L, 0 = the
merger's output), the overlap-weighted mean of its tokens (wL) and its 2x2 block (bL), on the
probe stream's held-out videos (the first two thirds train, the rest test).

    python scripts/shape_probe.py [MODEL_DIR] [N_VIDEOS]   # models/tiny-base 300: about 2 min on 2 cores

docs/results.md ("The base: does it see?") quotes what it printed."""
import json, sys
import numpy as np, torch
from vrlib import model as M, pretrain as P, world, prompts
from vrlib.tasks import WorldSpec

model_dir = sys.argv[1] if len(sys.argv) > 1 else "models/tiny-base"
torch.manual_seed(0)
card = json.load(open("models/tiny-base/card.json"))
m = M.load_model(model_dir).eval()
proc = M.load_processor(model_dir)
samp = card["recipe"]["sampling"]
vids = P.probe_videos(card, int(sys.argv[2]) if len(sys.argv) > 2 else 300, fps=samp["fps"], min_frames=samp["min_frames"], max_frames=samp["max_frames"])
vid_tok = m.config.video_token_id
feats = {}  # layer -> list
labels = []  # (video, shape, colour)
S = P.prompt("video")
for i in range(len(vids.scenes)):
    clip = vids.clip(i)
    batch = prompts.encode_examples(proc, [S], [clip], ["x"])
    batch.pop("labels")
    with torch.no_grad():
        out = m(**batch, output_hidden_states=True)
    pos = (batch["input_ids"][0] == vid_tok).nonzero()[:, 0]  # (128,)
    T = len(clip.frames) // 2
    g = batch["video_grid_thw"][0].tolist()  # t, h, w patches
    gh, gw = g[1] // 2, g[2] // 2
    cell = 112 / gh
    for a in vids.scenes[i].actors:
        for s in range(T):
            t0, t1 = vids.timestamps[2 * s], vids.timestamps[2 * s + 1]
            if not (a.start <= t0 < a.end and a.start <= t1 < a.end):
                continue
            cx, cy = world.position(a, (t0 + t1) / 2)
            k = s * gh * gw + min(int(cy // cell), gh - 1) * gw + min(int(cx // cell), gw - 1)
            l, tp, r, bt = world.box(a, (t0 + t1) / 2)
            w = np.zeros(gh * gw)
            for yy in range(gh):
                for xx in range(gw):
                    ox = max(0, min(r, (xx + 1) * cell) - max(l, xx * cell)); oy = max(0, min(bt, (yy + 1) * cell) - max(tp, yy * cell))
                    w[yy * gw + xx] = ox * oy
            w = torch.tensor(w / w.sum(), dtype=torch.float32)
            i0, j0 = min(max(int(round(cy / cell)) - 1, 0), gh - 2), min(max(int(round(cx / cell)) - 1, 0), gw - 2)
            block = [s * gh * gw + (i0 + di) * gw + j0 + dj for di in (0, 1) for dj in (0, 1)]
            for L, h in enumerate(out.hidden_states):
                hv = h[0, pos[s * gh * gw:(s + 1) * gh * gw]]
                feats.setdefault(L, []).append(h[0, pos[k]].numpy())
                feats.setdefault(f"w{L}", []).append((w @ hv).numpy())
                feats.setdefault(f"b{L}", []).append(h[0, pos[block]].reshape(-1).numpy())
            labels.append((i, a.shape, a.colour))
    if i % 50 == 0:
        print(i, len(labels), flush=True)

vid = np.array([l[0] for l in labels])
def fit(X, y, train, test, epochs=300):
    classes = sorted(set(y)); yi = torch.tensor([classes.index(v) for v in y])
    X = torch.tensor(np.array(X)); mu, sd = X[train].mean(0), X[train].std(0) + 1e-6; X = (X - mu) / sd
    W = torch.zeros(X.shape[1], len(classes), requires_grad=True); b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=epochs)
    def closure():
        opt.zero_grad(); loss = torch.nn.functional.cross_entropy(X[train] @ W + b, yi[train]) + 1e-3 * (W ** 2).sum(); loss.backward(); return loss
    opt.step(closure)
    return ((X[test] @ W + b).argmax(1) == yi[test]).float().mean().item()
train = torch.tensor(vid < len(vids.scenes) * 2 // 3); test = ~train
for what, j in (("shape", 1), ("colour", 2)):
    y = [l[j] for l in labels]
    print(what, {L: round(fit(feats[L], y, train, test), 3) for L in feats})
print("n", len(labels), "test", int(test.sum()))
