//! Signature rules: byte literals an operator can add without recompiling.
//!
//! Rules live in YAML files (`rules/*.yaml`; the format is documented in
//! `rules/README.md`). Loading checks every field and reports every problem
//! with its file, line and column; nothing is half-loaded. All patterns then
//! compile into one Aho-Corasick automaton, and a match counts only if the
//! rule's positional constraints (offset, depth, anchoring, side, payload
//! packet, transport) hold.

mod builtin;
mod pattern;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::{TransportField, parse_protocol, unknown_name, yaml_error};
use aho_corasick::automaton::OverlappingState;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Anchored, MatchKind, StartKind};
use serde::Deserialize;
use serde::de::{self, Deserializer};

pub use builtin::{BUILTIN_RULES, builtin_sources};
pub use pattern::{PatternError, parse as parse_pattern};

use super::{Confidence, PacketView, Protocol};
use crate::decode::Transport;
use crate::flow::Direction;

/// A loaded, validated rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, also the name of the evidence it gives.
    pub id: String,
    /// The protocol a match points to.
    pub protocol: Protocol,
    /// Transport it applies to (`None`: both).
    pub transport: Option<Transport>,
    /// Side whose packets it looks at (`None`: both).
    pub side: Option<Direction>,
    /// Payload packets of that side it looks at, first and last (1-based).
    pub packets: (u16, u16),
    /// The literal bytes.
    pub pattern: Vec<u8>,
    /// The match starts at or after this payload offset.
    pub offset: usize,
    /// The match ends within this many bytes after `offset`.
    pub depth: Option<usize>,
    /// The match starts exactly at `offset`.
    pub anchored: bool,
    /// ASCII letters match regardless of case.
    pub nocase: bool,
    /// What a match is worth on its side.
    pub confidence: Confidence,
    /// What the rule detects, for people.
    pub description: String,
    /// Specifications and sources (BEP numbers, URLs).
    pub references: Vec<String>,
    /// Where the rule was defined.
    pub origin: Origin,
}

/// A file and line where a rule was defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The rule file.
    pub file: PathBuf,
    /// 1-based line of the rule's `id`.
    pub line: usize,
}

pub use crate::config::{ConfigError as RuleError, ConfigErrors as RuleErrors};

/// A compiled set of rules.
///
/// Every pattern is in one Aho-Corasick automaton. A packet is searched
/// with it in two ways: anchored at each offset where anchored rules start
/// (a few bytes of work), and, for the unanchored rules, at the positions
/// where one of their patterns occurs, found by a SIMD substring search
/// (aho-corasick's packed "Teddy" searcher) over the bytes those rules may
/// look at. Without a packed searcher (case-insensitive or too many
/// unanchored patterns) the automaton scans those bytes itself.
#[derive(Clone, Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    automaton: Option<AhoCorasick>,
    /// Highest payload packet index any rule looks at, per side.
    max_packet: [u16; 2],
    /// Distinct offsets of the anchored rules, and the packets they look at.
    anchored_offsets: Vec<usize>,
    /// By transport (see [`transport_index`]) and side: a UDP packet is not
    /// searched for patterns only TCP rules have.
    anchored_max_packet: [[u16; 2]; 2],
    /// The unanchored rules: how far into a payload they look (`None`: to
    /// the end), the packets they look at (by transport and side), and
    /// their patterns' finder.
    unanchored_limit: Option<usize>,
    unanchored_max_packet: [[u16; 2]; 2],
    unanchored_finder: Option<aho_corasick::packed::Searcher>,
    has_unanchored: bool,
}

