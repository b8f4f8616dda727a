//! Soulseek: the server login and the peer connection handshake, over TCP.
//!
//! Every Soulseek message is little-endian and starts with a `u32` length
//! counting the rest of the message (\[SLSK\] "Packing"): server and peer
//! messages then carry a `u32` code, peer init messages a `u8` code.
//! Strings are a `u32` byte count and the bytes.
//!
//! Evidence, each checked with exact lengths (the length field equals the
//! fields that follow, every string fits exactly):
//! - `soulseek.login`: the client's first message to the server, code 1:
//!   username, password, version `u32`, the MD5 of username and password as
//!   32 hex digits, minor version `u32` (\[SLSK\] "Server Code 1")
//!   ([`Confidence::Unidirectional`]).
//! - `soulseek.login_reply`: the server's answer, code 1: a success byte,
//!   then the greeting, the client's address and the MD5 of the password
//!   (32 hex digits), or a failure reason. [`Confidence::Bidirectional`]
//!   when it answers a login seen on this flow, else
//!   [`Confidence::Unidirectional`].
//! - `soulseek.peer_init`: the first message of a peer connection, `PeerInit`
//!   (code 1): username, the connection type as a one-byte string `P`, `F`
//!   or `D`, a token (\[SLSK\] "Peer Init Code 1")
//!   ([`Confidence::Unidirectional`]).
//! - `soulseek.pierce_firewall`: `PierceFireWall` (code 0, a token; nine
//!   bytes in all, \[SLSK\] "Peer Init Code 0") answered by a well-formed peer
//!   message. Nine bytes `05 00 00 00 00 ...` are too little alone, so
//!   the evidence is the answer ([`Confidence::Unidirectional`]).
//! - `soulseek.peer_message`: well-formed peer messages (known code, exact
//!   layout) on a `P` connection after its init
//!   ([`Confidence::Unidirectional`]).
//!
//! # Why common traffic cannot pass
//! Many binary protocols start with a little-endian length (SMB's NetBIOS
//! header is big-endian, but game and RPC protocols are not). What they do
//! not share is the rest: the login needs code 1, two strings ending
//! exactly where a version and a 32-hex-digit string start, and the total
//! matching the length field; a peer init needs code byte 1, a string
//! followed by the exact one-byte string `P`, `F` or `D` and a token ending
//! the message. Random bytes meet such a layout with negligible probability,
//! and a message cut by the end of the packet is not accepted.
//!
//! # Out of scope
//! Obfuscated peer connections (SoulseekQt's rotated-key mode on the
//! listening port + 1), file-transfer (`F`) and distributed (`D`) streams
//! after their init, and flows whose capture starts after the first message.
//!
//! Reference, cited as \[SLSK\]: "Soulseek Protocol Documentation",
//! Nicotine+ `doc/SLSKPROTOCOL.md` (2022 and 2024 editions).

use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};
use crate::flow::Direction;

/// The client's login to the server.
const LOGIN: &str = "soulseek.login";
/// The server's reply to a login.
const LOGIN_REPLY: &str = "soulseek.login_reply";
/// A `PeerInit` opening a peer connection.
const PEER_INIT: &str = "soulseek.peer_init";
/// A `PierceFireWall` answered by a peer message.
const PIERCE_FIREWALL: &str = "soulseek.pierce_firewall";
/// Well-formed peer messages after the init.
const PEER_MESSAGE: &str = "soulseek.peer_message";

/// Payload packets looked at per side.
const MAX_PACKETS: u16 = 2;

/// Byte offsets and sizes of the fixed fields (\[SLSK\] "Packing").
mod field {
    /// `u32` length of the rest of the message.
    pub const LENGTH: usize = 4;
    /// A server or peer message code (`u32`).
    pub const CODE32: usize = 4;
    /// A peer init code (`u8`).
    pub const CODE8: usize = 1;
    /// A `PierceFireWall` is exactly this long: length, code, token.
    pub const PIERCE_LEN: usize = LENGTH + CODE8 + 4;
    /// An MD5 digest in hex.
    pub const MD5_HEX: usize = 32;
}

/// Server message code of the login and its reply (\[SLSK\] "Server Code 1").
const SERVER_LOGIN: u32 = 1;
/// Peer init codes (\[SLSK\] "Peer Init Messages").
const PIERCE_FIREWALL_CODE: u8 = 0;
const PEER_INIT_CODE: u8 = 1;

