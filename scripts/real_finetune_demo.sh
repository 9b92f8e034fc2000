#!/usr/bin/env bash
# Fine-tunes the real Gemma 3 270M (the Q4_K_M GGUF a user runs in Ollama / llama.cpp) on 50
# facts about a fictional company (examples/company-facts/train.jsonl) with LoRA, evaluates it on
# paraphrased held-out questions of the same facts (heldout.jsonl) against the base model, and,
# when a llama.cpp build is there, exports the adapter to GGUF and answers a few held-out
# questions with llama.cpp and deepfeed side by side.
#
#   scripts/real_finetune_demo.sh [RUN_DIR]      # default runs/company-facts (must not exist)
#
# Environment: DEEPFEED (the binary; default target/release/deepfeed or $CARGO_TARGET_DIR's),
# DEEPFEED_CACHE (model cache, default ~/.cache/deepfeed), DEEPFEED_LLAMA_CPP_BIN (llama.cpp tools,
# default $DEEPFEED_CACHE/llama.cpp/bin), BASE_DTYPE (f32 default, bf16 or quantized: how the frozen
# base is kept in memory for training and eval, see docs/gguf.md). Prints the training time, peak RSS and the eval summary;
# the gates are held-out perplexity at least 30% below the base and accuracy at least 0.6 (latency
# is reported, its gate set out of the way: this is a CPU demo).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${DEEPFEED_CACHE:-$HOME/.cache/deepfeed}"
gguf="$cache/gemma-3-270m-q4_k_m.gguf"
deepfeed="${DEEPFEED:-${CARGO_TARGET_DIR:-$root/target}/release/deepfeed}"
llama_bin="${DEEPFEED_LLAMA_CPP_BIN:-$cache/llama.cpp/bin}"
run="$(realpath -m "${1:-runs/company-facts}")"
base_dtype="${BASE_DTYPE:-f32}"
facts="$root/examples/company-facts"

[ -x "$deepfeed" ] || { echo "no deepfeed binary at $deepfeed (cargo build --release, or set DEEPFEED)" >&2; exit 1; }
[ -f "$gguf" ] || "$root/scripts/fetch_models.sh"
[ -e "$run" ] && { echo "$run already exists; pass another run directory" >&2; exit 1; }
mkdir -p "$(dirname "$run")"

echo "== train (LoRA, examples/company-facts/lora.yaml)"
/usr/bin/time -v -o "$run.time.txt" "$deepfeed" train "$facts/lora.yaml" --model "$gguf" --output-dir "$run" --base-dtype "$base_dtype"
grep -E "Elapsed \(wall" "$run.time.txt"  # (train prints the peak RSS itself; time's maximum RSS
# would show only the training steps: the trainer restarts the kernel's count after loading)

echo "== eval on the paraphrased held-out questions (tuned and base)"
status=0
"$deepfeed" eval --model "$gguf" --adapter "$run/adapter" --data "$facts/heldout.jsonl" --baseline --base-dtype "$base_dtype" \
  --no-general-text --warmup 0 --max-new-tokens 24 --min-ppl-improvement 0.30 --min-accuracy 0.6 --max-p95-latency-ms 60000 \
  --out "$run/report" || status=$?

if [ -x "$llama_bin/llama-completion" ]; then
  # (llama-completion sometimes exits before printing everything: an empty line is that, see docs/gguf.md)
  echo "== llama.cpp with the exported adapter (greedy) vs deepfeed"
  "$deepfeed" export gguf-adapter --adapter "$run/adapter" --model "$gguf" --out "$run/adapter.gguf"
  head -n 5 "$facts/heldout.jsonl" | python3 -c 'import json,sys; [print(json.loads(l)["input_text"]) for l in sys.stdin]' |
    while IFS= read -r q; do
      prompt=$(printf 'user: %s\nassistant: ' "$q")  # as deepfeed train/eval render it
      ours=$("$deepfeed" generate --model "$gguf" --adapter "$run/adapter" --prompt "$prompt" --max-tokens 24 2>/dev/null)
      theirs=$("$llama_bin/llama-completion" -m "$gguf" --lora "$run/adapter.gguf" -p "$prompt" -n 24 --temp 0 --top-k 1 \
        -t 1 -c 256 --no-warmup -no-cnv --no-display-prompt --no-repack </dev/null 2>/dev/null | sed 's/ \[end of text\]$//')
      printf '%s\n  deepfeed:  %s\n  llama.cpp: %s\n' "$q" "$ours" "$theirs"
    done
fi
exit $status
