//! Table tests of the decoder over every link type, tags, IPv6 extension
//! headers, oversized and truncated frames, and garbage.

use std::net::SocketAddr;

use super::*;
use crate::synth::{self, L4};

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn decodes_tcp_and_udp_over_every_link_type() {
    let v4_tcp = synth::ip_packet(
        sock("10.0.0.1:6881"),
        sock("10.0.0.2:51413"),
        synth::TCP_DATA,
        b"hello",
    );
    let v6_udp = synth::ip_packet(
        sock("[2001:db8::1]:6881"),
        sock("[2001:db8::2]:53"),
        L4::Udp,
        b"hi",
    );
    let links = [
        LinkType::ETHERNET,
        LinkType::LINUX_SLL,
        LinkType::LINUX_SLL2,
        LinkType::NULL,
        LinkType::LOOP,
        LinkType::RAW,
        LinkType::RAW_OPENBSD,
        LinkType::LINKTYPE_RAW,
    ];
    for link in links {
        let f = synth::frame(link, &v4_tcp, &[]);
        let p = decode(link, &f).unwrap();
        assert_eq!(p.transport, Transport::Tcp, "{link:?}");
        assert_eq!((p.src_port, p.dst_port), (6881, 51413));
        assert_eq!(p.src.to_string(), "10.0.0.1");
        assert_eq!(p.payload, b"hello");
        assert!(p.tcp_flags.has(TcpFlags::ACK));
        let f = synth::frame(link, &v6_udp, &[]);
        let p = decode(link, &f).unwrap();
        assert_eq!(p.transport, Transport::Udp, "{link:?}");
        assert_eq!(p.dst.to_string(), "2001:db8::2");
        assert_eq!(p.payload, b"hi");
    }
    let p = decode(LinkType::IPV4, &v4_tcp).unwrap();
    assert_eq!(p.payload, b"hello");
    let p = decode(LinkType::IPV6, &v6_udp).unwrap();
    assert_eq!(p.payload, b"hi");
}

#[test]
fn decodes_vlan_and_qinq() {
    let ip = synth::ip_packet(sock("10.0.0.1:1"), sock("10.0.0.2:2"), L4::Udp, b"x");
    for tags in [&[10u16][..], &[100, 200][..]] {
        let f = synth::frame(LinkType::ETHERNET, &ip, tags);
        let p = decode(LinkType::ETHERNET, &f).unwrap();
        assert_eq!(p.payload, b"x", "{tags:?}");
    }
}

#[test]
fn decodes_pppoe_sessions() {
    let ip = synth::ip_packet(
        sock("10.0.0.1:6881"),
        sock("10.0.0.2:51413"),
        L4::Udp,
        b"d1:ad2:id20:",
    );
    let mut f = vec![
        0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x81, 0x00, 0x00, 0x0a, 0x88, 0x64,
    ];
    f.extend_from_slice(&[0x11, 0x00, 0x12, 0x34]);
    f.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    f.extend_from_slice(&[0x00, 0x21]);
    f.extend_from_slice(&ip);
    let p = decode(LinkType::ETHERNET, &f).unwrap();
    assert_eq!((p.src_port, p.payload), (6881, &b"d1:ad2:id20:"[..]));
    // PPP control traffic (LCP, 0xc021) is not IP.
    let mut lcp = f.clone();
    lcp[24..26].copy_from_slice(&[0xc0, 0x21]);
    assert_eq!(
        decode(LinkType::ETHERNET, &lcp).map(|_| ()),
        Err(Skip::NotIp)
    );
}

#[test]
fn decodes_ipv6_extension_headers() {
    // IPv6 with a hop-by-hop and a destination-options header before UDP.
    let mut ip = vec![0x60, 0, 0, 0];
    let udp_payload = b"dht";
    let udp_len = 8 + udp_payload.len();
    let payload_len = 8 + 8 + udp_len;
    ip.extend_from_slice(&(payload_len as u16).to_be_bytes());
    ip.push(0); // next header: hop-by-hop
    ip.push(64);
    ip.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    ip.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    ip.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop -> dest opts, PadN
    ip.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // dest opts -> UDP
    ip.extend_from_slice(&6881u16.to_be_bytes());
    ip.extend_from_slice(&6882u16.to_be_bytes());
    ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(udp_payload);
    let p = decode(LinkType::RAW, &ip).unwrap();
    assert_eq!(p.transport, Transport::Udp);
    assert_eq!((p.src_port, p.dst_port), (6881, 6882));
    assert_eq!(p.payload, b"dht");
}

