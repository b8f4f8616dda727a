//! Direct Connect: the NMDC text protocol (hubs and client-to-client
//! connections) and ADC, its successor, over TCP.
//!
//! # NMDC
//! A stream of commands, each `$Name arguments|` (or hub chat `<nick>
//! text|`), terminated by `|`. A hub speaks first with `$Lock <lock>
//! Pk=<pk>|`; the client answers `$Supports ...|$Key <key>|$ValidateNick
//! <nick>|`. Client-to-client, the connecting side sends `$MyNick <nick>|
//! $Lock ...|` and both sides then send `$Supports`, `$Direction` and
//! `$Key`. The key is computed from the other side's lock by a fixed
//! transform (\[NMDC\] "Lock to key"):
//! `key[0] = lock[0] ^ lock[n-1] ^ lock[n-2] ^ 5`,
//! `key[i] = lock[i] ^ lock[i-1]`, each byte then nibble-swapped, and the
//! bytes 0, 5, 36, 96, 124 and 126 written as `/%DCN000%/` (three decimal
//! digits).
//!
//! Evidence:
//! - `directconnect.nmdc_lock`: a side's first packet opens with a `$Lock`
//!   that has a ` Pk=` part, and every `|`-terminated piece of the packet is
//!   a known command or chat ([`Confidence::Unidirectional`]).
//! - `directconnect.nmdc_commands`: a side's first packet opens with a
//!   handshake command (`$MyNick`, `$Supports`, `$Key`, `$ValidateNick`)
//!   and every piece is a known command or chat
//!   ([`Confidence::Unidirectional`]).
//! - `directconnect.nmdc_key`: a `$Key` that is exactly the transform of the
//!   other side's `$Lock` ([`Confidence::Bidirectional`]: it proves the
//!   exchange). The first lock of the flow is checked (the hub's, or the
//!   connecting client's), through a 16-bit fingerprint of its key.
//!
//! # ADC
//! Messages `<type><CMD>[ params]\n`: a type letter (`B C D E F H I U`),
//! three command characters (an upper-case letter, then upper-case letters
//! or digits), space-separated parameters with `\s`, `\n` and `\\` escapes
//! (\[ADC\] 3.1). A client opens with `HSUP ADBASE ADTIGR ...` (to a hub) or
//! `CSUP ...` (to a client); the hub answers `ISUP ...`, `ISID <sid>`,
//! `IINF ...`, the other client `CSUP ...`.
//!
//! Evidence:
//! - `directconnect.adc_sup`: a side's first packet opens with a `SUP`
//!   message whose parameters are all `AD`/`RM` plus a four-character
//!   feature name, and every message of the packet is well-formed
//!   ([`Confidence::Unidirectional`]).
//! - `directconnect.adc_reply`: a `SUP` answering the other side's `SUP`
//!   (`ISUP` to `HSUP`, `CSUP` to `CSUP`) ([`Confidence::Bidirectional`]).
//!
//! Facts: the client from an NMDC `$MyINFO` tag (`<++ V:0.868,...>`) or,
//! less precise, from the `Pk=` of a `$Lock`; from an ADC `INF`'s `AP` and
//! `VE` parameters.
//!
//! # Why common traffic cannot pass
//! Nothing else starts a TCP stream with `$` + one of these names, ends its
//! pieces with `|` and keeps `$`, `|` and NUL out of its arguments; IRC,
//! SMTP, FTP and XMPP lines start with a letter, a digit or `<`, and end
//! with CR LF, never `|`. An ADC opening needs the `SUP` command with
//! feature parameters in the exact `AD`+4 form and a bare `\n` ending; SMTP
//! `HELO`/`EHLO` has the wrong command and a CR before the LF.
//!
//! References, cited by tag:
//! - \[NMDC\]: the NMDC protocol documentation (nmdc.sourceforge.net,
//!   "NMDC Protocol"), sections "Lock", "Key", "Supports", "MyINFO", and the
//!   DC++ and mldonkey sources for the lock-to-key transform.
//! - \[ADC\]: "ADC Protocol" 1.0.3, sections 3.1 (message syntax), 3.3
//!   (SID), 4.3 (`SUP`, `SID`, `INF`: `VE`, `AP`).

use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};

/// A `$Lock` opening with a well-formed command stream.
const NMDC_LOCK: &str = "directconnect.nmdc_lock";
/// A handshake command opening with a well-formed command stream.
const NMDC_COMMANDS: &str = "directconnect.nmdc_commands";
/// A `$Key` that is the transform of the other side's `$Lock`.
const NMDC_KEY: &str = "directconnect.nmdc_key";
/// An ADC `SUP` opening with well-formed messages.
const ADC_SUP: &str = "directconnect.adc_sup";
/// An ADC `SUP` answering the other side's `SUP`.
const ADC_REPLY: &str = "directconnect.adc_reply";

