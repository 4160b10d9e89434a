//! How a socket is doing: the kernel's `struct tcp_info` (sock_diag `INET_DIAG_INFO`, what
//! `ss -ti` prints), its memory (`INET_DIAG_SKMEMINFO`, `ss -m`) and the cgroup it was created
//! in (`INET_DIAG_CGROUP_ID`). Plain data and pure readers of the kernel's bytes; no I/O.
//!
//! [`TcpInfo`] is read length-tolerantly: a kernel sends the `struct tcp_info` it was built
//! with (4.9 stops after `delivery_rate`, 5.4 after `snd_wnd`, later ones go on), so each field
//! is known only when the struct the kernel sent reaches it, and what newer kernels add beyond
//! the fields we use is ignored. A remote `ss -ti` text fills the same struct, knowing the
//! fields that ss version prints (see `parse::ss_info`). `netlink-packet-sock-diag`'s own
//! `TcpInfo` (feature `rich_nlas`) was not used: it refuses any struct shorter than the 5.4
//! layout and keeps none of what comes after it.

/// One field of `struct tcp_info` that answers use, in kernel units (µs, ms, bytes, bytes/s,
/// packets), with its offset and size in the kernel's struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpField {
    /// Congestion-avoidance state (`TCP_CA_Open` 0 … `TCP_CA_Loss` 4).
    CaState,
    /// `delivery_rate_app_limited`: the last delivery-rate sample was limited by the
    /// application, not the network (1 or 0).
    AppLimited,
    /// Retransmission timeout, µs.
    Rto,
    /// Sender MSS, bytes.
    SndMss,
    Unacked,
    Sacked,
    Lost,
    /// Retransmitted segments not yet acknowledged.
    Retrans,
    /// ms since the last data was sent.
    LastDataSent,
    /// ms since the last data was received.
    LastDataRecv,
    /// Smoothed RTT, µs.
    Rtt,
    RttVar,
    SndSsthresh,
    SndCwnd,
    RcvSpace,
    /// Retransmitted segments over the connection's life.
    TotalRetrans,
    /// bytes/s.
    PacingRate,
    BytesAcked,
    BytesReceived,
    SegsOut,
    SegsIn,
    NotsentBytes,
    /// µs.
    MinRtt,
    /// bytes/s.
    DeliveryRate,
    /// µs busy sending data.
    BusyTime,
    /// µs limited by the peer's receive window.
    RwndLimited,
    /// µs limited by the send buffer.
    SndbufLimited,
    /// Data bytes sent, retransmissions included.
    BytesSent,
    BytesRetrans,
    /// The peer's advertised receive window, bytes.
    SndWnd,
}

impl TcpField {
    /// The fields [`TcpInfo::bytes`] reads.
    pub const BYTES: [TcpField; 4] = [
        TcpField::BytesAcked,
        TcpField::BytesSent,
        TcpField::BytesRetrans,
        TcpField::BytesReceived,
    ];

    pub const ALL: [TcpField; 30] = [
        TcpField::CaState,
        TcpField::AppLimited,
        TcpField::Rto,
        TcpField::SndMss,
        TcpField::Unacked,
        TcpField::Sacked,
        TcpField::Lost,
        TcpField::Retrans,
        TcpField::LastDataSent,
        TcpField::LastDataRecv,
        TcpField::Rtt,
        TcpField::RttVar,
        TcpField::SndSsthresh,
        TcpField::SndCwnd,
        TcpField::RcvSpace,
        TcpField::TotalRetrans,
        TcpField::PacingRate,
        TcpField::BytesAcked,
        TcpField::BytesReceived,
        TcpField::SegsOut,
        TcpField::SegsIn,
        TcpField::NotsentBytes,
        TcpField::MinRtt,
        TcpField::DeliveryRate,
        TcpField::BusyTime,
        TcpField::RwndLimited,
        TcpField::SndbufLimited,
        TcpField::BytesSent,
        TcpField::BytesRetrans,
        TcpField::SndWnd,
    ];

    /// Offset and size in the kernel's `struct tcp_info` (`include/uapi/linux/tcp.h`).
    /// `AppLimited` is bit 0 of the byte at 7; the field is known from the kernel that added
    /// it (4.9, with `delivery_rate`), so its size is that of the whole prefix through it.
    pub(crate) const fn layout(self) -> (usize, usize) {
        use TcpField::*;
        match self {
            CaState => (1, 1),
            AppLimited => (7, 1),
            Rto => (8, 4),
            SndMss => (16, 4),
            Unacked => (24, 4),
            Sacked => (28, 4),
            Lost => (32, 4),
            Retrans => (36, 4),
            LastDataSent => (44, 4),
            LastDataRecv => (52, 4),
            Rtt => (68, 4),
            RttVar => (72, 4),
            SndSsthresh => (76, 4),
            SndCwnd => (80, 4),
            RcvSpace => (96, 4),
            TotalRetrans => (100, 4),
            PacingRate => (104, 8),
            BytesAcked => (120, 8),
            BytesReceived => (128, 8),
            SegsOut => (136, 4),
            SegsIn => (140, 4),
            NotsentBytes => (144, 4),
            MinRtt => (148, 4),
            DeliveryRate => (160, 8),
            BusyTime => (168, 8),
            RwndLimited => (176, 8),
            SndbufLimited => (184, 8),
            BytesSent => (200, 8),
            BytesRetrans => (208, 8),
            SndWnd => (228, 4),
        }
    }

