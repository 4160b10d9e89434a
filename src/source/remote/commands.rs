//! The command lines we run on remote hosts, per operating system, with the query's filters
//! built in.
//!
//! **Nothing from a caller reaches a shell.** Every command line here is fixed text plus values
//! of our own types: ports are `u16` printed as decimal or as four hex digits, TCP states come
//! from [`TcpState`] and are printed from fixed tables (`ss` state names, kernel hex codes), and
//! the protocol choice is a pair of booleans. Host names, aliases and every other caller string
//! are compared with the configuration elsewhere and never appear in a command line — the unit
//! tests below check the character set of every line this module can build.
//!
//! What is run, in order (see [`plan`]):
//! - **Linux** (and hosts whose OS is unknown): with a narrowing filter (a local port or a TCP
//!   state set), first `ss` with a filter expression (`state listening '( sport = :5432 )'`),
//!   then an `awk` program over `/proc/net` that prints only matching rows and, for owners,
//!   scans `/proc/<pid>/fd` for the matching socket inodes; then the unfiltered order:
//!   `netstat -tunapW`, `netstat -tunap`, `ss -tunap`, the `/proc/net` program unfiltered, and
//!   plain `cat` of the `/proc/net` tables (no owners) for hosts without awk.
//! - **macOS / BSD**: `netstat -an -p tcp` / `-p udp` (with an `awk` port filter), owners from
//!   `lsof -nP -iTCP[:port] -iUDP[:port]`.
//! - **Windows**: `netstat -ano`, program names from `tasklist /fo csv /nh`.
//!
//! OS detection is `uname -s`; where that fails, `cmd /c ver` names Windows (it works under
//! both `cmd.exe` and PowerShell, the two default shells of Windows OpenSSH).

use std::fmt::Write as _;

use crate::model::{StateSet, TcpState};
use crate::source::Want;
use crate::ssh::RemoteCommand;

/// The operating system a remote host runs, as far as listing sockets is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoteOs {
    Linux,
    /// macOS, FreeBSD, OpenBSD, NetBSD, DragonFly: BSD `netstat` and `lsof`.
    Bsd,
    Windows,
    /// Detection gave no answer: the Linux order is tried (it tries everything).
    Unknown,
}

impl RemoteOs {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RemoteOs::Linux => "Linux",
            RemoteOs::Bsd => "macOS/BSD",
            RemoteOs::Windows => "Windows",
            RemoteOs::Unknown => "unknown",
        }
    }

    /// Reads `uname -s` output; `None` when it names no system we know (then the Windows probe
    /// runs).
    pub(crate) fn from_uname(stdout: &str) -> Option<RemoteOs> {
        let name = stdout.lines().next().unwrap_or("").trim();
        let upper = name.to_ascii_uppercase();
        Some(match name {
            "Linux" => RemoteOs::Linux,
            "Darwin" | "FreeBSD" | "OpenBSD" | "NetBSD" | "DragonFly" => RemoteOs::Bsd,
            _ if upper.starts_with("CYGWIN")
                || upper.starts_with("MINGW")
                || upper.starts_with("MSYS") =>
            {
                RemoteOs::Windows
            }
            _ => return None,
        })
    }

    /// Reads `cmd /c ver` output.
    pub(crate) fn from_ver(stdout: &str) -> Option<RemoteOs> {
        stdout
            .contains("Microsoft Windows")
            .then_some(RemoteOs::Windows)
    }
}

/// Which sockets the remote side should print: the parts of a [`Want`] a remote command can
/// apply. The result is always a superset of what the want admits; the local filter runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Filter {
    pub tcp: bool,
    pub udp: bool,
    /// TCP states (UDP is never filtered by state).
    pub states: StateSet,
    pub local_port: Option<u16>,
}

impl Filter {
    pub(crate) fn from_want(want: &Want) -> Filter {
        Filter {
            tcp: want.tcp,
            udp: want.udp,
            states: want.states,
            local_port: want.local_port,
        }
    }

    /// Everything.
    pub fn none() -> Filter {
        Filter {
            tcp: true,
            udp: true,
            states: StateSet::ALL,
            local_port: None,
        }
    }