/// Payload packets looked at per side: the opening, the answer to the
/// other side's opening, and the `$MyINFO` / `INF` that follows.
const MAX_PACKETS: u16 = 4;

/// NMDC commands (\[NMDC\], with the common extensions of DC++, PtokaX,
/// Verlihub and YnHub). A piece naming anything else is not NMDC.
const NMDC_COMMANDS_KNOWN: &[&[u8]] = &[
    b"Lock",
    b"Key",
    b"Supports",
    b"ValidateNick",
    b"ValidateDenide",
    b"GetPass",
    b"MyPass",
    b"BadPass",
    b"LogedIn",
    b"HubName",
    b"HubTopic",
    b"HubINFO",
    b"BotINFO",
    b"Hello",
    b"Version",
    b"GetNickList",
    b"NickList",
    b"OpList",
    b"BotList",
    b"MyINFO",
    b"GetINFO",
    b"UserIP",
    b"UserCommand",
    b"ConnectToMe",
    b"RevConnectToMe",
    b"MultiConnectToMe",
    b"Search",
    b"MultiSearch",
    b"SA",
    b"SP",
    b"SR",
    b"To:",
    b"MCTo:",
    b"Quit",
    b"Kick",
    b"Close",
    b"ForceMove",
    b"OpForceMove",
    b"HubIsFull",
    b"ZOn",
    b"MyNick",
    b"Direction",
    b"Get",
    b"GetZBlock",
    b"UGetBlock",
    b"UGetZBlock",
    b"GetListLen",
    b"ListLen",
    b"Send",
    b"FileLength",
    b"Sending",
    b"MaxedOut",
    b"Error",
    b"Failed",
    b"Canceled",
    b"Cancel",
    b"ADCGET",
    b"ADCSND",
    b"ExtJSON",
    b"SetIcon",
    b"GetTopic",
];

/// Commands that may open a side's first packet (\[NMDC\] "Handshake").
const NMDC_OPENINGS: &[&[u8]] = &[b"Lock", b"MyNick", b"Supports", b"Key", b"ValidateNick"];

/// Longest NMDC lock looked at; real locks are 16 to about 130 bytes.
const MAX_LOCK: usize = 1024;

/// The bytes NMDC escapes in a key as `/%DCNnnn%/` (\[NMDC\] "Key").
const KEY_ESCAPED: [u8; 6] = [0, 5, 36, 96, 124, 126];

/// The protocol a flow speaks, once its opening was recognised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Dialect {
    /// No opening recognised yet.
    #[default]
    Unknown,
    /// NMDC.
    Nmdc,
    /// ADC.
    Adc,
}

/// Flag bits of [`State::flags`]; per-side flags have the originator's bit
/// and, shifted left by one, the responder's.
mod bit {
    /// The side sent an ADC `SUP`.
    pub const SUP: u8 = 1 << 0;
    /// Nothing more to check on this side.
    pub const DONE: u8 = 1 << 2;
    /// The side's last packet ended inside an NMDC piece.
    pub const MID: u8 = 1 << 4;
    /// The pending key ([`super::State::key`]) is the responder's to send
    /// (else the originator's). Not per side.
    pub const KEY_BY_RESPONDER: u8 = 1 << 6;
}

/// Per-flow state: 4 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    dialect: Dialect,
    flags: u8,
    /// A 16-bit fingerprint of the key one side must send, computed from
    /// the first `$Lock` of the other side; zero when none is pending.
    key: u16,
}

impl State {
    fn has(&self, base: u8, side: usize) -> bool {
        self.flags & (base << side) != 0
    }

    fn set(&mut self, base: u8, side: usize) {
        self.flags |= base << side;
    }

    fn set_to(&mut self, base: u8, side: usize, on: bool) {
        if on {
            self.set(base, side);
        } else {
            self.flags &= !(base << side);
        }
    }

    /// Remembers the key `side` must send, unless one is already pending
    /// (client to client, both sides send a lock; the first is checked).
    fn expect_key(&mut self, side: usize, fingerprint: u16) {
        if self.key == 0 {
            self.key = fingerprint;
            self.set_to(bit::KEY_BY_RESPONDER, 0, side == 1);
        }
    }

    /// The key fingerprint `side` must send, if any.
    fn pending_key(&self, side: usize) -> Option<u16> {
        let by_responder = self.has(bit::KEY_BY_RESPONDER, 0);
        (self.key != 0 && by_responder == (side == 1)).then_some(self.key)
    }
}

/// The Direct Connect detector.
#[derive(Debug, Default)]
pub struct DirectConnect;