impl RuleSet {
    /// Loads every `*.yaml` / `*.yml` file of each directory (sorted by
    /// name) and every file given directly, then compiles them.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, RuleErrors> {
        Self::load_with(Vec::new(), paths)
    }

    /// Like [`RuleSet::load`], after the given sources (e.g.
    /// [`builtin_sources`]).
    pub fn load_with(
        mut sources: Vec<(PathBuf, String)>,
        paths: &[PathBuf],
    ) -> Result<RuleSet, RuleErrors> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            match rule_files(path) {
                Ok(found) => files.extend(found),
                Err(e) => errors.push(e),
            }
        }
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push((file, text)),
                Err(e) => errors.push(RuleError {
                    file,
                    line: None,
                    column: None,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        let parsed = Self::parse_sources(&sources);
        match parsed {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(RuleErrors(errors)),
            Err(RuleErrors(more)) => {
                errors.extend(more);
                Err(RuleErrors(errors))
            }
        }
    }

    /// Parses and compiles rule files given as `(name, text)` pairs.
    pub fn parse_sources(sources: &[(PathBuf, String)]) -> Result<RuleSet, RuleErrors> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        let mut seen: HashMap<String, Origin> = HashMap::new();
        for (file, text) in sources {
            let parsed: RuleFile = match yaml_serde::from_str(text) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(yaml_error(file, text, &e));
                    continue;
                }
            };
            let mut occurrences: HashMap<String, usize> = HashMap::new();
            for raw in parsed.rules {
                let nth = occurrences.entry(raw.id.0.clone()).or_default();
                let line = line_of_id(text, &raw.id.0, *nth);
                *nth += 1;
                let origin = Origin {
                    file: file.clone(),
                    line: line.unwrap_or(0),
                };
                if let Some(first) = seen.get(&raw.id.0) {
                    errors.push(RuleError {
                        file: file.clone(),
                        line,
                        column: None,
                        message: format!(
                            "duplicate rule id `{}` (first defined at {}:{})",
                            raw.id.0,
                            first.file.display(),
                            first.line
                        ),
                    });
                    continue;
                }
                seen.insert(raw.id.0.clone(), origin.clone());
                rules.push(raw.into_rule(origin));
            }
        }
        if !errors.is_empty() {
            return Err(RuleErrors(errors));
        }
        Self::compile(rules)
    }

    /// Compiles validated rules into one automaton.
    pub fn compile(rules: Vec<Rule>) -> Result<RuleSet, RuleErrors> {
        let mut set = RuleSet::empty();
        for r in &rules {
            let max = if r.anchored {
                if !set.anchored_offsets.contains(&r.offset) {
                    set.anchored_offsets.push(r.offset);
                }
                &mut set.anchored_max_packet
            } else {
                let end = r.depth.map(|d| r.offset + d);
                set.unanchored_limit = if set.has_unanchored {
                    set.unanchored_limit.zip(end).map(|(a, b)| a.max(b))
                } else {
                    end
                };
                set.has_unanchored = true;
                &mut set.unanchored_max_packet
            };
            for side in [Direction::Originator, Direction::Responder] {
                if r.side.is_none_or(|s| s == side) {
                    let i = side.index();
                    for t in [Transport::Tcp, Transport::Udp] {
                        if r.transport.is_none_or(|rt| rt == t) {
                            let m = &mut max[transport_index(t)][i];
                            *m = (*m).max(r.packets.1);
                        }
                    }
                    set.max_packet[i] = set.max_packet[i].max(r.packets.1);
                }
            }
        }
        set.anchored_offsets.sort_unstable();
        if rules.is_empty() {
            return Ok(set);
        }
        let compile_error = |e: String| {
            RuleErrors(vec![RuleError {
                file: PathBuf::from("<rules>"),
                line: None,
                column: None,
                message: format!("cannot compile the patterns: {e}"),
            }])
        };
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Both)
            .ascii_case_insensitive(rules.iter().any(|r| r.nocase))
            .build(rules.iter().map(|r| &r.pattern))
            .map_err(|e| compile_error(e.to_string()))?;
        set.automaton = Some(automaton);
        set.unanchored_finder = prefix_finder(rules.iter().filter(|r| !r.anchored));
        set.rules = rules;
        Ok(set)
    }

    /// An empty set.
    pub fn empty() -> RuleSet {
        RuleSet {
            rules: Vec::new(),
            automaton: None,
            max_packet: [0; 2],
            anchored_offsets: Vec::new(),
            anchored_max_packet: [[0; 2]; 2],
            unanchored_limit: None,
            unanchored_max_packet: [[0; 2]; 2],
            unanchored_finder: None,
            has_unanchored: false,
        }
    }

    /// The rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Highest payload packet index any rule looks at on `side`.
    pub fn max_packet(&self, side: Direction) -> u16 {
        self.max_packet[side.index()]
    }

    /// Calls `on_match` with the index and rule of every rule matching
    /// `packet`: a rule at most once per packet, in order of the end of its
    /// first match, then of rule index.
    pub fn scan(&self, packet: &PacketView<'_>, mut on_match: impl FnMut(usize, &Rule)) {
        let Some(automaton) = &self.automaton else {
            return;
        };
        let side = packet.direction.index();
        if packet.index > self.max_packet[side] {
            return;
        }
        let payload = packet.payload;
        // (end, rule) of every match whose rule's constraints hold.
        let mut found: Vec<(usize, usize)> = Vec::new();
        let mut search = |input: aho_corasick::Input<'_>| {
            // The iterator refuses anchored input; stepping by hand does
            // not (anchored, it reports every pattern starting there).
            let mut state = OverlappingState::start();
            while automaton
                .try_find_overlapping(input.clone(), &mut state)
                .is_ok()
                && let Some(m) = state.get_match()
            {
                let i = m.pattern().as_usize();
                if self.rules[i].applies(packet, m.start(), m.end(), payload) {
                    found.push((m.end(), i));
                }
            }
        };
        let t = transport_index(packet.transport);
        let anchored = packet.index <= self.anchored_max_packet[t][side];
        if anchored {
            for &offset in &self.anchored_offsets {
                if offset < payload.len() {
                    search(
                        aho_corasick::Input::new(payload)
                            .anchored(Anchored::Yes)
                            .range(offset..),
                    );
                }
            }
        }
        if self.has_unanchored && packet.index <= self.unanchored_max_packet[t][side] {
            let hay = &payload[..self
                .unanchored_limit
                .map_or(payload.len(), |l| l.min(payload.len()))];
            match &self.unanchored_finder {
                Some(finder) => {
                    let mut at = 0;
                    while at < hay.len() {
                        let Some(m) = finder.find_in(hay, aho_corasick::Span::from(at..hay.len()))
                        else {
                            break;
                        };
                        // Every pattern starting here, anchored rules' too
                        // (their own constraints reject them).
                        if !(anchored && self.anchored_offsets.contains(&m.start())) {
                            search(
                                aho_corasick::Input::new(hay)
                                    .anchored(Anchored::Yes)
                                    .range(m.start()..),
                            );
                        }
                        at = m.start() + 1;
                    }
                }
                None => search(aho_corasick::Input::new(hay)),
            }
        }
        if found.is_empty() {
            return;
        }
        found.sort_unstable();
        let mut fired = Vec::with_capacity(found.len());
        for (_, i) in found {
            if !fired.contains(&i) {
                fired.push(i);
                on_match(i, &self.rules[i]);
            }
        }
    }
}

