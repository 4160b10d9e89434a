//! `ss -tinm` / `ss -uanm` text (iproute2) → sockets with their health (`tcp_info` fields and
//! socket memory), for remote Linux hosts. Pure.
//!
//! The remote command prints sections: `== uname` (`uname -r`), `== version` (`ss -V`), then
//! `== tcp` and `== udp` listings. In a listing each socket is a line like `ss -tan` prints,
//! followed by indented detail lines: `skmem:(r0,rb131072,t0,tb2626560,f0,w0,o0,bl0,d0)` and
//! the `tcp_info` words (`rto:204 rtt:0.032/0.016 mss:32768 cwnd:10 bytes_acked:1 …
//! pacing_rate 81920000000bps delivery_rate … app_limited busy:4ms retrans:0/2 …`).
//!
//! **Zeros ss leaves out.** ss prints many counters only when non-zero (`unacked`, `retrans`,
//! `lost`, `sacked`, `notsent`, `bytes_*`, `segs_*`, `busy`, `*_limited`, `delivery_rate`,
//! `app_limited`, `snd_wnd`, `lastsnd`, `lastrcv`). Such a field absent means 0 when both the
//! host's ss (from `ss -V`) and its kernel (`uname -r`) know it — the versions that added each
//! are in [`ZERO_OMITTED`], taken on the late side, so an unsure pair leaves the field out
//! rather than inventing a 0. Fields ss never prints (`ca_state`) are left out. Rates are read
//! in bits/s (`-n` prints plain numbers; `k`/`M`/`G` suffixes of a text without `-n` are read
//! too) and stored as the kernel's bytes/s.
//!
//! Every line is a socket, a socket's detail, a header or section marker, or a skipped line
//! with its reason; a parser failure never loses the rest.

use super::{Parsed, content_lines};
use crate::model::{Health, SkMem, TcpField, TcpInfo, Transport};

/// A version as `(major, minor)`.
type Version = (u32, u32);

/// The fields ss prints only when non-zero, with the iproute2 release and the kernel that
/// both must have for an absent field to mean 0 (each on the late side of when it came).
const ZERO_OMITTED: [(TcpField, Version, Version); 17] = [
    (TcpField::Retrans, (3, 0), (2, 6)),
    (TcpField::TotalRetrans, (3, 0), (2, 6)),
    (TcpField::Unacked, (3, 0), (2, 6)),
    (TcpField::Sacked, (3, 0), (2, 6)),
    (TcpField::Lost, (3, 0), (2, 6)),
    (TcpField::LastDataSent, (3, 0), (2, 6)),
    (TcpField::LastDataRecv, (3, 0), (2, 6)),
    (TcpField::BytesAcked, (4, 2), (4, 2)),
    (TcpField::BytesReceived, (4, 2), (4, 2)),
    (TcpField::SegsOut, (4, 6), (4, 2)),
    (TcpField::SegsIn, (4, 6), (4, 2)),
    (TcpField::NotsentBytes, (4, 9), (4, 6)),
    (TcpField::AppLimited, (4, 12), (4, 9)),
    (TcpField::BusyTime, (4, 14), (4, 10)),
    (TcpField::RwndLimited, (4, 14), (4, 10)),
    (TcpField::SndbufLimited, (4, 14), (4, 10)),
    (TcpField::BytesSent, (5, 1), (4, 19)),
];
/// Fields ss prints only when non-zero that came later than the table above covers.
const ZERO_OMITTED_LATE: [(TcpField, Version, Version); 3] = [
    (TcpField::BytesRetrans, (5, 1), (4, 19)),
    (TcpField::DeliveryRate, (4, 12), (4, 9)),
    (TcpField::SndWnd, (6, 1), (5, 4)),
];

/// iproute2 releases named by date in old `ss -V` output (`iproute2-ss170905`), for the
/// releases [`ZERO_OMITTED`] compares with: (YYMMDD of the release, version).
const DATED_RELEASES: [(u32, Version); 8] = [
    (150831, (4, 2)),
    (160518, (4, 6)),
    (161212, (4, 9)),
    (170705, (4, 12)),
    (171113, (4, 14)),
    (190508, (5, 1)),
    (221212, (6, 1)),
    (991231, (99, 0)),
];