/// Longest username accepted (the server refuses more than 30 characters;
/// UTF-8 may take up to four bytes each).
const MAX_USERNAME: usize = 120;
/// Longest password or reason string accepted.
const MAX_SHORT_STRING: usize = 512;
/// Longest greeting, file name or other text string accepted.
const MAX_TEXT: usize = 16 * 1024;
/// Longest message accepted: share lists are zlib streams of a few MB.
const MAX_MESSAGE: usize = 64 << 20;

/// What a flow has shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    /// Nothing yet.
    #[default]
    Unknown,
    /// A client's login to the server.
    Login,
    /// A `PeerInit` of type `P`: peer messages follow.
    PeerMessages,
    /// A `PeerInit` of type `F` or `D`: nothing more is checked.
    PeerOther,
    /// A `PierceFireWall`: the other side's peer message proves it.
    Pierced,
    /// Nothing more to check.
    Done,
}

/// Per-flow state: 1 byte.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    kind: Kind,
}

/// The Soulseek detector.
#[derive(Debug, Default)]
pub struct Soulseek;

impl Detector for Soulseek {
    type State = State;
    const NAME: &'static str = "soulseek";
    const EVIDENCE: &'static [&'static str] =
        &[LOGIN, LOGIN_REPLY, PEER_INIT, PIERCE_FIREWALL, PEER_MESSAGE];

    fn interest(&self) -> Interest {
        Interest {
            transport: Some(Transport::Tcp),
            max_payload_packets: MAX_PACKETS,
        }
    }

    fn inspect(
        &self,
        state: &mut State,
        packet: &PacketView<'_>,
        facts: &mut FactSink<'_>,
    ) -> Probe {
        let buf = packet.payload;
        if buf.is_empty() {
            return Probe::NeedMore;
        }
        match (state.kind, packet.direction) {
            (Kind::Unknown, Direction::Originator) if packet.index == 1 => {
                opening(state, buf, facts)
            }
            // The responder speaks first, or the originator's first packet
            // was missed: not a flow we can check.
            (Kind::Unknown, _) => Probe::NotMine,
            (Kind::Login, Direction::Responder) => {
                state.kind = Kind::Done;
                if login_reply(buf) {
                    found(LOGIN_REPLY, Confidence::Bidirectional)
                } else {
                    Probe::NotMine
                }
            }
            (Kind::PeerMessages, _) => {
                if peer_messages(buf) {
                    found(PEER_MESSAGE, Confidence::Unidirectional)
                } else {
                    Probe::NeedMore
                }
            }
            (Kind::Pierced, Direction::Responder) => {
                if peer_messages(buf) {
                    state.kind = Kind::PeerMessages;
                    found(PIERCE_FIREWALL, Confidence::Unidirectional)
                } else {
                    state.kind = Kind::Done;
                    Probe::NotMine
                }
            }
            (Kind::Done | Kind::PeerOther, _) => Probe::NotMine,
            _ => Probe::NeedMore,
        }
    }
}

fn found(name: &'static str, strength: Confidence) -> Probe {
    Probe::Match(Evidence {
        protocol: Protocol::Soulseek,
        name,
        strength,
    })
}

/// The originator's first packet: a login, a peer init or a pierce.
fn opening(state: &mut State, buf: &[u8], facts: &mut FactSink<'_>) -> Probe {
    if let Some((version, minor)) = login(buf) {
        state.kind = Kind::Login;
        facts.client(format!("Soulseek protocol {version}.{minor}").as_bytes());
        return found(LOGIN, Confidence::Unidirectional);
    }
    if let Some((kind, rest)) = peer_init(buf) {
        state.kind = kind;
        // Peer messages may follow in the same segment; they must be valid.
        if !rest.is_empty() && kind == Kind::PeerMessages && !peer_messages(rest) {
            state.kind = Kind::Done;
            return Probe::NotMine;
        }
        return found(PEER_INIT, Confidence::Unidirectional);
    }
    if let Some(rest) = pierce_firewall(buf) {
        if rest.is_empty() {
            state.kind = Kind::Pierced;
            return Probe::NeedMore;
        }
        if peer_messages(rest) {
            state.kind = Kind::PeerMessages;
            return found(PIERCE_FIREWALL, Confidence::Unidirectional);
        }
    }
    state.kind = Kind::Done;
    Probe::NotMine
}

