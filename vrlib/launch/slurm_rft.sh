#!/bin/bash
# The rft stage on several nodes: srun starts one `accelerate launch` per node, and each starts
# one process per GPU of its node; they meet at the first node (port 29500).
#
#   sbatch --nodes 2 vrlib/launch/slurm_rft.sh [ddp|fsdp|zero2|zero3]     (default ddp)
#   PYTHON=.venv/bin/python sbatch ... to pick the interpreter (default: python on PATH)
#
# Submit from the repository root on a file system every node sees: the stage reads
# params.yaml, data/rl.jsonl and models/ relative to it and writes models/rft, checkpoints/rft
# and dvclive/rft (rank 0 only). Nothing is downloaded (HF_HUB_OFFLINE=1): the base checkpoint
# must already be on disk (params.yaml base.pretrained_dir). rft.prompts_per_step must be a
# multiple of the total number of processes (nodes x GPUs per node). This is the body of the
# DVC stage run by hand; `dvc commit rft` afterwards records its outputs.
#SBATCH --job-name=vrlib-rft
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --time=24:00:00

set -euo pipefail

export CONFIG="vrlib/launch/${1:-ddp}.yaml"
export PYTHON="${PYTHON:-python}"
export HEAD="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
export NUM_PROCESSES=$(( SLURM_NNODES * ${SLURM_GPUS_ON_NODE:-8} ))
export HF_HUB_OFFLINE=1
[ -f "$CONFIG" ] || { echo "no accelerate config $CONFIG (ddp, fsdp, zero2, zero3)" >&2; exit 2; }
echo "rft: $SLURM_NNODES nodes, $NUM_PROCESSES processes, $CONFIG, head $HEAD"

# single quotes: SLURM_NODEID is each task's own node index, expanded on that node
srun --nodes "$SLURM_NNODES" --ntasks-per-node 1 bash -c '
  exec "$PYTHON" -m accelerate.commands.launch --config_file "$CONFIG" \
    --num_machines "$SLURM_NNODES" --machine_rank "$SLURM_NODEID" \
    --main_process_ip "$HEAD" --main_process_port 29500 \
    --num_processes "$NUM_PROCESSES" \
    -m vrlib.rft --params params.yaml'
