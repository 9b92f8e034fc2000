//! De-identification: personal data replaced by typed placeholders (`<PHONE>`, `<ID_CARD>`,
//! `<BANK_CARD>`, `<EMAIL>`, `<IP>`, `<NAME>`, or the user's own types) before anything is
//! stored. Numbers are checked, not just matched: ID numbers by birth date and checksum, bank
//! cards by issuer prefix and Luhn, IPv4 octets by range; none may be glued to a longer run of
//! letters or digits. With `consistent` placeholders each distinct value in a document gets its
//! own numbered placeholder (`<PHONE_1>`, `<PHONE_2>`), so a conversation stays coherent.
//! Only counts are reported; the values themselves never reach a log.
pub mod bank_card;
pub mod id_card;

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

struct Detector {
    kind: String,
    /// Lower is preferred when two findings overlap.
    priority: u8,
    re: Regex,
    check: fn(&str) -> bool,
    /// The match must not touch ASCII letters or digits on either side.
    bounded: bool,
}

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
}

pub struct Deidentifier {
    detectors: Vec<Detector>,
    consistent: bool,
}

/// Counts per type.
pub type PiiCounts = BTreeMap<String, usize>;

impl Deidentifier {
    pub fn new(opts: &PiiOptions) -> Result<Self> {
        let re = |p: &str| Regex::new(p).expect("built-in pattern");
        let mut detectors = vec![
            Detector { kind: "ID_CARD".into(), priority: 0, re: re(r"\d{17}[\dXx]"), check: id_card::is_valid, bounded: true },
            Detector { kind: "BANK_CARD".into(), priority: 1, re: re(r"\d{4}(?:[ -]?\d{4}){2}[ -]?\d{1,7}"), check: bank_card_ok, bounded: true },
            Detector {
                kind: "PHONE".into(),
                priority: 2,
                re: re(r"(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}|\(0\d{2,3}\) ?\d{7,8}|0\d{2,3}-\d{7,8}"),
                check: always,
                bounded: true,
            },
            Detector { kind: "IP".into(), priority: 3, re: re(r"\d{1,3}(?:\.\d{1,3}){3}"), check: ipv4_ok, bounded: true },
            Detector { kind: "EMAIL".into(), priority: 4, re: re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), check: always, bounded: false },
        ];
        for (kind, pattern) in &opts.patterns {
            let r = Regex::new(pattern).map_err(|e| DataError::Invalid(format!("PII pattern for {kind}: {e}")))?;
            detectors.push(Detector { kind: kind.to_ascii_uppercase(), priority: 5, re: r, check: always, bounded: false });
        }
        let terms: Vec<String> = opts.terms.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).map(regex::escape).collect();
        if !terms.is_empty() {
            let r = Regex::new(&terms.join("|")).map_err(|e| DataError::Invalid(format!("term list: {e}")))?;
            detectors.push(Detector { kind: "NAME".into(), priority: 6, re: r, check: always, bounded: false });
        }
        Ok(Deidentifier { detectors, consistent: opts.consistent })
    }

    /// Every piece of personal data in `text`, non-overlapping, in order.
    pub fn find(&self, text: &str) -> Vec<Found> {
        let bytes = text.as_bytes();
        let touches = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric());
        // the built-in detectors need a digit (numbers) or an '@' (e-mail): skip what cannot match
        let has_digit = bytes.iter().any(u8::is_ascii_digit);
        let has_at = bytes.contains(&b'@');
        let mut all: Vec<(usize, usize, u8, &str)> = Vec::new();
        for d in &self.detectors {
            if (d.bounded && !has_digit) || (d.kind == "EMAIL" && !has_at) {
                continue;
            }
            for m in d.re.find_iter(text) {
                let (s, e) = (m.start(), m.end());
                if d.bounded && ((s > 0 && touches(s - 1)) || touches(e) || (d.kind == "IP" && bytes.get(e) == Some(&b'.') && touches(e + 1))) {
                    continue;
                }
                if (d.check)(m.as_str()) {
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
        let found = self.find(text);
        if found.is_empty() {
            return text.to_string();
        }
        let mut numbering: HashMap<(String, String), usize> = HashMap::new();
        let mut next: HashMap<String, usize> = HashMap::new();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in &found {
            out.push_str(&text[at..f.start]);
            *counts.entry(f.kind.clone()).or_default() += 1;
            if self.consistent {
                let key = (f.kind.clone(), digits_or_raw(&text[f.start..f.end]));
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

/// Phone numbers written with or without separators are the same value.
fn digits_or_raw(s: &str) -> String {
    let d = digits_only(s);
    if d.len() >= 7 { d } else { s.to_string() }
}
