//! A small checked reader of HTTP/1.x start lines and header blocks, for the
//! detectors of protocols that move files over HTTP-like requests
//! (FastTrack, Ares). It reads what one packet holds, never panics, and
//! refuses anything that breaks the grammar of RFC 7230 (3.1 start line,
//! 3.2 header fields), so that binary data or another text protocol cannot
//! pass for a request.

/// The parts of a request line `METHOD target HTTP/1.d` (RFC 7230 3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a [u8],
    /// The request target, as sent.
    pub target: &'a [u8],
}

/// Splits `buf` after its first CRLF: the line without it, and the rest.
pub fn crlf_line(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((buf.get(..i)?, buf.get(i + 2..)?))
}

/// Reads a `GET` or `HEAD` request line (RFC 7230 3.1.1); returns it and
/// the bytes after its CRLF. The version is the last word: old P2P clients
/// put unescaped spaces in file names.
pub fn request_line(buf: &[u8]) -> Option<(RequestLine<'_>, &[u8])> {
    // The method first: most payloads (TLS, binary) fail here, before the
    // search for the line's end.
    if !buf.starts_with(b"GET ") && !buf.starts_with(b"HEAD ") {
        return None;
    }
    let (line, rest) = crlf_line(buf)?;
    let space = line.iter().position(|&b| b == b' ')?;
    let (method, after) = line.split_at_checked(space)?;
    let after = after.get(1..)?;
    let last = after.iter().rposition(|&b| b == b' ')?;
    let (target, version) = after.split_at_checked(last)?;
    let minor = version.strip_prefix(b" HTTP/1.")?;
    let ok = matches!(minor, [d] if d.is_ascii_digit())
        && !target.is_empty()
        && target.iter().all(|&b| b >= b' ' && b != 0x7f);
    ok.then_some((RequestLine { method, target }, rest))
}

/// Reads a status line `HTTP/1.d ddd reason` (RFC 7230 3.1.2); returns the
/// status code and the bytes after its CRLF.
pub fn status_line(buf: &[u8]) -> Option<(u16, &[u8])> {
    let rest = buf.strip_prefix(b"HTTP/1.")?;
    let (line, after) = crlf_line(rest)?;
    let (minor, status) = line.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let status = status.strip_prefix(b" ")?;
    let (code, reason) = status.split_at_checked(3)?;
    let [a, b, c] = *code else {
        return None;
    };
    if !matches!(a, b'1'..=b'5') || !b.is_ascii_digit() || !c.is_ascii_digit() {
        return None;
    }
    let reason_ok =
        reason.is_empty() || (reason.starts_with(b" ") && reason.iter().all(|&t| field_char(t)));
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    reason_ok.then_some((code, after))
}

/// A byte allowed in a header value: tab, visible ASCII, space, or any byte
/// >= 0x80 (RFC 7230 3.2 `field-content`, `obs-text`).
pub fn field_char(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
}

/// A byte allowed in a header name (RFC 7230 3.2.6 `tchar`).
fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// How a header block read from one packet ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockEnd {
    /// The blank line that ends the block was seen.
    Complete,
    /// The packet ended first (the block goes on in the next segment).
    Cut,
}

/// Walks the header fields at the start of `buf` (RFC 7230 3.2), calling
/// `each(name, value)` for every complete field, the value without
/// surrounding blanks. Returns `None` if a line breaks the grammar; a last
/// line cut by the end of the packet is checked as far as it goes.
pub fn header_fields<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(&'a [u8], &'a [u8]),
) -> Option<BlockEnd> {
    let mut rest = buf;
    loop {
        if rest.is_empty() || rest == b"\r" {
            return Some(BlockEnd::Cut);
        }
        let Some((line, after)) = crlf_line(rest) else {
            // Cut inside a line: what is there must still be a field.
            let part = rest.strip_suffix(b"\r").unwrap_or(rest);
            let ok = match part.iter().position(|&b| b == b':') {
                _ if part.starts_with(b" ") || part.starts_with(b"\t") => {
                    part.iter().all(|&b| field_char(b))
                }
                Some(colon) => split_field(part, colon).is_some(),
                None => part.iter().all(|&b| token_char(b)),
            };
            return ok.then_some(BlockEnd::Cut);
        };
        rest = after;
        if line.is_empty() {
            return Some(BlockEnd::Complete);
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            // obs-fold continuation (RFC 7230 3.2.4).
            if !line.iter().all(|&b| field_char(b)) {
                return None;
            }
            continue;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = split_field(line, colon)?;
        each(name, value);
    }
}

/// `name: value` split at `colon`: a non-empty token, then field bytes;
/// the value without surrounding blanks.
fn split_field(line: &[u8], colon: usize) -> Option<(&[u8], &[u8])> {
    let name = line.get(..colon)?;
    let value = line.get(colon + 1..)?;
    if name.is_empty() || !name.iter().all(|&b| token_char(b)) {
        return None;
    }
    if !value.iter().all(|&b| field_char(b)) {
        return None;
    }
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    Some((name, value.get(start..end).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_status_lines() {
        let (line, rest) = request_line(b"GET /a b.mp3 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(line.method, b"GET");
        assert_eq!(line.target, b"/a b.mp3");
        assert_eq!(rest, b"Host: x\r\n\r\n");
        assert!(request_line(b"POST / HTTP/1.1\r\n").is_none());
        assert!(request_line(b"GET / HTTP/2\r\n").is_none());
        assert!(request_line(b"GET /\x01 HTTP/1.1\r\n").is_none());
        assert_eq!(
            status_line(b"HTTP/1.1 206 Partial\r\n").map(|s| s.0),
            Some(206)
        );
        assert!(status_line(b"HTTP/1.1 999 x\r\n").is_none());
    }

    #[test]
    fn header_blocks() {
        let mut names = Vec::new();
        let end = header_fields(b"A: 1\r\nB:  two \r\n\r\nbody", |n, v| names.push((n, v)));
        assert_eq!(end, Some(BlockEnd::Complete));
        assert_eq!(
            names,
            vec![(&b"A"[..], &b"1"[..]), (&b"B"[..], &b"two"[..])]
        );
        assert_eq!(
            header_fields(b"A: 1\r\nB: t", |_, _| {}),
            Some(BlockEnd::Cut)
        );
        assert_eq!(header_fields(b"A 1\r\n\r\n", |_, _| {}), None);
        assert_eq!(header_fields(b"A: \x00\r\n\r\n", |_, _| {}), None);
        assert_eq!(header_fields(b"\x16\x03\x01", |_, _| {}), None);
    }
}
