//! BitTorrent content fetched over HTTP: web seeds (BEP 19), HTTP seeds
//! (BEP 17) and BitComet's persistent seeds.
//!
//! - BEP 19 (GetRight-style web seeding): the client asks an ordinary web
//!   server for a byte range of the torrent's file with a plain `GET` and a
//!   `Range: bytes=first-last` header (libtorrent's `web_peer_connection`;
//!   Transmission's `webseed.c` through libcurl). Such a request is an
//!   ordinary resumable download except for who makes it, so it is named
//!   only when its `User-Agent` is a BitTorrent client's own (see
//!   [`CLIENTS`]) and the range is closed: browsers, download managers
//!   (`Wget`, `curl`, `aria2`, IDM, FDM), package managers and update
//!   services send other agents or open ranges (`bytes=N-`). The agent is
//!   a literal, so this is weak evidence.
//! - BEP 17 (Hoffman-style HTTP seeding): `GET <url>?info_hash=<20 bytes,
//!   URL-encoded>&piece=<n>[&ranges=<a>-<b>,...]`. The decoded 20-byte hash
//!   and the numeric piece and ranges are structure, and unlike a tracker
//!   announce (BEP 3) the request has no `peer_id`.
//! - BitComet's persistent seeds (nDPI `bittorrent.c`): `GET
//!   /data?fid=<40 hex digits>&size=<n>`; a path and a hex string, so weak
//!   evidence.
//!
//! Only the originator's first packet is looked at: the request line and
//! every header up to the empty line must be in it.

use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};
use crate::flow::Direction;

/// `User-Agent` values (prefixes) that BitTorrent clients send with their
/// web seed requests, with where each is documented.
pub const CLIENTS: &[&[u8]] = &[
    // libtorrent's default `user_agent` setting ("libtorrent/" + version).
    b"libtorrent/",
    // qBittorrent sets libtorrent's agent to "qBittorrent/" + version.
    b"qBittorrent/",
    // Transmission's libcurl requests (TR_NAME "/" version).
    b"Transmission/",
    // uTorrent, Azureus/Vuze, BitTorrent mainline (nDPI `bittorrent.c`).
    b"BTWebClient/",
    b"Azureus ",
    b"BitTorrent/",
];

/// BitComet's persistent seed request (nDPI `bittorrent.c`).
const BITCOMET_PATH: &[u8] = b"/data?fid=";

/// The web seed detector.
#[derive(Debug, Default)]
pub struct WebSeed;

impl Detector for WebSeed {
    type State = ();
    const NAME: &'static str = "webseed";
    const EVIDENCE: &'static [&'static str] = &[
        "bittorrent.webseed.request",
        "bittorrent.webseed.http_seed",
        "bittorrent.bitcomet.persistent_seed",
    ];

    fn interest(&self) -> Interest {
        Interest {
            transport: Some(Transport::Tcp),
            max_payload_packets: 1,
        }
    }

    fn inspect(&self, _: &mut (), packet: &PacketView<'_>, facts: &mut FactSink<'_>) -> Probe {
        if packet.direction != Direction::Originator || packet.index != 1 {
            return Probe::NotMine;
        }
        let Some(req) = Request::parse(packet.payload) else {
            return Probe::NotMine;
        };
        let (name, strength) = if persistent_seed(req.target) {
            ("bittorrent.bitcomet.persistent_seed", Confidence::Signature)
        } else if let Some(hash) = http_seed(req.target) {
            facts.info_hash(hash);
            ("bittorrent.webseed.http_seed", Confidence::Unidirectional)
        } else if let Some(agent) = req.client_agent()
            && req.closed_range()
        {
            facts.client(agent);
            ("bittorrent.webseed.request", Confidence::Signature)
        } else {
            return Probe::NotMine;
        };
        Probe::Match(Evidence {
            protocol: Protocol::Bittorrent,
            name,
            strength,
        })
    }
}

/// A `GET` request whose header block is complete.
#[derive(Clone, Copy, Debug)]
struct Request<'a> {
    /// The request target (path and query, or an absolute URL via a proxy).
    target: &'a [u8],
    /// Header lines, between the request line and the empty line.
    headers: &'a [u8],
}

impl<'a> Request<'a> {
    fn parse(p: &'a [u8]) -> Option<Request<'a>> {
        let rest = p.strip_prefix(b"GET ")?;
        let line_end = find(rest, b"\r\n")?;
        let line = rest.get(..line_end)?;
        let space = line.iter().rposition(|b| *b == b' ')?;
        let (target, version) = (line.get(..space)?, line.get(space + 1..)?);
        if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
            return None;
        }
        if !(target.starts_with(b"/") || target.starts_with(b"http://")) {
            return None;
        }
        if target.iter().any(|b| !b.is_ascii_graphic()) {
            return None;
        }
        let after = rest.get(line_end + 2..)?;
        let headers = if after.starts_with(b"\r\n") {
            after.get(..0)?
        } else {
            after.get(..find(after, b"\r\n\r\n")?)?
        };
        Some(Request { target, headers })
    }

