//! Consistent pseudonyms: instead of a placeholder, each distinct value in a document gets a
//! fake value of the same kind and format (张伟 → 李静, a mobile number → another valid mobile
//! number, an ID number → a fake one with a valid checksum), the same every time it appears in
//! that document, so a conversation stays coherent and the text stays natural.
//!
//! Fakes are drawn from a hash of (salt, type, value, attempt): with a random salt per run they
//! cannot be mapped back to the originals, and two values in one document never share a fake.
use std::collections::HashSet;

const SURNAMES: &[&str] = &["李", "王", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高", "林", "何", "郭", "马", "罗"];
const GIVEN: &[&str] = &[
    "明", "静", "伟", "芳", "娜", "敏", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "超", "霞", "平", "刚", "桂英", "秀英", "建华", "志强", "晓燕", "海燕", "丽华", "文博",
    "思远", "雨桐", "子涵",
];
const EN_FIRST: &[&str] = &["Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Jamie", "Riley", "Avery", "Quinn", "Drew", "Robin"];
const EN_LAST: &[&str] = &["Smith", "Lee", "Brown", "Walker", "Young", "Hall", "Green", "Baker", "Carter", "Reed", "Price", "Ellis"];
const ROADS: &[&str] = &["和平路", "人民路", "解放路", "建设路", "中山路", "光明街", "幸福路", "朝阳路", "新华路", "胜利街"];
const EN_STREETS: &[&str] = &["Oak Street", "Maple Avenue", "Elm Road", "Cedar Lane", "Pine Street", "Lake Drive", "Hill Road", "Park Avenue"];

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash(salt: u64, kind: &str, value: &str, attempt: u64) -> u64 {
    let mut h = mix(salt ^ attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for b in kind.bytes().chain([0xff]).chain(value.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    mix(h)
}

/// Replaces every ASCII digit of `value` from the position `from` on by pseudo-random digits,
/// keeping separators and layout.
fn redigit(value: &str, from: usize, mut h: u64) -> String {
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            seen += 1;
            if seen <= from {
                return c;
            }
            h = mix(h.wrapping_add(seen as u64));
            char::from(b'0' + (h % 10) as u8)
        })
        .collect()
}

fn luhn_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let n = (*d - b'0') as u32;
            if i % 2 == 0 {
                let m = n * 2;
                if m > 9 { m - 9 } else { m }
            } else {
                n
            }
        })
        .sum();
    b'0' + ((10 - sum % 10) % 10) as u8
}

