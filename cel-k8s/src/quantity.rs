//! resource.Quantity for CEL's `kubernetes.Quantity`: upstream's parsing
//! grammar and its two internal forms, because they are visible to rules
//! (`isInteger` is only ever true for the small "int64 amount" form).
//!
//! Values are kept exactly as a count of nano-units in an i128. Every value a
//! parse can produce is a whole number of nano-units (upstream rounds finer
//! values up to 1n), so comparisons never round. A quantity whose magnitude
//! does not fit (above about 1.7e29, only reachable with a decimal exponent
//! such as `1e40`) is refused rather than expanded: upstream keeps it
//! symbolically, but expanding it on client input would cost unbounded
//! memory.
//!
//! Quantities also print as upstream's canonical form (`Display`), in the
//! format their suffix chose, for the quota and limit range messages and
//! status that show them.

use std::cmp::Ordering;
use std::fmt;

/// Upstream's message for a string that does not follow the grammar.
pub const ERR_FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
pub const ERR_NUMERIC: &str = "unable to parse numeric part of quantity";
pub const ERR_SUFFIX: &str = "unable to parse quantity's suffix";
pub const ERR_TOO_LARGE: &str = "quantity is too large to be compared exactly";

const NANO_PER_UNIT: i128 = 1_000_000_000;
/// Upstream caps parsed values that take the arbitrary-precision path at
/// the largest int64.
const MAX_ALLOWED_NANOS: i128 = (i64::MAX as i128) * NANO_PER_UNIT;

#[derive(Clone, Debug)]
pub struct Quantity {
    /// The exact value times 1e9.
    nanos: i128,
    /// `Some((value, scale))` while upstream would hold the quantity as an
    /// int64Amount (value * 10^scale); `None` once it holds an inf.Dec.
    int: Option<(i64, i32)>,
    /// How it prints (upstream's Quantity.Format).
    format: Format,
}

/// Upstream's quantity formats, chosen by the suffix a quantity was parsed
/// with: none or an SI letter, a binary suffix, or a decimal exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// Equality is by value, as upstream's Quantity.Equal: 1Gi == 1024Mi.
impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}
impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

fn pow10(exp: i64) -> Option<i128> {
    u32::try_from(exp).ok().and_then(|e| 10i128.checked_pow(e))
}

fn int_form(value: i64, scale: i32) -> Result<Quantity, &'static str> {
    let nanos = pow10(i64::from(scale) + 9).and_then(|p| i128::from(value).checked_mul(p)).ok_or(ERR_TOO_LARGE)?;
    Ok(Quantity { nanos, int: Some((value, scale)), format: Format::DecimalSI })
}

/// The suffix's base, exponent and whether it is a binary (2^n) suffix.
fn interpret_suffix(s: &str) -> Option<(u32, i32)> {
    let decimal = |e| Some((10, e));
    match s {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => Some((2, 10)),
        "Mi" => Some((2, 20)),
        "Gi" => Some((2, 30)),
        "Ti" => Some((2, 40)),
        "Pi" => Some((2, 50)),
        "Ei" => Some((2, 60)),
        _ if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            // Go's ParseInt(_, 10, 32): an optional sign, then digits only.
            let rest = &s[1..];
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            rest.parse::<i32>().ok().map(|e| (10, e))
        }
        _ => None,
    }
}

struct Parts<'a> {
    positive: bool,
    /// The integer digits, leading zeros stripped ("0" if none).
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

/// Splits a quantity string as upstream's parseQuantityString does,
/// including its leniencies ("1." and "-" are accepted).
fn split(s: &str) -> Result<Parts<'_>, &'static str> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos = 1
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    while pos < b.len() && b[pos] == b'0' {
        pos += 1;
    }
    let digits_end = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let end = digits_end(pos);
    let num = if end == pos { "0" } else { &s[pos..end] };
    pos = end;
    let mut denom = "";
    if pos < b.len() && b[pos] == b'.' {
        let end = digits_end(pos + 1);
        denom = &s[pos + 1..end];
        pos = end;
    }
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    if digits_end(pos) != b.len() {
        return Err(ERR_FORMAT_WRONG);
    }
    Ok(Parts { positive, num, denom, suffix: &s[suffix_start..] })
}

