//! Reading a policy file: YAML into a validated [`Policy`], every problem
//! reported with file, line and column. Nothing is half-loaded: a policy
//! that fails to load enforces nothing.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::{
    Action, FlowDirection, Matcher, Policy, PolicyRule, Scope, Throttle, parse_burst, parse_rate,
};
use crate::config::{
    ConfigError, ConfigErrors, TransportField, parse_protocol, unknown_name, yaml_error,
};
use crate::detect::{Confidence, Protocol};

/// Reads and validates a policy file.
pub fn load(path: &Path) -> Result<Policy, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Validates a policy given as text (`file` names it in errors).
pub fn parse(file: &Path, text: &str) -> Result<Policy, ConfigErrors> {
    let raw: RawPolicy =
        yaml_serde::from_str(text).map_err(|e| ConfigErrors(vec![yaml_error(file, text, &e)]))?;
    let mut errors = Vec::new();
    let at = |needle: &str, message: String| {
        let line = line_of(text, needle);
        ConfigError {
            file: file.to_owned(),
            line: line.map(|l| l.0),
            column: line.map(|l| l.1),
            message,
        }
    };

    // Groups: names of address sets, usable wherever an address is.
    let groups: BTreeMap<String, Vec<IpNet>> =
        raw.groups.into_iter().map(|(k, v)| (k, v.0)).collect();
    let group_names: Vec<&str> = groups.keys().map(String::as_str).collect();
    let resolve = |items: &[AddrItem], errors: &mut Vec<ConfigError>| -> Vec<IpNet> {
        let mut out = Vec::new();
        for item in items {
            match item {
                AddrItem::Net(n) => out.push(*n),
                AddrItem::Group(name) => match groups.get(name) {
                    Some(nets) => out.extend(nets),
                    None => errors.push(at(name, format!(
                        "{}; a group must be defined under `groups:`, or write an address or CIDR",
                        unknown_name("group", name, &group_names)
                    ))),
                },
            }
        }
        out
    };

    let default = raw
        .default
        .map(|a| a.0.build(None, &at, &mut errors))
        .unwrap_or(Some(Action::Allow));
    let local = resolve(&raw.local, &mut errors);
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for r in raw.rules {
        let (name, m, action) = r.split();
        if !names.insert(name.clone()) {
            errors.push(at(&name, format!("duplicate rule name `{name}`")));
        }
        let m = m.unwrap_or_default();
        if m.direction.is_some() && local.is_empty() {
            errors.push(at(
                &name,
                format!(
                    "rule `{name}` matches on direction, which needs your networks under `local:`"
                ),
            ));
        }
        let matcher = Matcher {
            protocols: m.protocols.map(|ps| ps.into_iter().map(|p| p.0).collect()),
            min_confidence: m.min_confidence.map(|c| c.0),
            src: m.src.map(|a| resolve(&a, &mut errors)),
            dst: m.dst.map(|a| resolve(&a, &mut errors)),
            hosts: m.hosts.map(|a| resolve(&a, &mut errors)),
            ports: m.ports.map(|ps| ps.into_iter().map(|p| p.0).collect()),
            transport: m.transport.and_then(|t| t.0),
            direction: m.direction.map(|d| d.0),
        };
        if let Some(action) = action.build(Some(&name), &at, &mut errors) {
            rules.push(PolicyRule {
                name,
                matcher,
                action,
            });
        }
    }
    match default {
        Some(default) if errors.is_empty() => Ok(Policy {
            default,
            rules,
            local,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The line and column of the first occurrence of `needle` as a YAML value
/// or list item (for problems found after parsing).
fn line_of(text: &str, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    text.lines().enumerate().find_map(|(i, line)| {
        line.match_indices(needle).find_map(|(col, _)| {
            let before = line[..col].trim_end_matches(['"', '\'']);
            let after = line[col + needle.len()..].trim_start_matches(['"', '\'']);
            let delimited_before = before.is_empty() || before.ends_with([' ', '[', ',', ':', '-']);
            let delimited_after = after.is_empty() || after.starts_with([' ', ']', ',', '#', '}']);
            (delimited_before && delimited_after).then_some((i + 1, col + 1))
        })
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    local: Vec<AddrItem>,
    #[serde(default)]
    groups: BTreeMap<String, NetList>,
    default: Option<RawDefault>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    r#match: Option<RawMatch>,
    action: ActionName,
    rate: Option<String>,
    burst: Option<String>,
    scope: Option<ScopeName>,
    reset: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    protocols: Option<Vec<ProtocolItem>>,
    min_confidence: Option<ConfidenceName>,
    src: Option<Vec<AddrItem>>,
    dst: Option<Vec<AddrItem>>,
    hosts: Option<Vec<AddrItem>>,
    ports: Option<Vec<PortRange>>,
    transport: Option<TransportField>,
    direction: Option<DirectionName>,
}

/// An action with its parameters (`rate`, `burst`, `scope`, `reset`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    action: ActionName,
    rate: Option<String>,
    burst: Option<String>,
    scope: Option<ScopeName>,
    reset: Option<bool>,
}

/// The default action: its name alone (`default: log`), or a mapping
/// with its parameters (`default: {action: throttle, rate: 2mbit}`).
struct RawDefault(RawAction);

impl<'de> Deserialize<'de> for RawDefault {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = RawDefault;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "an action name (allow, log, throttle, block) or a mapping with `action:`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDefault, E> {
                let action = ActionName::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(RawDefault(RawAction {
                    action,
                    rate: None,
                    burst: None,
                    scope: None,
                    reset: None,
                }))
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<RawDefault, M::Error> {
                RawAction::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawDefault)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl RawRule {
    fn split(self) -> (String, Option<RawMatch>, RawAction) {
        let action = RawAction {
            action: self.action,
            rate: self.rate,
            burst: self.burst,
            scope: self.scope,
            reset: self.reset,
        };
        (self.name, self.r#match, action)
    }
}

impl RawAction {
    fn build(
        self,
        rule: Option<&str>,
        at: &impl Fn(&str, String) -> ConfigError,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Action> {
        let f = self;
        let whose = rule.map_or("the default action".to_string(), |r| format!("rule `{r}`"));
        let anchor = rule.unwrap_or("default");
        let mut fail = |msg: String| {
            errors.push(at(anchor, msg));
            None
        };
        let throttle = f.action.0 == "throttle";
        if !throttle && (f.rate.is_some() || f.burst.is_some() || f.scope.is_some()) {
            return fail(format!(
                "{whose}: `rate`, `burst` and `scope` go with `action: throttle` only"
            ));
        }
        if f.reset.is_some() && f.action.0 != "block" {
            return fail(format!("{whose}: `reset` goes with `action: block` only"));
        }
        Some(match f.action.0.as_str() {
            "allow" => Action::Allow,
            "log" => Action::Log,
            "block" => Action::Block {
                reset: f.reset.unwrap_or(false),
            },
            _ => {
                let Some(rate) = f.rate else {
                    return fail(format!(
                        "{whose}: `action: throttle` needs a `rate`, e.g. `rate: 1mbit`"
                    ));
                };
                let rate_bps = match parse_rate(&rate) {
                    Ok(r) => r,
                    Err(e) => {
                        errors.push(at(&rate, e));
                        return None;
                    }
                };
                // Default burst: 100 ms at the rate, and at least a few frames.
                let burst_bytes = match f.burst.as_deref().map(parse_burst) {
                    Some(Ok(b)) => b,
                    Some(Err(e)) => {
                        errors.push(at(f.burst.as_deref().unwrap_or_default(), e));
                        return None;
                    }
                    None => (rate_bps / 8 / 10).max(4 * 1514),
                };
                Action::Throttle(Throttle {
                    rate_bps,
                    burst_bytes,
                    scope: f.scope.map_or(Scope::Flow, |s| s.0),
                })
            }
        })
    }
}

struct ActionName(String);

impl<'de> Deserialize<'de> for ActionName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        const KNOWN: [&str; 4] = ["allow", "log", "throttle", "block"];
        if KNOWN.contains(&s.as_str()) {
            Ok(ActionName(s))
        } else {
            Err(de::Error::custom(format!(
                "action: {}",
                unknown_name("action", &s, &KNOWN)
            )))
        }
    }
}

struct ScopeName(Scope);

impl<'de> Deserialize<'de> for ScopeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "flow" => Ok(ScopeName(Scope::Flow)),
            "host" => Ok(ScopeName(Scope::Host)),
            "rule" => Ok(ScopeName(Scope::Rule)),
            _ => Err(de::Error::custom(format!(
                "scope: {}",
                unknown_name("scope", &s, &["flow", "host", "rule"])
            ))),
        }
    }
}

struct ProtocolItem(Protocol);

impl<'de> Deserialize<'de> for ProtocolItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_protocol(&s)
            .map(ProtocolItem)
            .map_err(|e| de::Error::custom(format!("protocols: {e}")))
    }
}

struct ConfidenceName(Confidence);

impl<'de> Deserialize<'de> for ConfidenceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Confidence::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .map(ConfidenceName)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "min_confidence: {}",
                    unknown_name("confidence", &s, &Confidence::ALL.map(|c| c.as_str()))
                ))
            })
    }
}

