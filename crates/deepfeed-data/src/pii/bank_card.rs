//! Bank card numbers: a known issuer prefix with that issuer's lengths (UnionPay 62: 16–19,
//! Visa 4: 13/16/19, Mastercard 51–55 / 22–27: 16, Amex 34/37: 15, JCB 35: 16–19) and a valid
//! Luhn check digit. Checking the length per issuer keeps 18-digit order numbers out.

/// Whether `digits` (digits only) is a plausible card number.
pub fn is_valid(digits: &str) -> bool {
    let b = digits.as_bytes();
    if !(13..=19).contains(&b.len()) || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let prefix2: u32 = digits[..2].parse().unwrap_or(0);
    let len = b.len();
    let issuer_length = match prefix2 {
        62 | 35 => (16..=19).contains(&len),
        34 | 37 => len == 15,
        51..=55 | 22..=27 => len == 16,
        40..=49 => matches!(len, 13 | 16 | 19),
        _ => false,
    };
    issuer_length && luhn(b)
}

fn luhn(b: &[u8]) -> bool {
    let sum: u32 = b
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let n = (d - b'0') as u32;
            if i % 2 == 1 {
                let m = n * 2;
                if m > 9 { m - 9 } else { m }
            } else {
                n
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn luhn_and_prefix() {
        assert!(super::is_valid("4111111111111111"));
        assert!(super::is_valid("6212261000000000009"), "UnionPay, 19 digits");
        assert!(!super::is_valid("4111111111111112"), "bad check digit");
        assert!(!super::is_valid("9111111111111111"), "unknown issuer");
        assert!(!super::is_valid("495154463662325238"), "Visa has no 18-digit numbers (an order number)");
        assert!(super::luhn(b"79927398713"));
    }
}
