//! `connection_health`: how the connections are doing — retransmits, RTT, windows, queues,
//! buffer drops — from the kernel's own counters (`tcp_info`, socket memory), with a verdict
//! per socket and a summary over every matching one.
//!
//! The verdict rules (thresholds and why) are documented in docs/tools.md; they are the
//! functions [`Findings::of`] and [`Findings::verdict`] here, the only place they are
//! written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::answer::{HolderCache, connection_row, thousands};
use super::input::{Choices, ConnectionsArgs, ConnectionsQuery, Filters, ProtoFilter};
use super::output::{ConnectionRow, ContainerRef, Envelope, FilterEcho};
use super::page::{RowKey, first_in_order, row_order, take_in_order};
use crate::error::InputError;
use crate::model::{Health, SkMem, Socket, StateSet, TcpField, TcpInfo, TcpState, Transport};
use crate::source::{OwnerCoverage, ProcessLookup, Scope, Snapshot, Target, Want};

/// The MCP default for `limit` of `connection_health`.
pub(crate) const DEFAULT_HEALTH_ROWS: usize = 20;

/// Inputs of `connection_health` (and the CLI's `health`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema, clap::Args)]
// No serde `deny_unknown_fields` (it cannot combine with `flatten`): the schema decoder
// refuses unknown names.
#[schemars(deny_unknown_fields)]
pub struct HealthArgs {
    /// Protocol: tcp (default), udp or all. IPv4 and IPv6 are both included. UDP sockets have
    /// no tcp_info: they show their memory and drops only.
    #[schemars(extend("enum" = ["tcp", "udp", "all"], "default" = "tcp"))]
    #[arg(
        long,
        help = "Protocol: tcp (default), udp or all (UDP sockets show memory and drops only)"
    )]
    pub proto: Option<String>,

    /// TCP state filter (netstat or ss spelling, any case). Default: the connected states
    /// only (ESTABLISHED, SYN_SENT, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING), not
    /// LISTEN, TIME_WAIT or SYN_RECV, whose counters mean other things; every UDP socket.
    #[arg(
        long,
        help = "TCP state (default: connected states only, not LISTEN/TIME_WAIT/SYN_RECV)"
    )]
    pub state: Option<String>,

    #[serde(flatten)]
    #[command(flatten)]
    pub remote: crate::query::Remote,

    #[serde(flatten)]
    #[command(flatten)]
    pub filters: Filters,

    /// Which rows come first: retrans (default: most retransmitted segments; for UDP most
    /// drops), rtt (highest smoothed RTT), send_queue, recv_queue, bytes (most bytes acked
    /// plus received) or lost (most segments presumed lost).
    #[schemars(extend("enum" = ["retrans", "rtt", "send_queue", "recv_queue", "bytes", "lost"], "default" = "retrans"))]
    #[arg(
        long,
        value_name = "KEY",
        help = "Order of the rows: retrans (default), rtt, send_queue, recv_queue, bytes, lost"
    )]
    pub sort: Option<String>,

    /// Maximum rows, the worst by sort (default 20; 0 means no limit). The summary always
    /// covers every matching socket.
    #[schemars(range(min = 0), extend("default" = 20))]
    #[arg(
        long,
        value_name = "N",
        help = "Show the N worst sockets (default 20; 0: all)"
    )]
    pub limit: Option<i64>,

    /// Which network namespaces to look at: host (default) or all (every network namespace on
    /// the machine, each from inside it; rows then carry netns). Local machine only; needs root.
    #[schemars(extend("enum" = ["host", "all"], "default" = "host"))]
    #[arg(skip)]
    pub scope: Option<String>,
}

/// The order of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthSort {
    Retrans,
    Rtt,
    SendQueue,
    RecvQueue,
    Bytes,
    Lost,
}

impl HealthSort {
    const CHOICES: Choices<HealthSort> = Choices::new(
        "sort",
        &[
            ("retrans", HealthSort::Retrans),
            ("rtt", HealthSort::Rtt),
            ("send_queue", HealthSort::SendQueue),
            ("recv_queue", HealthSort::RecvQueue),
            ("bytes", HealthSort::Bytes),
            ("lost", HealthSort::Lost),
        ],
    );