/// `ss -V`: `ss utility, iproute2-6.1.0`, `iproute2-5.10.0`, `iproute2-ss170905`,
/// `iproute2-v4.9.0`. An old dated one maps to the last release at or before its date.
pub(crate) fn ss_version(text: &str) -> Option<Version> {
    let at = text.find("iproute2-")?;
    let rest = &text[at + "iproute2-".len()..];
    let rest = rest.trim_start_matches('v');
    if let Some(date) = rest.strip_prefix("ss") {
        let digits: String = date.chars().take_while(char::is_ascii_digit).collect();
        let date: u32 = digits.parse().ok()?;
        let mut found = (2, 6);
        for (released, version) in DATED_RELEASES {
            if released <= date {
                found = version;
            }
        }
        return Some(found);
    }
    major_minor(rest)
}

/// `6.18.44-fc-v1147` → `(6, 18)`.
pub(crate) fn major_minor(text: &str) -> Option<Version> {
    let mut parts = text.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// What the host's ss and kernel know, for the zero-omitted fields.
#[derive(Debug, Clone, Copy, Default)]
struct Knows {
    ss: Option<Version>,
    kernel: Option<Version>,
}

impl Knows {
    fn knows(&self, ss: Version, kernel: Version) -> bool {
        self.ss.is_some_and(|v| v >= ss) && self.kernel.is_some_and(|v| v >= kernel)
    }
}

/// Parses the sectioned output of the remote health command.
pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut knows = Knows::default();
    let mut section = "";
    let mut current: Option<(crate::model::Socket, TcpInfo, Option<SkMem>)> = None;
    let star_v4 = !text.contains("0.0.0.0");
    let finish = |current: &mut Option<(crate::model::Socket, TcpInfo, Option<SkMem>)>,
                  out: &mut Parsed,
                  knows: &Knows| {
        if let Some((mut socket, mut tcp, mem)) = current.take() {
            let is_tcp = socket.protocol.transport() == Transport::Tcp;
            if is_tcp && tcp != TcpInfo::default() {
                for (f, ss, kernel) in ZERO_OMITTED.iter().chain(ZERO_OMITTED_LATE.iter()) {
                    if tcp.get(*f).is_none() && knows.knows(*ss, *kernel) {
                        tcp.set(*f, 0);
                    }
                }
            }
            socket.health = Some(Box::new(Health {
                tcp: (is_tcp && tcp != TcpInfo::default()).then_some(tcp),
                mem,
                cgroup_id: None,
            }));
            out.sockets.push(socket);
        }
    };
    for (no, line, trimmed) in content_lines(text) {
        if let Some(name) = trimmed.strip_prefix("== ") {
            finish(&mut current, &mut out, &knows);
            section = match name.trim() {
                "uname" => "uname",
                "version" => "version",
                "tcp" => "tcp",
                "udp" => "udp",
                _ => {
                    out.skip(no, line, "unknown section marker");
                    ""
                }
            };
            continue;
        }
        match section {
            "uname" => knows.kernel = major_minor(trimmed),
            "version" => knows.ss = ss_version(trimmed),
            "tcp" | "udp" => {
                let transport = if section == "tcp" {
                    Transport::Tcp
                } else {
                    Transport::Udp
                };
                let first = trimmed.split_whitespace().next().unwrap_or("");
                if first == "State" || first == "Netid" || first == "Recv-Q" {
                    continue;
                }
                if line.starts_with(char::is_whitespace) {
                    match current.as_mut() {
                        Some((_, tcp, mem)) => {
                            if let Err(why) = read_details(trimmed, tcp, mem) {
                                out.skip(no, line, why);
                            }
                        }
                        None => out.skip(no, line, "detail line before any socket"),
                    }
                    continue;
                }
                finish(&mut current, &mut out, &knows);
                match super::ss::parse_line(trimmed, transport, star_v4) {
                    Ok(socket) => current = Some((socket, TcpInfo::default(), None)),
                    Err(reason) => out.skip(no, line, reason),
                }
            }
            _ => out.skip(no, line, "text outside any section"),
        }
    }
    finish(&mut current, &mut out, &knows);
    if knows.ss.is_none() {
        out.note("the remote ss version is unknown, so counters ss leaves out when zero are shown as unknown");
    }
    out
}