    /// How many of the fields are 64-bit in the kernel's struct.
    const WIDE: usize = 9;

    /// A 64-bit field's place among them.
    const fn wide(self) -> Option<usize> {
        use TcpField::*;
        Some(match self {
            PacingRate => 0,
            BytesAcked => 1,
            BytesReceived => 2,
            DeliveryRate => 3,
            BusyTime => 4,
            RwndLimited => 5,
            SndbufLimited => 6,
            BytesSent => 7,
            BytesRetrans => 8,
            _ => return None,
        })
    }

    /// How many bytes of the struct a kernel must send for this field to be known.
    const fn needs(self) -> usize {
        match self {
            // The app-limited bit came with delivery_rate (4.9); before, the byte was padding.
            TcpField::AppLimited => 168,
            f => {
                let (at, size) = f.layout();
                at + size
            }
        }
    }

    /// Every field's (offset, size, bytes needed), in [`TcpField::ALL`] order: read once per
    /// TCP socket of a health listing, so looked up in a table.
    const READ: [(usize, usize, usize); TcpField::ALL.len()] = {
        let mut table = [(0, 0, 0); TcpField::ALL.len()];
        let mut i = 0;
        while i < table.len() {
            let f = TcpField::ALL[i];
            let (at, size) = f.layout();
            table[i] = (at, size, f.needs());
            i += 1;
        }
        table
    };
}

/// The fields of `struct tcp_info` answers use, each known or not.
///
/// Stored as the kernel does: 32 bits a field, and the high halves of the nine 64-bit
/// fields beside them (160 bytes, not 248: a health listing holds one per TCP socket).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpInfo {
    /// Bit `f as u8` is set when field `f` is known.
    known: u32,
    /// Each field's value (its low 32 bits for a 64-bit field).
    low: [u32; TcpField::ALL.len()],
    /// The high 32 bits of the 64-bit fields, by [`TcpField::wide`].
    high: [u32; TcpField::WIDE],
}

/// Whether a TCP socket in `state` has received its peer's FIN.
pub fn fin_received(state: Option<super::TcpState>) -> bool {
    use super::TcpState::*;
    matches!(
        state,
        Some(CloseWait | LastAck | Closing | TimeWait | Close)
    )
}

impl TcpInfo {
    /// Reads the kernel's `struct tcp_info` bytes, of whatever length the kernel sent: each
    /// field is known when the bytes reach it. Never fails (a too-short struct knows less).
    pub fn from_kernel(bytes: &[u8]) -> TcpInfo {
        TcpInfo::from_kernel_fields(bytes, &TcpField::ALL)
    }