    /// Whether the filter narrows the listing enough to be worth applying remotely.
    pub(crate) fn narrows(&self) -> bool {
        self.local_port.is_some() || (self.tcp && self.states != StateSet::ALL)
    }

    fn tcp_states(&self) -> Option<Vec<TcpState>> {
        (self.states != StateSet::ALL).then(|| {
            TcpState::ALL
                .into_iter()
                .filter(|s| self.states.contains(*s))
                .collect()
        })
    }
}

/// The listing commands (and their helpers) we know how to run and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listing {
    /// `netstat -tunapW`.
    NetstatWide,
    /// `netstat -tunap` (netstat without `-W`).
    Netstat,
    /// `ss -tunap`.
    Ss,
    /// `ss` per protocol with a state list and a `sport` expression, in `== tcp` / `== udp`
    /// sections.
    SsFiltered,
    /// The `/proc/net` awk program (filtered when the filter narrows), with the owner scan when
    /// owners are wanted.
    ProcNetScan,
    /// `cat` of the four `/proc/net` tables: no awk needed, no owners.
    ProcNet,
    /// BSD/macOS `netstat -an -p tcp` / `-p udp`.
    BsdNetstat,
    /// `lsof -nP -iTCP -iUDP` (owners for BSD/macOS listings).
    Lsof,
    /// Windows `netstat -ano`.
    WindowsNetstat,
    /// Windows `tasklist /fo csv /nh` (program names for pids).
    Tasklist,
    /// `uname -s`.
    Uname,
    /// `cmd /c ver`.
    WindowsVer,
    /// Linux health: `uname -r`, `ss -V`, then `ss -tinmp` and `ss -uanmp` (with the state
    /// list and `sport` expression) in `== name` sections.
    SsInfo,
    /// Linux port sysctls (`ip_local_port_range`, `ip_unprivileged_port_start`,
    /// `ip_local_reserved_ports`), one `name=value` line each.
    PortSysctls,
}

impl Listing {
    /// A short name for messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            Listing::NetstatWide => "netstat -tunapW",
            Listing::Netstat => "netstat -tunap",
            Listing::Ss => "ss -tunap",
            Listing::SsFiltered => "ss with filter",
            Listing::ProcNetScan => "awk over /proc/net",
            Listing::ProcNet => "cat /proc/net/{tcp,tcp6,udp,udp6}",
            Listing::BsdNetstat => "netstat -an",
            Listing::Lsof => "lsof -nP -i",
            Listing::WindowsNetstat => "netstat -ano",
            Listing::Tasklist => "tasklist /fo csv /nh",
            Listing::Uname => "uname -s",
            Listing::WindowsVer => "cmd /c ver",
            Listing::SsInfo => "ss -tinm",
            Listing::PortSysctls => "cat /proc/sys/net/ipv4/ip_local_*",
        }
    }

    /// Whether the output of this listing, for this filter, was narrowed on the remote side
    /// (so an output with a header and no row is a valid, empty answer).
    pub(crate) fn filtered(self, filter: &Filter) -> bool {
        match self {
            Listing::SsFiltered => true,
            Listing::ProcNetScan => filter.narrows(),
            Listing::BsdNetstat | Listing::Lsof => filter.local_port.is_some(),
            _ => false,
        }
    }
}

/// The listing commands to try on a host of `os`, in order.
pub(crate) fn plan(os: RemoteOs, filter: &Filter) -> Vec<Listing> {
    match os {
        RemoteOs::Linux | RemoteOs::Unknown => {
            let mut order = Vec::with_capacity(7);
            if filter.narrows() {
                order.extend([Listing::SsFiltered, Listing::ProcNetScan]);
            }
            order.extend([Listing::NetstatWide, Listing::Netstat, Listing::Ss]);
            if !filter.narrows() {
                order.push(Listing::ProcNetScan);
            }
            order.push(Listing::ProcNet);
            if os == RemoteOs::Unknown {
                order.extend([Listing::BsdNetstat, Listing::WindowsNetstat]);
            }
            order
        }
        RemoteOs::Bsd => vec![Listing::BsdNetstat],
        RemoteOs::Windows => vec![Listing::WindowsNetstat],
    }
}