impl Detector for DirectConnect {
    type State = State;
    const NAME: &'static str = "directconnect";
    const EVIDENCE: &'static [&'static str] =
        &[NMDC_LOCK, NMDC_COMMANDS, NMDC_KEY, ADC_SUP, ADC_REPLY];

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
        let side = packet.direction.index();
        let buf = packet.payload;
        if buf.is_empty() || state.has(bit::DONE, side) {
            return Probe::NeedMore;
        }
        let first = packet.index == 1;
        let resume = state.has(bit::MID, side);
        let evidence = match state.dialect {
            Dialect::Unknown if buf.first() == Some(&b'$') => {
                nmdc_packet(state, side, buf, first, false, facts)
            }
            Dialect::Unknown if adc_opening(buf) => adc_packet(state, side, buf, facts),
            Dialect::Nmdc => nmdc_packet(state, side, buf, first, resume && !first, facts),
            Dialect::Adc if !first || adc_opening(buf) => adc_packet(state, side, buf, facts),
            _ => None,
        };
        if let Some(e) = evidence {
            return Probe::Match(e);
        }
        if first {
            // A side whose first packet is not an opening is not ours.
            state.set(bit::DONE, side);
        }
        let both_done = state.has(bit::DONE, 0) && state.has(bit::DONE, 1);
        if state.dialect == Dialect::Unknown || both_done {
            Probe::NotMine
        } else {
            Probe::NeedMore
        }
    }
}

fn found(name: &'static str, strength: Confidence) -> Evidence {
    Evidence {
        protocol: Protocol::Directconnect,
        name,
        strength,
    }
}

// ---------------------------------------------------------------- NMDC --

/// One `|`-terminated piece of an NMDC stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece<'a> {
    /// `$Name args`: the name and the arguments (without the space).
    Command(&'a [u8], &'a [u8]),
    /// Chat from the hub or a user, or an empty keep-alive piece.
    Chat,
}

/// Reads one complete piece (without its `|`).
fn piece(p: &[u8]) -> Option<Piece<'_>> {
    // No NUL anywhere: NMDC escapes it even inside keys (\[NMDC\] "Key").
    if p.contains(&0) {
        return None;
    }
    if let Some(body) = p.strip_prefix(b"$") {
        let end = body.iter().position(|&b| b == b' ').unwrap_or(body.len());
        let (name, args) = body.split_at_checked(end)?;
        if !NMDC_COMMANDS_KNOWN.contains(&name) {
            return None;
        }
        let args = args.get(1..).unwrap_or_default();
        return args_ok(name, args).then_some(Piece::Command(name, args));
    }
    if p.is_empty() {
        return Some(Piece::Chat);
    }
    // `<nick> text` chat, or `* nick text` (/me) from some hubs.
    if let Some(rest) = p.strip_prefix(b"<") {
        let close = rest.iter().position(|&b| b == b'>')?;
        let nick = rest.get(..close)?;
        let ok = !nick.is_empty() && !nick.iter().any(|&b| b == b' ' || b == b'$' || b < 0x20);
        return ok.then_some(Piece::Chat);
    }
    p.starts_with(b"* ").then_some(Piece::Chat)
}

/// The arguments of the handshake commands, which open a side's stream,
/// have a strict form (\[NMDC\] "Lock", "Key", "MyNick", "ValidateNick",
/// "Supports", "Direction"); other commands only keep NUL out (already
/// checked), since `$MyINFO` and `$SR` carry control bytes as separators.
fn args_ok(name: &[u8], args: &[u8]) -> bool {
    match name {
        b"Lock" => lock_parts(args).is_some(),
        b"Key" => !args.is_empty() && received_key_fingerprint(args).is_some(),
        b"MyNick" | b"ValidateNick" | b"Hello" | b"Quit" => is_nick(args),
        b"Supports" => {
            let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
            words.clone().next().is_some()
                && words.all(|w| w.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_'))
        }
        b"Direction" => {
            let Some((dir, n)) = args
                .iter()
                .position(|&b| b == b' ')
                .and_then(|i| Some((args.get(..i)?, args.get(i + 1..)?)))
            else {
                return false;
            };
            (dir == b"Download" || dir == b"Upload")
                && !n.is_empty()
                && n.len() <= 5
                && n.iter().all(u8::is_ascii_digit)
        }
        _ => true,
    }
}

/// A nick: no blanks or control bytes, no `$` or `|` (\[NMDC\]
/// "ValidateNick").
fn is_nick(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b > b' ' && b != b'$' && b != b'|' && b != 0x7f)
}

/// Whether an unterminated last piece could be the start of a valid one.
fn piece_prefix(p: &[u8]) -> bool {
    if p.contains(&0) {
        return false;
    }
    match p.strip_prefix(b"$") {
        Some(body) => {
            let end = body.iter().position(|&b| b == b' ');
            let name = body.get(..end.unwrap_or(body.len())).unwrap_or_default();
            match end {
                Some(_) => NMDC_COMMANDS_KNOWN.contains(&name),
                None => NMDC_COMMANDS_KNOWN.iter().any(|k| k.starts_with(name)),
            }
        }
        None => p.is_empty() || p.starts_with(b"<") || p.starts_with(b"* "),
    }
}

