//! Mainland China resident ID numbers (GB 11643-1999): 6-digit area code, birth date
//! YYYYMMDD, 3-digit sequence, ISO 7064 MOD 11-2 check character.

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

/// Whether `s` (18 characters) is a valid ID number: plausible area, real birth date, checksum.
pub fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    if !(b'1'..=b'8').contains(&b[0]) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    let (year, month, day) = (num(6..10), num(10..12), num(12..14));
    if !(1900..=2099).contains(&year) || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return false;
    }
    let sum: u32 = b[..17].iter().zip(WEIGHTS).map(|(d, w)| (d - b'0') as u32 * w).sum();
    b[17].to_ascii_uppercase() == CHECK[(sum % 11) as usize]
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksum_and_date() {
        // the published GB 11643 example
        assert!(super::is_valid("11010519491231002X"));
        assert!(super::is_valid("11010519491231002x"));
        assert!(!super::is_valid("110105194912310021"), "wrong check digit");
        assert!(!super::is_valid("110105194902300021"), "30 February");
        assert!(!super::is_valid("01010519491231002X"), "area cannot start with 0");
    }
}
