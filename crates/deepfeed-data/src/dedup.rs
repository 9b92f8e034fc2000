//! Near-duplicate detection: MinHash signatures over CJK-aware shingles, with LSH banding to find
//! candidates and the estimated Jaccard similarity to confirm them.
//!
//! Shingles are 3-grams of units, where a unit is one CJK character or one run of other letters
//! and digits (lower-cased); punctuation and whitespace separate units and are otherwise ignored.
//! So `退货政策是七天` and `退货政策：七天` share most shingles, as do English sentences that differ
//! in a word or two.
use std::collections::HashMap;

const NUM_PERM: usize = 128;

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x3040..=0x30FF | 0xAC00..=0xD7AF | 0x20000..=0x2A6DF)
}

/// FNV-1a, 64 bits.
fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// splitmix64: a cheap, well-mixed 64-bit permutation.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes of the text's units (CJK characters, lower-cased alphanumeric runs).
fn units(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<u64>| {
        if !word.is_empty() {
            out.push(fnv(word.as_bytes(), 0xcbf2_9ce4_8422_2325));
            word.clear();
        }
    };
    for c in text.chars() {
        if is_cjk(c) {
            flush(&mut word, &mut out);
            let mut buf = [0u8; 4];
            out.push(fnv(c.encode_utf8(&mut buf).as_bytes(), 0xcbf2_9ce4_8422_2325));
        } else if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else {
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The MinHash signature of a text (None when it has no unit at all).
pub fn signature(text: &str) -> Option<[u32; NUM_PERM]> {
    let u = units(text);
    if u.is_empty() {
        return None;
    }
    let shingles: Vec<u64> = if u.len() < 3 { vec![u.iter().fold(7, |h, x| mix(h ^ x))] } else { u.windows(3).map(|w| mix(w[0] ^ mix(w[1] ^ mix(w[2])))).collect() };
    let mut sig = [u32::MAX; NUM_PERM];
    for s in shingles {
        for (i, slot) in sig.iter_mut().enumerate() {
            let h = (mix(s ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 32) as u32;
            if h < *slot {
                *slot = h;
            }
        }
    }
    Some(sig)
}

/// Fraction of equal positions: an estimate of the Jaccard similarity of the shingle sets.
pub fn similarity(a: &[u32; NUM_PERM], b: &[u32; NUM_PERM]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / NUM_PERM as f64
}

/// An LSH index answering "is there a near-duplicate already?" as texts stream by.
pub struct NearDupIndex {
    threshold: f64,
    bands: usize,
    rows: usize,
    buckets: HashMap<(u16, u64), Vec<u32>>,
    signatures: Vec<[u32; NUM_PERM]>,
}

impl NearDupIndex {
    /// `threshold`: Jaccard similarity from which two texts count as duplicates (e.g. 0.8).
    pub fn new(threshold: f64) -> Self {
        // the band layout whose S-curve midpoint (1/b)^(1/r) sits just below the threshold, so
        // that true near-duplicates are very likely to share a bucket
        let (bands, rows) = [(64, 2), (32, 4), (16, 8), (8, 16)]
            .into_iter()
            .filter(|&(b, r)| (1.0 / b as f64).powf(1.0 / r as f64) <= threshold - 0.05)
            .last()
            .unwrap_or((64, 2));
        NearDupIndex { threshold, bands, rows, buckets: HashMap::new(), signatures: Vec::new() }
    }

    fn band_key(&self, sig: &[u32; NUM_PERM], band: usize) -> (u16, u64) {
        let slice = &sig[band * self.rows..(band + 1) * self.rows];
        (band as u16, slice.iter().fold(0x1234_5678, |h, &x| mix(h ^ x as u64)))
    }

    /// True when a near-duplicate of `text` was inserted before; otherwise inserts it.
    pub fn check_and_insert(&mut self, text: &str) -> bool {
        let Some(sig) = signature(text) else { return false };
        for band in 0..self.bands {
            if let Some(ids) = self.buckets.get(&self.band_key(&sig, band)) {
                if ids.iter().any(|&id| similarity(&self.signatures[id as usize], &sig) >= self.threshold) {
                    return true;
                }
            }
        }
        let id = self.signatures.len() as u32;
        for band in 0..self.bands {
            let key = self.band_key(&sig, band);
            self.buckets.entry(key).or_default().push(id);
        }
        self.signatures.push(sig);
        false
    }

    pub fn len(&self) -> usize {
        self.signatures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.signatures.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_duplicates_found_distinct_texts_kept() {
        let mut idx = NearDupIndex::new(0.7);
        let base = "我们的退货政策是：自收到商品之日起七天内可以无理由退货，运费由买家承担，商品需保持完好。";
        assert!(!idx.check_and_insert(base));
        assert!(idx.check_and_insert("我们的退货政策是:自收到商品之日起七天内可以无理由退货,运费由买家承担,商品需保持完好!"));
        assert!(!idx.check_and_insert("发票可以在订单详情页申请，电子发票会在三个工作日内发送到您的邮箱。"));
        let en = "The quick brown fox jumps over the lazy dog near the river bank every morning before sunrise.";
        assert!(!idx.check_and_insert(en));
        assert!(idx.check_and_insert("The quick brown fox jumps over the lazy dog near the river bank every morning before dawn."));
        assert!(!idx.check_and_insert("A completely different sentence about invoices, refunds and shipping times."));
        assert_eq!(idx.len(), 4);
        let (a, b) = (signature(base).unwrap(), signature("完全不同的文本，讲的是发票和物流。").unwrap());
        assert!(similarity(&a, &b) < 0.2);
    }
}
