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
//! - [`multi`]: answers over several hosts (a list, glob or group): concurrent, per-host results,
//!   merged summary, one budget.

pub(crate) mod answer;
pub(crate) mod bind;
pub(crate) mod details;
pub(crate) mod free_port;
pub(crate) mod health;
pub(crate) mod input;
pub(crate) mod multi;
pub(crate) mod output;
pub(crate) mod page;
pub(crate) mod schema;
pub(crate) mod service;
pub(crate) mod summary;

pub(crate) use answer::{ANSWER_BUDGET, OWNER_HINT};
pub use free_port::{Confirm, Confirmation, FreePortArgs, FreePortData, FreePortQuery, Requester};
pub use health::{HealthArgs, HealthData, HealthQuery};
pub use input::{ConnectionsArgs, Filters, PortArgs, Remote};
pub(crate) use input::{
    ConnectionsQuery, DEFAULT_OCCUPATIONS, DEFAULT_ROWS, HostSpec, NoArgs, PORT_RANGE, RecentArgs,
    WatchArgs, quoted,
};
pub use multi::no_progress;
pub(crate) use multi::{Progress, ProgressEvent};
pub use output::{
    ConnectionsAnswer, ConnectionsData, Envelope, FleetData, FleetSummary, HostsData, PortAnswer,
};
pub(crate) use output::{OwnerDetails, PortData, RowOwners, RowPlace};
pub use service::Service;

pub(crate) use crate::error::shorten;

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