#[test]
fn decodes_frames_larger_than_the_mtu() {
    // A GRO/TSO frame: one 60 KiB TCP segment.
    let payload = vec![0xabu8; 60 * 1024];
    let f = synth::ethernet("10.0.0.1:1000", "10.0.0.2:2000", synth::TCP_DATA, &payload);
    let p = decode(LinkType::ETHERNET, &f).unwrap();
    assert_eq!(p.payload.len(), payload.len());
    assert!(!p.truncated);
}

#[test]
fn keeps_what_a_snap_length_left() {
    let f = synth::ethernet(
        "10.0.0.1:1000",
        "10.0.0.2:2000",
        synth::TCP_DATA,
        &[7u8; 1000],
    );
    let cut = &f[..14 + 20 + 20 + 100];
    let p = decode(LinkType::ETHERNET, cut).unwrap();
    assert_eq!(p.payload.len(), 100);
    assert!(p.truncated);
}

#[test]
fn skips_what_it_cannot_read_with_a_reason() {
    let udp = synth::ethernet("10.0.0.1:1", "10.0.0.2:2", L4::Udp, b"abc");
    let tcp = synth::ethernet("10.0.0.1:1", "10.0.0.2:2", synth::TCP_DATA, b"abc");
    let mut arp = vec![0xffu8; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0u8; 20]);
    let mut icmp = synth::ethernet("10.0.0.1:1", "10.0.0.2:2", L4::Udp, b"");
    icmp[14 + 9] = 1; // protocol: ICMP
    let mut fragment = udp.clone();
    fragment[14 + 6] = 0x00;
    fragment[14 + 7] = 0x10; // fragment offset 16 (x8 bytes), not the first
    let mut bad_version = udp.clone();
    bad_version[14] = 0x25;
    let cases: &[(&str, LinkType, &[u8], Skip)] = &[
        ("arp", LinkType::ETHERNET, &arp, Skip::NotIp),
        ("icmp", LinkType::ETHERNET, &icmp, Skip::OtherTransport),
        ("fragment", LinkType::ETHERNET, &fragment, Skip::IpFragment),
        (
            "short ethernet",
            LinkType::ETHERNET,
            &udp[..10],
            Skip::TruncatedLink,
        ),
        (
            "bad ip version",
            LinkType::ETHERNET,
            &bad_version,
            Skip::MalformedIp,
        ),
        (
            "cut ip header",
            LinkType::ETHERNET,
            &udp[..14 + 12],
            Skip::MalformedIp,
        ),
        (
            "cut tcp header",
            LinkType::ETHERNET,
            &tcp[..14 + 20 + 10],
            Skip::MalformedTcp,
        ),
        (
            "cut udp header",
            LinkType::ETHERNET,
            &udp[..14 + 20 + 4],
            Skip::MalformedUdp,
        ),
        (
            "unknown link",
            LinkType(147),
            &udp,
            Skip::UnsupportedLinkType,
        ),
        (
            "short sll",
            LinkType::LINUX_SLL,
            &udp[..8],
            Skip::TruncatedLink,
        ),
        ("empty raw", LinkType::RAW, &[], Skip::MalformedIp),
    ];
    for (name, link, frame, want) in cases {
        assert_eq!(decode(*link, frame).map(|_| ()), Err(*want), "{name}");
    }
}

#[test]
fn never_panics_on_garbage() {
    // A cheap deterministic generator: every prefix of a pseudo-random
    // stream, under every link type.
    let mut x: u32 = 0x1234_5678;
    let bytes: Vec<u8> = (0..2048)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    for link in [0, 1, 12, 14, 101, 108, 113, 228, 229, 276] {
        for len in 0..200 {
            let _ = decode(LinkType(link), &bytes[..len]);
        }
        let _ = decode(LinkType(link), &bytes);
    }
}

#[test]
fn counts_skips_by_reason() {
    let mut c = SkipCounts::default();
    c.add(Skip::NotIp);
    c.add(Skip::MalformedTcp);
    c.add(Skip::MalformedTcp);
    assert_eq!(c.get(Skip::MalformedTcp), 2);
    assert_eq!(c.errors(), 2);
    assert_eq!(c.nonzero().count(), 2);
}

/// Both readings of one frame: the fast path's (if it answers) and
/// etherparse's.
fn both_paths(link: LinkType, frame: &[u8]) -> Option<(Packet<'_>, Result<Packet<'_>, Skip>)> {
    let (inner, rest) = link::strip(link, frame).ok()?;
    let fast = fast::decode(inner, rest)?;
    Some((fast, decode_lax(inner, rest)))
}