    pub(crate) fn as_str(self) -> &'static str {
        Self::CHOICES.name(self)
    }

    /// The key a socket is ordered by (larger first).
    fn key(self, s: &Socket) -> (u64, u64) {
        let tcp = tcp_of(s);
        let get = |f| tcp.map_or(0, |t| t.or_zero(f));
        let drops = u64::from(mem_of(s).map_or(0, |m| m.drops));
        match self {
            HealthSort::Retrans => (get(TcpField::TotalRetrans).max(drops), get(TcpField::Rtt)),
            HealthSort::Rtt => (get(TcpField::Rtt), get(TcpField::TotalRetrans)),
            HealthSort::SendQueue => (u64::from(s.send_queue), get(TcpField::Unacked)),
            HealthSort::RecvQueue => (u64::from(s.recv_queue), drops),
            HealthSort::Bytes => (
                get(TcpField::BytesAcked).saturating_add(get(TcpField::BytesReceived)),
                0,
            ),
            HealthSort::Lost => (get(TcpField::Lost), get(TcpField::TotalRetrans)),
        }
    }
}

/// A validated `connection_health`.
#[derive(Debug, Clone)]
pub struct HealthQuery {
    pub(crate) filter: ConnectionsQuery,
    pub(crate) sort: HealthSort,
    /// TCP states asked; the connected states by default.
    pub(crate) states: StateSet,
    /// Whether the caller named a state.
    state_given: bool,
}

/// TCP's connected states: the ones whose counters describe a data transfer.
pub(crate) fn connected_states() -> StateSet {
    [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Closing,
    ]
    .into_iter()
    .fold(StateSet::EMPTY, |set, s| set.with(s))
}

impl HealthArgs {
    /// Validates the arguments; `default_limit` applies when `limit` is absent.
    pub fn validate(&self, default_limit: Option<usize>) -> Result<HealthQuery, InputError> {
        let filters = ConnectionsArgs {
            proto: Some(self.proto.clone().unwrap_or_else(|| "tcp".into())),
            state: self.state.clone(),
            remote: self.remote.clone(),
            filters: self.filters.clone(),
            limit: self.limit,
            cursor: None,
            scope: self.scope.clone(),
        };
        let filter = filters.validate(default_limit)?;
        let sort = match self.sort.as_deref() {
            None => HealthSort::Retrans,
            Some(s) if s.trim().is_empty() => HealthSort::Retrans,
            Some(s) => HealthSort::CHOICES.parse(s)?,
        };
        let (states, state_given) = match filter.state {
            Some(s) => (StateSet::only(s), true),
            None => (connected_states(), false),
        };
        Ok(HealthQuery {
            filter,
            sort,
            states,
            state_given,
        })
    }
}

/// Decodes MCP arguments, checked against the input's schema.
impl HealthArgs {
    pub fn from_json(
        args: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<HealthArgs, InputError> {
        super::schema::decode(&super::schema::input_schema::<HealthArgs>(), args)
    }
}

/// What a socket's counters say, in the order that decides a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    /// The peer advertises a receive window of 0 while data waits to be sent: it stopped
    /// reading (its application is stuck or slow). Retransmits that follow are its
    /// consequence, so this comes first.
    ZeroWindow,
    /// Segments are being lost: retransmissions outstanding, segments presumed lost, or at
    /// least 1% of the segments sent were retransmissions.
    Loss,
    /// At least a quarter of the time spent sending was limited by the peer's receive window.
    ReceiverLimited,
    /// At least a quarter of the time spent sending was limited by our send buffer.
    SendBufferLimited,
    /// Smoothed RTT of 200 ms or more, or at least 4 times the connection's minimum RTT and
    /// 50 ms above it (queueing on the path).
    HighRtt,
    /// Active in the last second and the last delivery-rate sample was limited by the
    /// application: the network is not what holds it back.
    ApplicationLimited,
    /// A UDP socket that dropped datagrams (receive buffer full).
    Drops,
    Ok,
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::ZeroWindow => "zero_window",
            Verdict::Loss => "loss",
            Verdict::ReceiverLimited => "receiver_limited",
            Verdict::SendBufferLimited => "send_buffer_limited",
            Verdict::HighRtt => "high_rtt",
            Verdict::ApplicationLimited => "application_limited",
            Verdict::Drops => "drops",
            Verdict::Ok => "ok",
        }
    }
}

/// The thresholds of the verdict rules.
pub(crate) const LOSS_RATIO: f64 = 0.01;
pub(crate) const LIMITED_SHARE: f64 = 0.25;
/// Busy time below which limited shares are not judged (too little sending to tell), µs.
pub(crate) const MIN_BUSY_US: u64 = 100_000;
pub(crate) const HIGH_RTT_US: u64 = 200_000;
pub(crate) const QUEUEING_FACTOR: u64 = 4;
pub(crate) const QUEUEING_MIN_US: u64 = 50_000;
/// "Active" for application_limited: data sent within this many ms.
pub(crate) const ACTIVE_MS: u64 = 1000;