    /// The value of the first header called `name`.
    fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers.split(|b| *b == b'\n').find_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|b| *b == b':')?;
            let (n, v) = (line.get(..colon)?, line.get(colon + 1..)?);
            n.eq_ignore_ascii_case(name).then(|| v.trim_ascii())
        })
    }

    /// The `User-Agent`, if it is a BitTorrent client's.
    fn client_agent(&self) -> Option<&'a [u8]> {
        let agent = self.header(b"user-agent")?;
        CLIENTS
            .iter()
            .any(|c| agent.starts_with(c) && agent.len() > c.len())
            .then_some(agent)
    }

    /// `Range: bytes=first-last`, one closed range with first <= last.
    fn closed_range(&self) -> bool {
        self.header(b"range")
            .and_then(|r| r.strip_prefix(b"bytes="))
            .and_then(span)
            .is_some()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A decimal number of at most 19 digits.
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// `first-last` with first <= last.
fn span(s: &[u8]) -> Option<(u64, u64)> {
    let dash = s.iter().position(|b| *b == b'-')?;
    let (a, b) = (number(s.get(..dash)?)?, number(s.get(dash + 1..)?)?);
    (a <= b).then_some((a, b))
}

/// The query's `name=value` pairs.
fn query(target: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let q = target
        .iter()
        .position(|b| *b == b'?')
        .and_then(|i| target.get(i + 1..))
        .unwrap_or_default();
    q.split(|b| *b == b'&').filter_map(|pair| {
        let eq = pair.iter().position(|b| *b == b'=')?;
        Some((pair.get(..eq)?, pair.get(eq + 1..)?))
    })
}

/// BEP 17: `info_hash` decoding to 20 bytes, a numeric `piece`, optional
/// well-formed `ranges`, and no `peer_id` (which would make it a tracker
/// announce). Returns the info-hash.
fn http_seed(target: &[u8]) -> Option<[u8; 20]> {
    let (mut hash, mut piece, mut ranges_ok) = (None, false, true);
    for (name, value) in query(target) {
        match name {
            b"info_hash" => hash = percent_decode_20(value),
            b"piece" => piece = number(value).is_some(),
            b"ranges" => ranges_ok = value.split(|b| *b == b',').all(|r| span(r).is_some()),
            b"peer_id" => return None,
            _ => {}
        }
    }
    (piece && ranges_ok).then_some(hash).flatten()
}

/// A URL-encoded value of exactly 20 bytes.
fn percent_decode_20(value: &[u8]) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let (mut i, mut n) = (0, 0);
    while i < value.len() {
        let byte = if value.get(i) == Some(&b'%') {
            let hex = std::str::from_utf8(value.get(i + 1..i + 3)?).ok()?;
            i += 3;
            u8::from_str_radix(hex, 16).ok()?
        } else {
            i += 1;
            *value.get(i - 1)?
        };
        *out.get_mut(n)? = byte;
        n += 1;
    }
    (n == 20).then_some(out)
}