/// The owner lookup that completes a listing without owners, if any.
pub(crate) fn owner_helper(listing: Listing) -> Option<Listing> {
    match listing {
        Listing::BsdNetstat => Some(Listing::Lsof),
        Listing::WindowsNetstat => Some(Listing::Tasklist),
        _ => None,
    }
}

/// The [`RemoteCommand`] for `listing` under `filter` (see [`command_line`]).
pub fn command(listing: Listing, filter: &Filter, owners: bool) -> RemoteCommand {
    RemoteCommand::built(listing.name(), command_line(listing, filter, owners))
}

/// Prefix for POSIX hosts: the C locale, so headers and states are in English.
const C_LOCALE: &str = "env LC_ALL=C ";

/// The shell command line for `listing` under `filter`; `owners` says whether the `/proc/net`
/// program should scan for owners.
pub(crate) fn command_line(listing: Listing, filter: &Filter, owners: bool) -> String {
    match listing {
        Listing::NetstatWide => format!("{C_LOCALE}netstat -tunapW"),
        Listing::Netstat => format!("{C_LOCALE}netstat -tunap"),
        Listing::Ss => format!("{C_LOCALE}ss -tunap"),
        Listing::SsFiltered => ss_filtered(filter),
        Listing::ProcNetScan => proc_net_scan(filter, owners),
        Listing::ProcNet => crate::parse::PROC_NET_COMMAND.to_string(),
        Listing::BsdNetstat => bsd_netstat(filter),
        Listing::Lsof => lsof(filter),
        Listing::WindowsNetstat => "netstat -ano".to_string(),
        Listing::Tasklist => "tasklist /fo csv /nh".to_string(),
        Listing::Uname => "uname -s".to_string(),
        Listing::WindowsVer => "cmd /c ver".to_string(),
        Listing::SsInfo => ss_info(filter, owners),
        Listing::PortSysctls => PORT_SYSCTLS.to_string(),
    }
}

/// The sysctls `bind` reads, as `name=value` lines (an unreadable one: `name=`).
const PORT_SYSCTLS: &str = "for f in ip_local_port_range ip_unprivileged_port_start ip_local_reserved_ports; do printf '%s=' \"$f\"; cat \"/proc/sys/net/ipv4/$f\" 2>/dev/null || echo; done";

/// `free_port`'s facts about remote processes: for each pid that exists, its
/// `/proc/<pid>/stat` line and its `Uid:` line; then `euid=<id -u>`. Only integers are filled
/// in.
pub(crate) fn process_facts(pids: &[u32]) -> RemoteCommand {
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    RemoteCommand::built(
        "cat /proc/<pid>/stat",
        format!(
            "for p in {}; do s=$(cat /proc/$p/stat 2>/dev/null) || continue; \
             u=$(grep '^Uid:' /proc/$p/status 2>/dev/null) || continue; \
             printf '%s\\n%s\\n' \"$s\" \"$u\"; done; printf 'euid=%s\\n' \"$(id -u)\"",
            list.join(" ")
        ),
    )
}

/// The facts [`process_facts`] printed, by pid, and the SSH user's effective uid.
pub(crate) fn parse_process_facts(
    stdout: &str,
) -> (
    std::collections::HashMap<u32, crate::source::Facts>,
    Option<u32>,
) {
    let mut facts = std::collections::HashMap::new();
    let mut euid = None;
    let mut lines = stdout.lines();
    while let Some(line) = lines.next() {
        if let Some(id) = line.strip_prefix("euid=") {
            euid = id.trim().parse().ok();
            continue;
        }
        let Some(uid_line) = lines.next() else { break };
        let pid = line
            .split_ascii_whitespace()
            .next()
            .and_then(|p| p.parse().ok());
        if let Some(pid) = pid
            && let Some(f) = crate::source::Facts::parse(pid, line, uid_line)
        {
            facts.insert(pid, f);
        }
    }
    (facts, euid)
}

