//! The rule files shipped in `rules/`, compiled into the binary so that
//! p2pguard works from any directory. `--rules` adds files to them,
//! `--no-builtin-rules` leaves them out.

use std::path::PathBuf;

/// Each shipped rule file as (path in the source tree, contents).
pub const BUILTIN_RULES: &[(&str, &str)] = &[
    ("rules/ares.yaml", include_str!("../../../rules/ares.yaml")),
    (
        "rules/bittorrent.yaml",
        include_str!("../../../rules/bittorrent.yaml"),
    ),
    (
        "rules/directconnect.yaml",
        include_str!("../../../rules/directconnect.yaml"),
    ),
    (
        "rules/fasttrack.yaml",
        include_str!("../../../rules/fasttrack.yaml"),
    ),
    (
        "rules/gnutella.yaml",
        include_str!("../../../rules/gnutella.yaml"),
    ),
    (
        "rules/ppstream.yaml",
        include_str!("../../../rules/ppstream.yaml"),
    ),
];

/// The shipped rule files as sources for [`super::RuleSet::parse_sources`].
pub fn builtin_sources() -> Vec<(PathBuf, String)> {
    BUILTIN_RULES
        .iter()
        .map(|(p, t)| (PathBuf::from(p), (*t).to_string()))
        .collect()
}
