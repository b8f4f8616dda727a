//! A checked, zero-copy view of bencoded data (BEP 3), as used by DHT
//! messages, tracker replies and the extension protocol.
//!
//! [`parse`] validates a whole value once (syntax, nesting depth, lengths);
//! after that the [`Value`] accessors cannot fail or panic, they only walk
//! bytes already known to be well-formed.

/// Deepest nesting accepted; real messages use three or four levels.
const MAX_DEPTH: usize = 16;

/// Why bytes are not bencode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The input ends inside a value.
    Truncated,
    /// A byte that cannot start or continue a value here.
    Syntax(usize),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// A bencoded value borrowing the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i...e`.
    Int(i64),
    /// `N:bytes`.
    Bytes(&'a [u8]),
    /// `l...e`: the encoded items, between the `l` and the `e`.
    List(Items<'a>),
    /// `d...e`: the encoded key/value pairs, between the `d` and the `e`.
    Dict(Items<'a>),
}

/// The encoded contents of a list or dictionary, already validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Items<'a>(&'a [u8]);

/// Parses one value at the start of `input`; returns it and the bytes used.
pub fn parse(input: &[u8]) -> Result<(Value<'_>, usize), Error> {
    let end = skip(input, 0, 0)?;
    Ok((decode_valid(&input[..end]), end))
}

/// Parses `input` as exactly one value with nothing after it.
pub fn parse_exact(input: &[u8]) -> Result<Value<'_>, Error> {
    let (v, used) = parse(input)?;
    if used != input.len() {
        return Err(Error::Syntax(used));
    }
    Ok(v)
}

/// Returns the end of the value starting at `pos`.
fn skip(input: &[u8], pos: usize, depth: usize) -> Result<usize, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep);
    }
    match input.get(pos).copied() {
        None => Err(Error::Truncated),
        Some(b'i') => {
            let end = find(input, pos + 1, b'e')?;
            parse_int(&input[pos + 1..end]).ok_or(Error::Syntax(pos + 1))?;
            Ok(end + 1)
        }
        Some(b'0'..=b'9') => {
            let colon = find(input, pos, b':')?;
            let len = parse_len(&input[pos..colon]).ok_or(Error::Syntax(pos))?;
            let end = (colon + 1).checked_add(len).ok_or(Error::Syntax(pos))?;
            if end > input.len() {
                return Err(Error::Truncated);
            }
            Ok(end)
        }
        Some(b'l') => {
            let mut p = pos + 1;
            loop {
                match input.get(p) {
                    None => return Err(Error::Truncated),
                    Some(b'e') => return Ok(p + 1),
                    Some(_) => p = skip(input, p, depth + 1)?,
                }
            }
        }
        Some(b'd') => {
            let mut p = pos + 1;
            loop {
                match input.get(p) {
                    None => return Err(Error::Truncated),
                    Some(b'e') => return Ok(p + 1),
                    Some(b'0'..=b'9') => {
                        p = skip(input, p, depth + 1)?;
                        p = skip(input, p, depth + 1)?;
                    }
                    Some(_) => return Err(Error::Syntax(p)),
                }
            }
        }
        Some(_) => Err(Error::Syntax(pos)),
    }
}

fn find(input: &[u8], from: usize, byte: u8) -> Result<usize, Error> {
    // Integers and lengths are short; a long run of digits is not bencode.
    let window = &input[from.min(input.len())..input.len().min(from + 21)];
    match window.iter().position(|b| *b == byte) {
        Some(i) => Ok(from + i),
        None if input.len() < from + 21 => Err(Error::Truncated),
        None => Err(Error::Syntax(from)),
    }
}

/// `i<digits>e` body: no leading zeros, no `-0`.
fn parse_int(digits: &[u8]) -> Option<i64> {
    let (neg, body) = match digits.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, digits),
    };
    if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if body[0] == b'0' && (body.len() > 1 || neg) {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    s.parse().ok()
}

