#!/usr/bin/env bash
# GPU measurements, each part under its own time limit so that a slow or
# failing part cannot eat the others' time. Parts:
#   beard_bacon   BEARD's suite (beard protocol, 10,000 test images) on the
#                 published BACON checkpoint (`launch.py`);
#   beard_others  the same on the other five published checkpoints;
#   attacks       bench_attacks.py: FGSM, PGD, PGD-L2, C&W, DeepFool, and our
#                 DeepFool's `slots` sweep;
#   attacks_slow  bench_attacks.py: APGD-CE, Square, AutoAttack;
#   training, scaling, ceiling, beard_eval
#                 the other benches of this folder;
# all benches with torch on the GPU.
# The BEARD records go to OUT_DIR/beard_results.jsonl (cells finished before a
# time limit are kept); every part's output goes to OUT_DIR/PART.txt.
# Usage, from the repo root, with jax[cuda], torch (CUDA) and torchattacks installed:
#   bench/gpu_session.sh DATA_DIR OUT_DIR PART[,PART...] [quick]
# `quick` shrinks every part to a smoke run on the CPU (for checking the script).
set -u
data=$1
out=$2
parts=,$3,
quick=${4:-}
export BEARD_DATA_DIR=$data PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
work=$(mktemp -d)

if [[ -n $quick ]]; then
  n=64 ref=4 epochs=2 ceiling_batch=64 scaling_batches=32,64 torch_device=cpu
  fast=fgsm,pgd,deepfool slow=apgd_ce
  fast_rows=deepfool:slots=4,deepfool:slots=64 slow_rows=apgd_ce:chunk=16
else
  n=2000 ref=100 epochs=200 ceiling_batch=2000 scaling_batches=128,512,2048
  torch_device=cuda fast=fgsm,pgd,pgd_l2,cw,deepfool slow=apgd_ce,square,autoattack
  fast_rows=deepfool:slots=16,deepfool:slots=256,deepfool:slots=2000
  slow_rows=apgd_ce:chunk=64,apgd_ce:chunk=500
fi
limit() {  # limit SECONDS: SECONDS on a GPU, 10 minutes in a quick run
  if [[ -n $quick ]]; then echo 600; else echo "$1"; fi
}

part() {  # part NAME LIMIT_S CMD...: runs CMD if NAME is asked for, output to OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  [[ $parts == *,$name,* ]] || return 0
  echo "== $name ($(date +%T), limit ${limit}s)"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  echo "== $name exit $? ($(date +%T))"
}

"$py" -c 'import jax, torch; print(jax.__version__, jax.devices(), torch.__version__)'

beard=(--config=configs/beard.py --dataset=cifar10 --ipc=50 --data_dir="$data"
  --model_pool="$data/beard_model_pool" --attacks=fgsm,pgd,pgd_l2,cw,deepfool
  --modes=untargeted,targeted --workdir="$work/beard")
if [[ -n $quick ]]; then beard+=(--num_examples=$n); fi
part beard_bacon "$(limit 200)" "$py" launch.py "${beard[@]}" --methods=BACON
part beard_others "$(limit 200)" "$py" launch.py "${beard[@]}" --methods=DC,DSA,DM,IDM,MTT
if [[ -f $work/beard/results.jsonl ]]; then
  cp "$work/beard/results.jsonl" "$out/beard_results.jsonl"
fi

batch=$((n < 500 ? n : 500))
part attacks "$(limit 130)" "$py" bench/bench_attacks.py --torch_device=$torch_device \
  --attacks=$fast --num_images=$n --batch_size=$batch --repeats=3 --reference_images=$ref \
  --schedule_rows=$fast_rows
part attacks_slow "$(limit 100)" "$py" bench/bench_attacks.py --torch_device=$torch_device \
  --attacks=$slow --num_images=$n --batch_size=$batch --repeats=2 --reference_images=$ref \
  --reference_subset_attacks=deepfool,square,autoattack --schedule_rows=$slow_rows
part training "$(limit 110)" "$py" bench/bench_training.py --torch_device=$torch_device \
  --ipcs=1,10,50 --epochs=$epochs --seeds=5 --modes=vmap,torch --repeats=2
part scaling "$(limit 60)" "$py" bench/bench_scaling.py --torch_device=$torch_device \
  --reference --batch_sizes=$scaling_batches --fixed_batch=${scaling_batches##*,} --repeats=3
part ceiling "$(limit 40)" "$py" bench/bench_ceiling.py --torch_device=$torch_device \
  --batch_size=$ceiling_batch --repeats=5
part beard_eval "$(limit 90)" "$py" bench/bench_beard_eval.py --torch_device=$torch_device \
  --checkpoint=beard_model_pool/BACON_ConvNet_CIFAR10_50_None_0.6995.pth \
  --num_images=$((n / 4)) --batch_size=256
rm -rf "$work"