/// Bytes of each unanchored pattern the packed searcher looks for.
const FINDER_PREFIX: usize = 4;

/// A packed (SIMD) searcher for the first bytes of these rules' patterns,
/// in every ASCII case for `nocase` rules; it finds where a match may
/// start, and the automaton, anchored there, says which patterns match.
/// `None` when the prefixes are too many for it.
fn prefix_finder<'a>(
    rules: impl Iterator<Item = &'a Rule>,
) -> Option<aho_corasick::packed::Searcher> {
    let mut prefixes: Vec<Vec<u8>> = Vec::new();
    for r in rules {
        let prefix = &r.pattern[..r.pattern.len().min(FINDER_PREFIX)];
        let mut variants = vec![prefix.to_vec()];
        if r.nocase {
            for (i, b) in prefix.iter().enumerate() {
                if b.is_ascii_alphabetic() {
                    let flipped: Vec<Vec<u8>> = variants
                        .iter()
                        .map(|v| {
                            let mut v = v.clone();
                            v[i] ^= 0x20;
                            v
                        })
                        .collect();
                    variants.extend(flipped);
                }
            }
        }
        for v in variants {
            if !prefixes.contains(&v) {
                prefixes.push(v);
            }
        }
    }
    if prefixes.is_empty() || prefixes.len() > 64 {
        return None;
    }
    aho_corasick::packed::Config::new()
        .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
        .builder()
        .extend(&prefixes)
        .build()
}

impl Rule {
    fn applies(&self, packet: &PacketView<'_>, start: usize, end: usize, hay: &[u8]) -> bool {
        if self.transport.is_some_and(|t| t != packet.transport)
            || self.side.is_some_and(|s| s != packet.direction)
            || packet.index < self.packets.0
            || packet.index > self.packets.1
            || start < self.offset
            || (self.anchored && start != self.offset)
            || self.depth.is_some_and(|d| end > self.offset + d)
        {
            return false;
        }
        // The automaton ignores case if any rule does; re-check the others.
        self.nocase || hay.get(start..end) == Some(self.pattern.as_slice())
    }
}

fn rule_files(path: &Path) -> Result<Vec<PathBuf>, RuleError> {
    let err = |message: String| RuleError {
        file: path.to_owned(),
        line: None,
        column: None,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| err(format!("cannot list: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|x| x == "yaml" || x == "yml")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("policy"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(err("no rule files (*.yaml) in this directory".into()));
    }
    Ok(files)
}

/// The line of the `nth` (0-based) `id: <id>` in `text`.
fn line_of_id(text: &str, id: &str, nth: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let t = line.trim_start().trim_start_matches('-').trim_start();
            t.strip_prefix("id:")
                .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'') == id)
                .unwrap_or(false)
        })
        .nth(nth)
        .map(|(i, _)| i + 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: RuleId,
    protocol: ProtocolName,
    #[serde(default)]
    transport: TransportField,
    #[serde(default)]
    side: SideSpec,
    #[serde(default)]
    packets: PacketRange,
    pattern: PatternSpec,
    #[serde(default)]
    offset: u16,
    depth: Option<std::num::NonZeroU16>,
    #[serde(default)]
    anchored: bool,
    #[serde(default)]
    nocase: bool,
    #[serde(default)]
    confidence: RuleConfidence,
    description: String,
    #[serde(default)]
    references: Vec<String>,
}