/// A checked reader over one message body: every read is bounds-checked.
#[derive(Clone, Copy, Debug)]
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        let (v, rest) = self.buf.split_first_chunk::<4>()?;
        self.buf = rest;
        Some(u32::from_le_bytes(*v))
    }

    fn u64(&mut self) -> Option<u64> {
        let (v, rest) = self.buf.split_first_chunk::<8>()?;
        self.buf = rest;
        Some(u64::from_le_bytes(*v))
    }

    /// A string of at most `max` bytes.
    fn string(&mut self, max: usize) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        if n > max {
            return None;
        }
        let (s, rest) = self.buf.split_at_checked(n)?;
        self.buf = rest;
        Some(s)
    }

    /// A string of text: no control bytes (file names, user names).
    fn text(&mut self, max: usize) -> Option<&'a [u8]> {
        let s = self.string(max)?;
        s.iter().all(|&b| b >= 0x20 && b != 0x7f).then_some(s)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Splits off the first message: its body (after the length field) and
/// what follows. `None` if the length is impossible or the message runs
/// past the packet.
fn message(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = buf.split_first_chunk::<{ field::LENGTH }>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    if len > MAX_MESSAGE {
        return None;
    }
    rest.split_at_checked(len)
}

/// 32 hex digits: an MD5 digest as the clients write it.
fn md5_hex(s: &[u8]) -> bool {
    s.len() == field::MD5_HEX && s.iter().all(u8::is_ascii_hexdigit)
}

/// After the first message, the packet either ends or goes on with the
/// header of another plausible server message.
fn next_server_header_ok(rest: &[u8]) -> bool {
    if rest.is_empty() {
        return true;
    }
    let mut r = Reader { buf: rest };
    match (r.u32(), r.u32()) {
        (Some(len), Some(code)) => {
            (4..=MAX_MESSAGE as u64).contains(&u64::from(len)) && code <= 2000
        }
        _ => false,
    }
}

/// The client's login (\[SLSK\] "Server Code 1", send): returns the version
/// and minor version.
fn login(buf: &[u8]) -> Option<(u32, u32)> {
    let (body, rest) = message(buf)?;
    let mut r = Reader { buf: body };
    if r.u32()? != SERVER_LOGIN {
        return None;
    }
    let user = r.text(MAX_USERNAME)?;
    let _password = r.string(MAX_SHORT_STRING)?;
    let version = r.u32()?;
    let hash = r.string(field::MD5_HEX)?;
    let minor = r.u32()?;
    let ok = !user.is_empty() && md5_hex(hash) && r.is_empty() && next_server_header_ok(rest);
    ok.then_some((version, minor))
}

/// The server's login reply (\[SLSK\] "Server Code 1", receive).
fn login_reply(buf: &[u8]) -> bool {
    let Some((body, rest)) = message(buf) else {
        return false;
    };
    let mut r = Reader { buf: body };
    let parsed = (|| {
        if r.u32()? != SERVER_LOGIN {
            return None;
        }
        match r.u8()? {
            // Success: greeting, our address, MD5 of the password, and in
            // newer servers a supporter flag.
            1 => {
                r.string(MAX_TEXT)?;
                r.u32()?;
                if !md5_hex(r.string(field::MD5_HEX)?) {
                    return None;
                }
                if !r.is_empty() && r.u8()? > 1 {
                    return None;
                }
            }
            // Failure: a reason such as INVALIDPASS, and for some reasons
            // a detail string.
            0 => {
                let reason = r.text(MAX_SHORT_STRING)?;
                if reason.is_empty() {
                    return None;
                }
                if !r.is_empty() {
                    r.text(MAX_TEXT)?;
                }
            }
            _ => return None,
        }
        r.is_empty().then_some(())
    })();
    parsed.is_some() && next_server_header_ok(rest)
}

/// A `PeerInit` (\[SLSK\] "Peer Init Code 1"): what the connection carries
/// next, and the bytes after the message.
fn peer_init(buf: &[u8]) -> Option<(Kind, &[u8])> {
    let (body, rest) = message(buf)?;
    let mut r = Reader { buf: body };
    if r.u8()? != PEER_INIT_CODE {
        return None;
    }
    let user = r.text(MAX_USERNAME)?;
    let kind = match r.string(1)? {
        b"P" => Kind::PeerMessages,
        b"F" | b"D" => Kind::PeerOther,
        _ => return None,
    };
    r.u32()?; // token
    (!user.is_empty() && r.is_empty()).then_some((kind, rest))
}