/// Every rule that holds for one socket (a socket may have several; [`Findings::verdict`]
/// picks by priority).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    pub(crate) zero_window: bool,
    pub(crate) loss: bool,
    pub(crate) receiver_limited: bool,
    pub(crate) send_buffer_limited: bool,
    pub(crate) high_rtt: bool,
    pub(crate) application_limited: bool,
    pub(crate) drops: bool,
}

impl Findings {
    pub(crate) fn of(s: &Socket) -> Findings {
        let mut f = Findings::default();
        if s.protocol.transport() == Transport::Udp {
            f.drops = mem_of(s).is_some_and(|m| m.drops > 0);
            return f;
        }
        let Some(t) = tcp_of(s) else { return f };
        let get = |field| t.or_zero(field);
        let waiting =
            get(TcpField::Unacked) > 0 || get(TcpField::NotsentBytes) > 0 || s.send_queue > 0;
        f.zero_window = t.get(TcpField::SndWnd) == Some(0) && waiting;
        let segs = get(TcpField::SegsOut).max(1);
        let total = get(TcpField::TotalRetrans);
        f.loss = get(TcpField::Retrans) > 0
            || get(TcpField::Lost) > 0
            || (total > 0 && total as f64 / segs as f64 >= LOSS_RATIO);
        let busy = get(TcpField::BusyTime);
        if busy >= MIN_BUSY_US {
            f.receiver_limited = get(TcpField::RwndLimited) as f64 >= LIMITED_SHARE * busy as f64;
            f.send_buffer_limited =
                get(TcpField::SndbufLimited) as f64 >= LIMITED_SHARE * busy as f64;
        }
        let (rtt, min) = (get(TcpField::Rtt), get(TcpField::MinRtt));
        f.high_rtt = rtt >= HIGH_RTT_US
            || (min > 0 && rtt >= QUEUEING_FACTOR * min && rtt >= min + QUEUEING_MIN_US);
        f.application_limited = get(TcpField::AppLimited) == 1
            && t.get(TcpField::LastDataSent)
                .is_some_and(|ms| ms <= ACTIVE_MS)
            && get(TcpField::BytesAcked) > 1;
        f
    }

    /// The first finding in priority order (the order docs/tools.md gives), else ok.
    pub(crate) fn verdict(&self) -> Verdict {
        [
            (self.drops, Verdict::Drops),
            (self.zero_window, Verdict::ZeroWindow),
            (self.loss, Verdict::Loss),
            (self.receiver_limited, Verdict::ReceiverLimited),
            (self.send_buffer_limited, Verdict::SendBufferLimited),
            (self.high_rtt, Verdict::HighRtt),
            (self.application_limited, Verdict::ApplicationLimited),
        ]
        .into_iter()
        .find_map(|(found, verdict)| found.then_some(verdict))
        .unwrap_or(Verdict::Ok)
    }
}

/// A kept socket's place in the order: its sort key, its verdict, where it is in the listing.
struct Ranked {
    key: (u64, u64),
    verdict: Verdict,
    at: usize,
}

fn tcp_of(s: &Socket) -> Option<&TcpInfo> {
    s.health.as_deref().and_then(|h| h.tcp.as_ref())
}

fn mem_of(s: &Socket) -> Option<&SkMem> {
    s.health.as_deref().and_then(|h| h.mem.as_ref())
}

/// RTT percentiles, ms.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Default)]
pub(crate) struct RttPercentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

/// Sockets whose sending was mostly limited by something other than the network.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Default)]
pub(crate) struct LimitedCounts {
    /// By the peer's receive window (receiver_limited rule).
    pub(crate) receiver: u64,
    /// By our send buffer (send_buffer_limited rule).
    pub(crate) send_buffer: u64,
    /// By the application (application_limited rule).
    pub(crate) application: u64,
}

