//! Byte patterns as written in rule files: ASCII text with escapes for
//! binary bytes.

use std::fmt;

/// Why a pattern could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatternError {
    /// The pattern is empty.
    Empty,
    /// A backslash is followed by something that is not a known escape.
    UnknownEscape(String),
    /// `\x` is not followed by two hex digits.
    BadHex(String),
    /// A character outside printable ASCII was written literally.
    NonAscii(char),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Empty => f.write_str("the pattern is empty"),
            PatternError::UnknownEscape(s) => write!(
                f,
                "unknown escape `{s}` in pattern (known: \\xHH, \\\\, \\r, \\n, \\t, \\0)"
            ),
            PatternError::BadHex(s) => {
                write!(
                    f,
                    "bad escape `{s}` in pattern: \\x takes exactly two hex digits"
                )
            }
            PatternError::NonAscii(c) => write!(
                f,
                "character {c:?} in pattern is not printable ASCII; write bytes as \\xHH \
                 (and quote the pattern with single quotes so YAML leaves the backslash alone)"
            ),
        }
    }
}

/// Parses a pattern: printable ASCII taken literally, plus the escapes
/// `\xHH`, `\\`, `\r`, `\n`, `\t` and `\0`.
pub fn parse(text: &str) -> Result<Vec<u8>, PatternError> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let e = chars
                    .next()
                    .ok_or_else(|| PatternError::UnknownEscape("\\".into()))?;
                match e {
                    'x' => {
                        let hi = chars.next();
                        let lo = chars.next();
                        let digits: String = hi.into_iter().chain(lo).collect();
                        let byte = match (hi, lo) {
                            (Some(h), Some(l))
                                if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() =>
                            {
                                u8::from_str_radix(&digits, 16).ok()
                            }
                            _ => None,
                        };
                        out.push(byte.ok_or_else(|| PatternError::BadHex(format!("\\x{digits}")))?);
                    }
                    '\\' => out.push(b'\\'),
                    'r' => out.push(b'\r'),
                    'n' => out.push(b'\n'),
                    't' => out.push(b'\t'),
                    '0' => out.push(0),
                    other => return Err(PatternError::UnknownEscape(format!("\\{other}"))),
                }
            }
            ' '..='~' => out.push(c as u8),
            other => return Err(PatternError::NonAscii(other)),
        }
    }
    if out.is_empty() {
        return Err(PatternError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_escapes() {
        let cases: &[(&str, &[u8])] = &[
            ("GNUTELLA CONNECT/", b"GNUTELLA CONNECT/"),
            ("\\x13BitTorrent protocol", b"\x13BitTorrent protocol"),
            ("\\xE3\\xc5", &[0xe3, 0xc5]),
            ("a\\r\\n\\t\\0\\\\b", b"a\r\n\t\0\\b"),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse(text).as_deref(), Ok(*bytes), "{text}");
        }
    }

    #[test]
    fn rejects_bad_patterns() {
        assert_eq!(parse(""), Err(PatternError::Empty));
        assert_eq!(parse("\\q"), Err(PatternError::UnknownEscape("\\q".into())));
        assert_eq!(parse("ab\\"), Err(PatternError::UnknownEscape("\\".into())));
        assert_eq!(parse("\\x1"), Err(PatternError::BadHex("\\x1".into())));
        assert_eq!(parse("\\xZZ"), Err(PatternError::BadHex("\\xZZ".into())));
        assert_eq!(parse("caf\u{e9}"), Err(PatternError::NonAscii('\u{e9}')));
        assert_eq!(parse("tab\there"), Err(PatternError::NonAscii('\t')));
    }
}
