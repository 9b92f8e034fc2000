#!/usr/bin/env bash
# Staged feeding, evaluated: a tiny DeepSeek-style model (built-in 500-token tokenizer, so it
# learns in seconds) learns a small
# FAQ in three phases; after each phase `deepfeed eval --baseline` measures it against the base
# model, and `deepfeed compare` puts the phases in one table. Writes demo/eval/ (about a minute).
# The example report in docs/example-report/ is phase 3's report.
# The model is tiny and random: it memorises the FAQ, which is what the numbers show; evaluate
# real models on held-out records.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# DEEPFEED_BIN: an already built binary (skips the build)
bin="${DEEPFEED_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release
  bin=$root/target/release/deepfeed
fi
out="${1:-demo/eval}"
# only a folder an earlier run wrote (it has the marker file) is replaced
if [ -e "$out" ] && [ ! -f "$out/.deepfeed-demo" ]; then
  echo "$out exists and was not written by this script; give another folder: scripts/eval_demo.sh DIR" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out"
touch "$out/.deepfeed-demo"
cd "$out"
# --init-std 0.15: a random model whose output is not near-uniform, so a LoRA adapter can move it
$bin init-tiny --arch qwen2 --out tiny-model --init-std 0.15

# training data: examples/qa.jsonl; evaluation: the same questions judged by containment, plus
# multiple-choice questions (examples/eval.jsonl)
cp "$root/examples/qa.jsonl" faq.jsonl
cp "$root/examples/eval.jsonl" eval.jsonl

common=(--data faq.jsonl --batch-size 2 --lr 0.01 --lora-r 8 --lora-alpha 16 --target-modules all-linear --val-split 0 --seed 1)
$bin train --model tiny-model --output-dir runs/phase1 --epochs 10 "${common[@]}"
$bin train --model tiny-model --output-dir runs/phase2 --adapter runs/phase1/adapter --epochs 25 "${common[@]}"
$bin train --model tiny-model --output-dir runs/phase3 --adapter runs/phase2/adapter --epochs 50 "${common[@]}"
for p in phase1 phase2 phase3; do
  # exit code 2 = a gate failed (expected for the early phases): keep going
  $bin eval --model tiny-model --adapter runs/$p/adapter --data eval.jsonl --baseline --max-new-tokens 64 || [ $? -eq 2 ]
done
$bin compare runs/phase1 runs/phase2 runs/phase3 --out compare.md
