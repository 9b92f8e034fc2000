//! De-identification: personal data replaced by typed placeholders (`<PHONE>`, `<ID_CARD>`,
//! `<BANK_CARD>`, `<EMAIL>`, `<IP>`, `<ADDRESS>`, `<NAME>`, or the user's own types) before
//! anything is stored. Addresses and names are found from their structure and context
//! (`address`, `name`); the user's list of names or terms adds to them. Numbers are checked, not just matched: ID numbers by birth date and checksum, bank
//! cards by issuer prefix and Luhn, IPv4 octets by range; none may be glued to a longer run of
//! letters or digits. With `consistent` placeholders each distinct value in a document gets its
//! own numbered placeholder (`<PHONE_1>`, `<PHONE_2>`), and with `pseudonyms` a consistent fake
//! value of the same format instead (`pseudonym`), so a conversation stays coherent.
//! Only counts are reported; the values themselves never reach a log.
pub mod address;
pub mod bank_card;
pub mod id_card;
pub mod name;
pub mod pseudonym;

use std::collections::{BTreeMap, HashMap};

use regex::Regex;

use crate::error::{DataError, Result};

/// What was found: the type name (`PHONE`, …) and the span in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

enum Matcher {
    Regex(Regex),
    /// A finder of its own (addresses, names in context): pushes byte spans.
    Spans(fn(&str, &mut Vec<(usize, usize)>)),
}

struct Detector {
    kind: String,
    /// Lower is preferred when two findings overlap.
    priority: u8,
    matcher: Matcher,
    check: fn(&str) -> bool,
    /// The match must not touch ASCII letters or digits on either side.
    bounded: bool,
    /// Matches consist only of digits and the characters of `NUMBER_PUNCTUATION`: the regex is
    /// run only over the runs of such characters that hold a digit (see `number_runs`).
    numeric: bool,
}

/// What the numeric built-in patterns may match besides digits (phones: `+86 (0755) 1234-5678`,
/// IPs, the `X` of ID numbers).
const NUMBER_PUNCTUATION: &[u8] = b" -().+Xx";

/// The byte ranges of the maximal runs of digits (any script: the regex `\d` is Unicode-aware) and
/// `NUMBER_PUNCTUATION` that hold at least one digit. Every match of a numeric pattern lies inside
/// one run, and a regex searched run by run finds the same matches as over the whole text (no
/// match can span a character outside the runs, and the patterns use no look-around), while the
/// CJK and letter text in between is skipped with a byte scan instead of the regex automaton.
fn number_runs(text: &str, out: &mut Vec<(usize, usize)>) {
    out.clear();
    let mut run: Option<(usize, bool)> = None; // (start, has a digit)
    let mut close = |run: &mut Option<(usize, bool)>, end: usize| {
        if let Some((start, true)) = run.take() {
            out.push((start, end));
        }
    };
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        let (member, digit) = if c.is_ascii() {
            (c.is_ascii_digit() || NUMBER_PUNCTUATION.contains(&(c as u8)), c.is_ascii_digit())
        } else if matches!(c as u32, 0x2E80..=0x9FFF | 0xAC00..=0xD7AF) {
            // CJK punctuation, kana and ideographs, Hangul: no decimal digit (`\d` is category
            // Nd) in these blocks; checked first because `is_numeric` is a table search
            (false, false)
        } else {
            let n = c.is_numeric();
            (n, n)
        };
        if member {
            let r = run.get_or_insert((i, false));
            r.1 |= digit;
        } else {
            close(&mut run, i);
        }
    }
    close(&mut run, text.len());
}

/// The built-in types, in the order they are tried.
pub const BUILTIN_TYPES: [&str; 7] = ["ID_CARD", "BANK_CARD", "PHONE", "IP", "EMAIL", "ADDRESS", "NAME"];

fn always(_: &str) -> bool {
    true
}

