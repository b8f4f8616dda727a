//! Policy files: every error with file, line and column; first match wins.

use std::path::Path;

use super::*;

fn parse_ok(text: &str) -> Policy {
    parse(Path::new("p.yaml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> crate::config::ConfigError {
    let e = parse(Path::new("p.yaml"), text).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    e.0[0].clone()
}

const EXAMPLE: &str = r#"
local: [10.0.0.0/8, "2001:db8::/32"]
groups:
  dorms: [10.1.0.0/16]
  servers: [10.9.0.1]
default: log
rules:
  - name: servers-may
    match: { hosts: [servers] }
    action: allow
  - name: block-dorm-bittorrent
    match:
      protocols: [bittorrent]
      min_confidence: unidirectional
      src: [dorms]
      direction: outbound
    action: block
    reset: true
  - name: slow-the-rest
    match: { ports: [6881, "6900-6999"], transport: tcp }
    action: throttle
    rate: 2mbit
    burst: 64kb
    scope: host
"#;

fn flow(p: Protocol, c: Confidence, src: &str, dst: &str, t: Transport) -> FlowView {
    let e = |s: &str| {
        let a: std::net::SocketAddr = s.parse().unwrap();
        Endpoint::new(a.ip(), a.port())
    };
    FlowView {
        protocol: p,
        confidence: c,
        src: e(src),
        dst: e(dst),
        transport: t,
    }
}

#[test]
fn the_first_matching_rule_decides() {
    let p = parse_ok(EXAMPLE);
    assert_eq!(p.rules.len(), 3);
    let d = |f: FlowView| {
        let d = p.decide(&f);
        (p.rule_name(&d).to_string(), d.action.name())
    };
    use Confidence::*;
    use Protocol::*;
    assert_eq!(
        d(flow(
            Bittorrent,
            Bidirectional,
            "10.9.0.1:5000",
            "198.51.100.1:6881",
            Transport::Tcp
        )),
        ("servers-may".into(), "allow")
    );
    assert_eq!(
        d(flow(
            Bittorrent,
            Bidirectional,
            "10.1.2.3:5000",
            "198.51.100.1:7000",
            Transport::Tcp
        )),
        ("block-dorm-bittorrent".into(), "block")
    );
    // Too weak for the block rule; the port rule takes it.
    assert_eq!(
        d(flow(
            Bittorrent,
            Cache,
            "10.1.2.3:5000",
            "198.51.100.1:6881",
            Transport::Tcp
        )),
        ("slow-the-rest".into(), "throttle")
    );
    // Inbound: not the dorm rule's direction.
    assert_eq!(
        d(flow(
            Bittorrent,
            Bidirectional,
            "198.51.100.1:5000",
            "10.1.2.3:7000",
            Transport::Tcp
        )),
        ("default".into(), "log")
    );
    assert_eq!(
        d(flow(
            Gnutella,
            Bidirectional,
            "10.1.2.3:5000",
            "198.51.100.1:6946",
            Transport::Tcp
        )),
        ("slow-the-rest".into(), "throttle")
    );
    assert_eq!(
        d(flow(
            Gnutella,
            Bidirectional,
            "10.1.2.3:5000",
            "198.51.100.1:6946",
            Transport::Udp
        )),
        ("default".into(), "log")
    );
    match p.rules[2].action {
        Action::Throttle(t) => assert_eq!(
            (t.rate_bps, t.burst_bytes, t.scope),
            (2_000_000, 65_536, Scope::Host)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.rules[1].action, Action::Block { reset: true });
}

#[test]
fn defaults_and_short_forms() {
    let p = parse_ok("rules: []\n");
    assert_eq!(p.default, Action::Allow);
    let p = parse_ok("default: {action: throttle, rate: 512kbit}\n");
    match p.default {
        Action::Throttle(t) => assert_eq!(
            (t.rate_bps, t.burst_bytes, t.scope),
            (512_000, 6400, Scope::Flow)
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_name_file_line_and_column() {
    let e = parse_err(
        "rules:\n  - name: a\n    match:\n      protocols: [bittorent]\n    action: block\n",
    );
    assert_eq!((e.line, e.column), (Some(4), Some(7)), "{e}");
    assert!(e.message.contains("did you mean `bittorrent`"), "{e}");
    assert!(e.to_string().starts_with("p.yaml:4:7: "), "{e}");

    let e = parse_err("rules:\n  - name: a\n    action: throttle\n    rate: 2 furlongs\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("bad rate `2 furlongs`"), "{e}");

    let e =
        parse_err("rules:\n  - name: a\n    match: { src: [10.0.0.300/8] }\n    action: block\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(
        e.message.contains("bad address or CIDR `10.0.0.300/8`"),
        "{e}"
    );

    let e = parse_err(
        "rules:\n  - name: a\n    match: { src: [dorm] }\n    action: block\ngroups:\n  dorms: [10.0.0.0/8]\n",
    );
    assert_eq!(e.line, Some(3), "{e}");
    assert!(
        e.message
            .contains("unknown group `dorm`; did you mean `dorms`?"),
        "{e}"
    );

    let e = parse_err("rules:\n  - name: a\n    actoin: block\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("unknown field `actoin`"), "{e}");

    let e = parse_err("rules:\n  - name: a\n    action: blok\n");
    assert!(e.message.contains("did you mean `block`"), "{e}");

    let e = parse_err("rules:\n  - name: a\n    action: throttle\n");
    assert!(e.message.contains("needs a `rate`"), "{e}");
    assert_eq!(e.line, Some(2), "{e}");

    let e = parse_err("rules:\n  - name: a\n    action: log\n    rate: 1mbit\n");
    assert!(e.message.contains("go with `action: throttle` only"), "{e}");

    let e = parse_err("rules:\n  - name: a\n    match: { direction: outbound }\n    action: log\n");
    assert!(
        e.message.contains("needs your networks under `local:`"),
        "{e}"
    );

    let two = parse(
        Path::new("p.yaml"),
        "rules:\n  - name: a\n    action: log\n  - name: a\n    action: block\n",
    )
    .unwrap_err();
    assert!(
        two.0[0].message.contains("duplicate rule name `a`"),
        "{two}"
    );
}

#[test]
fn the_example_policy_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/policy.example.yaml");
    let p = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!p.rules.is_empty());
}