/// A `PierceFireWall` (\[SLSK\] "Peer Init Code 0"): the bytes after it.
fn pierce_firewall(buf: &[u8]) -> Option<&[u8]> {
    let (msg, rest) = buf.split_at_checked(field::PIERCE_LEN)?;
    let ok = msg.starts_with(&[5, 0, 0, 0, PIERCE_FIREWALL_CODE]);
    ok.then_some(rest)
}

/// Peer message codes and their layouts (\[SLSK\] "Peer Messages").
mod peer_code {
    /// Shares request: empty.
    pub const SHARES_REQUEST: u32 = 4;
    /// Shares reply: a zlib stream.
    pub const SHARES_REPLY: u32 = 5;
    /// Search reply: a zlib stream.
    pub const SEARCH_REPLY: u32 = 9;
    /// User info request: empty.
    pub const USER_INFO_REQUEST: u32 = 15;
    /// User info reply: description, picture, counters.
    pub const USER_INFO_REPLY: u32 = 16;
    /// Folder contents request: token, folder.
    pub const FOLDER_CONTENTS_REQUEST: u32 = 36;
    /// Folder contents reply: a zlib stream.
    pub const FOLDER_CONTENTS_REPLY: u32 = 37;
    /// Transfer request: direction, token, file name, [size].
    pub const TRANSFER_REQUEST: u32 = 40;
    /// Transfer reply: token, allowed, size or reason.
    pub const TRANSFER_REPLY: u32 = 41;
    /// Queue upload: file name.
    pub const QUEUE_UPLOAD: u32 = 43;
    /// Place in queue reply: file name, place.
    pub const PLACE_IN_QUEUE_REPLY: u32 = 44;
    /// Upload failed: file name.
    pub const UPLOAD_FAILED: u32 = 46;
    /// Upload denied: file name, reason.
    pub const UPLOAD_DENIED: u32 = 50;
    /// Place in queue request: file name.
    pub const PLACE_IN_QUEUE_REQUEST: u32 = 51;
    /// Upload queue notification: empty.
    pub const UPLOAD_QUEUE_NOTIFICATION: u32 = 52;
}

/// Whether `buf` holds one or more peer messages, each with a known code
/// and a body of exactly its layout. The last message may run past the
/// packet only if its body is a zlib stream (share lists, search results),
/// whose header is then checked.
fn peer_messages(buf: &[u8]) -> bool {
    let mut rest = buf;
    let mut any = false;
    while !rest.is_empty() {
        let Some((len, after_len)) = rest.split_first_chunk::<{ field::LENGTH }>() else {
            return false;
        };
        let len = u32::from_le_bytes(*len) as usize;
        if !(field::CODE32..=MAX_MESSAGE).contains(&len) {
            return false;
        }
        let Some((code, _)) = after_len.split_first_chunk::<{ field::CODE32 }>() else {
            return false;
        };
        let code = u32::from_le_bytes(*code);
        match after_len.split_at_checked(len) {
            Some((body, after)) => {
                if !peer_body(code, body.get(field::CODE32..).unwrap_or_default(), true) {
                    return false;
                }
                rest = after;
            }
            None => {
                let partial = after_len.get(field::CODE32..).unwrap_or_default();
                return peer_body(code, partial, false);
            }
        }
        any = true;
    }
    any
}