/// Checks an NMDC packet and notes what it shows: the locks it sends (the
/// other side must answer with their keys), the keys it sends (checked
/// against the other side's lock), the client facts. `first`: the side's
/// first payload packet, which must open with a handshake command;
/// `resume`: the side's previous packet ended inside a piece, whose rest
/// starts this one and is skipped.
fn nmdc_packet(
    state: &mut State,
    side: usize,
    buf: &[u8],
    first: bool,
    resume: bool,
    facts: &mut FactSink<'_>,
) -> Option<Evidence> {
    let mut pieces = buf.split(|&b| b == b'|');
    if resume {
        pieces.next()?;
    }
    let tail = pieces.next_back().unwrap_or_default();
    if !piece_prefix(tail) {
        return None;
    }
    // Every complete piece must be a known command or chat before any
    // state changes.
    let mut opening = None;
    for p in pieces.clone() {
        let pc = piece(p)?;
        opening.get_or_insert(pc);
    }
    match opening {
        Some(Piece::Command(name, args)) => {
            if first && !NMDC_OPENINGS.contains(&name) {
                return None;
            }
            if name == b"Lock" && lock_parts(args).is_none() {
                return None;
            }
        }
        // A later packet may start with chat; a first packet may not.
        Some(Piece::Chat) if !first => {}
        _ => return None,
    }
    state.dialect = Dialect::Nmdc;
    state.set_to(bit::MID, side, !tail.is_empty());
    let mut key_proven = false;
    for p in pieces {
        let Some(Piece::Command(name, args)) = piece(p) else {
            continue;
        };
        match name {
            b"Lock" => {
                let (lock, pk) = lock_parts(args)?;
                state.expect_key(side ^ 1, key_fingerprint(lock));
                if !pk.is_empty() {
                    facts.client(pk);
                }
            }
            b"Key" => {
                if let Some(want) = state.pending_key(side)
                    && received_key_fingerprint(args) == Some(want)
                {
                    key_proven = true;
                    state.key = 0;
                }
            }
            b"MyINFO" => {
                if let Some(tag) = myinfo_client(args) {
                    facts.replace_client(tag);
                }
            }
            _ => {}
        }
    }
    if key_proven {
        return Some(found(NMDC_KEY, Confidence::Bidirectional));
    }
    if !first {
        return None;
    }
    let name = match opening {
        Some(Piece::Command(b"Lock", _)) => NMDC_LOCK,
        _ => NMDC_COMMANDS,
    };
    Some(found(name, Confidence::Unidirectional))
}

/// Splits `$Lock` arguments into the lock and the `Pk=` value; `None` if
/// the `Pk=` part is missing or the lock is unusable (\[NMDC\] "Lock": the
/// lock is everything before ` Pk=`).
fn lock_parts(args: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = args.windows(4).position(|w| w == b" Pk=")?;
    let lock = args.get(..at)?;
    let pk = args.get(at + 4..)?;
    let ok = (2..=MAX_LOCK).contains(&lock.len())
        && lock.iter().all(|&b| b > b' ' && b != 0x7f)
        && pk.iter().all(|&b| b >= b' ' && b != 0x7f);
    ok.then_some((lock, pk))
}

/// The key of a lock, byte by byte (\[NMDC\] "Lock to key").
fn lock_to_key(lock: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let n = lock.len();
    let last = lock.get(n.wrapping_sub(1)).copied().unwrap_or(0);
    let before = lock.get(n.wrapping_sub(2)).copied().unwrap_or(0);
    lock.iter().enumerate().map(move |(i, &b)| {
        let v = match i.checked_sub(1).and_then(|j| lock.get(j)) {
            Some(&prev) => b ^ prev,
            None => b ^ last ^ before ^ 5,
        };
        v.rotate_left(4)
    })
}

/// FNV-1a over the key bytes and their count, folded to 16 bits; never
/// zero. A wrong key matches by chance once in 65 535, after both sides
/// passed the command grammar.
struct Fingerprint(u32, u32);

impl Fingerprint {
    fn new() -> Self {
        Fingerprint(0x811c_9dc5, 0)
    }

    fn push(&mut self, b: u8) {
        self.0 = (self.0 ^ u32::from(b)).wrapping_mul(0x0100_0193);
        self.1 = self.1.wrapping_add(1);
    }

    fn finish(&self) -> u16 {
        let h = (self.0 ^ self.1).wrapping_mul(0x0100_0193);
        ((h >> 16) as u16 ^ h as u16).max(1)
    }
}