/// BitComet: `/data?fid=` + 40 hex digits + `&size=` + a number.
fn persistent_seed(target: &[u8]) -> bool {
    let Some(rest) = target.strip_prefix(BITCOMET_PATH) else {
        return false;
    };
    let (fid, rest) = rest.split_at(rest.len().min(40));
    if fid.len() != 40 || !fid.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let Some(size) = rest.strip_prefix(b"&size=") else {
        return false;
    };
    let end = size.iter().position(|b| *b == b'&').unwrap_or(size.len());
    number(size.get(..end).unwrap_or_default()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator, Responder};

    fn get(target: &str, headers: &[&str]) -> Vec<u8> {
        let mut s = format!("GET {target} HTTP/1.1\r\nHost: mirror.example.org\r\n");
        for h in headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    fn first(bytes: &[u8]) -> Option<(&'static str, Confidence)> {
        let mut h = Harness::tcp(WebSeed);
        match h.feed(Originator, bytes) {
            Probe::Match(e) => Some((e.name, e.strength)),
            _ => None,
        }
    }

    const HASH: &str = "%9C%D9i%8A%F5Uu%1A%91%86%AE%06lW%EA%21W%235%E0";

    #[test]
    fn web_seed_requests_of_bittorrent_clients() {
        for agent in [
            "libtorrent/2.0.9.0",
            "qBittorrent/4.6.2",
            "Transmission/4.0.5",
            "BTWebClient/3600(46590)",
            "Azureus 5.7.6.0;Windows 10;Java 1.8.0_301",
        ] {
            // libtorrent's layout: User-Agent, then Range, then keep-alive.
            let req = get(
                "/pub/debian-12.iso",
                &[
                    &format!("User-Agent: {agent}"),
                    "Range: bytes=262144-524287",
                    "Connection: keep-alive",
                ],
            );
            assert_eq!(
                first(&req),
                Some(("bittorrent.webseed.request", Confidence::Signature)),
                "{agent}"
            );
        }
        let mut h = Harness::tcp(WebSeed);
        h.feed(
            Originator,
            &get(
                "/f.iso",
                &["User-Agent: libtorrent/1.2.19.0", "Range: bytes=0-16383"],
            ),
        );
        assert_eq!(h.facts().client[0].as_deref(), Some("libtorrent/1.2.19.0"));
    }

    #[test]
    fn http_seed_and_persistent_seed_requests() {
        for target in [
            format!("/seed.php?info_hash={HASH}&piece=3"),
            format!("/seed.php?info_hash={HASH}&piece=8&ranges=49152-131071,180224-262143"),
            format!("/webseed?info_hash={HASH}&piece=0"),
        ] {
            let mut h = Harness::tcp(WebSeed);
            let got = h.probes(&[(Originator, &get(&target, &["User-Agent: x"]))]);
            assert!(
                matches!(got[0], Probe::Match(e) if e.name == "bittorrent.webseed.http_seed"
                    && e.strength == Confidence::Unidirectional),
                "{target}"
            );
            assert_eq!(h.facts().info_hash.map(|h| h[0]), Some(0x9c));
        }
        let fid = "0123456789abcdef0123456789ABCDEF01234567";
        assert_eq!(
            first(&get(&format!("/data?fid={fid}&size=7340032"), &[])),
            Some(("bittorrent.bitcomet.persistent_seed", Confidence::Signature))
        );
    }

    #[test]
    fn ordinary_downloads_and_near_misses_are_not_named() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "browser resuming a download",
                get(
                    "/f.iso",
                    &[
                        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                        "Range: bytes=1048576-",
                    ],
                ),
            ),
            (
                "browser range request",
                get(
                    "/video.mp4",
                    &[
                        "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
                        "Range: bytes=0-1023",
                    ],
                ),
            ),
            (
                "curl",
                get("/f.iso", &["User-Agent: curl/8.5.0", "Range: bytes=0-99"]),
            ),
            (
                "wget",
                get(
                    "/f.iso",
                    &["User-Agent: Wget/1.21.4", "Range: bytes=100-199"],
                ),
            ),
            (
                "aria2 segmented download",
                get(
                    "/f.iso",
                    &["User-Agent: aria2/1.37.0", "Range: bytes=0-1048575"],
                ),
            ),
            (
                "apt",
                get(
                    "/debian/pool/main/b/bash.deb",
                    &[
                        "User-Agent: Debian APT-HTTP/1.3 (2.6.1)",
                        "Range: bytes=10-20",
                    ],
                ),
            ),
            (
                "windows update",
                get(
                    "/c/msdownload/update.cab",
                    &["User-Agent: Microsoft BITS/7.8", "Range: bytes=0-65535"],
                ),
            ),
            (
                "client without a range (a .torrent file)",
                get("/f.torrent", &["User-Agent: libtorrent/2.0.9.0"]),
            ),
            (
                "client with an open range",
                get(
                    "/f.iso",
                    &["User-Agent: qBittorrent/4.6.2", "Range: bytes=100-"],
                ),
            ),
            (
                "client with a reversed range",
                get(
                    "/f.iso",
                    &["User-Agent: qBittorrent/4.6.2", "Range: bytes=200-100"],
                ),
            ),
            (
                "client with several ranges",
                get(
                    "/f.iso",
                    &["User-Agent: qBittorrent/4.6.2", "Range: bytes=0-1,5-9"],
                ),
            ),
            (
                "agent name alone",
                get("/f.iso", &["User-Agent: libtorrent/", "Range: bytes=0-1"]),
            ),
            (
                "tracker announce",
                get(
                    &format!(
                        "/announce?info_hash={HASH}&peer_id=-LT2090-abcdefghijkl&port=6881&piece=1"
                    ),
                    &[],
                ),
            ),
            (
                "http seed without piece",
                get(&format!("/seed?info_hash={HASH}"), &[]),
            ),
            (
                "http seed with a short hash",
                get("/seed?info_hash=abc&piece=1", &[]),
            ),
            (
                "http seed with bad ranges",
                get(&format!("/seed?info_hash={HASH}&piece=1&ranges=9-1"), &[]),
            ),
            (
                "fid of 39 digits",
                get(
                    "/data?fid=0123456789abcdef0123456789abcdef0123456&size=1",
                    &[],
                ),
            ),
            (
                "fid without size",
                get("/data?fid=0123456789abcdef0123456789abcdef01234567", &[]),
            ),
            (
                "headers cut short",
                get(
                    "/f.iso",
                    &["User-Agent: libtorrent/2.0", "Range: bytes=0-1"],
                )[..60]
                    .to_vec(),
            ),
            (
                "POST",
                b"POST /f.iso HTTP/1.1\r\nUser-Agent: libtorrent/2.0\r\nRange: bytes=0-1\r\n\r\n"
                    .to_vec(),
            ),
        ];
        for (name, bytes) in cases
            .iter()
            .map(|(n, b)| (*n, b.as_slice()))
            .chain(LOOK_ALIKES.iter().copied())
        {
            assert_eq!(first(bytes), None, "{name}");
        }
        // Only the originator's first packet counts.
        let req = get(
            "/f.iso",
            &["User-Agent: libtorrent/2.0.9.0", "Range: bytes=0-1"],
        );
        let mut h = Harness::tcp(WebSeed);
        assert_eq!(h.evidence(&[(Responder, &req)]), vec![None]);
    }
}