/// Checks a peer message body; `whole`: the body is complete.
fn peer_body(code: u32, body: &[u8], whole: bool) -> bool {
    use peer_code::*;
    let mut r = Reader { buf: body };
    let exact = |r: Reader<'_>| r.is_empty();
    match code {
        SHARES_REQUEST | USER_INFO_REQUEST | UPLOAD_QUEUE_NOTIFICATION => whole && body.is_empty(),
        SHARES_REPLY | SEARCH_REPLY | FOLDER_CONTENTS_REPLY => zlib_header(body),
        USER_INFO_REPLY => {
            whole
                && (|| {
                    r.string(MAX_TEXT)?;
                    if r.u8()? == 1 {
                        r.string(MAX_MESSAGE)?;
                    }
                    r.u32()?;
                    r.u32()?;
                    if r.u8()? > 1 {
                        return None;
                    }
                    // The upload permission is not sent by SoulseekQt.
                    if !r.is_empty() {
                        r.u32()?;
                    }
                    exact(r).then_some(())
                })()
                .is_some()
        }
        FOLDER_CONTENTS_REQUEST => {
            whole && r.u32().is_some() && r.text(MAX_TEXT).is_some() && exact(r)
        }
        TRANSFER_REQUEST => {
            whole
                && (|| {
                    let direction = r.u32()?;
                    r.u32()?;
                    r.text(MAX_TEXT)?;
                    match direction {
                        0 => {}
                        1 => {
                            r.u64()?;
                        }
                        _ => return None,
                    }
                    exact(r).then_some(())
                })()
                .is_some()
        }
        TRANSFER_REPLY => {
            whole
                && (|| {
                    r.u32()?;
                    match r.u8()? {
                        // Allowed: the size for an upload reply, nothing for
                        // a (deprecated) download reply.
                        1 => {
                            if !r.is_empty() {
                                r.u64()?;
                            }
                        }
                        0 => {
                            if !r.is_empty() {
                                r.text(MAX_SHORT_STRING)?;
                            }
                        }
                        _ => return None,
                    }
                    exact(r).then_some(())
                })()
                .is_some()
        }
        QUEUE_UPLOAD | UPLOAD_FAILED | PLACE_IN_QUEUE_REQUEST => {
            whole && r.text(MAX_TEXT).is_some() && exact(r)
        }
        PLACE_IN_QUEUE_REPLY => {
            whole && r.text(MAX_TEXT).is_some() && r.u32().is_some() && exact(r)
        }
        UPLOAD_DENIED => {
            whole && r.text(MAX_TEXT).is_some() && r.text(MAX_SHORT_STRING).is_some() && exact(r)
        }
        _ => false,
    }
}

