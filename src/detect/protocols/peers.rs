//! Peer lists as BitTorrent writes them (BEP 23 compact form, BEP 7 for
//! IPv6, and the original dictionary form), for the endpoint cache.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::detect::bencode::Value;

/// The `(ip, port)` pairs of a compact IPv4 list (6 bytes each).
pub fn compact_v4(bytes: &[u8]) -> impl Iterator<Item = (IpAddr, u16)> + '_ {
    bytes.chunks_exact(6).map(|c| {
        let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
        (IpAddr::V4(ip), u16::from_be_bytes([c[4], c[5]]))
    })
}

/// The `(ip, port)` pairs of a compact IPv6 list (18 bytes each).
pub fn compact_v6(bytes: &[u8]) -> impl Iterator<Item = (IpAddr, u16)> + '_ {
    bytes.chunks_exact(18).map(|c| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&c[..16]);
        (
            IpAddr::V6(Ipv6Addr::from(a)),
            u16::from_be_bytes([c[16], c[17]]),
        )
    })
}

/// The peers of a tracker reply's `peers` value: a compact string, or a
/// list of dictionaries with `ip` (text) and `port`.
pub fn tracker_peers<'a>(value: Value<'a>) -> Vec<(IpAddr, u16)> {
    match value {
        Value::Bytes(b) if b.len() % 6 == 0 => compact_v4(b).collect(),
        Value::List(items) => items
            .iter()
            .filter_map(|peer| {
                let d = peer.as_dict()?;
                let ip = std::str::from_utf8(d.get(b"ip")?.as_bytes()?)
                    .ok()?
                    .parse()
                    .ok()?;
                let port = u16::try_from(d.get(b"port")?.as_int()?).ok()?;
                Some((ip, port))
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::bencode;

    #[test]
    fn reads_compact_and_dictionary_lists() {
        let v4: Vec<_> = compact_v4(&[100, 64, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80]).collect();
        assert_eq!(
            v4,
            vec![
                ("100.64.0.1".parse().unwrap(), 6881),
                ("10.0.0.2".parse().unwrap(), 80)
            ]
        );
        let mut six = vec![0u8; 15];
        six.push(1);
        six.extend_from_slice(&[0xc8, 0xd5]);
        let v6: Vec<_> = compact_v6(&six).collect();
        assert_eq!(v6, vec![("::1".parse().unwrap(), 51413)]);
        let list = bencode::parse_exact(b"ld2:ip10:100.64.0.74:porti51413eed2:ip3:bad4:porti1eee")
            .unwrap();
        assert_eq!(
            tracker_peers(list),
            vec![("100.64.0.7".parse().unwrap(), 51413)]
        );
        assert!(tracker_peers(Value::Bytes(b"12345")).is_empty());
    }
}
