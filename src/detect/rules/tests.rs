//! Rule loading (every error with file and line) and matching (positional
//! constraints checked after the automaton's match).

use std::net::IpAddr;
use std::path::PathBuf;

use super::*;
use crate::flow::Endpoint;
use crate::timestamp::Timestamp;

fn load(text: &str) -> Result<RuleSet, RuleErrors> {
    RuleSet::parse_sources(&[(PathBuf::from("t.yaml"), text.to_string())])
}

fn err(text: &str) -> RuleError {
    let e = load(text).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    e.0[0].clone()
}

const ONE: &str = r#"
rules:
  - id: test.one
    protocol: gnutella
    transport: tcp
    side: originator
    packets: 1
    pattern: 'GNUTELLA CONNECT/'
    anchored: true
    description: test
"#;

fn view<'a>(
    payload: &'a [u8],
    direction: Direction,
    index: u16,
    transport: Transport,
) -> PacketView<'a> {
    let ep = Endpoint::new(IpAddr::from([10, 0, 0, 1]), 1);
    PacketView {
        payload,
        direction,
        index,
        transport,
        src: ep,
        dst: ep,
        ts: Timestamp(0),
        truncated: false,
    }
}

fn matches(set: &RuleSet, v: &PacketView<'_>) -> Vec<String> {
    let mut out = Vec::new();
    set.scan(v, |_, r| out.push(r.id.clone()));
    out
}

#[test]
fn loads_the_builtin_rules() {
    let set = RuleSet::load_with(builtin_sources(), &[]).unwrap();
    assert!(set.rules().len() >= 10);
    assert!(set.rules().iter().all(|r| r.origin.line > 0));
}

#[test]
fn every_file_in_rules_is_built_in() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml") && !n.starts_with("policy"))
        .collect();
    on_disk.sort();
    let mut built_in: Vec<String> = BUILTIN_RULES
        .iter()
        .map(|(p, _)| p.trim_start_matches("rules/").to_string())
        .collect();
    built_in.sort();
    assert_eq!(
        on_disk, built_in,
        "add new rule files to src/detect/rules/builtin.rs"
    );
}

#[test]
fn checks_positional_constraints_after_the_match() {
    let set = load(ONE).unwrap();
    let hit = b"GNUTELLA CONNECT/0.6\r\n";
    assert_eq!(
        matches(&set, &view(hit, Direction::Originator, 1, Transport::Tcp)),
        vec!["test.one"]
    );
    // Wrong side, packet, transport, or not at offset 0.
    assert!(matches(&set, &view(hit, Direction::Responder, 1, Transport::Tcp)).is_empty());
    assert!(matches(&set, &view(hit, Direction::Originator, 2, Transport::Tcp)).is_empty());
    assert!(matches(&set, &view(hit, Direction::Originator, 1, Transport::Udp)).is_empty());
    assert!(
        matches(
            &set,
            &view(
                b"xGNUTELLA CONNECT/",
                Direction::Originator,
                1,
                Transport::Tcp
            )
        )
        .is_empty()
    );
}

#[test]
fn checks_offset_depth_and_case() {
    let text = r#"
rules:
  - id: t.depth
    protocol: bittorrent
    pattern: 'abc'
    offset: 2
    depth: 5
    packets: "1-3"
    description: d
  - id: t.nocase
    protocol: bittorrent
    pattern: 'X-Gnutella-'
    nocase: true
    description: d
  - id: t.case
    protocol: bittorrent
    pattern: 'Hello'
    description: d
"#;
    let set = load(text).unwrap();
    let m = |p: &[u8], i| matches(&set, &view(p, Direction::Responder, i, Transport::Udp));
    assert_eq!(m(b"..abc", 3), vec!["t.depth"]);
    assert_eq!(m(b"....abc", 1), vec!["t.depth"]);
    assert!(m(b".....abc", 1).is_empty(), "ends past offset+depth");
    assert!(m(b".abc", 1).is_empty(), "starts before offset");
    assert!(m(b"..abc", 4).is_empty(), "packet outside 1-3");
    assert_eq!(m(b"x-gnutella-foo", 1), vec!["t.nocase"]);
    assert_eq!(m(b"Hello", 1), vec!["t.case"]);
    assert!(m(b"hello", 1).is_empty(), "case-sensitive rules stay so");
}