/// Counts over every matching socket.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Default)]
pub(crate) struct HealthSummary {
    pub(crate) connection_count: u64,
    /// Sockets with at least one retransmitted segment (total_retrans > 0).
    pub(crate) retransmitting: u64,
    /// Retransmitted segments, summed.
    pub(crate) total_retrans: u64,
    /// Smoothed RTT percentiles over the sockets with an RTT sample; null when none has one.
    pub(crate) rtt_ms: Option<RttPercentiles>,
    /// Sockets whose peer advertises a zero window while data waits (it stopped reading).
    pub(crate) zero_window: u64,
    /// Sockets with unacknowledged or not-yet-sent bytes.
    pub(crate) send_backlog: u64,
    pub(crate) limited: LimitedCounts,
    /// UDP: datagrams dropped (socket drop counters summed), and sockets that dropped any.
    pub(crate) drops: u64,
    pub(crate) dropping: u64,
    /// Sockets per verdict.
    pub(crate) by_verdict: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
struct HealthTally {
    summary: HealthSummary,
    rtts: Vec<u32>,
    /// The worst finding: (verdict, its sort key, the socket's row key and description).
    worst: Option<(Verdict, (u64, u64), RowKey, String)>,
}

impl HealthTally {
    fn add(&mut self, s: &Socket, findings: &Findings, verdict: Verdict, sort: HealthSort) {
        let sum = &mut self.summary;
        sum.connection_count += 1;
        *sum.by_verdict.entry(verdict.as_str()).or_default() += 1;
        if let Some(t) = tcp_of(s) {
            let total = t.or_zero(TcpField::TotalRetrans);
            if total > 0 {
                sum.retransmitting += 1;
                sum.total_retrans += total;
            }
            if let Some(rtt) = t.get(TcpField::Rtt).filter(|r| *r > 0) {
                self.rtts.push(u32::try_from(rtt).unwrap_or(u32::MAX));
            }
            if t.or_zero(TcpField::Unacked) > 0 || t.or_zero(TcpField::NotsentBytes) > 0 {
                sum.send_backlog += 1;
            }
        }
        sum.zero_window += u64::from(findings.zero_window);
        sum.limited.receiver += u64::from(findings.receiver_limited);
        sum.limited.send_buffer += u64::from(findings.send_buffer_limited);
        sum.limited.application += u64::from(findings.application_limited);
        if s.protocol.transport() == Transport::Udp
            && let Some(m) = mem_of(s)
            && m.drops > 0
        {
            sum.drops += u64::from(m.drops);
            sum.dropping += 1;
        }
        if verdict != Verdict::Ok && verdict != Verdict::ApplicationLimited {
            let key = sort.key(s);
            let worse = match &self.worst {
                None => true,
                Some((v, k, _, _)) => {
                    (verdict, std::cmp::Reverse(key)) < (*v, std::cmp::Reverse(*k))
                }
            };
            if worse {
                self.worst = Some((verdict, key, RowKey::of(s), describe(s)));
            }
        }
    }

    fn finish(mut self) -> (HealthSummary, Option<Worst>) {
        if !self.rtts.is_empty() {
            self.rtts.sort_unstable();
            let at = |q: f64| {
                let i = ((self.rtts.len() as f64 - 1.0) * q).round() as usize;
                ms(u64::from(self.rtts[i.min(self.rtts.len() - 1)]))
            };
            self.summary.rtt_ms = Some(RttPercentiles {
                p50: at(0.5),
                p90: at(0.9),
                p99: at(0.99),
                max: at(1.0),
            });
        }
        (
            self.summary,
            self.worst
                .map(|(verdict, _, key, text)| Worst { verdict, key, text }),
        )
    }
}

/// The worst finding of an answer: its verdict, the socket (to name its owner when it is among
/// the rows, whose owners are looked up) and its description without owner.
struct Worst {
    verdict: Verdict,
    key: RowKey,
    text: String,
}

/// `proto local -> foreign (program, pid)`, for messages.
fn describe(s: &Socket) -> String {
    let mut text = format!(
        "{} {} -> {}",
        s.protocol,
        endpoint(s.local_ip, Some(s.local_port)),
        endpoint(s.foreign.ip, s.foreign.port)
    );
    if let Some(o) = s.owners.first() {
        let _ = write!(text, " ({}, pid {})", o.program, o.pid);
    }
    text
}

/// `10.0.0.5:41522`, `[::1]:5432`, `0.0.0.0:*`.
pub(crate) fn endpoint(ip: std::net::IpAddr, port: Option<u16>) -> String {
    let port = port.map_or_else(|| "*".to_string(), |p| p.to_string());
    match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
    }
}