/// Sends `signal` (TERM or KILL) to `pid` only if its start time is still `start`: exit 3
/// when it is gone or another process has the pid now. Never retried.
pub(crate) fn signal(pid: u32, start: u64, signal: &'static str) -> RemoteCommand {
    debug_assert!(matches!(signal, "TERM" | "KILL"));
    RemoteCommand::built(
        "kill",
        format!(
            "s=$(cat /proc/{pid}/stat 2>/dev/null) || exit 3; s=${{s##*) }}; set -- $s; \
             [ \"${{20}}\" = {start} ] || exit 3; kill -s {signal} {pid}"
        ),
    )
    .once()
}

/// The three texts of a [`Listing::PortSysctls`] output, in the order the command prints them.
pub(crate) fn port_sysctls(stdout: &str) -> [Option<String>; 3] {
    [
        "ip_local_port_range",
        "ip_unprivileged_port_start",
        "ip_local_reserved_ports",
    ]
    .map(|name| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
            .filter(|v| !v.trim().is_empty() || name == "ip_local_reserved_ports")
    })
}

/// `ss` state keyword for a state.
fn ss_state(state: TcpState) -> &'static str {
    match state {
        TcpState::Established => "established",
        TcpState::SynSent => "syn-sent",
        TcpState::SynRecv => "syn-recv",
        TcpState::FinWait1 => "fin-wait-1",
        TcpState::FinWait2 => "fin-wait-2",
        TcpState::TimeWait => "time-wait",
        TcpState::Close => "closed",
        TcpState::CloseWait => "close-wait",
        TcpState::LastAck => "last-ack",
        TcpState::Listen => "listening",
        TcpState::Closing => "closing",
    }
}

/// The state list of an `ss` command (` state established state syn-sent …`); `None` when
/// the filter wants no TCP socket at all.
fn ss_states(filter: &Filter) -> Option<String> {
    let list = filter.tcp_states().unwrap_or_default();
    if filter.tcp_states().is_some_and(|l| l.is_empty()) {
        return None;
    }
    let mut states = String::new();
    for s in &list {
        let _ = write!(states, " state {}", ss_state(*s));
    }
    // With exactly one state, `ss` leaves out its State column, which every `ss` reader
    // (ours included) needs: add a second, rare state (the local filter drops its rows).
    if let [only] = list.as_slice() {
        let extra = if *only == TcpState::Closing {
            "last-ack"
        } else {
            "closing"
        };
        let _ = write!(states, " state {extra}");
    }
    Some(states)
}

/// The health command: kernel and ss versions (what tells an omitted counter from an unknown
/// one), then each wanted protocol's listing with `tcp_info` (`-i`) and memory (`-m`).
fn ss_info(filter: &Filter, owners: bool) -> String {
    let p = if owners { "p" } else { "" };
    let expr = filter
        .local_port
        .map(|p| format!(" '( sport = :{p} )'"))
        .unwrap_or_default();
    let mut parts = vec![
        "echo '== uname' && uname -r".to_string(),
        format!("echo '== version' && {C_LOCALE}ss -V"),
    ];
    if filter.tcp
        && let Some(states) = ss_states(filter)
    {
        parts.push(format!(
            "echo '== tcp' && {C_LOCALE}ss -tinm{p}{states}{expr}"
        ));
    }
    if filter.udp {
        parts.push(format!("echo '== udp' && {C_LOCALE}ss -uanm{p}{expr}"));
    }
    parts.join(" && ")
}

fn ss_filtered(filter: &Filter) -> String {
    let mut parts = Vec::new();
    let expr = filter
        .local_port
        .map(|p| format!(" '( sport = :{p} )'"))
        .unwrap_or_default();
    // An empty state set wants no TCP socket at all: no TCP section.
    if filter.tcp
        && let Some(states) = ss_states(filter)
    {
        parts.push(format!("echo '== tcp' && {C_LOCALE}ss -tnap{states}{expr}"));
    }
    if filter.udp {
        parts.push(format!("echo '== udp' && {C_LOCALE}ss -unap{expr}"));
    }
    parts.join(" && ")
}

