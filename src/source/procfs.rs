//! `/proc/net/{tcp,tcp6,udp,udp6}`: the fallback when netlink is refused, and `--backend procfs`.
//! Reading is here; parsing is [`crate::parse::proc_net`], shared with remote hosts.

use std::io::{ErrorKind, Read};
use std::path::Path;

use crate::error::Error;
use crate::model::{Protocol, Socket};
use crate::parse::proc_net::{ByteOrder, parse_table};
use crate::source::Want;

/// Reads and parses the `/proc/net` tables `want` needs, keeping the sockets it asks for.
/// Lines the parser could not read are returned as remarks, never dropped silently.
pub fn sockets(proc_root: &Path, want: &Want) -> Result<(Vec<Socket>, Vec<String>), Error> {
    let mut out = Vec::new();
    let mut remarks = Vec::new();
    for protocol in Protocol::ALL {
        if !want.wants(protocol.transport()) {
            continue;
        }
        let path = proc_root.join("net").join(protocol.as_str());
        let text = match read_table(&path) {
            Ok(text) => text,
            // No IPv6 on this machine: no table, no sockets.
            Err(e) if e.kind() == ErrorKind::NotFound && protocol.is_ipv6() => continue,
            Err(source) => return Err(Error::Read { path, source }),
        };
        let parsed = parse_table(&text, protocol, ByteOrder::native());
        if let Some(first) = parsed.skipped.first() {
            remarks.push(format!(
                "{} line(s) of {} could not be read (line {}: {})",
                parsed.skipped.len(),
                path.display(),
                first.line_no,
                first.reason
            ));
        }
        out.extend(parsed.sockets.into_iter().filter(|s| want.admits(s)));
    }
    Ok((out, remarks))
}

/// Reads a `/proc/net` table with large reads. The kernel renders these files one read at a
/// time from a hash-table position; sockets that come and go between two reads can shift
/// entries past that position, so the fewer reads, the more consistent the snapshot.
fn read_table(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(1 << 20);
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
