#!/usr/bin/env bash
# The GPU check, at most 9 minutes: a T-GRPO step's speed and memory at the Qwen2.5-VL-7B and
# -3B shapes (random weights, `python -m vrlib.speed grpo`) and the GPU tests.
#
#   scripts/gpu_check.sh OUTDIR                  on the GPU machine
#   GPU_CHECK_DRY=1 scripts/gpu_check.sh OUTDIR  the same steps at the tiny shape, on the CPU
#
# Each step runs under its own time limit, and a failed step leaves the others' results. OUTDIR
# gets NAME.log for every step, env.json (versions), grpo-7b.json and grpo-3b.json (the
# benchmark's rows) and steps.json (each step's exit status and seconds; 124: out of time).
set -u
out=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)  # absolute: the steps run in the repository root
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
py=${PYTHON:-$(command -v python || command -v python3)}  # a bare machine may have python3 only
done_steps=()

step() {  # step NAME SECONDS COMMAND...: run COMMAND for at most SECONDS, output in OUTDIR/NAME.log
    local name=$1 limit=$2 t0=$SECONDS rc=0
    shift 2
    echo "== $name (at most $limit s)"
    timeout -k 10 "$limit" "$@" > "$out/$name.log" 2>&1 || { rc=$?; echo "$name failed (exit $rc)"; }
    done_steps+=("\"$name\": {\"exit\": $rc, \"seconds\": $((SECONDS - t0))}")
}

if [[ ${GPU_CHECK_DRY:-0} == 1 ]]; then  # a tiny model, 8 tokens, 4 frames of 56x56 px, 1 step
    big=tiny small=tiny
    settings=(--frames 4 --max-pixels 3136 --completion 8 --warmup 0 --steps 1)
else  # the study's settings (Video-R1): 16 frames of 128*28*28 px, G = 8 + 4, 768 tokens, nf4 + LoRA
    big=qwen2.5-vl-7b small=qwen2.5-vl-3b
    settings=(--frames 16 --max-pixels 100352 --completion 768 --warmup 1 --steps 2)
fi

versions='import importlib.metadata as md, json, platform, sys, torch
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
info = {"python": platform.python_version(), "gpu": gpu, "cuda": torch.version.cuda}
info |= {p: version(p) for p in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "flash-attn")}
with open(sys.argv[1], "w") as f:
    json.dump(info, f, indent=1)
print(json.dumps(info, indent=1))'

# the limits add up to 500 s, + 10 s each to kill a step that ignores the first signal: 9 minutes
step env 20 bash -c 'nvidia-smi; "$2" -c "$0" "$1"' "$versions" "$out/env.json" "$py"
step grpo-7b 255 "$py" -m vrlib.speed grpo --shape $big "${settings[@]}" --json "$out/grpo-7b.json"
step grpo-3b 165 "$py" -m vrlib.speed grpo --shape $small "${settings[@]}" --json "$out/grpo-3b.json"
# the GPU tests live in test_model.py (other files import pandas, av, dvc: absent there)
step pytest-gpu 60 "$py" -m pytest tests/test_model.py -m gpu -q -p no:cacheprovider

(IFS=,; echo "{${done_steps[*]}}") > "$out/steps.json"
cat "$out/steps.json"