/// The awk condition (on a `/proc/net` row) for one table kind.
fn proc_condition(filter: &Filter, tcp: bool) -> String {
    let mut conds = Vec::new();
    if let Some(p) = filter.local_port {
        conds.push(format!("$2~/:{p:04X}$/"));
    }
    if tcp && let Some(list) = filter.tcp_states() {
        let mut codes: Vec<String> = list.iter().map(|s| format!("{:02X}", s.kernel())).collect();
        if list.contains(&TcpState::SynRecv) {
            codes.push("0C".into()); // TCP_NEW_SYN_RECV
        }
        if codes.is_empty() {
            conds.push("0".into());
        } else {
            conds.push(format!("$4~/^({})$/", codes.join("|")));
        }
    }
    if conds.is_empty() {
        "1".into()
    } else {
        conds.join("&&")
    }
}

/// The awk + sh program over `/proc/net`: matching rows of each wanted table after its
/// `== name` marker, then (with `owners`) a `== owners` section of `pid inode comm` lines for
/// the sockets printed, found by scanning `/proc/<pid>/fd` links.
fn proc_net_scan(filter: &Filter, owners: bool) -> String {
    let mut tables = String::new();
    for (files, tcp, wanted) in [
        ("tcp tcp6", true, filter.tcp),
        ("udp udp6", false, filter.udp),
    ] {
        if !wanted {
            continue;
        }
        let cond = proc_condition(filter, tcp);
        let _ = write!(
            tables,
            "for f in {files}; do [ -r /proc/net/$f ] || continue; echo \"== $f\"; awk 'NR==1||({cond})' /proc/net/$f || exit 1; done; "
        );
    }
    let mut line = format!(
        "command -v awk >/dev/null 2>&1 || exit 127; t=$({tables}) || exit 1; printf '%s\\n' \"$t\""
    );
    if owners {
        line.push_str(
            "; echo '== owners'; { printf '%s\\n' \"$t\"; echo '== fds'; ls -l /proc/[0-9]*/fd/ 2>/dev/null; } | awk '\
/^== fds$/{s=1;next} \
!s{if($1~/^[0-9]+:$/&&$10~/^[1-9][0-9]*$/)w[\"socket:[\"$10\"]\"]=1;next} \
/^\\/proc\\/[0-9]+\\/fd\\/?:$/{split($0,a,\"/\");p=a[3];next} \
($NF in w){if(!(p in c)){f=\"/proc/\"p\"/comm\";n=\"\";if((getline n<f)<=0)n=\"\";close(f);c[p]=n}i=$NF;gsub(/[^0-9]/,\"\",i);print p,i,c[p]}'",
        );
    }
    line
}

fn bsd_netstat(filter: &Filter) -> String {
    let mut parts = Vec::new();
    for (proto, wanted) in [("tcp", filter.tcp), ("udp", filter.udp)] {
        if !wanted {
            continue;
        }
        let mut part = format!("{C_LOCALE}netstat -an -p {proto}");
        if let Some(p) = filter.local_port {
            let _ = write!(part, " | awk 'NR<=2||$4~/[.]{p}$/'");
        }
        parts.push(part);
    }
    parts.join(" && ")
}