fn digits_only(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn bank_card_ok(s: &str) -> bool {
    // separators, when present, must split the number in groups of four
    let groups: Vec<&str> = s.split([' ', '-']).collect();
    (groups.len() == 1 || groups[..groups.len() - 1].iter().all(|g| g.len() == 4)) && bank_card::is_valid(&digits_only(s))
}

fn ipv4_ok(s: &str) -> bool {
    s.split('.').all(|o| o.parse::<u32>().is_ok_and(|v| v <= 255) && !(o.len() > 1 && o.starts_with('0')))
}

#[derive(Debug, Clone, Default)]
pub struct PiiOptions {
    /// Number the placeholders per distinct value within a document.
    pub consistent: bool,
    /// Extra detectors: (TYPE, regex).
    pub patterns: Vec<(String, String)>,
    /// Names or terms to mask as `<NAME>`.
    pub terms: Vec<String>,
    /// Built-in types not to look for (e.g. `ADDRESS`, `NAME`).
    pub disable: Vec<String>,
    /// Replace each value by a consistent fake of the same format instead of a placeholder.
    pub pseudonyms: bool,
    /// Salt of the pseudonyms (None: a random one per run, so fakes cannot be traced back).
    pub pseudonym_seed: Option<u64>,
}

pub struct Deidentifier {
    detectors: Vec<Detector>,
    consistent: bool,
    pseudonym_salt: Option<u64>,
}

/// Counts per type.
pub type PiiCounts = BTreeMap<String, usize>;

impl Deidentifier {
    pub fn new(opts: &PiiOptions) -> Result<Self> {
        for d in &opts.disable {
            if !BUILTIN_TYPES.contains(&d.to_ascii_uppercase().as_str()) {
                return Err(DataError::Invalid(format!("PII type {d:?} cannot be disabled: expected one of {}", BUILTIN_TYPES.join(", "))));
            }
        }
        let re = |p: &str| Matcher::Regex(Regex::new(p).expect("built-in pattern"));
        let mut detectors = vec![
            Detector { kind: "ID_CARD".into(), priority: 0, matcher: re(r"\d{17}[\dXx]"), check: id_card::is_valid, bounded: true, numeric: true },
            Detector { kind: "BANK_CARD".into(), priority: 1, matcher: re(r"\d{4}(?:[ -]?\d{4}){2}[ -]?\d{1,7}"), check: bank_card_ok, bounded: true, numeric: true },
            Detector {
                kind: "PHONE".into(),
                priority: 2,
                // mobiles; landlines with an area code (010-12345678, (0755)12345678, 0755 1234567);
                // 400/800 service numbers
                matcher: re(r"(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}|\(0\d{2,3}\) ?\d{7,8}|0\d{2,3}[- ]\d{7,8}|[48]00[- ]?\d{3}[- ]?\d{4}"),
                check: always,
                bounded: true,
                numeric: true,
            },
            Detector { kind: "IP".into(), priority: 3, matcher: re(r"\d{1,3}(?:\.\d{1,3}){3}"), check: ipv4_ok, bounded: true, numeric: true },
            Detector { kind: "EMAIL".into(), priority: 4, matcher: re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), check: always, bounded: false, numeric: false },
            Detector { kind: "ADDRESS".into(), priority: 5, matcher: Matcher::Spans(address::find), check: always, bounded: false, numeric: false },
            Detector { kind: "NAME".into(), priority: 7, matcher: Matcher::Spans(name::find), check: always, bounded: false, numeric: false },
        ];
        detectors.retain(|d| !opts.disable.iter().any(|x| x.eq_ignore_ascii_case(&d.kind)));
        for (kind, pattern) in &opts.patterns {
            let r = Regex::new(pattern).map_err(|e| DataError::Invalid(format!("PII pattern for {kind}: {e}")))?;
            detectors.push(Detector { kind: kind.to_ascii_uppercase(), priority: 6, matcher: Matcher::Regex(r), check: always, bounded: false, numeric: false });
        }
        let terms: Vec<String> = opts.terms.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).map(regex::escape).collect();
        if !terms.is_empty() {
            let r = Regex::new(&terms.join("|")).map_err(|e| DataError::Invalid(format!("term list: {e}")))?;
            detectors.push(Detector { kind: "NAME".into(), priority: 6, matcher: Matcher::Regex(r), check: always, bounded: false, numeric: false });
        }
        let pseudonym_salt = opts.pseudonyms.then(|| {
            opts.pseudonym_seed.unwrap_or_else(|| {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
                h.finish()
            })
        });
        Ok(Deidentifier { detectors, consistent: opts.consistent, pseudonym_salt })
    }

    /// Every piece of personal data in `text`, non-overlapping, in order.
    pub fn find(&self, text: &str) -> Vec<Found> {
        let bytes = text.as_bytes();
        let touches = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric());
        // the built-in detectors need a digit (numbers) or an '@' (e-mail): skip what cannot match
        let has_digit = bytes.iter().any(u8::is_ascii_digit);
        let has_at = bytes.contains(&b'@');
        let mut all: Vec<(usize, usize, u8, &str)> = Vec::new();
        let mut spans = Vec::new();
        let mut runs = Vec::new();
        if has_digit {
            number_runs(text, &mut runs);
        }
        for d in &self.detectors {
            if (d.bounded && !has_digit) || (d.kind == "EMAIL" && !has_at) {
                continue;
            }
            spans.clear();
            match &d.matcher {
                Matcher::Regex(re) if d.numeric => {
                    for &(rs, re_end) in &runs {
                        spans.extend(re.find_iter(&text[rs..re_end]).map(|m| (rs + m.start(), rs + m.end())));
                    }
                }
                Matcher::Regex(re) => spans.extend(re.find_iter(text).map(|m| (m.start(), m.end()))),
                Matcher::Spans(f) => f(text, &mut spans),
            }
            for &(s, e) in &spans {
                if d.bounded && ((s > 0 && touches(s - 1)) || touches(e) || (d.kind == "IP" && bytes.get(e) == Some(&b'.') && touches(e + 1))) {
                    continue;
                }
                if (d.check)(&text[s..e]) {
                    all.push((s, e, d.priority, &d.kind));
                }
            }
        }
        // earliest first; on a tie the stronger type, then the longer match
        all.sort_by_key(|&(s, e, p, _)| (s, p, std::cmp::Reverse(e)));
        let mut out: Vec<Found> = Vec::new();
        for (s, e, _, kind) in all {
            if out.last().is_none_or(|last| s >= last.end) {
                out.push(Found { kind: kind.to_string(), start: s, end: e });
            }
        }
        out
    }

    /// `text` with every finding replaced by its placeholder; adds to `counts`.
    pub fn mask(&self, text: &str, counts: &mut PiiCounts) -> String {
        self.mask_in(text, counts, &mut self.document())
    }

    /// The numbering / pseudonyms of one document: pass the same one for every text of a record
    /// (all the turns of a conversation) so that a value gets the same replacement in each.
    pub fn document(&self) -> DocumentState {
        DocumentState { numbering: HashMap::new(), next: HashMap::new(), pseudonyms: self.pseudonym_salt.map(pseudonym::DocumentPseudonyms::new) }
    }

    /// Like `mask`, numbering and pseudonyms shared through `doc`.
    pub fn mask_in(&self, text: &str, counts: &mut PiiCounts, doc: &mut DocumentState) -> String {
        let found = self.find(text);
        self.replace(text, found, counts, doc)
    }

    /// Masks all the texts of one document (the turns of a conversation, a prompt and its answer)
    /// with shared numbering and pseudonyms. A name found from its context in one place
    /// (`联系人：张伟`) is also masked where it appears without one (`张伟的电话`). Returns
    /// whether anything was masked.
    pub fn mask_document(&self, texts: &mut [&mut String], counts: &mut PiiCounts) -> bool {
        let found: Vec<Vec<Found>> = texts.iter().map(|t| self.find(t)).collect();
        if found.iter().all(Vec::is_empty) {
            return false;
        }
        let mut names: Vec<&str> = Vec::new();
        for (t, f) in texts.iter().zip(&found) {
            for x in f.iter().filter(|x| x.kind == "NAME" && t[x.start..x.end].chars().count() >= 2) {
                names.push(&t[x.start..x.end]);
            }
        }
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        names.dedup();
        let names: Vec<String> = names.into_iter().map(String::from).collect();
        let mut doc = self.document();
        for (t, mut f) in texts.iter_mut().zip(found) {
            for name in &names {
                for (s, _) in t.match_indices(name.as_str()) {
                    let e = s + name.len();
                    if !f.iter().any(|x| x.start < e && s < x.end) {
                        f.push(Found { kind: "NAME".into(), start: s, end: e });
                    }
                }
            }
            f.sort_by_key(|x| x.start);
            if !f.is_empty() {
                let masked = self.replace(t, f, counts, &mut doc);
                **t = masked;
            }
        }
        true
    }

    fn replace(&self, text: &str, found: Vec<Found>, counts: &mut PiiCounts, doc: &mut DocumentState) -> String {
        if found.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in &found {
            out.push_str(&text[at..f.start]);
            *counts.entry(f.kind.clone()).or_default() += 1;
            let value = &text[f.start..f.end];
            if let Some(fake) = doc.pseudonyms.as_mut().and_then(|p| p.get(&f.kind, digits_or_raw(value), value)) {
                out.push_str(&fake);
            } else if self.consistent || doc.pseudonyms.is_some() {
                let key = (f.kind.clone(), digits_or_raw(value));
                let DocumentState { numbering, next, .. } = doc;
                let n = *numbering.entry(key).or_insert_with(|| {
                    let c = next.entry(f.kind.clone()).or_default();
                    *c += 1;
                    *c
                });
                out.push_str(&format!("<{}_{n}>", f.kind));
            } else {
                out.push_str(&format!("<{}>", f.kind));
            }
            at = f.end;
        }
        out.push_str(&text[at..]);
        out
    }
}