/// The fingerprint of the key the other side must send for `lock`.
fn key_fingerprint(lock: &[u8]) -> u16 {
    let mut f = Fingerprint::new();
    lock_to_key(lock).for_each(|b| f.push(b));
    f.finish()
}

/// The fingerprint of a received key, its `/%DCNnnn%/` escapes undone;
/// `None` if the key holds a byte that must have been escaped, or a bad
/// escape.
fn received_key_fingerprint(key: &[u8]) -> Option<u16> {
    let mut f = Fingerprint::new();
    let mut rest = key;
    while let Some((&b, after)) = rest.split_first() {
        if let Some(esc) = rest.strip_prefix(b"/%DCN") {
            let (digits, tail) = esc.split_at_checked(3)?;
            let tail = tail.strip_prefix(b"%/")?;
            let text = std::str::from_utf8(digits).ok()?;
            let value: u8 = text.parse().ok()?;
            if !digits.iter().all(u8::is_ascii_digit) || !KEY_ESCAPED.contains(&value) {
                return None;
            }
            f.push(value);
            rest = tail;
            continue;
        }
        if KEY_ESCAPED.contains(&b) {
            return None;
        }
        f.push(b);
        rest = after;
    }
    Some(f.finish())
}

/// The client tag of `$MyINFO $ALL <nick> <description><tag>$...`, up to
/// its first comma (`++ V:0.868` from `<++ V:0.868,M:A,H:1/0/0,S:3>`).
fn myinfo_client(args: &[u8]) -> Option<&[u8]> {
    let rest = args.strip_prefix(b"$ALL ")?;
    let description = rest.split(|&b| b == b'$').next()?;
    let close = description.iter().rposition(|&b| b == b'>')?;
    let open = description.get(..close)?.iter().rposition(|&b| b == b'<')?;
    let tag = description.get(open + 1..close)?;
    let name = tag.split(|&b| b == b',').next()?;
    let ok = name.len() >= 2 && name.iter().all(|&b| b >= b' ' && b != 0x7f);
    ok.then_some(name)
}

// ----------------------------------------------------------------- ADC --

/// A well-formed ADC message (\[ADC\] 3.1): its type letter, command and
/// parameters.
#[derive(Clone, Copy, Debug)]
struct AdcMessage<'a> {
    kind: u8,
    command: &'a [u8],
    params: &'a [u8],
}

impl<'a> AdcMessage<'a> {
    /// Checks one message (without its `\n`).
    fn new_checked(line: &'a [u8]) -> Option<Self> {
        let (head, rest) = line.split_at_checked(4)?;
        let [kind, c0, c1, c2] = *head else {
            return None;
        };
        // Type letters (\[ADC\] 3.1 "message_type").
        if !b"BCDEFHIU".contains(&kind) {
            return None;
        }
        // command_name ::= simple_alpha simple_alphanum simple_alphanum.
        let alnum = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit();
        if !c0.is_ascii_uppercase() || !alnum(c1) || !alnum(c2) {
            return None;
        }
        let params = match rest.split_first() {
            None => &[][..],
            Some((b' ', p)) => p,
            Some(_) => return None,
        };
        // UTF-8 text, single spaces between non-empty parameters, no
        // control characters, only the \s \n \\ escapes (\[ADC\] 3.1).
        std::str::from_utf8(params).ok()?;
        if !params.is_empty() && params.split(|&b| b == b' ').any(<[u8]>::is_empty) {
            return None;
        }
        if params.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return None;
        }
        let mut bytes = params.iter();
        while let Some(&b) = bytes.next() {
            if b == b'\\' && !matches!(bytes.next(), Some(b's' | b'n' | b'\\')) {
                return None;
            }
        }
        let msg = AdcMessage {
            kind,
            command: line.get(1..4)?,
            params,
        };
        msg.header_ok().then_some(msg)
    }

    fn param_list(&self) -> impl Iterator<Item = &'a [u8]> {
        let params = self.params;
        params.split(|&b| b == b' ').filter(|p| !p.is_empty())
    }

    /// The positional header of each message type (\[ADC\] 3.1): `B` a
    /// SID, `D`/`E` two SIDs, `F` a SID then features, `U` a CID.
    fn header_ok(&self) -> bool {
        let mut p = self.param_list();
        match self.kind {
            b'B' => p.next().is_some_and(is_sid),
            b'D' | b'E' => p.next().is_some_and(is_sid) && p.next().is_some_and(is_sid),
            b'F' => p.next().is_some_and(is_sid),
            b'U' => p.next().is_some_and(|c| c.len() == 39 && is_base32(c)),
            _ => true,
        }
    }
}

/// A session id: four base32 characters (\[ADC\] 3.3).
fn is_sid(p: &[u8]) -> bool {
    p.len() == 4 && is_base32(p)
}

