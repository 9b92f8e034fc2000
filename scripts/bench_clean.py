#!/usr/bin/env python3
"""Peer for `deepfeed bench clean`: the same cleaning work in Python (stdlib + numpy).

    python3 scripts/bench_clean.py INPUT.jsonl
prints one JSON line: {"mb_per_s": ..., "records_out": ...}.
Per record: NFKC, control/zero-width removal, whitespace normalisation, the same PII patterns with
the same checks (ID checksum + birth date, card issuer + Luhn, IPv4 ranges), exact dedup on the
normalised text, and MinHash (128 permutations over 3-grams of CJK characters / words, numpy
vectorised) with LSH banding 16 x 8 and a 0.8 similarity check — the work deepfeed's clean does.
"""
import json
import re
import sys
import time
import unicodedata

import numpy as np

M64 = (1 << 64) - 1
ZW = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
ID_RE = re.compile(r"(?<![A-Za-z0-9])\d{17}[\dXx](?![A-Za-z0-9])")
CARD_RE = re.compile(r"(?<![A-Za-z0-9])\d{4}(?:[ -]?\d{4}){2}[ -]?\d{1,7}(?![A-Za-z0-9])")
PHONE_RE = re.compile(r"(?<![A-Za-z0-9])(?:(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}|\(0\d{2,3}\) ?\d{7,8}|0\d{2,3}[- ]\d{7,8}|[48]00[- ]?\d{3}[- ]?\d{4})(?![A-Za-z0-9])")
IP_RE = re.compile(r"(?<![A-Za-z0-9])\d{1,3}(?:\.\d{1,3}){3}(?![A-Za-z0-9])(?!\.\d)")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
UNIT_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]|[^\W_]+")


def id_ok(s):
    if s[0] not in "12345678":
        return False
    y, m, d = int(s[6:10]), int(s[10:12]), int(s[12:14])
    if not (1900 <= y <= 2099 and 1 <= m <= 12 and 1 <= d <= 31):
        return False
    return "10X98765432"[sum(int(c) * w for c, w in zip(s[:17], W)) % 11] == s[17].upper()


def luhn(d):
    t = 0
    for i, c in enumerate(reversed(d)):
        n = int(c)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        t += n
    return t % 10 == 0


def card_ok(s):
    d = re.sub(r"[ -]", "", s)
    p, n = int(d[:2]), len(d)
    ok = (p in (62, 35) and 16 <= n <= 19) or (p in (34, 37) and n == 15) or (51 <= p <= 55 or 22 <= p <= 27) and n == 16 or (40 <= p <= 49 and n in (13, 16, 19))
    return ok and luhn(d)


def ip_ok(s):
    return all(int(o) <= 255 and not (len(o) > 1 and o[0] == "0") for o in s.split("."))


def mask(t):
    t = ID_RE.sub(lambda m: "<ID_CARD>" if id_ok(m.group()) else m.group(), t)
    t = CARD_RE.sub(lambda m: "<BANK_CARD>" if card_ok(m.group()) else m.group(), t)
    t = PHONE_RE.sub("<PHONE>", t)
    t = IP_RE.sub(lambda m: "<IP>" if ip_ok(m.group()) else m.group(), t)
    return EMAIL_RE.sub("<EMAIL>", t)


def clean(t):
    t = unicodedata.normalize("NFKC", t).translate(ZW)
    t = "".join(c for c in t if c in "\n\t" or unicodedata.category(c) != "Cc")
    lines = [" ".join(l.split()) for l in t.splitlines()]
    return mask("\n".join(l for l in lines if l))


rng = np.random.default_rng(0)
A = rng.integers(1, 2**63, 128, dtype=np.uint64) | np.uint64(1)
B = rng.integers(0, 2**63, 128, dtype=np.uint64)


def signature(t):
    units = [hash(u.lower()) & M64 for u in UNIT_RE.findall(t)]
    if not units:
        return None
    sh = [(units[i] ^ (units[i + 1] * 31) ^ (units[i + 2] * 961)) & M64 for i in range(len(units) - 2)] or [sum(units) & M64]
    s = np.array(sh, dtype=np.uint64)[:, None]
    return ((s * A + B) >> np.uint64(32)).min(axis=0).astype(np.uint32)


def main():
    path = sys.argv[1]
    size = 0
    seen, buckets, sigs, out = set(), {}, [], 0
    t0, c0 = time.perf_counter(), time.process_time()
    with open(path, encoding="utf-8") as f:
        for line in f:
            size += len(line.encode())
            text = clean(json.loads(line)["text"])
            key = "".join(text.split()).lower()
            if key in seen:
                continue
            seen.add(key)
            sig = signature(text)
            if sig is not None:
                keys = [(b, sig[b * 8:(b + 1) * 8].tobytes()) for b in range(16)]
                if any((sigs[i] == sig).mean() >= 0.8 for k in keys for i in buckets.get(k, ())):
                    continue
                for k in keys:
                    buckets.setdefault(k, []).append(len(sigs))
                sigs.append(sig)
            out += 1
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    # per core: MB per second of CPU time, so that other load on the machine does not count
    print(json.dumps({"mb_per_s": size / cpu / 1e6, "mb_per_s_wall": size / dt / 1e6, "records_out": out, "bytes": size}))


if __name__ == "__main__":
    main()
