//! Near-duplicate detection: MinHash signatures over CJK-aware shingles, with LSH banding to find
//! candidates and the estimated Jaccard similarity to confirm them.
//!
//! Shingles are 3-grams of units, where a unit is one CJK character or one run of other letters
//! and digits (lower-cased); punctuation and whitespace separate units and are otherwise ignored.
//! So `退货政策是七天` and `退货政策：七天` share most shingles, as do English sentences that differ
//! in a word or two.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The LSH keys are already mixed 64-bit hashes: hashing them again (SipHash) only costs time.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

const NUM_PERM: usize = 128;

pub(crate) fn is_cjk(c: char) -> bool {
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

/// Hashes of the text's units (CJK characters, lower-cased alphanumeric runs), without
/// allocating per word.
pub(crate) fn units(text: &str) -> Vec<u64> {
    const SEED: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut word: Option<u64> = None;
    for c in text.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                word = Some(fnv(&[c.to_ascii_lowercase() as u8], word.unwrap_or(SEED)));
                continue;
            }
        } else if is_cjk(c) {
            out.extend(word.take());
            let mut buf = [0u8; 4];
            out.push(fnv(c.encode_utf8(&mut buf).as_bytes(), SEED));
            continue;
        } else if c.is_alphanumeric() {
            let mut h = word.unwrap_or(SEED);
            for l in c.to_lowercase() {
                let mut buf = [0u8; 4];
                h = fnv(l.encode_utf8(&mut buf).as_bytes(), h);
            }
            word = Some(h);
            continue;
        }
        out.extend(word.take());
    }
    out.extend(word);
    out
}

/// The multipliers and offsets of the 128 hash permutations (fixed: signatures stay comparable
/// across runs and datasets).
fn permutations() -> &'static ([u64; NUM_PERM], [u64; NUM_PERM]) {
    static P: std::sync::OnceLock<([u64; NUM_PERM], [u64; NUM_PERM])> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let mut a = [0u64; NUM_PERM];
        let mut b = [0u64; NUM_PERM];
        for i in 0..NUM_PERM {
            a[i] = mix(0xA5A5_0000 + i as u64) | 1;
            b[i] = mix(0x5A5A_0000 + i as u64);
        }
        (a, b)
    })
}

/// Folds every shingle into the signature. Written so that the 128 lanes vectorise; compiled
/// once for the baseline CPU and once with AVX-512 (8 × 64-bit multiplies per instruction).
#[inline(always)]
fn min_hash(shingles: &[u64], sig: &mut [u32; NUM_PERM]) {
    let (a, b) = permutations();
    for &s in shingles {
        for i in 0..NUM_PERM {
            let h = (a[i].wrapping_mul(s).wrapping_add(b[i]) >> 32) as u32;
            sig[i] = sig[i].min(h);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn min_hash_avx512(shingles: &[u64], sig: &mut [u32; NUM_PERM]) {
    min_hash(shingles, sig)
}

/// The MinHash signature of a text (None when it has no unit at all).
pub fn signature(text: &str) -> Option<[u32; NUM_PERM]> {
    let mut shingles = units(text);
    if shingles.is_empty() {
        return None;
    }
    if shingles.len() < 3 {
        shingles = vec![shingles.iter().fold(7, |h, x| mix(h ^ x))];
    } else {
        // in place: shingle i needs units i, i+1 and i+2 only
        for i in 0..shingles.len() - 2 {
            shingles[i] = mix(shingles[i] ^ mix(shingles[i + 1] ^ mix(shingles[i + 2])));
        }
        shingles.truncate(shingles.len() - 2);
    }
    // permutation i: the high 32 bits of a_i·s + b_i (a_i odd), over a well-mixed shingle hash;
    // the inner loop has no dependency between lanes and vectorises
    let mut sig = [u32::MAX; NUM_PERM];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512dq") && std::arch::is_x86_feature_detected!("avx512vl") {
        // SAFETY: the CPU supports the features this function is compiled for (checked above)
        unsafe { min_hash_avx512(&shingles, &mut sig) };
        return Some(sig);
    }
    min_hash(&shingles, &mut sig);
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
    /// band key (already a well-mixed hash) -> the newest entry of that bucket in `entries`
    heads: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    /// (text id, the previous entry of the same bucket or `NONE`): the buckets as linked lists in
    /// one vector, so that a million buckets are not a million small allocations
    entries: Vec<(u32, u32)>,
    signatures: Vec<[u32; NUM_PERM]>,
}

const NONE: u32 = u32::MAX;

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
        NearDupIndex { threshold, bands, rows, heads: HashMap::default(), entries: Vec::new(), signatures: Vec::new() }
    }

    fn band_key(&self, sig: &[u32; NUM_PERM], band: usize) -> u64 {
        let slice = &sig[band * self.rows..(band + 1) * self.rows];
        slice.iter().fold(mix(band as u64 + 1), |h, &x| mix(h ^ x as u64))
    }

    /// True when a near-duplicate of `text` was inserted before; otherwise inserts it.
    pub fn check_and_insert(&mut self, text: &str) -> bool {
        let Some(sig) = signature(text) else { return false };
        let mut keys = [0u64; 64];
        for (band, key) in keys[..self.bands].iter_mut().enumerate() {
            *key = self.band_key(&sig, band);
            let mut e = self.heads.get(key).copied().unwrap_or(NONE);
            while e != NONE {
                let (id, next) = self.entries[e as usize];
                if similarity(&self.signatures[id as usize], &sig) >= self.threshold {
                    return true;
                }
                e = next;
            }
        }
        let id = self.signatures.len() as u32;
        for &key in &keys[..self.bands] {
            let new = self.entries.len() as u32;
            let head = self.heads.entry(key).or_insert(NONE);
            self.entries.push((id, *head));
            *head = new;
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
