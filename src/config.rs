//! Shared by every YAML configuration file (signature rules, policies):
//! errors that carry the file, line and column, and messages that suggest
//! the name that was probably meant.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::decode::Transport;
use crate::detect::Protocol;

/// One problem found in a configuration file (rules, policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a set of configuration files.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Turns a YAML error into a [`ConfigError`] pointing at the offending line.
///
/// yaml_serde places errors raised while checking a field's value (a bad
/// escape, an unknown protocol) at the start of the enclosing mapping; those
/// messages start with the field's name, so the line is refined to the
/// field's own line within that mapping.
pub fn yaml_error(file: &Path, text: &str, e: &yaml_serde::Error) -> ConfigError {
    let mut message = e.to_string();
    // Drop the " at line L column C" suffix (the location is printed
    // separately) and the "rules[3]: " path prefix.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    if let Some((path, rest)) = message.split_once(": ")
        && path.contains('[')
        && !path.contains(' ')
    {
        message = rest.to_string();
    }
    let mut line = e.location().map(|l| l.line());
    let mut column = e.location().map(|l| l.column());
    if let (Some(start), Some((field, _))) = (line, message.split_once(": "))
        && let Some((l, c)) = field_line(text, start, field)
    {
        line = Some(l);
        column = Some(c);
    }
    ConfigError {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}

/// The line and column of `field:` in the mapping that starts at line
/// `start` (1-based), if it is there.
fn field_line(text: &str, start: usize, field: &str) -> Option<(usize, usize)> {
    if field.is_empty() || !field.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return None;
    }
    let first = text.lines().nth(start.checked_sub(1)?)?;
    let indent = first.len() - first.trim_start_matches([' ', '-']).len();
    for (i, line) in text.lines().enumerate().skip(start - 1) {
        let body = line.trim_start_matches([' ', '-']);
        let this_indent = line.len() - body.len();
        if i >= start && line.trim_start().starts_with('-') && this_indent <= indent {
            break; // the next item of the list
        }
        if this_indent == indent && body.strip_prefix(field).is_some_and(|r| r.starts_with(':')) {
            return Some((i + 1, indent + 1));
        }
    }
    None
}

/// "unknown X `y`; did you mean `z`? (known: ...)".
pub fn unknown_name(what: &str, got: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(got, k), *k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 3));
    let hint = best
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    format!("unknown {what} `{got}`{hint} (known: {})", known.join(", "))
}

/// A protocol name from the fixed list, or an error suggesting the name
/// that was probably meant.
pub fn parse_protocol(name: &str) -> Result<Protocol, String> {
    Protocol::from_name(name)
        .ok_or_else(|| unknown_name("protocol", name, &Protocol::ALL.map(|p| p.as_str())))
}

/// A `transport:` field: `tcp`, `udp` or `any` (`None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportField(pub Option<Transport>);

impl<'de> Deserialize<'de> for TransportField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "tcp" => Ok(TransportField(Some(Transport::Tcp))),
            "udp" => Ok(TransportField(Some(Transport::Udp))),
            "any" => Ok(TransportField(None)),
            _ => Err(de::Error::custom(format!(
                "transport: {}",
                unknown_name("transport", &s, &["tcp", "udp", "any"])
            ))),
        }
    }
}
