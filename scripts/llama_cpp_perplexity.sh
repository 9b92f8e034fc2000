#!/usr/bin/env bash
# llama.cpp's perplexity of Gemma 3 270M Q4_K_M on the exact text the ignored test
# `gemma_real_perplexity_matches_transformers` scores: the first 20,011 bytes of Debian's
# /usr/share/common-licenses/GPL-3 (sha256 a1a018ee…), n_ctx 512, batch 512, CPU.
# Needs scripts/build_llama_cpp.sh and scripts/fetch_models.sh. Prints llama-perplexity's
# final estimate; docs/gguf.md records it and the test compares against it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${DEEPFEED_CACHE:-$HOME/.cache/deepfeed}"
bin="${DEEPFEED_LLAMA_CPP_BIN:-$cache/llama.cpp/bin}"
gguf="$cache/gemma-3-270m-q4_k_m.gguf"
text=$(mktemp --suffix=.txt)
trap 'rm -f "$text"' EXIT
head -c 20011 /usr/share/common-licenses/GPL-3 >"$text"
echo "a1a018ee283e42bd5e7fc55745d2a2e56d5d2088d15e9999d7cae038b49e599f  $text" | sha256sum -c --quiet
# llama.cpp's token ids must be the ones deepfeed and transformers give (committed fixture)
"$bin/llama-tokenize" -m "$gguf" -f "$text" --ids --log-disable >"$text.ids"
"${PYTHON:-python3}" - "$text.ids" "$root/crates/deepfeed-model/tests/fixtures/gemma3_real/reference.json" <<'PY'
import ast, json, sys
ids = ast.literal_eval(open(sys.argv[1]).read().strip())
ref = json.load(open(sys.argv[2]))["text_ids"]
print(f"llama.cpp tokens: {len(ids)} (with BOS); identical to deepfeed/transformers: {ids == ref}")
PY
rm -f "$text.ids"
# --no-repack: weights stay in their GGUF layout (see build_llama_cpp.sh: on CPUs that report
# AMX inside a VM that does not enable it, the AMX repacked path crashes)
"$bin/llama-perplexity" -m "$gguf" -f "$text" -c 512 -b 512 -t "${THREADS:-2}" --no-repack 2>&1 |
  grep -E "calculating perplexity|Final estimate|^\[[0-9]"