fn is_base32(p: &[u8]) -> bool {
    p.iter()
        .all(|&b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

/// `SUP` parameters: `AD` or `RM` and a four-character feature name
/// (\[ADC\] 4.3.1), at least one.
fn sup_params_ok(msg: &AdcMessage<'_>) -> bool {
    let mut any = false;
    for p in msg.param_list() {
        let ok = (p.starts_with(b"AD") || p.starts_with(b"RM"))
            && p.len() == 6
            && p.get(2..).is_some_and(|f| {
                f.iter()
                    .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit())
            });
        if !ok {
            return false;
        }
        any = true;
    }
    any
}

/// Whether a side's first packet opens with an ADC `SUP` message.
fn adc_opening(buf: &[u8]) -> bool {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let Some(msg) = buf.get(..end).and_then(AdcMessage::new_checked) else {
        return false;
    };
    matches!(msg.kind, b'H' | b'I' | b'C') && msg.command == b"SUP" && sup_params_ok(&msg)
}

/// Checks an ADC packet: every complete message well-formed, an unfinished
/// last one well-formed so far. Notes `SUP`s and client facts.
fn adc_packet(
    state: &mut State,
    side: usize,
    buf: &[u8],
    facts: &mut FactSink<'_>,
) -> Option<Evidence> {
    let mut lines = buf.split(|&b| b == b'\n');
    let tail = lines.next_back().unwrap_or_default();
    if !tail.is_empty() && tail.len() >= 4 && AdcMessage::new_checked(tail).is_none() {
        return None;
    }
    let mut sup = false;
    let mut client: Option<(&[u8], &[u8])> = None;
    let mut any = false;
    for line in lines.clone() {
        if line.is_empty() {
            continue; // a keep-alive (\[ADC\] 3.1: message_body is optional)
        }
        let msg = AdcMessage::new_checked(line)?;
        any = true;
        match msg.command {
            b"SUP" => {
                if !sup_params_ok(&msg) {
                    return None;
                }
                sup = true;
            }
            // A session id is assigned by the hub, in one parameter.
            b"SID" if msg.kind != b'I' || !msg.param_list().next().is_some_and(is_sid) => {
                return None;
            }
            b"INF" => {
                let mut ap: &[u8] = &[];
                let mut ve: &[u8] = &[];
                for p in msg.param_list() {
                    if let Some(v) = p.strip_prefix(b"AP") {
                        ap = v;
                    } else if let Some(v) = p.strip_prefix(b"VE") {
                        ve = v;
                    }
                }
                if !ve.is_empty() {
                    client = Some((ap, ve));
                }
            }
            _ => {}
        }
    }
    if !any {
        return None;
    }
    state.dialect = Dialect::Adc;
    if let Some((ap, ve)) = client {
        let mut name = Vec::with_capacity(ap.len() + ve.len() + 1);
        name.extend_from_slice(&unescape_adc(ap));
        if !ap.is_empty() {
            name.push(b' ');
        }
        name.extend_from_slice(&unescape_adc(ve));
        facts.client(&name);
    }
    if !sup {
        return None;
    }
    let answered = state.has(bit::SUP, side ^ 1);
    state.set(bit::SUP, side);
    Some(if answered {
        found(ADC_REPLY, Confidence::Bidirectional)
    } else {
        found(ADC_SUP, Confidence::Unidirectional)
    })
}

/// Undoes ADC escapes (\[ADC\] 3.1: `\s` space, `\n` newline, `\\`).
fn unescape_adc(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut it = p.iter().copied();
    while let Some(b) = it.next() {
        if b == b'\\' {
            match it.next() {
                Some(b's') => out.push(b' '),
                Some(b'n') => out.push(b'\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator as O, Responder as R};

    const HUB_LOCK: &[u8] = b"EXTENDEDPROTOCOL_verlihub";
    const CLIENT_LOCK: &[u8] = b"EXTENDEDPROTOCOLABCABCABCABCABCABC";

    /// The key for `lock` as a client writes it (\[NMDC\] "Lock to key").
    fn key_for(lock: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in lock_to_key(lock) {
            if KEY_ESCAPED.contains(&b) {
                out.extend_from_slice(format!("/%DCN{b:03}%/").as_bytes());
            } else {
                out.push(b);
            }
        }
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn the_lock_to_key_transform_matches_a_published_example() {
        // mldonkey's dcKey.ml documents this lock and the start of its key
        // (bytes in decimal in parentheses where not printable).
        let lock = b"17lM=.U=*@Q&HvoG2=HJcLH:-,Q=5R=xMvRo-ET4;nMZYxnP,P_&oHFmc%B";
        let raw: Vec<u8> = lock_to_key(lock).take(12).collect();
        // "5/%DCN096%/(181)(18)(7)1(183)(134)q(166)(17)w" in the example.
        assert_eq!(
            raw,
            [0x35, 96, 181, 18, 7, b'1', 183, 134, b'q', 166, 17, b'w']
        );
        let key = key_for(lock);
        assert!(key.starts_with(b"5/%DCN096%/"), "{key:?}");
        assert_eq!(received_key_fingerprint(&key), Some(key_fingerprint(lock)));
    }

    #[test]
    fn a_hub_login_with_the_right_key_is_bidirectional() {
        let mut h = Harness::tcp(DirectConnect);
        let hub = cat(&[
            b"$Lock ",
            HUB_LOCK,
            b" Pk=version0.9.8e|$HubName Example hub|<Hub-Security> Welcome|",
        ]);
        let client = cat(&[
            b"$Supports UserCommand NoGetINFO NoHello UserIP2 TTHSearch ZPipe0 |$Key ",
            &key_for(HUB_LOCK),
            b"|$ValidateNick alice|",
        ]);
        let hub2: &[u8] = b"$Supports UserCommand NoGetINFO NoHello |$Hello alice|";
        let client2: &[u8] = b"$Version 1,0091|$GetNickList|$MyINFO $ALL alice desc<++ V:0.868,M:A,H:1/0/0,S:3>$ $LAN(T3)\x01$$1234$|";
        let got = h.evidence(&[(R, &hub), (O, &client), (R, hub2), (O, client2)]);
        assert_eq!(got, vec![Some(NMDC_LOCK), Some(NMDC_KEY), None, None]);
        let f = h.facts();
        assert_eq!(f.client[1].as_deref(), Some("version0.9.8e"));
        assert_eq!(f.client[0].as_deref(), Some("++ V:0.868"));
        // The key is Bidirectional evidence.
        let mut h = Harness::tcp(DirectConnect);
        h.feed(R, &hub);
        match h.feed(O, &client) {
            Probe::Match(e) => assert_eq!(e.strength, Confidence::Bidirectional),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn a_wrong_key_is_only_a_grammar_match() {
        let mut h = Harness::tcp(DirectConnect);
        let hub = cat(&[b"$Lock ", HUB_LOCK, b" Pk=x|"]);
        let client = cat(&[b"$Key ", &key_for(b"some other lock"), b"|$ValidateNick a|"]);
        let got = h.evidence(&[(R, &hub), (O, &client)]);
        assert_eq!(got, vec![Some(NMDC_LOCK), Some(NMDC_COMMANDS)]);
    }

    #[test]
    fn client_to_client_key_answers_the_first_lock() {
        let mut h = Harness::tcp(DirectConnect);
        let o1 = cat(&[
            b"$MyNick alice|$Lock ",
            CLIENT_LOCK,
            b" Pk=DCPLUSPLUS0.868ABCABC|",
        ]);
        let r1 = cat(&[
            b"$MyNick bob|$Lock ",
            HUB_LOCK,
            b" Pk=DCPLUSPLUS0.868ABCABC|$Supports MiniSlots XmlBZList ADCGet TTHL TTHF |$Direction Upload 16234|$Key ",
            &key_for(CLIENT_LOCK),
            b"|",
        ]);
        let o2 = cat(&[
            b"$Supports MiniSlots XmlBZList ADCGet TTHL TTHF |$Direction Download 3011|$Key ",
            &key_for(HUB_LOCK),
            b"|",
        ]);
        let got = h.evidence(&[(O, &o1), (R, &r1), (O, &o2)]);
        // The first lock (the originator's) is the one checked: the
        // responder's key proves the exchange.
        assert_eq!(got, vec![Some(NMDC_COMMANDS), Some(NMDC_KEY), None]);
        assert_eq!(
            h.facts().client[0].as_deref(),
            Some("DCPLUSPLUS0.868ABCABC")
        );
    }

    #[test]
    fn a_command_stream_split_across_segments_resumes() {
        let mut h = Harness::tcp(DirectConnect);
        let hub = cat(&[b"$Lock ", HUB_LOCK, b" Pk=x|"]);
        let key = key_for(HUB_LOCK);
        // The first segment ends inside $ValidateNick; the second starts
        // with the rest of it, which is skipped, then goes on with whole
        // commands.
        let c1 = cat(&[b"$Supports NoHello |$Key ", &key, b"|$ValidateNick al"]);
        let c2: &[u8] = b"ice|$Version 1,0091|$GetNickList|";
        let got = h.probes(&[(R, &hub), (O, &c1), (O, c2)]);
        assert!(matches!(got[1], Probe::Match(e) if e.name == NMDC_KEY));
        assert_eq!(got[2], Probe::NeedMore);
        // Without the skip, "ice" would be an invalid piece: a later packet
        // that is not NMDC does not end the flow either.
        let mut h = Harness::tcp(DirectConnect);
        let got = h.probes(&[(R, &hub), (O, &c1), (O, b"\x00\xff binary")]);
        assert_eq!(got[2], Probe::NeedMore);
    }

    #[test]
    fn adc_hub_and_client_exchanges() {
        let mut h = Harness::tcp(DirectConnect);
        let got = h.evidence(&[
            (O, b"HSUP ADBASE ADTIGR ADBZIP\n"),
            (
                R,
                b"ISUP ADBASE ADTIGR ADUCM0\nISID AAAB\nIINF CT32 VEuhub/0.4.1 NIExample\\shub DEA\\shub\n",
            ),
            (
                O,
                b"BINF AAAB IDABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFG PDABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFG NIalice APAirDC++ VE4.21 SL2\n",
            ),
        ]);
        assert_eq!(got, vec![Some(ADC_SUP), Some(ADC_REPLY), None]);
        let f = h.facts();
        assert_eq!(f.client[1].as_deref(), Some("uhub/0.4.1"));
        assert_eq!(f.client[0].as_deref(), Some("AirDC++ 4.21"));

        let mut h = Harness::tcp(DirectConnect);
        let got = h.evidence(&[
            (O, b"CSUP ADBASE ADTIGR ADBZIP\n"),
            (
                R,
                b"CSUP ADBASE ADTIGR\nCINF IDABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFG TOtoken\n",
            ),
        ]);
        assert_eq!(got, vec![Some(ADC_SUP), Some(ADC_REPLY)]);
    }

    /// Text protocols that a first packet of theirs must not pass for DC.
    const TEXT_LOOK_ALIKES: &[&[u8]] = &[
        b"NICK alice\r\nUSER alice 0 * :Alice\r\n",
        b":irc.example.net 001 alice :Welcome to the IRC network\r\n",
        b"220 mail.example.com ESMTP Postfix\r\n",
        b"EHLO client.example.com\r\n",
        b"HELO client.example.com\n",
        b"HSUP ADBASE\r\n",
        b"220 ProFTPD Server ready.\r\n",
        b"USER anonymous\r\n",
        b"<?xml version='1.0'?><stream:stream to='example.com' xmlns='jabber:client'>",
        b"<stream:stream xmlns='jabber:client'>",
        b"$5\r\nhello\r\n",
        b"*1\r\n$4\r\nPING\r\n",
        b"$HOME/bin/run | grep x|",
        b"$Lock abcdef|",
        b"$Lock  Pk=x|",
        b"$Lock x|y Pk=z|",
        b"$Lock abc Pk=x",
        b"$Foo bar|",
        b"$Key abc|$Bogus|",
        b"$ValidateNick alice|\x00|",
        b"<alice> hello|",
        b"HSUP\n",
        b"HSUP ADBAS\n",
        b"HSUP ADBASE  ADTIGR\n",
        b"XSUP ADBASE\n",
        b"HSUP ADBASE\nHELO x y\r\n",
        b"BSUP ADBASE\n",
    ];

    #[test]
    fn look_alikes_are_not_named() {
        for bytes in TEXT_LOOK_ALIKES
            .iter()
            .copied()
            .chain(LOOK_ALIKES.iter().map(|(_, b)| *b))
        {
            for side in [O, R] {
                let mut h = Harness::tcp(DirectConnect);
                assert_eq!(
                    h.feed(side, bytes),
                    Probe::NotMine,
                    "{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }

    #[test]
    fn a_web_exchange_after_nothing_is_not_named() {
        let mut h = Harness::tcp(DirectConnect);
        let got = h.probes(&[
            (O, LOOK_ALIKES[7].1),
            (R, b"HTTP/1.1 200 OK\r\n\r\n$Lock x Pk=y|"),
        ]);
        assert_eq!(got, vec![Probe::NotMine, Probe::NotMine]);
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
        let mut next = noise(0x1234_5678_9ABC_DEF1);
        for len in (0..=64).chain([100, 200, 536, 1024, 1460]) {
            for prefix in [&b""[..], b"$", b"$Lock ", b"HSUP ", b"CSUP AD"] {
                for _ in 0..16 {
                    let mut bytes = prefix.to_vec();
                    bytes.extend((0..len).map(|_| next()));
                    let mut h = Harness::tcp(DirectConnect);
                    assert!(!matches!(h.feed(O, &bytes), Probe::Match(_)), "{bytes:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics(packets in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..6)
        ) {
            let mut h = Harness::tcp(DirectConnect);
            for (orig, bytes) in &packets {
                h.feed(if *orig { O } else { R }, bytes);
            }
        }

        #[test]
        fn never_panics_on_text(packets in proptest::collection::vec(
            (any::<bool>(), "[$|<> A-Za-z0-9%/\\\\\n]{0,200}"), 0..6)
        ) {
            let mut h = Harness::tcp(DirectConnect);
            for (orig, text) in &packets {
                h.feed(if *orig { O } else { R }, text.as_bytes());
            }
        }
    }
}