/// µs → ms, kept as a decimal (0.016 for 16 µs).
pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The kernel's counters of a TCP socket, in the units `ss -ti` prints: times in ms (µs kept
/// as decimals), rates in bits/s. A field the kernel (or the remote tool) does not give is
/// left out.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Default)]
pub(crate) struct TcpJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rttvar_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) min_rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rto_ms: Option<f64>,
    /// Congestion window, segments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cwnd: Option<u64>,
    /// Slow-start threshold, segments; left out while it is still infinite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ssthresh: Option<u64>,
    /// Sender MSS, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mss: Option<u64>,
    /// Retransmitted segments not yet acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retrans: Option<u64>,
    /// Retransmitted segments over the connection's life.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) total_retrans: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unacked: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sacked: Option<u64>,
    /// Data bytes sent, retransmissions included (as the kernel counts it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_acked: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_retrans: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) segs_out: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) segs_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delivery_rate_bps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pacing_rate_bps: Option<u64>,
    /// Time spent sending data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) busy_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rwnd_limited_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sndbuf_limited_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) notsent_bytes: Option<u64>,
    /// The peer's advertised receive window, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) snd_wnd: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rcv_space: Option<u64>,
    /// ms since data was last sent / received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_send_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_recv_ms: Option<u64>,
    /// The last delivery-rate sample was limited by the application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) app_limited: Option<bool>,
    /// Congestion-avoidance state: open, disorder, cwr, recovery or loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca_state: Option<&'static str>,
}

/// The kernel's "infinite" slow-start threshold (`TCP_INFINITE_SSTHRESH`).
const INFINITE_SSTHRESH: u64 = 0x7fff_ffff;

impl TcpJson {
    pub(crate) fn of(t: &TcpInfo) -> TcpJson {
        let g = |f| t.get(f);
        let ms_of = |f| t.get(f).map(ms);
        TcpJson {
            rtt_ms: ms_of(TcpField::Rtt),
            rttvar_ms: ms_of(TcpField::RttVar),
            min_rtt_ms: ms_of(TcpField::MinRtt),
            rto_ms: ms_of(TcpField::Rto),
            cwnd: g(TcpField::SndCwnd),
            ssthresh: g(TcpField::SndSsthresh).filter(|v| *v < INFINITE_SSTHRESH),
            mss: g(TcpField::SndMss),
            retrans: g(TcpField::Retrans),
            total_retrans: g(TcpField::TotalRetrans),
            lost: g(TcpField::Lost),
            unacked: g(TcpField::Unacked),
            sacked: g(TcpField::Sacked),
            bytes_sent: g(TcpField::BytesSent),
            bytes_acked: g(TcpField::BytesAcked),
            bytes_received: g(TcpField::BytesReceived),
            bytes_retrans: g(TcpField::BytesRetrans),
            segs_out: g(TcpField::SegsOut),
            segs_in: g(TcpField::SegsIn),
            delivery_rate_bps: g(TcpField::DeliveryRate).map(|r| r.saturating_mul(8)),
            pacing_rate_bps: g(TcpField::PacingRate)
                .filter(|r| *r != u64::MAX)
                .map(|r| r.saturating_mul(8)),
            busy_ms: ms_of(TcpField::BusyTime),
            rwnd_limited_ms: ms_of(TcpField::RwndLimited),
            sndbuf_limited_ms: ms_of(TcpField::SndbufLimited),
            notsent_bytes: g(TcpField::NotsentBytes),
            snd_wnd: g(TcpField::SndWnd),
            rcv_space: g(TcpField::RcvSpace),
            last_send_ms: g(TcpField::LastDataSent),
            last_recv_ms: g(TcpField::LastDataRecv),
            app_limited: g(TcpField::AppLimited).map(|v| v == 1),
            ca_state: g(TcpField::CaState).map(|s| match s {
                0 => "open",
                1 => "disorder",
                2 => "cwr",
                3 => "recovery",
                4 => "loss",
                _ => "unknown",
            }),
        }
    }
}

/// One socket of `connection_health`: the connection row, its counters and its verdict.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct HealthRow {
    #[serde(flatten)]
    pub(crate) row: ConnectionRow,
    /// The systemd unit of the cgroup the socket was created in, when its owner's own cgroup
    /// could not be read (no privilege); left out otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unit: Option<Arc<str>>,
    /// The container of the cgroup the socket was created in, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) container: Option<ContainerRef>,
    /// `ok`, `loss`, `zero_window`, `receiver_limited`, `send_buffer_limited`, `high_rtt`,
    /// `application_limited` or `drops` (UDP); the rules are in docs/tools.md.
    pub(crate) verdict: Verdict,
    /// TCP only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tcp: Option<TcpJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mem: Option<SkMem>,
}

/// `data` of `connection_health`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct HealthData {
    pub(crate) host: String,
    /// Matching sockets (all of them, not only the rows returned).
    pub(crate) connection_count: usize,
    /// True when fewer rows are returned than matched.
    pub(crate) truncated: bool,
    pub(crate) summary: HealthSummary,
    /// The worst sockets by `sort`, at most `limit`.
    pub(crate) connections: Vec<HealthRow>,
    /// The order of the rows.
    pub(crate) sort: &'static str,
    pub(crate) filter: FilterEcho,
}

