//! Client names from BitTorrent peer ids, for the `client` fact.
//!
//! Most clients use the "Azureus style" `-XXvvvv-` prefix: a two-letter
//! client code and four version characters. Only well-known codes are named;
//! others are reported by their code.

/// Well-known Azureus-style client codes.
const CLIENTS: &[(&[u8; 2], &str)] = &[
    (b"AZ", "Vuze"),
    (b"BC", "BitComet"),
    (b"BI", "BiglyBT"),
    (b"BT", "BitTorrent"),
    (b"DE", "Deluge"),
    (b"FD", "Free Download Manager"),
    (b"KT", "KTorrent"),
    (b"LT", "libtorrent (Rasterbar)"),
    (b"lt", "libTorrent (rakshasa)"),
    (b"qB", "qBittorrent"),
    (b"TR", "Transmission"),
    (b"UT", "uTorrent"),
    (b"UM", "uTorrent Mac"),
    (b"UW", "uTorrent Web"),
    (b"WW", "WebTorrent"),
    (b"XL", "Xunlei"),
];

/// The client a peer id announces, e.g. `Transmission 2940` for
/// `-TR2940-...`, or `aria2 1.36.0` for aria2's `A2-1-36-0-` style.
pub fn client_name(peer_id: &[u8]) -> Option<String> {
    if let Some(rest) = peer_id.strip_prefix(b"A2-") {
        let version: Vec<&[u8]> = rest.split(|b| *b == b'-').take(3).collect();
        if version.len() == 3
            && version
                .iter()
                .all(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
        {
            let v: Vec<String> = version
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            return Some(format!("aria2 {}", v.join(".")));
        }
    }
    let azureus = peer_id.get(..8)?;
    if azureus[0] != b'-' || azureus[7] != b'-' {
        return None;
    }
    let code = [azureus[1], azureus[2]];
    let version = &azureus[3..7];
    if !code.iter().all(u8::is_ascii_alphabetic) || !version.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let version = String::from_utf8_lossy(version);
    Some(match CLIENTS.iter().find(|(c, _)| **c == code) {
        Some((_, name)) => format!("{name} {version}"),
        None => format!("{}{} {version}", code[0] as char, code[1] as char),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_common_clients() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"-TR2940-abcdefghijkl", Some("Transmission 2940")),
            (b"-LT1208-abcdefghijkl", Some("libtorrent (Rasterbar) 1208")),
            (b"-ZZ0001-abcdefghijkl", Some("ZZ 0001")),
            (b"A2-1-36-0-abcdefghij", Some("aria2 1.36.0")),
            (b"M7-4-3--abcdefghijkl", None),
            (b"\x00\x01\x02", None),
            (b"-T\xff2940-abcdefghijkl", None),
        ];
        for (id, want) in cases {
            assert_eq!(client_name(id).as_deref(), *want, "{id:?}");
        }
    }
}
