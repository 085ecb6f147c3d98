//! Sizes as admins write them (`20G`, `512MiB`, `1.5T`): binary units, as the device
//! dictionaries' `ram` is read. Hand-written (a dozen lines) rather than a crate: the crates
//! that parse sizes read `G` as 10^9, which is not what a disk quota of `20G` means to an admin.
//! Durations (`7d`, `36h`) are read by `humantime`.

use std::time::Duration;

/// Parses a size: a number (a fraction allowed) and an optional unit `K`, `M`, `G`, `T`
/// (powers of 1024; `KB`, `KiB`, ... alike, any case); a bare number is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let unit = unit.trim().to_ascii_lowercase();
    let bad = || format!("{s:?}: a size is a number and K, M, G or T (e.g. 20G)");
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?}: too large"));
    }
    Ok(bytes.round() as u64)
}

/// A size for people: `812 B`, `1.5 KiB`, `20.0 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses a duration (`7d`, `36h`, `90m`, `3600s`, `1w`, `2h 30m`; a bare number is
/// seconds); zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let d = match t.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(t)
            .map_err(|e| format!("{s:?}: {e} (a duration is e.g. 7d, 36h, 90m, 3600s)"))?,
    };
    if d.is_zero() {
        return Err(format!("{s:?}: a duration must be longer than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary() {
        assert_eq!(parse_size("20G"), Ok(20 << 30));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("512mb"), Ok(512 << 20));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("7b"), Ok(7));
        assert_eq!(parse_size(" 2 T "), Ok(2 << 40));
        for bad in ["", "G", "ten", "5X", "1.2.3G", "5ib", "99999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_are_shown() {
        assert_eq!(format_size(812), "812 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(20 << 30), "20.0 GiB");
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h 30m"), Ok(Duration::from_secs(9000)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