    /// [`TcpInfo::from_kernel`] knowing only `fields`: what [`TcpInfo::bytes`] reads
    /// ([`TcpField::BYTES`]) costs a traffic count four fields a socket, not thirty.
    pub fn from_kernel_fields(bytes: &[u8], fields: &[TcpField]) -> TcpInfo {
        let mut info = TcpInfo::default();
        for f in fields {
            let (at, size, needs) = TcpField::READ[*f as usize];
            let Some(raw) = bytes.get(at..at + size).filter(|_| bytes.len() >= needs) else {
                continue;
            };
            let value = match size {
                1 => u64::from(raw[0]),
                4 => u64::from(u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]])),
                _ => u64::from_ne_bytes([
                    raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
                ]),
            };
            let value = if *f == TcpField::AppLimited {
                value & 1
            } else {
                value
            };
            info.set(*f, value);
        }
        info
    }

    /// The field's value, when known.
    pub fn get(&self, f: TcpField) -> Option<u64> {
        if self.known & (1 << f as u8) == 0 {
            return None;
        }
        let low = u64::from(self.low[f as usize]);
        Some(match f.wide() {
            Some(i) => u64::from(self.high[i]) << 32 | low,
            None => low,
        })
    }

    /// The field's value, 0 when unknown (for sums and comparisons).
    pub fn or_zero(&self, f: TcpField) -> u64 {
        self.get(f).unwrap_or(0)
    }

    /// Sets a field; a 32-bit field saturates at `u32::MAX` (the kernel's own limit).
    pub fn set(&mut self, f: TcpField, value: u64) {
        self.known |= 1 << f as u8;
        match f.wide() {
            Some(i) => {
                self.low[f as usize] = value as u32;
                self.high[i] = (value >> 32) as u32;
            }
            None => self.low[f as usize] = u32::try_from(value).unwrap_or(u32::MAX),
        }
    }

    /// Bytes the application sent that the peer acknowledged: the kernel's `bytes_acked`
    /// less the SYN and FIN it counts (each takes a sequence number). Where the kernel also
    /// reports `bytes_sent` (4.19+), the acknowledged bytes are at most the unique data bytes
    /// sent (`bytes_sent - bytes_retrans`), which removes them exactly once all data is
    /// acknowledged; elsewhere `bytes_acked` is taken as it is (at most 2 bytes over).
    pub fn sent(&self) -> Option<u64> {
        let acked = self.get(TcpField::BytesAcked)?;
        Some(match self.get(TcpField::BytesSent) {
            Some(sent) => acked.min(sent.saturating_sub(self.or_zero(TcpField::BytesRetrans))),
            None => acked,
        })
    }

    /// Bytes of data received from the peer: `bytes_received`, which counts the peer's FIN
    /// once it arrived, less that FIN. `fin`: whether it arrived (states CLOSE_WAIT,
    /// LAST_ACK, CLOSING, TIME_WAIT, and a closed connection, where a reset instead of a FIN
    /// makes this one byte short).
    pub fn received(&self, fin: bool) -> Option<u64> {
        let received = self.get(TcpField::BytesReceived)?;
        Some(if fin {
            received.saturating_sub(1)
        } else {
            received
        })
    }

    /// The data bytes so far of a socket in `state`: [`TcpInfo::sent`] and
    /// [`TcpInfo::received`] (0 when the kernel's struct stops before it); `None` without
    /// `bytes_acked`.
    pub fn bytes(&self, state: Option<super::TcpState>) -> Option<Bytes> {
        Some(Bytes {
            sent: self.sent()?,
            received: self.received(fin_received(state)).unwrap_or(0),
        })
    }
}

/// Data bytes sent and received: a connection's counters at one moment, or what moved between
/// two moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, schemars::JsonSchema)]
pub struct Bytes {
    pub sent: u64,
    pub received: u64,
}

impl Bytes {
    /// What moved since `before` (a counter never goes back; a reused tuple's smaller counters
    /// give 0, not a wrap).
    pub fn since(self, before: Bytes) -> Bytes {
        Bytes {
            sent: self.sent.saturating_sub(before.sent),
            received: self.received.saturating_sub(before.received),
        }
    }
}

impl std::ops::Add for Bytes {
    type Output = Bytes;
    fn add(self, other: Bytes) -> Bytes {
        Bytes {
            sent: self.sent + other.sent,
            received: self.received + other.received,
        }
    }
}

/// What a traffic count keeps of a TCP socket's health: its data bytes and its cgroup, read
/// straight from the kernel's reply (no [`Health`] is kept for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub bytes: Bytes,
    pub cgroup_id: Option<u64>,
}

/// Socket memory (`INET_DIAG_SKMEMINFO`, as `ss -m` prints `skmem:(r…,rb…,t…,tb…,…,d…)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, schemars::JsonSchema)]
pub struct SkMem {
    /// Bytes queued for the application to read (`r`).
    pub rmem_alloc: u32,
    /// Receive buffer size (`rb`).
    pub rcvbuf: u32,
    /// Bytes queued to send, including headers (`w`).
    pub wmem_queued: u32,
    /// Send buffer size (`tb`).
    pub sndbuf: u32,
    /// Packets dropped before the application read them (`d`): a full receive buffer of a UDP
    /// socket, a socket filter. Known from Linux 4.7; 0 before.
    pub drops: u32,
}