/// A fake of the same kind; None for types without a fake format (the caller then uses a
/// numbered placeholder).
fn fake(kind: &str, value: &str, h: u64) -> Option<String> {
    let pick = |list: &[&'static str], k: u64| list[(mix(h ^ k) % list.len() as u64) as usize];
    Some(match kind {
        "NAME" if value.is_ascii() => {
            if value.contains(' ') { format!("{} {}", pick(EN_FIRST, 1), pick(EN_LAST, 2)) } else { pick(EN_LAST, 2).to_string() }
        }
        // a lone surname (王经理) stays one character
        "NAME" if value.chars().count() == 1 => pick(SURNAMES, 1).to_string(),
        "NAME" => format!("{}{}", pick(SURNAMES, 1), pick(GIVEN, 2)),
        "PHONE" => {
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            // keep the country code, the mobile prefix "1" + network digit, or the area code
            let keep = if let Some(i) = digits.find('1').filter(|_| !digits.starts_with('0')) {
                i + 2
            } else {
                value.split(['-', ')', ' ']).next().map_or(3, |a| a.chars().filter(char::is_ascii_digit).count())
            };
            let mut s = redigit(value, keep, h);
            // a landline number does not start with 0 or 1 after the area code
            if digits.starts_with('0') {
                let pos = s.char_indices().filter(|(_, c)| c.is_ascii_digit()).nth(keep).map(|(i, _)| i);
                if let Some(i) = pos {
                    s.replace_range(i..i + 1, &char::from(b'2' + (h % 8) as u8).to_string());
                }
            }
            s
        }
        "EMAIL" => format!("user{}@example.com", h % 100_000),
        "IP" => format!("192.0.2.{}", 1 + h % 254),
        "ID_CARD" => {
            // area 110101, a real birth date, the sequence, the MOD 11-2 check character
            const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
            let body = format!("110101{}{:02}{:02}{:03}", 1950 + h % 55, 1 + (h >> 8) % 12, 1 + (h >> 16) % 28, (h >> 24) % 1000);
            let sum: u32 = body.bytes().zip(W).map(|(d, w)| (d - b'0') as u32 * w).sum();
            format!("{body}{}", b"10X98765432"[(sum % 11) as usize] as char)
        }
        "BANK_CARD" => {
            let digits = value.chars().filter(char::is_ascii_digit).count();
            let mut body: Vec<u8> = redigit(&"0".repeat(digits - 1), 0, h).into_bytes();
            body[0] = b'6';
            body[1] = b'2';
            body.push(luhn_digit(&body));
            // keep the groups of four when the original had them
            let plain = String::from_utf8(body).unwrap();
            if value.contains(' ') || value.contains('-') {
                let sep = if value.contains(' ') { " " } else { "-" };
                plain.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(sep)
            } else {
                plain
            }
        }
        "ADDRESS" if value.is_ascii() => format!("{} {}", 1 + h % 999, pick(EN_STREETS, 3)),
        "ADDRESS" => format!("示例市{}{}号", pick(ROADS, 3), 1 + h % 300),
        _ => return None,
    })
}

/// Fakes for one document: the same value always gets the same fake, two values never share one.
pub struct DocumentPseudonyms {
    salt: u64,
    given: std::collections::HashMap<(String, String), String>,
    used: HashSet<String>,
}

impl DocumentPseudonyms {
    pub fn new(salt: u64) -> Self {
        DocumentPseudonyms { salt, given: Default::default(), used: HashSet::new() }
    }

    /// The fake for `value` of type `kind` (`key` identifies the value: digits only for numbers).
    pub fn get(&mut self, kind: &str, key: String, value: &str) -> Option<String> {
        let key = (kind.to_string(), key);
        if let Some(f) = self.given.get(&key) {
            return Some(f.clone());
        }
        for attempt in 0..64 {
            let f = fake(kind, value, hash(self.salt, kind, &key.1, attempt))?;
            if f != value && !self.used.contains(&f) {
                self.used.insert(f.clone());
                self.given.insert(key, f.clone());
                return Some(f);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::{bank_card, id_card};

    #[test]
    fn fakes_keep_the_format() {
        for salt in 0..50 {
            let mut p = DocumentPseudonyms::new(salt);
            let id = p.get("ID_CARD", "x".into(), "11010519491231002X").unwrap();
            assert!(id_card::is_valid(&id), "{id}");
            let card = p.get("BANK_CARD", "c".into(), "6222 0212 3456 7890").unwrap();
            assert!(bank_card::is_valid(&card.replace(' ', "")) && card.len() == 19, "{card}");
            let phone = p.get("PHONE", "13812345678".into(), "138-1234-5678").unwrap();
            assert!(phone.starts_with("13") && phone.len() == 13 && phone.as_bytes()[3] == b'-', "{phone}");
            let land = p.get("PHONE", "01012345678".into(), "010-12345678").unwrap();
            assert!(land.starts_with("010-") && land.len() == 12 && !land[4..].starts_with(['0', '1']), "{land}");
            let name = p.get("NAME", "张伟".into(), "张伟").unwrap();
            assert!((2..=3).contains(&name.chars().count()) && name != "张伟");
            assert_eq!(p.get("NAME", "张伟".into(), "张伟").unwrap(), name, "consistent within a document");
            assert_ne!(p.get("NAME", "王芳".into(), "王芳").unwrap(), name, "two people, two fakes");
        }
    }
}
