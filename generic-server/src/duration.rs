//! Go's duration strings ("1h2m3.5s", "300ms"), as Kubernetes uses them in
//! flags (--etcd-compaction-interval) and in metav1.Duration fields.

type Result<T> = std::result::Result<T, String>;

/// Go's `time.Duration.String()`: "1h2m3.5s", "1.5ms", "0s".
pub fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let frac = |v: u64, unit: u64, digits: usize| -> String {
        let whole = v / unit;
        let rem = v % unit;
        if rem == 0 {
            whole.to_string()
        } else {
            let f = format!("{rem:0digits$}");
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    };
    if u < 1_000 {
        out.push_str(&format!("{u}ns"));
    } else if u < 1_000_000 {
        out.push_str(&format!("{}µs", frac(u, 1_000, 3)));
    } else if u < 1_000_000_000 {
        out.push_str(&format!("{}ms", frac(u, 1_000_000, 6)));
    } else {
        let h = u / 3_600_000_000_000;
        let rem = u % 3_600_000_000_000;
        let m = rem / 60_000_000_000;
        let sec_nanos = rem % 60_000_000_000;
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&format!("{}s", frac(sec_nanos, 1_000_000_000, 9)));
    }
    out
}

/// Go's `time.ParseDuration` for the forms Kubernetes uses.
pub fn parse_duration(s: &str) -> Result<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(format!("invalid unit in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    if total > i64::MAX as f64 {
        return Err(format!("duration {s:?} out of range"));
    }
    let v = total.round() as i64;
    Ok(if neg { -v } else { v })
}

/// A Go duration as a std Duration; negative durations are refused.
pub fn parse_std(s: &str) -> Result<std::time::Duration> {
    let n = parse_duration(s)?;
    u64::try_from(n).map(std::time::Duration::from_nanos).map_err(|_| format!("negative duration {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(parse_duration("5m0s").unwrap(), 300_000_000_000);
        assert_eq!(format_duration(300_000_000_000), "5m0s");
        assert_eq!(parse_std("1h").unwrap(), std::time::Duration::from_secs(3600));
        assert!(parse_std("-1s").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
