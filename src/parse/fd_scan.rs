//! The owner lines our remote `/proc/net` program prints after its `== owners` marker: one
//! `pid inode comm` line per socket descriptor found under `/proc/<pid>/fd` (see
//! `source::remote::commands`). `comm` is the rest of the line and may hold spaces.

use super::{Parsed, clip, content_lines, owner};
use crate::model::Owner;

/// Owners read from the scan, as (socket inode, owner), and the lines that were not readable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OwnerLines {
    pub(crate) owners: Vec<(u64, Owner)>,
    /// Unreadable lines, as a [`Parsed`] holds them (no sockets).
    pub(crate) report: Parsed,
}

/// Parses `pid inode comm` lines.
pub(crate) fn parse(text: &str) -> OwnerLines {
    let mut out = OwnerLines::default();
    for (no, line, trimmed) in content_lines(text) {
        let mut words = trimmed.splitn(3, ' ');
        let pid = words.next().and_then(|w| w.parse::<u32>().ok());
        let inode = words.next().and_then(|w| w.parse::<u64>().ok());
        let comm = words.next().unwrap_or("").trim();
        match (pid, inode) {
            (Some(pid), Some(inode)) if inode != 0 => out.owners.push((inode, owner(pid, comm))),
            _ => out.report.skip(
                no,
                line,
                format!("`{}` is not `pid inode program`", clip(trimmed, 60)),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pid_inode_and_spaced_names() {
        let p = parse("812 17001 nginx\n813 17001 my srv: worker\n\nnot a line\n1 0 init\n");
        assert_eq!(p.owners.len(), 2);
        assert_eq!(p.owners[1].0, 17001);
        assert_eq!(&*p.owners[1].1.program, "my srv: worker");
        assert_eq!(p.report.skipped.len(), 2);
    }
}