/// A zlib stream header (RFC 1950 2.2): deflate with a window of at most
/// 32 KiB, no preset dictionary, and the check bits.
fn zlib_header(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && flg & 0x20 == 0
                && (u16::from(*cmf) * 256 + u16::from(*flg)).is_multiple_of(31)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator as O, Responder as R};

    fn string(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    /// A message: `u32` length of the rest, then `rest`.
    fn framed(rest: &[u8]) -> Vec<u8> {
        let mut v = (rest.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(rest);
        v
    }

    fn login_body(user: &[u8], hash: &[u8]) -> Vec<u8> {
        [
            &1u32.to_le_bytes()[..],
            &string(user),
            &string(b"password"),
            &160u32.to_le_bytes(),
            &string(hash),
            &1u32.to_le_bytes(),
        ]
        .concat()
    }

    const HASH: &[u8] = b"d51c9a7e9353746a6020f9602d452929";

    #[test]
    fn the_documented_login_example() {
        // [SLSK] "Server Code 1": the hex stream of the sending example.
        let example: &[u8] = b"\x48\x00\x00\x00\x01\x00\x00\x00\x08\x00\x00\x00username\x08\x00\x00\x00password\xa0\x00\x00\x00\x20\x00\x00\x00d51c9a7e9353746a6020f9602d452929\x01\x00\x00\x00";
        assert_eq!(example, framed(&login_body(b"username", HASH)).as_slice());
        assert_eq!(login(example), Some((160, 1)));
    }

    #[test]
    fn a_login_and_its_replies() {
        let login_msg = framed(&login_body(b"alice", HASH));
        let ok_reply = framed(
            &[
                &1u32.to_le_bytes()[..],
                &[1],
                &string(b"Welcome to Soulseek!"),
                &[203, 0, 113, 7],
                &string(b"5f4dcc3b5aa765d61d8327deb882cf99"),
                &[0],
            ]
            .concat(),
        );
        // Room list and other server messages may follow in the segment.
        let mut reply_and_more = ok_reply.clone();
        reply_and_more.extend(framed(
            &[&64u32.to_le_bytes()[..], &0u32.to_le_bytes()].concat(),
        ));
        for reply in [&ok_reply, &reply_and_more] {
            let mut h = Harness::tcp(Soulseek);
            let got = h.probes(&[(O, &login_msg), (R, reply)]);
            assert!(matches!(got[0], Probe::Match(e) if e.name == LOGIN
                && e.strength == Confidence::Unidirectional));
            assert!(matches!(got[1], Probe::Match(e) if e.name == LOGIN_REPLY
                && e.strength == Confidence::Bidirectional));
            assert_eq!(
                h.facts().client[0].as_deref(),
                Some("Soulseek protocol 160.1")
            );
        }
        let failed = framed(&[&1u32.to_le_bytes()[..], &[0], &string(b"INVALIDPASS")].concat());
        let mut h = Harness::tcp(Soulseek);
        assert_eq!(
            h.evidence(&[(O, &login_msg), (R, &failed)]),
            vec![Some(LOGIN), Some(LOGIN_REPLY)]
        );
        // A reply of the wrong shape is not one.
        let bad = framed(&[&1u32.to_le_bytes()[..], &[2], &string(b"x")].concat());
        let mut h = Harness::tcp(Soulseek);
        assert_eq!(h.evidence(&[(O, &login_msg), (R, &bad)])[1], None);
    }

    fn peer_init(user: &[u8], kind: &[u8]) -> Vec<u8> {
        framed(&[&[1][..], &string(user), &string(kind), &0u32.to_le_bytes()].concat())
    }

    fn peer_message(code: u32, body: &[u8]) -> Vec<u8> {
        framed(&[&code.to_le_bytes()[..], body].concat())
    }

    #[test]
    fn a_peer_connection_with_messages_both_ways() {
        let request = peer_message(
            40,
            &[
                &0u32.to_le_bytes()[..],
                &77u32.to_le_bytes(),
                &string(b"@@music\\Artist\\Album\\01 Track.flac"),
            ]
            .concat(),
        );
        let mut first = peer_init(b"alice", b"P");
        first.extend(peer_message(15, b""));
        let reply = peer_message(
            41,
            &[&77u32.to_le_bytes()[..], &[0], &string(b"Queued")].concat(),
        );
        let mut h = Harness::tcp(Soulseek);
        let got = h.evidence(&[(O, &first), (O, &request), (R, &reply)]);
        assert_eq!(
            got,
            vec![Some(PEER_INIT), Some(PEER_MESSAGE), Some(PEER_MESSAGE)]
        );

        // A user info reply cut by the segment end is not accepted; a
        // shares reply (zlib) may be.
        let mut h = Harness::tcp(Soulseek);
        let mut shares = peer_message(5, &[0x78, 0x9c, 1, 2, 3]);
        shares[0] = 200; // longer than the segment
        let got = h.evidence(&[(O, &peer_init(b"bob", b"P")), (R, &shares)]);
        assert_eq!(got, vec![Some(PEER_INIT), Some(PEER_MESSAGE)]);
    }

    #[test]
    fn file_and_distributed_inits() {
        for kind in [&b"F"[..], b"D"] {
            let mut h = Harness::tcp(Soulseek);
            assert_eq!(
                h.evidence(&[(O, &peer_init(b"carol", kind))]),
                vec![Some(PEER_INIT)]
            );
        }
        let mut h = Harness::tcp(Soulseek);
        assert_eq!(h.feed(O, &peer_init(b"carol", b"X")), Probe::NotMine);
        let mut h = Harness::tcp(Soulseek);
        assert_eq!(h.feed(O, &peer_init(b"carol", b"PP")), Probe::NotMine);
    }

    #[test]
    fn a_pierce_firewall_needs_its_answer() {
        let pierce: &[u8] = b"\x05\x00\x00\x00\x00\x39\x30\x00\x00";
        let mut h = Harness::tcp(Soulseek);
        let got = h.probes(&[(O, pierce), (R, &peer_message(4, b""))]);
        assert_eq!(got[0], Probe::NeedMore);
        assert!(matches!(got[1], Probe::Match(e) if e.name == PIERCE_FIREWALL));
        // Answered by anything else: not Soulseek.
        let mut h = Harness::tcp(Soulseek);
        let got = h.probes(&[(O, pierce), (R, b"\x05\x00\x00\x00\x00\x00\x00\x00\x00")]);
        assert_eq!(got, vec![Probe::NeedMore, Probe::NotMine]);
    }

    #[test]
    fn near_misses_are_not_named() {
        let good = framed(&login_body(b"alice", HASH));
        let mut longer = good.clone();
        longer[0] += 1;
        let mut shorter = good.clone();
        shorter[0] -= 1;
        let mut code2 = good.clone();
        code2[4] = 2;
        let short_hash = framed(&login_body(b"alice", &HASH[..31]));
        let bad_hash = framed(&login_body(b"alice", b"d51c9a7e9353746a6020f9602d45292g"));
        let no_user = framed(&login_body(b"", HASH));
        let control_user = framed(&login_body(b"al\x01ce", HASH));
        let cut = &good[..good.len() - 1];
        let mut init_extra = peer_init(b"alice", b"P");
        init_extra[0] += 1;
        init_extra.push(0);
        let pierce_long: &[u8] = b"\x05\x00\x00\x00\x00\x01\x02\x03\x04\x05";
        let cases: [&[u8]; 11] = [
            &longer,
            &shorter,
            &code2,
            &short_hash,
            &bad_hash,
            &no_user,
            &control_user,
            cut,
            &init_extra,
            pierce_long,
            b"\x05\x00\x00\x00\x00\x01\x02\x03\x04",
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let mut h = Harness::tcp(Soulseek);
            let p = h.feed(O, bytes);
            assert!(!matches!(p, Probe::Match(_)), "case {i}");
            // The last case (a pierce alone) waits for its answer.
            if i < cases.len() - 1 {
                assert_eq!(p, Probe::NotMine, "case {i}");
            }
        }
    }

    /// Other protocols that start with a little-endian length, or look
    /// like one.
    fn binary_look_alikes() -> Vec<Vec<u8>> {
        vec![
            // MySQL server greeting: 3-byte LE length, sequence, protocol 10.
            b"\x4a\x00\x00\x00\x0a8.0.32\x00\x08\x00\x00\x00abcdefgh\x00\xff\xf7\x08\x02\x00\xff\xcf\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00ijklmnopqrst\x00caching_sha2_password\x00".to_vec(),
            // SMB2 over TCP: NetBIOS session header (big-endian length).
            b"\x00\x00\x00\x44\xfeSMB\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
            // RDP TPKT + X.224 connection request.
            b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00".to_vec(),
            // A game-style frame: LE length, code 1, then opaque bytes.
            framed(&[&1u32.to_le_bytes()[..], b"\x10\x00\x00\x00opaque-bytes-here"].concat()),
            // LE length, code 1, a string, then not the login layout.
            framed(&[&1u32.to_le_bytes()[..], &string(b"user"), &[0xff; 12]].concat()),
            // LE length, byte 1, a string, a two-byte type.
            framed(&[&[1][..], &string(b"user"), &string(b"PF"), &[0; 4]].concat()),
            // Kerberos over TCP: big-endian record length.
            b"\x00\x00\x00\x9c\x6a\x81\x99\x30\x81\x96\xa1\x03\x02\x01\x05\xa2\x03\x02\x01\x0a".to_vec(),
        ]
    }

    #[test]
    fn look_alikes_are_not_named() {
        let others = binary_look_alikes();
        for bytes in LOOK_ALIKES
            .iter()
            .map(|(_, b)| *b)
            .chain(others.iter().map(Vec::as_slice))
        {
            let mut h = Harness::tcp(Soulseek);
            assert_eq!(h.feed(O, bytes), Probe::NotMine, "{bytes:?}");
            let mut h = Harness::tcp(Soulseek);
            assert_eq!(h.feed(R, bytes), Probe::NotMine, "{bytes:?}");
        }
    }

    /// xorshift64*: deterministic noise.
    fn noise(seed: u64) -> impl FnMut() -> u8 {
        let mut x = seed;
        move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        }
    }

    #[test]
    fn random_bytes_never_match() {
        let mut next = noise(0xDEAD_BEEF_0BAD_F00D);
        for len in (0..=80).chain([100, 200, 536, 1024, 1460]) {
            for round in 0..32 {
                let mut bytes: Vec<u8> = (0..len).map(|_| next()).collect();
                // Half the time, give it a consistent length field and code.
                if round % 2 == 1 && len >= 8 {
                    bytes[..4].copy_from_slice(&((len - 4) as u32).to_le_bytes());
                    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
                }
                let mut h = Harness::tcp(Soulseek);
                let first = h.feed(O, &bytes);
                assert!(!matches!(first, Probe::Match(_)), "{bytes:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics(packets in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..5)
        ) {
            let mut h = Harness::tcp(Soulseek);
            for (orig, bytes) in &packets {
                h.feed(if *orig { O } else { R }, bytes);
            }
        }

        #[test]
        fn never_panics_after_an_init(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut h = Harness::tcp(Soulseek);
            h.feed(O, &peer_init(b"alice", b"P"));
            h.feed(R, &tail);
            let mut framed_tail = (tail.len() as u32).to_le_bytes().to_vec();
            framed_tail.extend(&tail);
            h.feed(O, &framed_tail);
        }
    }
}
