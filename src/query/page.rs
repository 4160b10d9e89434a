//! The stable row order, cursors, and pages of a listing.
//!
//! Rows come in one documented order: protocol (tcp, tcp6, udp, udp6), local port, local ip,
//! foreign ip, foreign port, then state, inode and network namespace so that two sockets with
//! the same addresses (`SO_REUSEPORT` listeners, a TIME_WAIT and a new connection, the same
//! listener in two containers) still have an order. A cursor
//! is that key of the last row returned, encoded as an opaque string; the next page is the
//! rows strictly after it. No state is kept on the server, so paging a steady host yields every
//! row exactly once, and a row that appears between two pages shows up when its place is
//! still ahead.

use std::cmp::Ordering;
use std::net::IpAddr;

use data_encoding::BASE64URL_NOPAD;

use crate::error::InputError;
use crate::model::{Protocol, Socket};

const CURSOR_ALLOWED: &str =
    "must be a next_cursor value returned by an earlier call (an opaque string)";
/// Longer than any cursor we hand out.
const MAX_CURSOR: usize = 200;

/// A socket's place in the row order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RowKey {
    protocol: Protocol,
    local_port: u16,
    local_ip: IpAddr,
    foreign_ip: IpAddr,
    foreign_port: Option<u16>,
    /// Kernel state number; 0 for none.
    state: u8,
    /// 0 for none.
    inode: u64,
    /// The network namespace's inode; 0 for a listing of one namespace.
    netns: u64,
}

impl RowKey {
    pub(crate) fn of(s: &Socket) -> RowKey {
        RowKey {
            protocol: s.protocol,
            local_port: s.local_port,
            local_ip: s.local_ip,
            foreign_ip: s.foreign.ip,
            foreign_port: s.foreign.port,
            state: s.state.map_or(0, |st| st.kernel()),
            inode: s.inode.unwrap_or(0),
            netns: s.netns().map_or(0, |n| n.inode),
        }
    }

    /// The opaque cursor text.
    pub(crate) fn encode(&self) -> String {
        let text = format!(
            "2|{}|{}|{}|{}|{}|{}|{}|{}",
            self.protocol.as_str(),
            self.local_port,
            self.local_ip,
            self.foreign_ip,
            self.foreign_port
                .map_or_else(|| "-".to_string(), |p| p.to_string()),
            self.state,
            self.inode,
            self.netns
        );
        BASE64URL_NOPAD.encode(text.as_bytes())
    }

    /// Reads a cursor made by [`RowKey::encode`].
    pub(crate) fn decode(cursor: &str) -> Result<RowKey, InputError> {
        let refuse = || {
            InputError::new(
                "cursor",
                format!("'{}'", super::shorten(cursor)),
                CURSOR_ALLOWED,
            )
        };
        if cursor.len() > MAX_CURSOR {
            return Err(refuse());
        }
        let bytes = BASE64URL_NOPAD
            .decode(cursor.as_bytes())
            .map_err(|_| refuse())?;
        let text = String::from_utf8(bytes).map_err(|_| refuse())?;
        let fields: Vec<&str> = text.split('|').collect();
        // Version 2 adds the namespace; a version 1 cursor (one namespace) is still read.
        let (fields, netns) = match fields.as_slice() {
            ["2", rest @ .., netns] => (rest, *netns),
            ["1", rest @ ..] => (rest, "0"),
            _ => return Err(refuse()),
        };
        let [
            protocol,
            local_port,
            local_ip,
            foreign_ip,
            foreign_port,
            state,
            inode,
        ] = fields
        else {
            return Err(refuse());
        };
        let protocol = Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == *protocol)
            .ok_or_else(refuse)?;
        Ok(RowKey {
            protocol,
            local_port: local_port.parse().map_err(|_| refuse())?,
            local_ip: local_ip.parse().map_err(|_| refuse())?,
            foreign_ip: foreign_ip.parse().map_err(|_| refuse())?,
            foreign_port: match *foreign_port {
                "-" => None,
                p => Some(p.parse().map_err(|_| refuse())?),
            },
            state: state.parse().map_err(|_| refuse())?,
            inode: inode.parse().map_err(|_| refuse())?,
            netns: netns.parse().map_err(|_| refuse())?,
        })
    }
}

/// Compares two sockets in row order without building their keys (most comparisons end at
/// the protocol or the port).
pub(crate) fn row_order(a: &Socket, b: &Socket) -> Ordering {
    a.protocol
        .cmp(&b.protocol)
        .then(a.local_port.cmp(&b.local_port))
        .then_with(|| RowKey::of(a).cmp(&RowKey::of(b)))
}

/// Sorts `sockets` into row order and keeps one page of them: those after `cursor`, at most
/// `limit`. Returns whether rows after the page remain. The sort is over the sockets' keys
/// (100,000 sockets are 20 MB to move at every swap); each kept socket then moves once.
pub(crate) fn take_page(
    sockets: &mut Vec<Socket>,
    cursor: Option<&RowKey>,
    limit: Option<usize>,
) -> bool {
    if let Some(after) = cursor {
        sockets.retain(|s| RowKey::of(s) > *after);
    }
    let mut keys: Vec<(RowKey, usize)> = sockets
        .iter()
        .enumerate()
        .map(|(i, s)| (RowKey::of(s), i))
        .collect();
    let more = first_in_order(&mut keys, limit, Ord::cmp);
    take_in_order(sockets, keys.iter().map(|&(_, i)| i));
    more
}