fn lsof(filter: &Filter) -> String {
    let port = filter
        .local_port
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let mut line = format!("{C_LOCALE}lsof -w -nP");
    if filter.tcp {
        let _ = write!(line, " -iTCP{port}");
    }
    if filter.udp {
        let _ = write!(line, " -iUDP{port}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_line() -> Vec<String> {
        let mut filters = vec![Filter::none()];
        for port in [None, Some(1), Some(22), Some(8080), Some(65535)] {
            for (tcp, udp) in [(true, true), (true, false), (false, true)] {
                let mut sets = vec![StateSet::ALL, StateSet::only(TcpState::Listen)];
                sets.extend(TcpState::ALL.into_iter().map(StateSet::only));
                for states in sets {
                    filters.push(Filter {
                        tcp,
                        udp,
                        states,
                        local_port: port,
                    });
                }
            }
        }
        let all = [
            Listing::NetstatWide,
            Listing::Netstat,
            Listing::Ss,
            Listing::SsFiltered,
            Listing::ProcNetScan,
            Listing::ProcNet,
            Listing::BsdNetstat,
            Listing::Lsof,
            Listing::WindowsNetstat,
            Listing::Tasklist,
            Listing::Uname,
            Listing::WindowsVer,
            Listing::PortSysctls,
        ];
        let mut lines = Vec::new();
        for f in &filters {
            for l in all {
                for owners in [false, true] {
                    lines.push(command_line(l, f, owners));
                }
            }
        }
        lines
    }

    #[test]
    fn port_sysctls_are_read_by_name() {
        let out = "ip_local_port_range=32768\t60999\nip_unprivileged_port_start=\nip_local_reserved_ports=\n";
        let [range, start, reserved] = port_sysctls(out);
        assert_eq!(range.as_deref(), Some("32768\t60999"));
        assert_eq!(start, None, "unreadable");
        assert_eq!(reserved.as_deref(), Some(""), "readable and empty");
    }

    #[test]
    fn command_lines_hold_only_our_own_text() {
        // Everything a line can hold is fixed program text: no caller text exists here, and
        // the only variable parts are decimal/hex digits and state names from fixed tables.
        for line in every_line() {
            assert!(line.is_ascii(), "{line}");
            assert!(!line.contains('\n'), "{line}");
            assert!(!line.contains('`'), "{line}");
        }
        let f = Filter {
            tcp: true,
            udp: true,
            states: StateSet::only(TcpState::Listen),
            local_port: Some(8080),
        };
        assert_eq!(
            command_line(Listing::SsFiltered, &f, true),
            "echo '== tcp' && env LC_ALL=C ss -tnap state listening state closing '( sport = :8080 )' && echo '== udp' && env LC_ALL=C ss -unap '( sport = :8080 )'"
        );
        assert!(command_line(Listing::ProcNetScan, &f, false).contains("$2~/:1F90$/&&$4~/^(0A)$/"));
        assert_eq!(
            command_line(Listing::Lsof, &f, true),
            "env LC_ALL=C lsof -w -nP -iTCP:8080 -iUDP:8080"
        );
    }

    #[test]
    fn plans() {
        let narrow = Filter {
            local_port: Some(5432),
            ..Filter::none()
        };
        assert_eq!(
            plan(RemoteOs::Linux, &narrow),
            [
                Listing::SsFiltered,
                Listing::ProcNetScan,
                Listing::NetstatWide,
                Listing::Netstat,
                Listing::Ss,
                Listing::ProcNet
            ]
        );
        assert_eq!(
            plan(RemoteOs::Linux, &Filter::none())[0],
            Listing::NetstatWide
        );
        assert_eq!(plan(RemoteOs::Bsd, &narrow), [Listing::BsdNetstat]);
        assert_eq!(
            owner_helper(Listing::WindowsNetstat),
            Some(Listing::Tasklist)
        );
        assert!(plan(RemoteOs::Unknown, &Filter::none()).contains(&Listing::WindowsNetstat));
    }

    #[test]
    fn os_detection() {
        assert_eq!(RemoteOs::from_uname("Linux\n"), Some(RemoteOs::Linux));
        assert_eq!(RemoteOs::from_uname("Darwin\n"), Some(RemoteOs::Bsd));
        assert_eq!(RemoteOs::from_uname("FreeBSD"), Some(RemoteOs::Bsd));
        assert_eq!(
            RemoteOs::from_uname("MINGW64_NT-10.0-19045"),
            Some(RemoteOs::Windows)
        );
        assert_eq!(RemoteOs::from_uname(""), None);
        assert_eq!(
            RemoteOs::from_ver("\r\nMicrosoft Windows [Version 10.0.19045.3803]\r\n"),
            Some(RemoteOs::Windows)
        );
        assert_eq!(RemoteOs::from_ver("sh: 1: cmd: not found"), None);
    }
}