/// The filtered, counted sockets of one answer before owners of the page are looked up.
pub(crate) struct Selected {
    /// The page: the worst sockets by sort, in order.
    pub(crate) rows: Vec<Socket>,
    /// Their verdicts, in the same order.
    verdicts: Vec<Verdict>,
    pub(crate) count: usize,
    summary: HealthSummary,
    worst: Option<Worst>,
    coverage: OwnerCoverage,
    notes: Vec<String>,
    processes: Option<Arc<dyn ProcessLookup>>,
}

impl HealthQuery {
    /// What to ask a source for; `owners`: whether to name owners (the CLI's --no-owners
    /// turns it off). One owner scan over the listing (on several threads for a large one) is
    /// cheaper than looking for the rows' owners afterwards, which may sit in every process.
    pub(crate) fn want(&self, owners: bool) -> Want {
        let base = self.filter.want();
        Want {
            states: self.states,
            owners,
            health: true,
            ..base
        }
    }

    /// Filters and counts a snapshot, and keeps the page of worst rows.
    pub(crate) fn select(&self, snapshot: Snapshot) -> Selected {
        let Snapshot {
            mut sockets,
            owners: coverage,
            notes,
            processes,
        } = snapshot;
        let want = self.want(false);
        let mut builder = HealthTally::default();
        // Each kept socket's sort key and verdict, worked out once: sorting 100,000 rows
        // compares each about 17 times, and the rows show their verdict.
        let mut ranked: Vec<Ranked> = Vec::new();
        sockets.retain(|s| {
            let keep = want.admits(s) && self.filter.matches_owners(&s.owners);
            if keep {
                let findings = Findings::of(s);
                let verdict = findings.verdict();
                builder.add(s, &findings, verdict, self.sort);
                ranked.push(Ranked {
                    key: self.sort.key(s),
                    verdict,
                    at: ranked.len(),
                });
            }
            keep
        });
        let count = sockets.len();
        let order = |a: &Ranked, b: &Ranked| {
            b.key
                .cmp(&a.key)
                .then_with(|| row_order(&sockets[a.at], &sockets[b.at]))
        };
        first_in_order(&mut ranked, self.filter.limit, order);
        take_in_order(&mut sockets, ranked.iter().map(|r| r.at));
        let (summary, worst) = builder.finish();
        Selected {
            rows: sockets,
            verdicts: ranked.iter().map(|r| r.verdict).collect(),
            count,
            summary,
            worst,
            coverage,
            notes,
            processes,
        }
    }