impl RawRule {
    fn into_rule(self, origin: Origin) -> Rule {
        Rule {
            id: self.id.0,
            protocol: self.protocol.0,
            transport: self.transport.0,
            side: self.side.0,
            packets: self.packets.0,
            pattern: self.pattern.0,
            offset: usize::from(self.offset),
            depth: self.depth.map(|d| usize::from(d.get())),
            anchored: self.anchored,
            nocase: self.nocase,
            confidence: self.confidence.0,
            description: self.description,
            references: self.references,
            origin,
        }
    }
}

struct RuleId(String);

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !ok {
            return Err(de::Error::custom(format!(
                "id: bad rule id `{s}`: use lower-case letters, digits, '.', '_' and '-'"
            )));
        }
        Ok(RuleId(s))
    }
}

/// A protocol name, with a suggestion when it is misspelt.
struct ProtocolName(Protocol);

impl<'de> Deserialize<'de> for ProtocolName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_protocol(&s)
            .map(ProtocolName)
            .map_err(|e| de::Error::custom(format!("protocol: {e}")))
    }
}

#[derive(Default)]
struct SideSpec(Option<Direction>);

impl<'de> Deserialize<'de> for SideSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "originator" => Ok(SideSpec(Some(Direction::Originator))),
            "responder" => Ok(SideSpec(Some(Direction::Responder))),
            "any" => Ok(SideSpec(None)),
            _ => Err(de::Error::custom(format!(
                "side: {}",
                unknown_name("side", &s, &["originator", "responder", "any"])
            ))),
        }
    }
}

/// `packets: 1` or `packets: "1-3"`.
struct PacketRange((u16, u16));

impl Default for PacketRange {
    fn default() -> Self {
        PacketRange((1, 1))
    }
}

impl<'de> Deserialize<'de> for PacketRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(u16),
            Range(String),
        }
        let bad = |s: &str| {
            de::Error::custom(format!(
                "packets: bad value `{s}`: give a payload packet number such as 1, or a range such as \"1-3\" (1 to 64)"
            ))
        };
        let (a, b) = match Raw::deserialize(d)? {
            Raw::One(n) => (n, n),
            Raw::Range(s) => {
                let (a, b) = s.split_once('-').ok_or_else(|| bad(&s))?;
                let a = a.trim().parse::<u16>().map_err(|_| bad(&s))?;
                let b = b.trim().parse::<u16>().map_err(|_| bad(&s))?;
                (a, b)
            }
        };
        if a == 0 || b < a || b > 64 {
            return Err(bad(&format!("{a}-{b}")));
        }
        Ok(PacketRange((a, b)))
    }
}

struct PatternSpec(Vec<u8>);

impl<'de> Deserialize<'de> for PatternSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        pattern::parse(&s)
            .map(PatternSpec)
            .map_err(|e| de::Error::custom(format!("pattern: {e}")))
    }
}

struct RuleConfidence(Confidence);

impl Default for RuleConfidence {
    fn default() -> Self {
        RuleConfidence(Confidence::Signature)
    }
}

impl<'de> Deserialize<'de> for RuleConfidence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "heuristic" => Ok(RuleConfidence(Confidence::Heuristic)),
            "signature" => Ok(RuleConfidence(Confidence::Signature)),
            "unidirectional" => Ok(RuleConfidence(Confidence::Unidirectional)),
            "bidirectional" | "cache" => Err(de::Error::custom(format!(
                "confidence: a rule sees one packet, so its confidence cannot be `{s}` \
                 (use heuristic, signature or unidirectional; matches on both sides make a flow bidirectional)"
            ))),
            _ => Err(de::Error::custom(format!(
                "confidence: {}",
                unknown_name(
                    "confidence",
                    &s,
                    &["heuristic", "signature", "unidirectional"]
                )
            ))),
        }
    }
}

#[cfg(test)]
mod tests;

/// 0 for TCP, 1 for UDP: an index into per-transport arrays.
fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Tcp => 0,
        Transport::Udp => 1,
    }
}
