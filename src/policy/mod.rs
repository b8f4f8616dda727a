//! Policy: what to do about the flows detection names. A policy has a
//! default action and an ordered list of rules; the first rule whose match
//! holds decides. Rules apply only to flows named P2P: p2pguard is a P2P
//! enforcer, not a general firewall, so unnamed flows are always allowed.
//!
//! Deciding is pure: a flow's protocol, confidence, endpoints and
//! transport in, an [`Action`] out. The enforcers apply it.

mod parse;
mod rate;

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

pub use parse::{load, parse};
pub use rate::{format_rate, parse_burst, parse_rate};

use crate::decode::Transport;
use crate::detect::{Confidence, Protocol};
use crate::flow::Endpoint;

/// A loaded, validated policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Action for P2P flows no rule matches.
    pub default: Action,
    /// Rules, in order; the first match wins.
    pub rules: Vec<PolicyRule>,
    /// The operator's own networks, for `direction` (outbound = the
    /// originator is local).
    pub local: Vec<IpNet>,
}

/// One rule.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyRule {
    /// Its name, reported in verdict events.
    pub name: String,
    /// When it applies.
    pub matcher: Matcher,
    /// What it does.
    pub action: Action,
}

/// The conditions of a rule; every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matcher {
    /// Protocols (`None`: any P2P protocol).
    pub protocols: Option<Vec<Protocol>>,
    /// Minimum confidence.
    pub min_confidence: Option<Confidence>,
    /// The originator's address is in one of these networks.
    pub src: Option<Vec<IpNet>>,
    /// The responder's address is in one of these networks.
    pub dst: Option<Vec<IpNet>>,
    /// Either side's address is in one of these networks.
    pub hosts: Option<Vec<IpNet>>,
    /// Either side's port is in one of these ranges.
    pub ports: Option<Vec<(u16, u16)>>,
    /// The transport.
    pub transport: Option<Transport>,
    /// Outbound (the originator is local) or inbound.
    pub direction: Option<FlowDirection>,
}

/// Whether a flow was opened from inside the `local` networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowDirection {
    /// The originator is in a local network.
    Outbound,
    /// The originator is outside the local networks.
    Inbound,
}

/// What to do with a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let it pass, silently.
    Allow,
    /// Let it pass, and log the decision.
    Log,
    /// Shape it to a rate (a token bucket with a bounded delay queue).
    Throttle(Throttle),
    /// Drop its packets; optionally send a TCP reset to both ends.
    Block {
        /// Send RSTs to both ends (TCP).
        reset: bool,
    },
}

impl Action {
    /// The action's name: `allow`, `log`, `throttle`, `block`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Log => "log",
            Action::Throttle(_) => "throttle",
            Action::Block { .. } => "block",
        }
    }

    /// Whether packets are ever held back or dropped.
    pub fn enforces(&self) -> bool {
        matches!(self, Action::Throttle(_) | Action::Block { .. })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Throttle(t) => write!(
                f,
                "throttle {} ({})",
                format_rate(t.rate_bps),
                t.scope.name()
            ),
            Action::Block { reset: true } => f.write_str("block (reset)"),
            other => f.write_str(other.name()),
        }
    }
}

/// Throttle parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    /// Rate in bits per second.
    pub rate_bps: u64,
    /// Bucket size in bytes.
    pub burst_bytes: u64,
    /// Who shares one bucket.
    pub scope: Scope,
}

/// Who shares one token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Each flow has its own.
    Flow,
    /// Each host (the local side if `local` is set, else the originator).
    Host,
    /// One for every flow the rule matches.
    Rule,
}

impl Scope {
    /// The scope's name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Flow => "flow",
            Scope::Host => "host",
            Scope::Rule => "rule",
        }
    }
}

/// What the policy sees of a flow.
#[derive(Clone, Copy, Debug)]
pub struct FlowView {
    /// The protocol named.
    pub protocol: Protocol,
    /// How sure.
    pub confidence: Confidence,
    /// The originator.
    pub src: Endpoint,
    /// The responder.
    pub dst: Endpoint,
    /// TCP or UDP.
    pub transport: Transport,
}

/// The outcome of deciding: the rule that matched (`None`: the default)
/// and its action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Index of the matching rule in [`Policy::rules`].
    pub rule: Option<usize>,
    /// The action.
    pub action: Action,
}

impl Policy {
    /// A policy that allows everything (no rules).
    pub fn allow_all() -> Policy {
        Policy {
            default: Action::Allow,
            rules: Vec::new(),
            local: Vec::new(),
        }
    }

    /// Loads and validates a policy file.
    pub fn from_file(path: &Path) -> Result<Policy, crate::config::ConfigErrors> {
        load(path)
    }

    /// Decides for a flow named P2P.
    pub fn decide(&self, flow: &FlowView) -> Decision {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.matcher.matches(flow, &self.local) {
                return Decision {
                    rule: Some(i),
                    action: rule.action,
                };
            }
        }
        Decision {
            rule: None,
            action: self.default,
        }
    }

    /// The name of a decision's rule (`default` for the default action).
    pub fn rule_name(&self, decision: &Decision) -> &str {
        decision
            .rule
            .and_then(|i| self.rules.get(i))
            .map_or("default", |r| r.name.as_str())
    }

    /// Whether `ip` is in the local networks.
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.local.iter().any(|n| n.contains(&ip))
    }
}

impl Matcher {
    fn matches(&self, f: &FlowView, local: &[IpNet]) -> bool {
        let in_any = |nets: &Option<Vec<IpNet>>, ip: IpAddr| {
            nets.as_ref()
                .is_none_or(|n| n.iter().any(|net| net.contains(&ip)))
        };
        self.protocols
            .as_ref()
            .is_none_or(|p| p.contains(&f.protocol))
            && self.min_confidence.is_none_or(|c| f.confidence >= c)
            && self.transport.is_none_or(|t| t == f.transport)
            && in_any(&self.src, f.src.ip())
            && in_any(&self.dst, f.dst.ip())
            && (self.hosts.is_none()
                || in_any(&self.hosts, f.src.ip())
                || in_any(&self.hosts, f.dst.ip()))
            && self.ports.as_ref().is_none_or(|ranges| {
                ranges.iter().any(|(lo, hi)| {
                    (*lo..=*hi).contains(&f.src.port()) || (*lo..=*hi).contains(&f.dst.port())
                })
            })
            && self.direction.is_none_or(|d| {
                let outbound = local.iter().any(|n| n.contains(&f.src.ip()));
                (d == FlowDirection::Outbound) == outbound
            })
    }
}

#[cfg(test)]
mod tests;