#[test]
fn the_fast_path_reads_plain_frames_of_every_link_type() {
    let v4 = synth::ip_packet(
        sock("10.0.0.1:6881"),
        sock("10.0.0.2:80"),
        synth::TCP_DATA,
        b"GET /",
    );
    let v6 = synth::ip_packet(
        sock("[2001:db8::1]:1"),
        sock("[2001:db8::2]:2"),
        L4::Udp,
        b"d1:ad",
    );
    for link in [
        LinkType::ETHERNET,
        LinkType::LINUX_SLL,
        LinkType::LINUX_SLL2,
        LinkType::NULL,
        LinkType::RAW,
    ] {
        for ip in [&v4, &v6] {
            let f = synth::frame(link, ip, &[]);
            let (fast, lax) = both_paths(link, &f).expect("the fast path answers");
            assert_eq!(Ok(fast), lax, "{link:?}");
        }
    }
    let tagged = synth::frame(LinkType::ETHERNET, &v4, &[100, 200]);
    assert!(both_paths(LinkType::ETHERNET, &tagged).is_some());
}

#[test]
fn the_fast_path_leaves_the_unusual_to_etherparse() {
    let udp = synth::ip_packet(sock("10.0.0.1:1"), sock("10.0.0.2:2"), L4::Udp, b"abcdef");
    let eth = synth::frame(LinkType::ETHERNET, &udp, &[]);
    let decline = |f: &[u8], why: &str| {
        let (inner, rest) = link::strip(LinkType::ETHERNET, f).unwrap();
        assert!(fast::decode(inner, rest).is_none(), "{why}");
    };
    // Cut short by the snap length: etherparse marks it truncated.
    decline(&eth[..eth.len() - 2], "snap length");
    let mut more_fragments = eth.clone();
    more_fragments[14 + 6] |= 0x20;
    decline(&more_fragments, "first fragment");
    let mut udp_too_long = eth.clone();
    udp_too_long[14 + 20 + 4] = 0xff;
    decline(&udp_too_long, "UDP length beyond the packet");
    let mut icmp = eth.clone();
    icmp[14 + 9] = 1;
    decline(&icmp, "not TCP or UDP");
    let v6_hop = synth::ip_packet(
        sock("[2001:db8::1]:1"),
        sock("[2001:db8::2]:2"),
        L4::Udp,
        b"x",
    );
    let mut v6_hop = synth::frame(LinkType::ETHERNET, &v6_hop, &[]);
    v6_hop[14 + 6] = 0; // hop-by-hop options header
    decline(&v6_hop, "IPv6 extension header");
}

#[test]
fn the_fast_path_agrees_with_etherparse_on_every_recorded_frame() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/captures");
    let mut fast = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "pcap") {
            continue;
        }
        let mut cap = crate::capture::CaptureFile::open(path.to_str().unwrap()).unwrap();
        let link = cap.link_type();
        while let Ok(Some(frame)) = cap.next_frame() {
            if let Some((f, lax)) = both_paths(link, frame.data) {
                assert_eq!(Ok(f), lax, "{}", path.display());
                fast += 1;
            }
        }
    }
    assert!(fast > 10_000, "the fast path read only {fast} frames");
}

mod agreement {
    use super::*;
    use proptest::prelude::*;

    /// A valid TCP or UDP frame over Ethernet (0-2 tags) or raw IP, then
    /// up to four bytes of its headers overwritten and its end moved.
    fn mutated_frame() -> impl Strategy<Value = (LinkType, Vec<u8>)> {
        (
            any::<bool>(),
            any::<bool>(),
            0usize..3,
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
            -8i32..8,
            any::<bool>(),
        )
            .prop_map(|(v6, tcp, tags, payload, writes, end, raw)| {
                let (a, b) = if v6 {
                    (sock("[2001:db8::1]:6881"), sock("[2001:db8::2]:443"))
                } else {
                    (sock("10.1.2.3:6881"), sock("10.3.2.1:443"))
                };
                let l4 = if tcp { synth::TCP_DATA } else { L4::Udp };
                let ip = synth::ip_packet(a, b, l4, &payload);
                let link = if raw {
                    LinkType::RAW
                } else {
                    LinkType::ETHERNET
                };
                let vlans = [7u16, 8][..tags.min(2)].to_vec();
                let mut f = synth::frame(link, &ip, if raw { &[] } else { &vlans });
                for (at, v) in writes {
                    if let Some(byte) = f.get_mut(at) {
                        *byte = v;
                    }
                }
                let len = (f.len() as i32 + end).max(0) as usize;
                f.resize(len, 0);
                (link, f)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn wherever_the_fast_path_answers_etherparse_says_the_same((link, frame) in mutated_frame()) {
            if let Some((fast, lax)) = both_paths(link, &frame) {
                prop_assert_eq!(Ok(fast), lax);
            }
        }
    }
}
