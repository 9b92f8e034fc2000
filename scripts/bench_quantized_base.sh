#!/usr/bin/env bash
# Memory and speed of LoRA training with the frozen base kept quantised in memory
# (`base_dtype: quantized`) against the same run with the base dequantised at load (`f32`, the
# default, and `bf16`), on the real Gemma 3 270M Q4_K_M GGUF with examples/company-facts.
#
#   scripts/bench_quantized_base.sh [ROUNDS] [STEPS]      # default 3 rounds of 8 steps per mode
#
# Each round runs every mode once, the order rotating from round to round; a run's speed is the
# tokens/s `deepfeed train --json` reports, its memory the peak RSS of the whole process
# (`peak_rss_mib`, loading included) and of the training steps alone (`train_peak_rss_mib`:
# model, activations, gradients, optimizer; the trainer restarts the kernel's count after loading,
# which is also why /usr/bin/time's maximum RSS is not used: it reads the same restarted count). Prints each mode's medians, the ratios
# against f32, and the final training losses (equal when the modes compute the same thing).
# Environment: DEEPFEED (the binary), DEEPFEED_CACHE (model cache, default ~/.cache/deepfeed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${DEEPFEED_CACHE:-$HOME/.cache/deepfeed}"
gguf="$cache/gemma-3-270m-q4_k_m.gguf"
deepfeed="${DEEPFEED:-${CARGO_TARGET_DIR:-$root/target}/release/deepfeed}"
rounds="${1:-3}"
steps="${2:-8}"
[ -x "$deepfeed" ] || { echo "no deepfeed binary at $deepfeed (cargo build --release, or set DEEPFEED)" >&2; exit 1; }
[ -f "$gguf" ] || "$root/scripts/fetch_models.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

modes=(f32 bf16 quantized)
for ((r = 0; r < rounds; r++)); do
  for ((i = 0; i < ${#modes[@]}; i++)); do
    mode=${modes[$(((i + r) % ${#modes[@]}))]}
    out="$work/$mode.$r"
    "$deepfeed" train "$root/examples/company-facts/lora.yaml" --model "$gguf" \
      --output-dir "$out" --max-steps "$steps" --base-dtype "$mode" --json >"$out.json" 2>"$out.log"
    summary=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("%.1f tok/s, loss %.4f, peak RSS %.0f MiB (training steps %.0f MiB)" % (s["tokens_per_second"], s["final_train_loss"], s["peak_rss_mib"], s["train_peak_rss_mib"]))' "$out.json")
    echo "round $((r + 1))/$rounds $mode: $summary"
  done
done

python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
res = {}
for mode in ["f32", "bf16", "quantized"]:
    tps = [json.load(open(f"{work}/{mode}.{r}.json"))["tokens_per_second"] for r in range(rounds)]
    rss = [json.load(open(f"{work}/{mode}.{r}.json"))["peak_rss_mib"] for r in range(rounds)]
    train_rss = [json.load(open(f"{work}/{mode}.{r}.json"))["train_peak_rss_mib"] for r in range(rounds)]
    loss = json.load(open(f"{work}/{mode}.0.json"))["final_train_loss"]
    res[mode] = (statistics.median(tps), statistics.median(train_rss), statistics.median(rss), loss)
f_tps, f_train, f_rss, _ = res["f32"]
print(f"\n{'base_dtype':<10} {'tok/s':>7} {'vs f32':>7} {'training RSS MiB':>17} {'vs f32':>7} {'process RSS MiB':>16} {'vs f32':>7} {'final loss':>11}")
for mode, (tps, train, rss, loss) in res.items():
    print(f"{mode:<10} {tps:>7.1f} {tps / f_tps:>6.2f}x {train:>17.0f} {train / f_train:>6.2f}x {rss:>16.0f} {rss / f_rss:>6.2f}x {loss:>11.4f}")
PY