/// Replacements given so far in one document.
pub struct DocumentState {
    numbering: HashMap<(String, String), usize>,
    next: HashMap<String, usize>,
    pseudonyms: Option<pseudonym::DocumentPseudonyms>,
}

/// Phone numbers written with or without separators are the same value.
fn digits_or_raw(s: &str) -> String {
    let d = digits_only(s);
    if d.len() >= 7 { d } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Searching the numeric patterns run by run finds exactly what a search of the whole text
    /// finds.
    #[test]
    fn number_runs_find_the_same_matches_as_the_whole_text() {
        let d = Deidentifier::new(&PiiOptions::default()).unwrap();
        let alphabet: Vec<char> = "0123456789 -().+Xx@a中，。١٢٣０９〇".chars().collect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut runs = Vec::new();
        for _ in 0..3000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = 10 + (state >> 59) as usize * 3;
            let text: String = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    // digits most of the time, so that long numbers occur
                    let i = (state >> 33) as usize;
                    if i % 3 != 0 { alphabet[i % 10] } else { alphabet[i % alphabet.len()] }
                })
                .collect();
            number_runs(&text, &mut runs);
            for det in d.detectors.iter().filter(|x| x.numeric) {
                let Matcher::Regex(re) = &det.matcher else { unreachable!() };
                let whole: Vec<(usize, usize)> = re.find_iter(&text).map(|m| (m.start(), m.end())).collect();
                let piecewise: Vec<(usize, usize)> =
                    runs.iter().flat_map(|&(s, e)| re.find_iter(&text[s..e]).map(move |m| (s + m.start(), s + m.end()))).collect();
                assert_eq!(piecewise, whole, "{} in {text:?}", det.kind);
            }
        }
    }
}
