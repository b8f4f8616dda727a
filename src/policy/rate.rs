//! Rates and sizes as operators write them, with tc's units.

/// Parses a rate into bits per second, with tc's units (case-insensitive):
/// `bit`, `kbit`, `mbit`, `gbit`, `tbit` (powers of 1000), `kibit`,
/// `mibit`, `gibit` (powers of 1024), and `bps`, `kbps`, `mbps`, `gbps`,
/// which, as in tc, are **bytes** per second. A unit is required.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("bad rate `{text}`: expected a number and a unit, e.g. 512kbit or 2mbit")
    })?;
    let factor: f64 = match unit.trim() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "kibit" => 1024.0,
        "mibit" => 1024.0 * 1024.0,
        "gibit" => 1024.0 * 1024.0 * 1024.0,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        "" => {
            return Err(format!(
                "bad rate `{text}`: a unit is needed (bit, kbit, mbit, gbit; kbps means kilobytes/s as in tc)"
            ));
        }
        other => {
            return Err(format!(
                "bad rate `{text}`: unknown unit `{other}` (use bit, kbit, mbit, gbit, tbit, kibit, mibit, gibit, or bps, kbps, mbps, gbps for bytes/s)"
            ));
        }
    };
    let bps = value * factor;
    if !(1.0..=1e13).contains(&bps) {
        return Err(format!(
            "bad rate `{text}`: must be between 1bit and 10tbit"
        ));
    }
    Ok(bps.round() as u64)
}

/// Parses a size into bytes: a number with `b`, `k`/`kb`, `m`/`mb`, `g`/`gb`
/// (powers of 1024, as tc's burst sizes), or a plain number of bytes.
pub fn parse_burst(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("bad size `{text}`: expected a number of bytes, e.g. 64kb or 1mb"))?;
    let factor: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        other => {
            return Err(format!(
                "bad size `{text}`: unknown unit `{other}` (use b, kb, mb, gb)"
            ));
        }
    };
    let bytes = value.saturating_mul(factor);
    if bytes < 1514 {
        return Err(format!(
            "bad size `{text}`: a burst must hold at least one full frame (1514 bytes)"
        ));
    }
    Ok(bytes)
}

/// A rate for people: `1mbit`, `512kbit`, `1.5mbit`.
pub fn format_rate(bps: u64) -> String {
    for (unit, f) in [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)] {
        let v = bps as f64 / f;
        if v >= 1.0 {
            let text = format!("{v:.3}");
            let text = text.trim_end_matches('0').trim_end_matches('.');
            return format!("{text}{unit}");
        }
    }
    format!("{bps}bit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tc_rates() {
        let cases = [
            ("512kbit", 512_000),
            ("2mbit", 2_000_000),
            ("1.5Mbit", 1_500_000),
            ("1gbit", 1_000_000_000),
            ("100kbps", 800_000),
            ("1mibit", 1_048_576),
            ("64000bit", 64_000),
        ];
        for (text, bps) in cases {
            assert_eq!(parse_rate(text), Ok(bps), "{text}");
        }
        for bad in ["", "2", "fast", "2 furlongs", "0kbit", "-1mbit", "1..2mbit"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(parse_rate("2").unwrap_err().contains("a unit is needed"));
    }

    #[test]
    fn parses_burst_sizes() {
        assert_eq!(parse_burst("64kb"), Ok(65_536));
        assert_eq!(parse_burst("1m"), Ok(1_048_576));
        assert_eq!(parse_burst("3000"), Ok(3000));
        for bad in ["1000", "10x", "kb", ""] {
            assert!(parse_burst(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_rates() {
        assert_eq!(format_rate(1_000_000), "1mbit");
        assert_eq!(format_rate(512_000), "512kbit");
        assert_eq!(format_rate(1_500_000), "1.5mbit");
        assert_eq!(format_rate(800), "800bit");
    }
}