impl Quantity {
    pub fn parse(s: &str) -> Result<Quantity, &'static str> {
        if s.is_empty() {
            return Err(ERR_FORMAT_WRONG);
        }
        let p = split(s)?;
        let (base, exponent) = interpret_suffix(p.suffix).ok_or(ERR_SUFFIX)?;
        let format = if base == 2 {
            Format::BinarySI
        } else if p.suffix.starts_with(['e', 'E']) {
            Format::DecimalExponent
        } else {
            Format::DecimalSI
        };
        let digits = p.num.len() as i64 + p.denom.len() as i64;
        // Upstream keeps a quantity as an int64 amount when it has few
        // enough digits for its suffix, and as an inf.Dec otherwise.
        let (precision, mantissa_shift, scale) = if base == 10 {
            (18 - digits, 0, i64::from(exponent) - p.denom.len() as i64)
        } else if p.denom.is_empty() {
            (15 - p.num.len() as i64 - (exponent as f32 * 3.0 / 10.0) as i64 - 1, exponent, 0)
        } else {
            (-1, 0, 0)
        };
        if precision >= 0 && scale >= -9 {
            let shifted: i64 = format!("{}{}", p.num, p.denom).parse().map_err(|_| ERR_NUMERIC)?;
            if let Some(v) = shifted.checked_mul(1i64 << mantissa_shift) {
                let v = if p.positive { v } else { -v };
                let scale = i32::try_from(scale).map_err(|_| ERR_TOO_LARGE)?;
                return int_form(v, scale).map(|q| Quantity { format, ..q });
            }
        }
        let nanos = dec_nanos(&p, base, exponent)?;
        Ok(Quantity { nanos: if p.positive { nanos } else { -nanos }, int: None, format })
    }

    /// An integer as upstream's NewQuantity(i, DecimalExponent).
    pub fn from_int(i: i64) -> Quantity {
        Quantity { nanos: i128::from(i) * NANO_PER_UNIT, int: Some((i, 0)), format: Format::DecimalSI }
    }

    /// Zero in the given format (upstream's `Quantity{Format: f}`).
    pub fn zero(format: Format) -> Quantity {
        Quantity { nanos: 0, int: Some((0, 0)), format }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Upstream's MilliValue: the value in thousandths, rounded up.
    pub fn milli_value(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// Upstream's Value: the value rounded up to a whole number.
    pub fn value(&self) -> i128 {
        ceil_div(self.nanos, NANO_PER_UNIT)
    }

    pub fn sign(&self) -> i64 {
        self.nanos.signum() as i64
    }

    /// Upstream's AsInt64: only the int64-amount form with a non-negative
    /// scale converts.
    pub fn as_i64(&self) -> Option<i64> {
        let (value, scale) = self.int?;
        if scale < 0 {
            return None;
        }
        let p = i64::try_from(pow10(i64::from(scale))?).ok()?;
        value.checked_mul(p)
    }

    pub fn as_approximate_f64(&self) -> f64 {
        self.nanos as f64 / NANO_PER_UNIT as f64
    }

    /// Upstream's Quantity.Add: stays an int64 amount unless that
    /// overflows, then continues exactly.
    pub fn add(&self, other: &Quantity) -> Result<Quantity, &'static str> {
        let nanos = self.nanos.checked_add(other.nanos).ok_or(ERR_TOO_LARGE)?;
        let int = match (self.int, other.int) {
            (Some(a), Some(b)) => int_add(a, b),
            _ => None,
        };
        Ok(Quantity { nanos, int, format: self.sum_format(other) })
    }

    pub fn sub(&self, other: &Quantity) -> Result<Quantity, &'static str> {
        let neg = Quantity {
            nanos: other.nanos.checked_neg().ok_or(ERR_TOO_LARGE)?,
            int: other.int.and_then(|(v, s)| v.checked_neg().map(|v| (v, s))),
            format: other.format,
        };
        // A value of i64::MIN cannot be negated as an int64 amount: upstream
        // then falls back to its exact form, as `neg.int == None` does here.
        let nanos = self.nanos.checked_add(neg.nanos).ok_or(ERR_TOO_LARGE)?;
        let int = match (self.int, neg.int) {
            (Some(a), Some(b)) => int_add(a, b),
            _ => None,
        };
        Ok(Quantity { nanos, int, format: self.sum_format(other) })
    }

    /// A sum keeps the receiver's format, but a zero takes the other's
    /// (upstream's Add).
    fn sum_format(&self, other: &Quantity) -> Format {
        if self.nanos == 0 {
            other.format
        } else {
            self.format
        }
    }
}

fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n.div_euclid(d);
    if n.rem_euclid(d) != 0 {
        q + 1
    } else {
        q
    }
}