/// `ms` text (`0.016`, `204`) → µs.
fn ms_to_us(text: &str) -> Option<u64> {
    let v: f64 = text.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * 1000.0).round() as u64)
}

/// `81920000000bps`, `1.2Mbps`, `980kbps` → bits/s.
fn bps(text: &str) -> Option<u64> {
    let num = text.strip_suffix("bps")?;
    let (digits, factor) = match num.chars().last()? {
        'k' | 'K' => (&num[..num.len() - 1], 1e3),
        'M' => (&num[..num.len() - 1], 1e6),
        'G' => (&num[..num.len() - 1], 1e9),
        'T' => (&num[..num.len() - 1], 1e12),
        _ => (num, 1.0),
    };
    let v: f64 = digits.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * factor).round() as u64)
}

/// A pair ss prints as `a/b` (`rtt:RTT/RTTVAR`, `retrans:NOW/TOTAL`) into two fields, each
/// read by `read`; false when either half does not read.
fn set_pair(
    tcp: &mut TcpInfo,
    value: &str,
    read: fn(&str) -> Option<u64>,
    (first, second): (TcpField, TcpField),
) -> bool {
    let Some((a, b)) = value.split_once('/') else {
        return false;
    };
    match (read(a), read(b)) {
        (Some(a), Some(b)) => {
            tcp.set(first, a);
            tcp.set(second, b);
            true
        }
        _ => false,
    }
}

/// Reads one detail line's words into the socket's counters.
fn read_details(line: &str, tcp: &mut TcpInfo, mem: &mut Option<SkMem>) -> Result<(), String> {
    let mut words = line.split_whitespace().peekable();
    let mut bad = Vec::new();
    while let Some(word) = words.next() {
        let (key, value) = match word.split_once(':') {
            Some((k, v)) => (k, v),
            None => (word, ""),
        };
        let number = |v: &str| v.parse::<u64>().ok();
        let ok = match key {
            "skmem" => match skmem(value) {
                Some(m) => {
                    *mem = Some(m);
                    true
                }
                None => false,
            },
            "rto" => ms_to_us(value).map(|v| tcp.set(TcpField::Rto, v)).is_some(),
            "rtt" => set_pair(tcp, value, ms_to_us, (TcpField::Rtt, TcpField::RttVar)),
            "minrtt" => ms_to_us(value)
                .map(|v| tcp.set(TcpField::MinRtt, v))
                .is_some(),
            "mss" => number(value)
                .map(|v| tcp.set(TcpField::SndMss, v))
                .is_some(),
            "cwnd" => number(value)
                .map(|v| tcp.set(TcpField::SndCwnd, v))
                .is_some(),
            "ssthresh" => number(value)
                .map(|v| tcp.set(TcpField::SndSsthresh, v))
                .is_some(),
            "retrans" => set_pair(
                tcp,
                value,
                number,
                (TcpField::Retrans, TcpField::TotalRetrans),
            ),
            "lost" => number(value).map(|v| tcp.set(TcpField::Lost, v)).is_some(),
            "unacked" => number(value)
                .map(|v| tcp.set(TcpField::Unacked, v))
                .is_some(),
            "sacked" => number(value)
                .map(|v| tcp.set(TcpField::Sacked, v))
                .is_some(),
            "notsent" => number(value)
                .map(|v| tcp.set(TcpField::NotsentBytes, v))
                .is_some(),
            "bytes_sent" => number(value)
                .map(|v| tcp.set(TcpField::BytesSent, v))
                .is_some(),
            "bytes_retrans" => number(value)
                .map(|v| tcp.set(TcpField::BytesRetrans, v))
                .is_some(),
            "bytes_acked" => number(value)
                .map(|v| tcp.set(TcpField::BytesAcked, v))
                .is_some(),
            "bytes_received" => number(value)
                .map(|v| tcp.set(TcpField::BytesReceived, v))
                .is_some(),
            "segs_out" => number(value)
                .map(|v| tcp.set(TcpField::SegsOut, v))
                .is_some(),
            "segs_in" => number(value)
                .map(|v| tcp.set(TcpField::SegsIn, v))
                .is_some(),
            "lastsnd" => number(value)
                .map(|v| tcp.set(TcpField::LastDataSent, v))
                .is_some(),
            "lastrcv" => number(value)
                .map(|v| tcp.set(TcpField::LastDataRecv, v))
                .is_some(),
            "rcv_space" => number(value)
                .map(|v| tcp.set(TcpField::RcvSpace, v))
                .is_some(),
            "snd_wnd" => number(value)
                .map(|v| tcp.set(TcpField::SndWnd, v))
                .is_some(),
            "busy" | "rwnd_limited" | "sndbuf_limited" => {
                let field = match key {
                    "busy" => TcpField::BusyTime,
                    "rwnd_limited" => TcpField::RwndLimited,
                    _ => TcpField::SndbufLimited,
                };
                // `44ms`, `100ms(10.0%)`.
                let ms = value.split("ms").next().unwrap_or("");
                number(ms)
                    .map(|v| tcp.set(field, v.saturating_mul(1000)))
                    .is_some()
            }
            "app_limited" if value.is_empty() => {
                tcp.set(TcpField::AppLimited, 1);
                true
            }
            "pacing_rate" | "delivery_rate" | "send" if value.is_empty() => {
                let Some(rate) = words.next().and_then(bps) else {
                    bad.push(key.to_string());
                    continue;
                };
                match key {
                    "pacing_rate" => tcp.set(TcpField::PacingRate, rate / 8),
                    "delivery_rate" => tcp.set(TcpField::DeliveryRate, rate / 8),
                    _ => {}
                }
                true
            }
            // Words we do not keep: congestion control names and their details, window
            // scales, timers, and the like.
            _ => true,
        };
        if !ok {
            bad.push(word.to_string());
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unreadable ss detail word(s): {}",
            super::clip(&bad.join(" "), 80)
        ))
    }
}