/// Puts `keys` in `order`, keeping the first `limit` of them (all when `None`): selected
/// first, so only the kept ones are sorted. Returns whether any were left out.
pub(crate) fn first_in_order<K>(
    keys: &mut Vec<K>,
    limit: Option<usize>,
    mut order: impl FnMut(&K, &K) -> Ordering,
) -> bool {
    let cut = match limit {
        Some(limit) if limit < keys.len() => {
            if limit > 0 {
                keys.select_nth_unstable_by(limit - 1, &mut order);
            }
            keys.truncate(limit);
            true
        }
        _ => false,
    };
    keys.sort_unstable_by(order);
    cut
}

/// Leaves `v` holding only the elements at `order`, in that order, moving each element at
/// most once (no copy of the listing).
pub(crate) fn take_in_order<T>(v: &mut Vec<T>, order: impl Iterator<Item = usize>) {
    // Where each position's element comes from: the ordered ones first, then the rest.
    let mut from: Vec<usize> = order.collect();
    let kept = from.len();
    let mut chosen = vec![false; v.len()];
    for &i in &from {
        chosen[i] = true;
    }
    from.extend((0..v.len()).filter(|&i| !chosen[i]));
    // Follow each cycle of the permutation, swapping every element into place.
    let mut done = vec![false; from.len()];
    for start in 0..from.len() {
        let mut at = start;
        while !done[at] {
            done[at] = true;
            let next = from[at];
            if next == start {
                break;
            }
            v.swap(at, next);
            at = next;
        }
    }
    v.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, TcpState};

    #[test]
    fn take_in_order_keeps_the_ordered_elements_only() {
        let cases: [(&[usize], &[usize]); 5] = [
            (&[3, 0, 4, 1, 2], &[3, 0, 4, 1, 2]),
            (&[0, 1, 2, 3, 4], &[0, 1, 2, 3, 4]),
            (&[4, 3, 2, 1, 0], &[4, 3, 2, 1, 0]),
            (&[2, 4], &[2, 4]),
            (&[], &[]),
        ];
        for (order, expected) in cases {
            let mut v: Vec<String> = (0..5).map(|i| i.to_string()).collect();
            take_in_order(&mut v, order.iter().copied());
            let got: Vec<usize> = v.iter().map(|s| s.parse().unwrap()).collect();
            assert_eq!(got, expected, "{order:?}");
        }
        // A long cycle and a larger shuffle.
        let n = 1000;
        let order: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % n).collect();
        let mut v: Vec<usize> = (0..n).collect();
        take_in_order(&mut v, order.iter().copied());
        assert_eq!(v, order);
    }

    fn sock(protocol: Protocol, lport: u16, fport: Option<u16>, inode: u64) -> Socket {
        let ip: IpAddr = if protocol.is_ipv6() {
            "::1".parse().unwrap()
        } else {
            "127.0.0.1".parse().unwrap()
        };
        let mut s = Socket::new(protocol, ip, lport, Endpoint { ip, port: fport });
        s.inode = Some(inode).filter(|i| *i > 0);
        s.state = Some(TcpState::Established);
        s
    }

    #[test]
    fn cursor_round_trips_and_bad_cursors_are_refused() {
        let s = sock(Protocol::Tcp6, 8080, None, 77);
        let key = RowKey::of(&s);
        assert_eq!(RowKey::decode(&key.encode()).unwrap(), key);
        for bad in [
            "",
            "abc",
            "!!!",
            &"A".repeat(500),
            &BASE64URL_NOPAD.encode(b"1|tcp|x"),
        ] {
            let e = RowKey::decode(bad).unwrap_err();
            assert_eq!(e.param, "cursor");
            assert!(e.to_string().len() < 300);
        }
    }

    #[test]
    fn pages_cover_every_row_once_in_order() {
        let mut all = Vec::new();
        for (i, p) in Protocol::ALL.into_iter().enumerate() {
            for port in [80u16, 22, 443, 8080] {
                all.push(sock(
                    p,
                    port,
                    Some(1000 + i as u16),
                    u64::from(port) * 10 + i as u64,
                ));
                // Same addresses, told apart by the inode.
                all.push(sock(
                    p,
                    port,
                    Some(1000 + i as u16),
                    u64::from(port) * 10 + 5,
                ));
            }
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..100 {
            let mut page = all.clone();
            let more = take_page(&mut page, cursor.as_ref(), Some(3));
            assert!(page.len() <= 3);
            seen.extend(page.iter().map(RowKey::of));
            cursor = page.last().map(RowKey::of);
            if !more {
                break;
            }
        }
        let mut expected: Vec<RowKey> = all.iter().map(RowKey::of).collect();
        expected.sort();
        expected.dedup();
        assert_eq!(seen, expected);
    }
}