const SI_SUFFIXES: &[(i32, &str)] =
    &[(-9, "n"), (-6, "u"), (-3, "m"), (0, ""), (3, "k"), (6, "M"), (9, "G"), (12, "T"), (15, "P"), (18, "E")];
const BINARY_SUFFIXES: &[&str] = &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// Upstream's canonical form (Quantity.String): the format's largest
/// suffix that keeps the number whole; binary only for whole values of at
/// least 1024 in magnitude, else decimal.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let whole = self.nanos % NANO_PER_UNIT == 0;
        if self.format == Format::BinarySI && whole && self.nanos.abs() >= 1024 * NANO_PER_UNIT {
            let mut v = self.nanos / NANO_PER_UNIT;
            let mut k = 0;
            while k + 1 < BINARY_SUFFIXES.len() && v % 1024 == 0 {
                v /= 1024;
                k += 1;
            }
            return write!(f, "{v}{}", BINARY_SUFFIXES[k]);
        }
        let (mut m, mut e) = (self.nanos, -9i32);
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        let shift = e.rem_euclid(3);
        m *= 10i128.pow(shift as u32);
        e -= shift;
        match (self.format, SI_SUFFIXES.iter().find(|(x, _)| *x == e)) {
            (Format::DecimalExponent, _) if e == 0 => write!(f, "{m}"),
            (Format::DecimalExponent, _) | (_, None) => write!(f, "{m}e{e}"),
            (_, Some((_, suffix))) => write!(f, "{m}{suffix}"),
        }
    }
}

/// int64Amount.Add: aligns to the smaller scale; None on overflow.
fn int_add(a: (i64, i32), b: (i64, i32)) -> Option<(i64, i32)> {
    if b.0 == 0 {
        return Some(a);
    }
    if a.0 == 0 {
        return Some(b);
    }
    let (hi, lo) = if a.1 >= b.1 { (a, b) } else { (b, a) };
    let p = i64::try_from(pow10(i64::from(hi.1) - i64::from(lo.1))?).ok()?;
    let v = hi.0.checked_mul(p)?.checked_add(lo.0)?;
    Some((v, lo.1))
}