/// `(r0,rb131072,t0,tb2626560,f0,w0,o0,bl0,d0)`.
fn skmem(text: &str) -> Option<SkMem> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    let mut m = SkMem::default();
    let mut seen = 0;
    for part in inner.split(',') {
        let split = part.find(|c: char| c.is_ascii_digit())?;
        let (key, value) = part.split_at(split);
        let value: u32 = value.parse().ok()?;
        match key {
            "r" => m.rmem_alloc = value,
            "rb" => m.rcvbuf = value,
            "tb" => m.sndbuf = value,
            "w" => m.wmem_queued = value,
            "d" => m.drops = value,
            _ => {}
        }
        seen += 1;
    }
    (seen >= 4).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_old_and_new() {
        assert_eq!(ss_version("ss utility, iproute2-6.1.0"), Some((6, 1)));
        assert_eq!(ss_version("ss utility, iproute2-5.10.0"), Some((5, 10)));
        assert_eq!(ss_version("ss utility, iproute2-ss170905"), Some((4, 12)));
        assert_eq!(ss_version("ss utility, iproute2-ss130716"), Some((2, 6)));
        assert_eq!(ss_version("ss utility, iproute2-v4.9.0"), Some((4, 9)));
        assert_eq!(ss_version("nothing"), None);
        assert_eq!(major_minor("6.18.44-fc-v1147"), Some((6, 18)));
        assert_eq!(major_minor("3.10.0-1160.el7.x86_64"), Some((3, 10)));
    }

    #[test]
    fn rates_with_and_without_suffixes() {
        assert_eq!(bps("81920000000bps"), Some(81_920_000_000));
        assert_eq!(bps("1.2Mbps"), Some(1_200_000));
        assert_eq!(bps("980kbps"), Some(980_000));
        assert_eq!(bps("12"), None);
    }

    #[test]
    fn bad_detail_words_are_reported_not_fatal() {
        let mut tcp = TcpInfo::default();
        let mut mem = None;
        let e = read_details("rtt:x/1 cwnd:10", &mut tcp, &mut mem).unwrap_err();
        assert!(e.contains("rtt:x/1"), "{e}");
        assert_eq!(tcp.get(TcpField::SndCwnd), Some(10));
    }
}
