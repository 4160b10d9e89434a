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
pub(crate) fn sockets(proc_root: &Path, want: &Want) -> Result<(Vec<Socket>, Vec<String>), Error> {
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

/// Reads a `/proc/net` table. The kernel renders these files about a page per read and each
/// read resumes from a hash-table position, so sockets that come and go meanwhile can shift a
/// row out of the snapshot (or into it twice): the reason netlink is preferred. Reads go
/// straight into one large buffer, never through a small probe read.
fn read_table(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = vec![0u8; 1 << 18];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            bytes.resize(len * 2, 0);
        }
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(len);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// How many sockets a full dump will return, from `/proc/net/sockstat{,6}` of the namespace
/// being listed, so the vector is
/// allocated once (growing it by doubling would hold two copies at the peak). 0 if unknown.
pub(crate) fn socket_count_estimate(net_root: &Path, want: &Want) -> usize {
    let mut total = 0usize;
    for file in ["sockstat", "sockstat6"] {
        let Ok(text) = std::fs::read_to_string(net_root.join("net").join(file)) else {
            continue;
        };
        for line in text.lines() {
            let Some((proto, fields)) = line.split_once(':') else {
                continue;
            };
            let wanted = match proto {
                "TCP" | "TCP6" => want.tcp,
                "UDP" | "UDP6" => want.udp,
                _ => false,
            };
            if !wanted {
                continue;
            }
            let words: Vec<&str> = fields.split_whitespace().collect();
            for pair in words.chunks(2) {
                if let ["inuse" | "tw", n] = pair {
                    total += n.parse::<usize>().unwrap_or(0);
                }
            }
        }
    }
    // Sockets come and go between the estimate and the dump.
    total + total / 16 + 16
}