/// The magnitude in nano-units of a quantity upstream parses into an inf.Dec:
/// exact, rounded up to a whole nano-unit, capped at the largest int64. Linear
/// in the length of the string, whatever the exponent.
fn dec_nanos(p: &Parts<'_>, base: u32, exponent: i32) -> Result<i128, &'static str> {
    // Little-endian decimal digits of num.denom without its point.
    let mut digits: Vec<u8> = p.num.bytes().chain(p.denom.bytes()).rev().map(|c| c - b'0').collect();
    let mut point = i64::from(exponent) - p.denom.len() as i64;
    if base == 2 {
        point = -(p.denom.len() as i64);
        let m: u128 = 1u128 << exponent;
        let mut carry: u128 = 0;
        for d in digits.iter_mut() {
            let cur = u128::from(*d) * m + carry;
            *d = (cur % 10) as u8;
            carry = cur / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        return Ok(0);
    }
    // value = digits * 10^point; in nano-units the point moves 9 places.
    let k = point + 9;
    let n = digits.len() as i64;
    // More than 29 integer digits is beyond the cap.
    if n + k > 29 {
        return Ok(MAX_ALLOWED_NANOS);
    }
    let int_digits = (n + k).max(0) as usize;
    let mut nanos: i128 = 0;
    for &d in digits.iter().rev().take(int_digits) {
        nanos = nanos * 10 + i128::from(d);
    }
    if k > 0 {
        nanos *= pow10(k).ok_or(ERR_TOO_LARGE)?;
    }
    let frac_nonzero = digits.iter().rev().skip(int_digits).any(|&d| d != 0);
    if frac_nonzero {
        nanos += 1;
    }
    Ok(nanos.min(MAX_ALLOWED_NANOS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn grammar() {
        assert_eq!(q("12Mi").nanos, 12 * (1 << 20) * NANO_PER_UNIT);
        assert_eq!(q("1.5Gi").nanos, 1_610_612_736 * NANO_PER_UNIT);
        assert_eq!(q("100m").nanos, 100_000_000);
        assert_eq!(q("-3k").nanos, -3000 * NANO_PER_UNIT);
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1E-3"), q("1m"));
        assert_eq!(q("+.5"), q("500m"));
        assert_eq!(q("5n").nanos, 5);
        assert_eq!(q("5u").nanos, 5000);
        assert_eq!(q("0").nanos, 0);
        assert_eq!(Quantity::parse(""), Err(ERR_FORMAT_WRONG));
        assert_eq!(Quantity::parse("10Mo"), Err(ERR_FORMAT_WRONG));
        assert_eq!(Quantity::parse("1.5.5"), Err(ERR_FORMAT_WRONG));
        assert_eq!(Quantity::parse("10Mm"), Err(ERR_SUFFIX));
        assert_eq!(Quantity::parse("1Ki5"), Err(ERR_SUFFIX));
        assert_eq!(Quantity::parse("1e99999999999"), Err(ERR_SUFFIX));
    }

    #[test]
    fn rounding_capping_and_huge_exponents() {
        // Below a nano-unit rounds up, away from zero.
        assert_eq!(q("1e-10").nanos, 1);
        assert_eq!(q("-0.0000000001").nanos, -1);
        assert_eq!(q("1e-2000000000").nanos, 1);
        // The arbitrary-precision path is capped at the largest int64.
        assert_eq!(q("9999999999999999999999999999999999999G").nanos, MAX_ALLOWED_NANOS);
        assert_eq!(q(&format!("1{}", "0".repeat(100_000))).nanos, MAX_ALLOWED_NANOS);
        assert_eq!(q("1.5Ei").nanos, MAX_ALLOWED_NANOS.min(1_729_382_256_910_270_464 * NANO_PER_UNIT));
        // The int64-amount path is not capped upstream; huge ones are refused
        // here instead of being expanded.
        assert_eq!(q("10E").nanos, 10_000_000_000_000_000_000 * NANO_PER_UNIT);
        assert_eq!(Quantity::parse("1e2000000000"), Err(ERR_TOO_LARGE));
        assert_eq!(Quantity::parse("999999999999999999E"), Err(ERR_TOO_LARGE));
    }

    #[test]
    fn integers_follow_the_int64_amount_form() {
        assert_eq!(q("50k").as_i64(), Some(50_000));
        assert_eq!(q("50000000G").as_i64(), Some(50_000_000_000_000_000));
        assert_eq!(q("9999999999999999999999999999999999999G").as_i64(), None);
        assert_eq!(q("1000m").as_i64(), None, "a negative scale never converts upstream");
        assert_eq!(q("1.5Gi").as_i64(), None, "a fraction with a binary suffix is an inf.Dec upstream");
        assert_eq!(q("10E").as_i64(), None);
        let r = q("50k").add(&Quantity::from_int(20)).and_then(|x| x.sub(&q("100k"))).expect("arith");
        assert_eq!(r.as_i64(), Some(-49_980));
        assert_eq!(q("50k").sub(&Quantity::from_int(20)).expect("sub"), q("49980"));
        assert_eq!(q("50k").add(&q("20")).expect("add"), q("50.02k"));
        let big = q("9999999999999999999999999999999999999");
        let (a, b) = (big.add(&q("1")).expect("a"), big.add(&q("2")).expect("b"));
        assert_eq!(a.cmp(&b), Ordering::Less);
    }

    #[test]
    fn canonical_form() {
        let shown = |s: &str| q(s).to_string();
        assert_eq!(shown("1000"), "1k");
        assert_eq!(shown("1500"), "1500");
        assert_eq!(shown("0.5"), "500m");
        assert_eq!(shown("2000m"), "2");
        assert_eq!(shown("1024Mi"), "1Gi");
        assert_eq!(shown("1536Mi"), "1536Mi");
        assert_eq!(shown("512"), "512");
        assert_eq!(shown("1.5Gi"), "1536Mi");
        assert_eq!(shown("0.5Ki"), "512");
        assert_eq!(shown("1e3"), "1e3");
        assert_eq!(shown("-100m"), "-100m");
        assert_eq!(shown("0Gi"), "0");
        let sum = Quantity::zero(Format::DecimalSI).add(&q("1Gi")).and_then(|s| s.add(&q("512Mi"))).expect("sum");
        assert_eq!(sum.to_string(), "1536Mi");
        assert_eq!(q("500m").add(&q("1")).expect("sum").to_string(), "1500m");
        assert_eq!((q("1m").milli_value(), q("1n").milli_value(), q("1.5").value()), (1, 1, 2));
    }

    #[test]
    fn equality_and_order_by_value() {
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("200M"), q("0.2G"));
        assert_ne!(q("200M"), q("0.3G"));
        assert!(q("50M") < q("50Mi"));
        assert_eq!(q("-1").sign(), -1);
        assert_eq!(q("0").sign(), 0);
        assert!((q("50.703k").as_approximate_f64() - 50703.0).abs() < 1e-9);
    }
}
