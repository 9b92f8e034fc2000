#!/usr/bin/env bash
# The demo: the whole feeding loop on the built-in examples, with a tiny random DeepSeek-style
# (Qwen2) model that learns in seconds — so it shows the pipeline and that feeding changes the
# model, not answer quality:
#   documents + chat export -> ingest (personal data masked) -> clean -> validate
#   FAQ -> LoRA training -> eval (base vs tuned, report) -> chat with the adapter
#   -> GGUF + Ollama Modelfile
# Writes DIR (default demo/); about a minute after the build. Offline: nothing is downloaded
# (scripts/fetch_models.sh fetches the real DeepSeek tokenizer and a real Gemma 3 model).
set -euo pipefail
cd "$(dirname "$0")/.."
# DEEPFEED_BIN: an already built binary (skips the build)
bin="${DEEPFEED_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release
  bin=$PWD/target/release/deepfeed
fi
out="${1:-demo}"
# only a folder an earlier demo wrote (it has the marker file) is replaced
if [ -e "$out" ] && [ ! -f "$out/.deepfeed-demo" ]; then
  echo "$out exists and was not written by this demo; give another folder: scripts/demo.sh DIR" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out"
touch "$out/.deepfeed-demo"
step() { printf '\n== %s\n' "$*"; }

step "1/7 a tiny DeepSeek-style model (Qwen2 layout, random weights, built-in 500-token EN+ZH tokenizer)"
# --init-std 0.15: output not near-uniform, so a LoRA adapter can move it quickly
$bin init-tiny --arch qwen2 --out "$out/tiny-model" --init-std 0.15

step "2/7 ingest a folder of documents and a chat export (personal data masked before anything is written)"
$bin ingest examples/ingest/docs --chat-log examples/ingest/chat-export.csv --assistant 客服 \
  --system "你是示例商城的客服。" --consistent-pii --out "$out/ingested.jsonl"

step "3/7 clean (NFKC, whitespace, PII, duplicates) and validate"
$bin clean "$out/ingested.jsonl" --out "$out/clean.jsonl"
$bin validate "$out/clean.jsonl"

step "4/7 train a LoRA adapter on the FAQ (examples/qa.jsonl)"
$bin train --model "$out/tiny-model" --data examples/qa.jsonl --output-dir "$out/run" --epochs 80 \
  --batch-size 2 --lr 0.01 --lora-r 8 --lora-alpha 16 --target-modules all-linear --val-split 0 --seed 1

step "5/7 evaluate: the tuned model against the base (report in $out/run/report/)"
# exit code 2 = a gate failed: shown, not fatal for the demo
$bin eval --model "$out/tiny-model" --adapter "$out/run/adapter" --data examples/eval.jsonl --baseline \
  --max-new-tokens 64 || [ $? -eq 2 ]

step "6/7 ask it a question from the FAQ"
$bin chat --model "$out/tiny-model" --adapter "$out/run/adapter" --prompt "你们支持退货吗？" --max-tokens 48

step "7/7 export for Ollama / llama.cpp: merged GGUF + LoRA adapter GGUF + Modelfile"
$bin export ollama --model "$out/tiny-model" --adapter "$out/run/adapter" --type q8_0 --out "$out/ollama"
ls -l "$out/ollama"
echo
echo "done: $out/ (serve it with: $bin serve --model $out/tiny-model --adapter faq=$out/run/adapter)"