impl SkMem {
    /// Reads the kernel's `u32` array (`SK_MEMINFO_*` order); a shorter array leaves the
    /// missing values 0. `None` when even the first four are missing.
    pub fn from_kernel(bytes: &[u8]) -> Option<SkMem> {
        let word = |i: usize| {
            bytes
                .get(i * 4..i * 4 + 4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        Some(SkMem {
            rmem_alloc: word(0)?,
            rcvbuf: word(1)?,
            sndbuf: word(3)?,
            wmem_queued: word(5).unwrap_or(0),
            drops: word(8).unwrap_or(0),
        })
    }
}

/// What the kernel says about a socket's health, where it was asked for (`Want::health`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// TCP sockets (full sockets; not TIME_WAIT or request sockets).
    pub tcp: Option<TcpInfo>,
    pub mem: Option<SkMem>,
    /// The cgroup v2 id of the cgroup the socket was created in (Linux 5.7+): the inode of
    /// that cgroup's directory.
    pub cgroup_id: Option<u64>,
}

impl Health {
    /// Its [`Counters`], for a TCP socket in `state` whose `tcp_info` came.
    pub fn counters(&self, state: Option<super::TcpState>) -> Option<Counters> {
        Some(Counters {
            bytes: self.tcp.as_ref()?.bytes(state)?,
            cgroup_id: self.cgroup_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_struct(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let mut put = |f: TcpField, v: u64| {
            let (at, size) = f.layout();
            if at + size <= b.len() {
                b[at..at + size].copy_from_slice(&v.to_ne_bytes()[..size]);
            }
        };
        put(TcpField::CaState, 4);
        put(TcpField::Rtt, 1234);
        put(TcpField::TotalRetrans, 7);
        put(TcpField::BytesAcked, 3_000_002);
        put(TcpField::BytesSent, 3_000_100);
        put(TcpField::BytesRetrans, 100);
        put(TcpField::SndWnd, 65536);
        b[7] = 0b101; // app limited, plus fastopen bits that must be masked off
        b
    }

    #[test]
    fn the_field_table_is_in_declaration_order() {
        // `from_kernel_fields` finds a field's layout at its discriminant.
        for (i, f) in TcpField::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i, "{f:?}");
        }
    }

    #[test]
    fn the_byte_fields_alone_give_the_same_bytes() {
        for len in [168, 232, 280] {
            let raw = kernel_struct(len);
            let all = TcpInfo::from_kernel(&raw);
            let some = TcpInfo::from_kernel_fields(&raw, &TcpField::BYTES);
            assert_eq!(some.get(TcpField::Rtt), None);
            for state in [None, Some(crate::model::TcpState::CloseWait)] {
                assert_eq!(
                    some.bytes(state),
                    all.bytes(state),
                    "{len} bytes, {state:?}"
                );
            }
        }
        let b = TcpInfo::from_kernel(&kernel_struct(232))
            .bytes(None)
            .unwrap();
        assert_eq!(b.sent, 3_000_000);
    }

    #[test]
    fn fields_are_known_as_far_as_the_kernel_struct_reaches() {
        // 4.9 (delivery_rate last), 4.19 (bytes_sent), 5.4 (snd_wnd), 6.x (longer).
        let old = TcpInfo::from_kernel(&kernel_struct(168));
        assert_eq!(old.get(TcpField::Rtt), Some(1234));
        assert_eq!(old.get(TcpField::AppLimited), Some(1));
        assert_eq!(old.get(TcpField::BytesSent), None);
        assert_eq!(old.get(TcpField::SndWnd), None);
        assert_eq!(
            old.sent(),
            Some(3_000_002),
            "without bytes_sent, bytes_acked as it is"
        );
        let v419 = TcpInfo::from_kernel(&kernel_struct(224));
        assert_eq!(v419.sent(), Some(3_000_000), "SYN and FIN taken out");
        assert_eq!(v419.get(TcpField::SndWnd), None);
        let new = TcpInfo::from_kernel(&kernel_struct(280));
        assert_eq!(new.get(TcpField::SndWnd), Some(65536));
        assert_eq!(new.get(TcpField::CaState), Some(4));
        assert_eq!(new.get(TcpField::TotalRetrans), Some(7));
        // Very old or truncated: fewer fields, no panic.
        let tiny = TcpInfo::from_kernel(&kernel_struct(10));
        assert_eq!(tiny.get(TcpField::CaState), Some(4));
        assert_eq!(tiny.get(TcpField::Rtt), None);
        assert_eq!(TcpInfo::from_kernel(&[]), TcpInfo::default());
    }

    #[test]
    fn skmem_tolerates_short_arrays() {
        let words: Vec<u8> = (1u32..=9).flat_map(|w| w.to_ne_bytes()).collect();
        let m = SkMem::from_kernel(&words).unwrap();
        assert_eq!((m.rmem_alloc, m.rcvbuf, m.sndbuf), (1, 2, 4));
        assert_eq!((m.wmem_queued, m.drops), (6, 9));
        let short = SkMem::from_kernel(&words[..16]).unwrap();
        assert_eq!(short.drops, 0);
        assert_eq!(SkMem::from_kernel(&words[..8]), None);
    }

    #[test]
    fn every_64_bit_field_keeps_its_high_half() {
        let mut info = TcpInfo::default();
        for f in TcpField::ALL {
            let wide = f.layout().1 == 8;
            assert_eq!(f.wide().is_some(), wide, "{f:?}");
            let value = if wide { (5 << 40) + 7 } else { 0xffff_fff0 };
            info.set(f, value);
            assert_eq!(info.get(f), Some(value), "{f:?}");
        }
        info.set(TcpField::Rtt, u64::MAX);
        assert_eq!(
            info.get(TcpField::Rtt),
            Some(u64::from(u32::MAX)),
            "saturates"
        );
    }
}