struct DirectionName(FlowDirection);

impl<'de> Deserialize<'de> for DirectionName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "outbound" => Ok(DirectionName(FlowDirection::Outbound)),
            "inbound" => Ok(DirectionName(FlowDirection::Inbound)),
            _ => Err(de::Error::custom(format!(
                "direction: {}",
                unknown_name("direction", &s, &["outbound", "inbound"])
            ))),
        }
    }
}

/// An address, a CIDR, or a group name.
enum AddrItem {
    Net(IpNet),
    Group(String),
}

impl<'de> Deserialize<'de> for AddrItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(AddrItem::Net(net.trunc()));
        }
        if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            return Ok(AddrItem::Net(IpNet::from(ip)));
        }
        // Something address-like that did not parse is a bad CIDR, not a
        // group name.
        if s.chars()
            .all(|c| c.is_ascii_hexdigit() || "./:".contains(c))
            && s.contains(['.', ':'])
        {
            return Err(de::Error::custom(format!(
                "address: bad address or CIDR `{s}` (e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/32)"
            )));
        }
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        {
            return Err(de::Error::custom(format!(
                "address: `{s}` is neither an address, a CIDR nor a group name"
            )));
        }
        Ok(AddrItem::Group(s))
    }
}

/// A group's member list: addresses and CIDRs only.
struct NetList(Vec<IpNet>);

impl<'de> Deserialize<'de> for NetList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<AddrItem>::deserialize(d)?;
        let mut out = Vec::new();
        for item in items {
            match item {
                AddrItem::Net(n) => out.push(n),
                AddrItem::Group(g) => {
                    return Err(de::Error::custom(format!(
                        "groups: `{g}` is not an address or CIDR (groups cannot contain groups)"
                    )));
                }
            }
        }
        Ok(NetList(out))
    }
}

/// `6881` or `"6881-6889"`.
struct PortRange((u16, u16));

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(u16),
            Range(String),
        }
        let bad = |s: &str| {
            de::Error::custom(format!(
                "ports: bad port or range `{s}` (e.g. 6881 or \"6881-6889\")"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::One(p) => Ok(PortRange((p, p))),
            Raw::Range(s) => {
                let (a, b) = s.split_once('-').ok_or_else(|| bad(&s))?;
                let a: u16 = a.trim().parse().map_err(|_| bad(&s))?;
                let b: u16 = b.trim().parse().map_err(|_| bad(&s))?;
                if a > b {
                    return Err(bad(&s));
                }
                Ok(PortRange((a, b)))
            }
        }
    }
}