/// String length prefix: digits without leading zeros.
fn parse_len(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && digits.len() > 1 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Decodes a value from bytes already validated by [`skip`].
fn decode_valid(v: &[u8]) -> Value<'_> {
    match v.first() {
        Some(b'i') => Value::Int(parse_int(&v[1..v.len() - 1]).unwrap_or(0)),
        Some(b'l') => Value::List(Items(&v[1..v.len() - 1])),
        Some(b'd') => Value::Dict(Items(&v[1..v.len() - 1])),
        _ => {
            let colon = v.iter().position(|b| *b == b':').unwrap_or(0);
            Value::Bytes(&v[colon + 1..])
        }
    }
}

impl<'a> Items<'a> {
    /// The values in order (for a dictionary: key, value, key, value, ...).
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let bytes = self.0;
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= bytes.len() {
                return None;
            }
            let end = skip(bytes, pos, 0).ok()?;
            let v = decode_valid(&bytes[pos..end]);
            pos = end;
            Some(v)
        })
    }

    /// Dictionary entries as (key, value).
    pub fn entries(&self) -> impl Iterator<Item = (&'a [u8], Value<'a>)> + 'a {
        let mut it = self.iter();
        std::iter::from_fn(move || {
            let k = it.next()?;
            let v = it.next()?;
            match k {
                Value::Bytes(k) => Some((k, v)),
                _ => None,
            }
        })
    }

    /// The value of a dictionary key.
    pub fn get(&self, key: &[u8]) -> Option<Value<'a>> {
        self.entries().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl<'a> Value<'a> {
    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The integer of an integer value.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The entries of a dictionary value.
    pub fn as_dict(&self) -> Option<Items<'a>> {
        match self {
            Value::Dict(d) => Some(*d),
            _ => None,
        }
    }

    /// The items of a list value.
    pub fn as_list(&self) -> Option<Items<'a>> {
        match self {
            Value::List(l) => Some(*l),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_dht_ping() {
        let msg = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let v = parse_exact(msg).unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.get(b"y").and_then(|v| v.as_bytes()), Some(&b"q"[..]));
        assert_eq!(d.get(b"q").and_then(|v| v.as_bytes()), Some(&b"ping"[..]));
        let a = d.get(b"a").and_then(|v| v.as_dict()).unwrap();
        assert_eq!(
            a.get(b"id").and_then(|v| v.as_bytes()).map(|b| b.len()),
            Some(20)
        );
        assert_eq!(d.get(b"zz"), None);
    }

    #[test]
    fn parses_integers_and_lists() {
        assert_eq!(parse_exact(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(parse_exact(b"i-7e"), Ok(Value::Int(-7)));
        assert_eq!(parse_exact(b"i0e"), Ok(Value::Int(0)));
        let l = parse_exact(b"l4:spami3ee").unwrap().as_list().unwrap();
        let items: Vec<_> = l.iter().collect();
        assert_eq!(items, vec![Value::Bytes(b"spam"), Value::Int(3)]);
        assert_eq!(parse(b"0:rest").unwrap(), (Value::Bytes(b""), 2));
    }

    #[test]
    fn rejects_malformed_input() {
        let bad: &[&[u8]] = &[
            b"",
            b"i01e",
            b"i-0e",
            b"ie",
            b"i12",
            b"05:hello",
            b"5:hell",
            b"d3:keye",
            b"di1e1:ae",
            b"l",
            b"x",
            b"4294967296000000000000:x",
            b"\x16\x03\x01\x02\x00\x01",
            b"GET / HTTP/1.1\r\n",
        ];
        for input in bad {
            assert!(parse_exact(input).is_err(), "{input:?}");
        }
        assert_eq!(parse_exact(b"i1ei2e"), Err(Error::Syntax(3)));
        let deep = [b'l'; 40];
        assert_eq!(parse(&deep).unwrap_err(), Error::TooDeep);
    }
}
