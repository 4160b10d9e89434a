//! The tools' operations as one core for both faces (CLI and MCP): inputs, validation,
//! filters, summaries, pages, port occupation, result envelopes and messages.
//!
//! - [`input`]: one struct per tool input (the only place an input is declared: schema, MCP
//!   decoding and CLI options all derive from it) and its validation into a query.
//! - [`schema`]: portable input schemas derived from those structs, and the decoder that checks
//!   MCP arguments against them.
//! - [`output`]: the envelope and each tool's `data`.
//! - [`summary`]: the one-pass summary of a listing.
//! - [`page`]: the stable row order, cursors and pages.
//! - [`answer`]: the operations as pure functions over a snapshot, the answer budget, messages.
//! - [`service`]: [`Service`], which runs a query against the right host.
//! - [`fleet`]: answers over several hosts (a list, glob or group): concurrent, per-host results,
//!   merged summary, one budget.

pub mod answer;
pub mod fleet;
pub mod input;
pub mod output;
pub mod page;
pub mod schema;
pub mod service;
pub mod summary;

pub use answer::{ANSWER_BUDGET, OWNER_HINT};
pub use fleet::{Progress, ProgressEvent, no_progress};
pub use input::{
    ConnectionsArgs, ConnectionsQuery, DEFAULT_OCCUPATIONS, DEFAULT_ROWS, HostSpec, NoArgs,
    PortArgs, PortQuery, ProtoFilter, RecentArgs, WatchArgs,
};
pub use output::{
    ConnectionRow, ConnectionsAnswer, ConnectionsData, ContainerRef, Envelope, FilterEcho,
    FleetData, FleetSummary, Holders, HostAnswer, HostInfo, HostsData, NetnsRef, Occupation,
    OwnerDetails, PortAnswer, PortData, PortFleetSummary, PortOwner, RowOwners, RowPlace,
    SocketOwner, UnusableHost,
};
pub use service::Service;
pub use summary::Summary;

/// A caller's text for a message: control characters escaped (`\n`, `\u{1b}`), and cut to 64
/// characters so that a huge argument is never echoed back whole.
pub fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    let escape = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_control() || c == '\\' {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let count = text.chars().count();
    if count <= MAX {
        return escape(text);
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{}… ({count} characters)", escape(&head))
}

#[cfg(test)]
mod shorten_tests {
    use super::*;

    #[test]
    fn shorten_cuts_and_escapes() {
        assert_eq!(shorten("web-1"), "web-1");
        assert_eq!(shorten("a\nb"), "a\\nb");
        assert_eq!(shorten("x' || \"id\""), "x' || \"id\"");
        assert_eq!(shorten("\u{1b}[31m"), "\\u{1b}[31m");
        let long = "x".repeat(1000);
        let s = shorten(&long);
        assert!(s.len() < 100 && s.ends_with("(1000 characters)"), "{s}");
    }
}

#[cfg(test)]
mod owner_tests;
#[cfg(test)]
mod tests;