    /// The answer over a selection (whose rows may since have got their owners).
    pub(crate) fn answer(&self, target: &Target, selected: Selected) -> Envelope<HealthData> {
        let Selected {
            rows,
            verdicts,
            count,
            summary,
            worst,
            coverage,
            notes,
            processes,
        } = selected;
        let ownerless = rows
            .iter()
            .filter(|s| s.owners.is_empty() && !super::answer::kernel_held(s))
            .count();
        // The worst socket is described with its owner when it is one of the rows.
        let worst = worst.map(|w| {
            let text = rows
                .iter()
                .find(|s| RowKey::of(s) == w.key)
                .map_or(w.text, describe);
            (w.verdict, text)
        });
        let cgroups = cgroup_names(&rows, processes.as_deref());
        let mut holders = HolderCache::new(processes.as_deref());
        let connections: Vec<HealthRow> = rows
            .into_iter()
            .zip(verdicts)
            .map(|(s, verdict)| health_row(s, verdict, &mut holders, &cgroups))
            .collect();
        let mut envelope = Envelope::ok(
            String::new(),
            HealthData {
                host: target.host.clone(),
                connection_count: count,
                truncated: connections.len() < count,
                summary,
                connections,
                sort: self.sort.as_str(),
                filter: self.filter.filter_echo(),
            },
        );
        let mut cut = false;
        loop {
            let data = envelope.data.as_mut().expect("built above");
            data.truncated = data.connections.len() < count;
            envelope.message = self.message(target, data, &worst, coverage, ownerless, &notes, cut);
            if !self.filter.default_limit {
                break;
            }
            if !crate::query::answer::shrink_step(&mut envelope, self.filter.budget) {
                break;
            }
            cut = true;
        }
        envelope
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        target: &Target,
        data: &HealthData,
        worst: &Option<(Verdict, String)>,
        coverage: OwnerCoverage,
        ownerless: usize,
        notes: &[String],
        cut: bool,
    ) -> String {
        let s = &data.summary;
        let what = match (self.filter.proto, self.state_given) {
            (ProtoFilter::Udp, _) => "UDP sockets",
            (ProtoFilter::All, _) => "TCP connections and UDP sockets",
            (_, true) => "TCP sockets",
            (_, false) => "TCP connections",
        };
        let mut place = if target.local {
            "local host".to_string()
        } else {
            target.label.clone()
        };
        if self.filter.scope == Scope::All {
            place.push_str(" (every network namespace)");
        }
        let mut scope = String::new();
        if let Some(p) = self.filter.remote_port {
            let _ = write!(scope, " to port {p}");
        }
        if let Some(p) = self.filter.local_port {
            let _ = write!(scope, " on local port {p}");
        }
        if let Some(state) = self.filter.state {
            let _ = write!(scope, " in state {state}");
        }
        let count = data.connection_count;
        let mut m = if count == 0 {
            format!("No matching {what}{scope} on {place}")
        } else if self.filter.proto == ProtoFilter::Udp {
            format!("{} {what}{scope} on {place}", thousands(count))
        } else if s.retransmitting > 0 {
            format!(
                "{} of {} {what}{scope} on {place} are retransmitting ({} retransmits)",
                thousands(s.retransmitting as usize),
                thousands(count),
                thousands(s.total_retrans as usize)
            )
        } else {
            format!(
                "{} {what}{scope} on {place}, none retransmitting",
                thousands(count)
            )
        };
        if s.zero_window > 0 {
            let _ = write!(
                m,
                "; {} stalled by a zero window (the peer stopped reading)",
                thousands(s.zero_window as usize)
            );
        }
        if s.dropping > 0 {
            let _ = write!(
                m,
                "; {} UDP socket(s) dropped {} datagrams (receive buffer full)",
                thousands(s.dropping as usize),
                thousands(s.drops as usize)
            );
        }
        if let Some(rtt) = &s.rtt_ms {
            let _ = write!(
                m,
                "; worst RTT {} ms (p50 {} ms)",
                round_ms(rtt.max),
                round_ms(rtt.p50)
            );
        }
        match worst {
            Some((v, who)) => {
                let _ = write!(m, ". Worst finding: {} on {who}", v.as_str());
            }
            None if count > 0 => {
                m.push_str(". No socket shows loss, a zero window, buffer limits or a high RTT")
            }
            None => {}
        }
        if data.truncated {
            let _ = write!(
                m,
                ". Showing the {} worst by {}",
                data.connections.len(),
                self.sort.as_str()
            );
            if cut {
                let _ = write!(
                    m,
                    " (cut to keep the answer under {} KiB)",
                    self.filter.budget.max(1024) / 1024
                );
            }
            m.push_str("; summary covers all");
        }
        if target.local
            && let OwnerCoverage::Partial { .. } = coverage
            && ownerless > 0
        {
            let _ = write!(
                m,
                ". pid/program are unknown for {ownerless} row(s) owned by processes this user may not inspect (unit/container come from the socket's cgroup where it names one); to see them, {}",
                super::OWNER_HINT
            );
        }
        for note in notes {
            m.push_str(". ");
            m.push_str(note);
        }
        m
    }
}

/// Rounds a millisecond value for a message: 3 significant decimals at most.
fn round_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Unit and container of the cgroups the page's sockets were created in, for sockets whose
/// owner details do not name them.
fn cgroup_names(
    rows: &[Socket],
    processes: Option<&dyn ProcessLookup>,
) -> HashMap<u64, crate::process::cgroup::CgroupNames> {
    let Some(processes) = processes else {
        return HashMap::new();
    };
    let ids: HashSet<u64> = rows
        .iter()
        .filter(|s| {
            s.owners
                .first()
                .and_then(|o| processes.process(o.pid))
                .is_none_or(|info| info.unit.is_none() || info.container.is_none())
        })
        .filter_map(|s| s.health.as_deref().and_then(|h| h.cgroup_id))
        .collect();
    if ids.is_empty() {
        return HashMap::new();
    }
    processes.cgroups(&ids)
}

fn health_row(
    mut s: Socket,
    verdict: Verdict,
    holders: &mut HolderCache<'_>,
    cgroups: &HashMap<u64, crate::process::cgroup::CgroupNames>,
) -> HealthRow {
    let health: Health = s.health.take().map(|b| *b).unwrap_or_default();
    let row = connection_row(s, holders);
    let details = row.owners.details().cloned().unwrap_or_default();
    let names = health.cgroup_id.and_then(|id| cgroups.get(&id));
    let unit = match (&details.unit, names) {
        (None, Some(n)) => n.unit.clone(),
        _ => None,
    };
    let container = match (&details.container, names) {
        (None, Some(n)) => n.container.as_ref().map(|c| ContainerRef {
            runtime: c.runtime.as_str(),
            id: c.id.clone(),
        }),
        _ => None,
    };
    HealthRow {
        row,
        unit,
        container,
        verdict,
        tcp: health.tcp.as_ref().map(TcpJson::of),
        mem: health.mem,
    }
}