/// The automaton is searched anchored where anchored rules start and, for
/// the others, where a packed search finds their first bytes: every match
/// must still be found, wherever and however it overlaps.
#[test]
fn finds_unanchored_matches_anywhere_and_overlapping() {
    let text = r#"
rules:
  - id: t.anchored
    protocol: bittorrent
    pattern: 'GET /'
    anchored: true
    offset: 0
    packets: 1
    description: d
  - id: t.header
    protocol: gnutella
    pattern: '\r\nX-Gnutella-'
    nocase: true
    packets: "1-2"
    description: d
  - id: t.inner
    protocol: gnutella
    pattern: 'X-Gnu'
    packets: "1-2"
    description: d
  - id: t.short
    protocol: edonkey
    pattern: 'ab'
    packets: "1-8"
    description: d
"#;
    let set = load(text).unwrap();
    let m = |p: &[u8], i| matches(&set, &view(p, Direction::Originator, i, Transport::Tcp));
    let request = b"GET / HTTP/1.1\r\nHost: h\r\nx-gNUTELLA-Content: 1\r\n\r\n";
    assert_eq!(m(request, 1), vec!["t.anchored", "t.header"]);
    // Past the anchored rule's packet; an overlapping, case-sensitive
    // pattern inside the case-insensitive one.
    let request = b"HEAD / HTTP/1.1\r\nX-Gnutella-Content: 1\r\n";
    assert_eq!(m(request, 2), vec!["t.inner", "t.header"]);
    // At offset 0, after every other rule's packets; in a long payload.
    assert_eq!(m(b"ab", 5), vec!["t.short"]);
    let mut long = vec![0x17u8; 3000];
    long[2990..2992].copy_from_slice(b"ab");
    assert_eq!(m(&long, 7), vec!["t.short"]);
    assert!(m(&vec![0x61u8; 2000], 1).is_empty());
}

#[test]
fn reports_errors_with_file_line_and_column() {
    let e =
        err("rules:\n  - id: a.b\n    protocol: bittorent\n    pattern: 'x'\n    description: d\n");
    assert_eq!(e.file, PathBuf::from("t.yaml"));
    assert_eq!(e.line, Some(3));
    assert!(
        e.message.contains("did you mean `bittorrent`"),
        "{}",
        e.message
    );
    assert!(e.to_string().starts_with("t.yaml:3:"), "{e}");

    let e = err(
        "rules:\n  - id: a.b\n    protocol: gnutella\n    pattern: '\\q'\n    description: d\n",
    );
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("unknown escape `\\q`"), "{}", e.message);

    let e =
        err("rules:\n  - id: a.b\n    protocol: gnutella\n    patern: 'x'\n    description: d\n");
    assert_eq!(e.line, Some(4));
    assert!(
        e.message.contains("unknown field `patern`"),
        "{}",
        e.message
    );

    let e = err("rules:\n  - id: a.b\n    protocol: gnutella\n    pattern: 'x'\n");
    assert!(
        e.message.contains("missing field `description`"),
        "{}",
        e.message
    );

    let e = err(
        "rules:\n  - id: a.b\n    protocol: gnutella\n    pattern: 'x'\n    description: d\n    confidence: bidirectional\n",
    );
    assert_eq!(e.line, Some(6));

    let e = err(
        "rules:\n  - id: a.b\n    protocol: gnutella\n    pattern: 'x'\n    packets: \"3-1\"\n    description: d\n",
    );
    assert_eq!(e.line, Some(5));

    let e = err("rules: [\n");
    assert!(e.line.is_some());
}

#[test]
fn rejects_duplicate_ids_across_files() {
    let a = (PathBuf::from("a.yaml"), ONE.to_string());
    let b = (PathBuf::from("b.yaml"), ONE.to_string());
    let e = RuleSet::parse_sources(&[a, b]).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].file, PathBuf::from("b.yaml"));
    assert_eq!(e.0[0].line, Some(3));
    assert!(
        e.0[0]
            .message
            .contains("duplicate rule id `test.one` (first defined at a.yaml:3)")
    );
}

#[test]
fn reports_every_broken_file_not_just_the_first() {
    let a = (PathBuf::from("a.yaml"), "rules:\n  - id: BAD\n".to_string());
    let b = (PathBuf::from("b.yaml"), "nope: 1\n".to_string());
    let e = RuleSet::parse_sources(&[a, b]).unwrap_err();
    assert_eq!(e.0.len(), 2);
}

#[test]
fn each_transport_is_searched_for_its_own_rules_only() {
    let text = r#"
rules:
  - id: t.tcp-anywhere
    protocol: bittorrent
    transport: tcp
    pattern: 'tcp-only'
    description: d
  - id: t.udp-anywhere
    protocol: bittorrent
    transport: udp
    pattern: 'udp-only'
    description: d
  - id: t.tcp-at-0
    protocol: bittorrent
    transport: tcp
    pattern: 'head'
    offset: 0
    anchored: true
    description: d
  - id: t.both-at-0
    protocol: bittorrent
    pattern: 'he'
    offset: 0
    anchored: true
    description: d
"#;
    let set = load(text).unwrap();
    let payload = b"head..tcp-only..udp-only";
    let m = |t| matches(&set, &view(payload, Direction::Originator, 1, t));
    assert_eq!(
        m(Transport::Tcp),
        vec!["t.both-at-0", "t.tcp-at-0", "t.tcp-anywhere"]
    );
    assert_eq!(m(Transport::Udp), vec!["t.both-at-0", "t.udp-anywhere"]);
}