impl crate::query::output::Rows for HealthData {
    fn row_count(&self) -> usize {
        self.connections.len()
    }
    fn keep_rows(&mut self, n: usize) {
        self.connections.truncate(n);
        self.truncated = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn tcp(fields: &[(TcpField, u64)]) -> Socket {
        let mut s = Socket::between(Protocol::Tcp, ("10.0.0.5", 41522), ("10.0.0.9", Some(5432)));
        s.state = Some(TcpState::Established);
        let mut info = TcpInfo::default();
        for (f, v) in fields {
            info.set(*f, *v);
        }
        s.health = Some(Box::new(Health {
            tcp: Some(info),
            ..Health::default()
        }));
        s
    }

    #[test]
    fn verdicts_follow_the_documented_rules_and_priority() {
        use TcpField::*;
        let cases: &[(&[(TcpField, u64)], Verdict)] = &[
            (&[(Rtt, 300), (SegsOut, 100)], Verdict::Ok),
            (&[(SegsOut, 1000), (TotalRetrans, 20)], Verdict::Loss),
            // 0.5% of the segments retransmitted, none outstanding: not loss.
            (&[(SegsOut, 1000), (TotalRetrans, 5)], Verdict::Ok),
            (&[(Retrans, 1)], Verdict::Loss),
            // A zero window with data waiting wins over the loss it causes.
            (
                &[
                    (SndWnd, 0),
                    (NotsentBytes, 4096),
                    (SegsOut, 10),
                    (TotalRetrans, 5),
                ],
                Verdict::ZeroWindow,
            ),
            // A zero window with nothing to send is not a stall.
            (&[(SndWnd, 0)], Verdict::Ok),
            (
                &[(BusyTime, 1_000_000), (RwndLimited, 400_000)],
                Verdict::ReceiverLimited,
            ),
            (
                &[(BusyTime, 1_000_000), (SndbufLimited, 300_000)],
                Verdict::SendBufferLimited,
            ),
            // Too little busy time to judge.
            (&[(BusyTime, 50_000), (RwndLimited, 50_000)], Verdict::Ok),
            (&[(Rtt, 250_000)], Verdict::HighRtt),
            // Queueing: the smoothed RTT far above the path's minimum.
            (&[(Rtt, 80_000), (MinRtt, 10_000)], Verdict::HighRtt),
            (
                &[(AppLimited, 1), (LastDataSent, 20), (BytesAcked, 5000)],
                Verdict::ApplicationLimited,
            ),
            // Application-limited but idle for a minute: nothing to say.
            (
                &[(AppLimited, 1), (LastDataSent, 60_000), (BytesAcked, 5000)],
                Verdict::Ok,
            ),
        ];
        for &(counters, expected) in cases {
            assert_eq!(
                Findings::of(&tcp(counters)).verdict(),
                expected,
                "{counters:?}"
            );
        }
    }

    #[test]
    fn udp_drops() {
        let mut s = Socket::between(Protocol::Udp, ("127.0.0.1", 5353), ("0.0.0.0", None));
        s.health = Some(Box::new(Health {
            mem: Some(SkMem {
                drops: 3,
                ..SkMem::default()
            }),
            ..Health::default()
        }));
        assert_eq!(Findings::of(&s).verdict(), Verdict::Drops);
    }

    #[test]
    fn sort_names_and_errors() {
        assert_eq!(
            HealthSort::CHOICES.parse("send-queue").unwrap(),
            HealthSort::SendQueue
        );
        let e = HealthSort::CHOICES.parse("speed").unwrap_err();
        assert_eq!(e.param, "sort");
        assert!(e.allowed.contains("retrans, rtt"), "{}", e.allowed);
    }

    #[test]
    fn default_states_are_the_connected_ones() {
        let q = HealthArgs::default().validate(Some(20)).unwrap();
        assert!(q.states.contains(TcpState::Established));
        assert!(q.states.contains(TcpState::CloseWait));
        assert!(!q.states.contains(TcpState::Listen));
        assert!(!q.states.contains(TcpState::TimeWait));
        assert!(!q.states.contains(TcpState::SynRecv));
        assert_eq!(q.filter.proto, ProtoFilter::Tcp);
        let want = q.want(false);
        assert!(want.health && want.tcp && !want.udp);
    }
}
