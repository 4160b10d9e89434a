//! Answers as text for a person at a terminal: the tables and summaries of `connections`,
//! `summary`, `port` and `hosts` (the JSON forms need no rendering), and the table layout the
//! other commands share.

use std::fmt::Write as _;

use crate::query::{
    ConnectionsAnswer, ConnectionsData, Envelope, HostsData, OwnerDetails, PortAnswer, PortData,
    RowOwners, RowPlace,
};

/// The configured hosts as an aligned table, with where the config came from.
pub(crate) fn hosts_table(data: &HostsData) -> String {
    let from = data
        .config
        .clone()
        .unwrap_or_else(|| "no config file".to_string());
    if data.hosts.is_empty() {
        let mut out = format!(
            "No usable remote hosts configured ({from}); only the local machine is available\n"
        );
        unusable_lines(&mut out, data);
        return out;
    }
    let cells: Vec<Vec<String>> = data
        .hosts
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.host.clone(),
                r.port.to_string(),
                r.username.clone(),
                r.auth.clone(),
                r.groups.join(","),
                r.via.join(","),
                r.source.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "Name", "Host", "Port", "User", "Auth", "Groups", "Via", "Source",
        ],
        &[false, false, true, false, false, false, false, false],
        &cells,
    );
    let _ = writeln!(out, "{} remote host(s) from {from}", data.hosts.len());
    unusable_lines(&mut out, data);
    out
}

/// The entries that cannot be used, each with why.
pub(crate) fn unusable_lines(out: &mut String, data: &HostsData) {
    if data.unusable_count == 0 {
        return;
    }
    let _ = writeln!(out, "\nCannot be used ({}):", data.unusable_count);
    for u in &data.unusable {
        let _ = writeln!(
            out,
            "  {}: {}",
            u.name.as_deref().unwrap_or(&u.entry),
            u.problem
        );
    }
}

/// `addr:port` with IPv6 in brackets, `*` for no port.
pub(crate) fn endpoint(ip: std::net::IpAddr, port: Option<u16>) -> String {
    let port = port.map_or_else(|| "*".to_string(), |p| p.to_string());
    if ip.is_ipv6() {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

pub(crate) fn owner_cell(pid: Option<u32>, program: Option<&str>) -> String {
    match (pid, program) {
        (Some(pid), Some(p)) => format!("{pid}/{p}"),
        (Some(pid), None) => pid.to_string(),
        _ => "-".to_string(),
    }
}

/// The row's owner, or every owner of a shared socket (`812/nginx,813/nginx`, at most 3 and
/// then `+N`).
pub(crate) fn owners_cell(pid: Option<u32>, program: Option<&str>, owners: &RowOwners) -> String {
    let all = owners.all();
    if all.len() < 2 {
        return owner_cell(pid, program);
    }
    let mut cell: Vec<String> = all
        .iter()
        .take(3)
        .map(|o| format!("{}/{}", o.pid, o.program))
        .collect();
    if all.len() > 3 {
        cell.push(format!("+{}", all.len() - 3));
    }
    cell.join(",")
}

/// `ip:port` with the bound interface as `ss` shows it: `0.0.0.0%lo:53`, `[fe80::1]%eth0:22`.
pub(crate) fn local_endpoint(ip: std::net::IpAddr, port: u16, place: &RowPlace) -> String {
    match place.interface() {
        None => endpoint(ip, Some(port)),
        Some(iface) if ip.is_ipv6() => format!("[{ip}]%{iface}:{port}"),
        Some(iface) => format!("{ip}%{iface}:{port}"),
    }
}

/// The container (`docker:3f4e5d6c7b8a`), else the systemd unit, else `-`.
pub(crate) fn service_cell(details: Option<&OwnerDetails>) -> String {
    match details {
        Some(OwnerDetails {
            container: Some(c), ..
        }) => format!("{}:{}", c.runtime, c.id),
        Some(OwnerDetails { unit: Some(u), .. }) => u.to_string(),
        _ => "-".to_string(),
    }
}

pub(crate) fn netns_cell(netns: Option<&crate::model::Netns>) -> String {
    match netns {
        Some(crate::model::Netns {
            name: Some(name), ..
        }) => name.to_string(),
        Some(ns) => ns.inode.to_string(),
        None => "-".to_string(),
    }
}

/// Columns shown only when some row has them: User, Service (container or unit), Netns.
pub(crate) struct Extra {
    user: bool,
    service: bool,
    netns: bool,
}

impl Extra {
    fn of<'a>(rows: impl Iterator<Item = (&'a RowOwners, &'a RowPlace)> + Clone) -> Extra {
        let details = || rows.clone().filter_map(|(o, _)| o.details());
        Extra {
            user: details().any(|d| d.user.is_some()),
            service: details().any(|d| d.container.is_some() || d.unit.is_some()),
            netns: rows.clone().any(|(_, p)| p.netns().is_some()),
        }
    }

    fn headers(&self, headers: &mut Vec<&'static str>, right: &mut Vec<bool>) {
        for (on, name) in [
            (self.user, "User"),
            (self.service, "Service"),
            (self.netns, "Netns"),
        ] {
            if on {
                headers.push(name);
                right.push(false);
            }
        }
    }

    fn cells(&self, row: &mut Vec<String>, owners: &RowOwners, place: &RowPlace) {
        if self.user {
            row.push(
                owners
                    .details()
                    .and_then(|d| d.user.as_deref())
                    .unwrap_or("-")
                    .to_string(),
            );
        }
        if self.service {
            row.push(service_cell(owners.details()));
        }
        if self.netns {
            row.push(netns_cell(place.netns()));
        }
    }
}

/// One host's listing, or a table per host (each under its name and message) and the
/// overall message last.
pub(crate) fn connections_answer_text(envelope: &Envelope<ConnectionsAnswer>) -> String {
    match &envelope.data {
        Some(ConnectionsAnswer::Many(fleet)) => fleet_text(envelope, fleet, connections_table),
        Some(ConnectionsAnswer::One(data)) => connections_table(&one_host(envelope, data)),
        None => format!("{}\n", envelope.message),
    }
}

/// One host's port check, or each host's under its name and the overall message last.
pub(crate) fn port_answer_text(envelope: &Envelope<PortAnswer>) -> String {
    match &envelope.data {
        Some(PortAnswer::Many(fleet)) => fleet_text(envelope, fleet, port_text),
        Some(PortAnswer::One(data)) => port_text(&one_host(envelope, data)),
        None => format!("{}\n", envelope.message),
    }
}

/// A one-host answer as the envelope its renderer takes.
pub(crate) fn one_host<A, T: Clone>(envelope: &Envelope<A>, data: &T) -> Envelope<T> {
    Envelope {
        success: envelope.success,
        message: envelope.message.clone(),
        data: Some(data.clone()),
    }
}

/// Each host's answer rendered under `== name`, then the overall message.
pub(crate) fn fleet_text<A, S, T: Clone>(
    envelope: &Envelope<A>,
    fleet: &crate::query::FleetData<S, T>,
    render: fn(&Envelope<T>) -> String,
) -> String {
    let mut out = String::new();
    for h in &fleet.hosts {
        let _ = writeln!(out, "== {}", h.host);
        out.push_str(&render(&Envelope {
            success: h.success,
            message: h.message.clone(),
            data: h.data.clone(),
        }));
        out.push('\n');
    }
    let _ = writeln!(out, "{}", envelope.message);
    out
}

/// The columns a table of sockets starts with, as netstat prints them: the name and whether
/// it is right-aligned (the queues).
const SOCKET_COLUMNS: [(&str, bool); 6] = [
    ("Proto", false),
    ("Recv-Q", true),
    ("Send-Q", true),
    ("Local Address", false),
    ("Foreign Address", false),
    ("State", false),
];

/// The headers and alignment of a table of sockets: the socket columns, then `more`.
pub(crate) fn socket_columns(more: &[(&'static str, bool)]) -> (Vec<&'static str>, Vec<bool>) {
    SOCKET_COLUMNS.iter().chain(more).copied().unzip()
}

/// The listing as an aligned table with the message as a footer.
pub(crate) fn connections_table(envelope: &Envelope<ConnectionsData>) -> String {
    let mut out = String::new();
    if let Some(data) = &envelope.data {
        let extra = Extra::of(data.connections.iter().map(|c| (&c.owners, &c.place)));
        let rows: Vec<Vec<String>> = data
            .connections
            .iter()
            .map(|c| {
                let mut row = vec![
                    c.protocol.to_string(),
                    c.recv_queue.to_string(),
                    c.send_queue.to_string(),
                    local_endpoint(c.local_ip, c.local_port, &c.place),
                    endpoint(c.foreign_ip, c.foreign_port),
                    c.state.unwrap_or_default().to_string(),
                    owners_cell(c.pid, c.program.as_deref(), &c.owners),
                ];
                extra.cells(&mut row, &c.owners, &c.place);
                row
            })
            .collect();
        let (mut headers, mut right) = socket_columns(&[("PID/Program", false)]);
        extra.headers(&mut headers, &mut right);
        out.push_str(&table(&headers, &right, &rows));
    }
    let _ = writeln!(out, "{}", envelope.message);
    if let Some(cursor) = envelope.data.as_ref().and_then(|d| d.next_cursor.as_ref()) {
        let _ = writeln!(out, "Next page: add --cursor {cursor}");
    }
    out
}

/// The port check as its message, then the holding sockets.
pub(crate) fn port_text(envelope: &Envelope<PortData>) -> String {
    let mut out = format!("{}\n", envelope.message);
    if let Some(data) = envelope.data.as_ref().filter(|d| d.is_occupied) {
        let extra = Extra::of(data.occupations.iter().map(|o| (&o.owners, &o.place)));
        let rows: Vec<Vec<String>> = data
            .occupations
            .iter()
            .map(|o| {
                let mut row = vec![
                    o.protocol.to_string(),
                    local_endpoint(o.local_ip, o.local_port, &o.place),
                    endpoint(o.foreign_ip, o.foreign_port),
                    o.state.unwrap_or_default().to_string(),
                    owners_cell(o.pid, o.program.as_deref(), &o.owners),
                ];
                extra.cells(&mut row, &o.owners, &o.place);
                row
            })
            .collect();
        let mut headers = vec![
            "Proto",
            "Local Address",
            "Foreign Address",
            "State",
            "PID/Program",
        ];
        let mut right = vec![false; 5];
        extra.headers(&mut headers, &mut right);
        out.push_str(&table(&headers, &right, &rows));
        if let Some(bind) = &data.bind {
            let verdict = if bind.can_bind { "yes" } else { "no" };
            let _ = writeln!(
                out,
                "\nCan a server bind {}? {verdict}: {}",
                bind.address, bind.detail
            );
            if !bind.notes.is_empty() {
                let _ = writeln!(out, "Notes: {}", bind.notes.join(", "));
            }
            if let Some(assumes) = &bind.assumes {
                let _ = writeln!(out, "{assumes}");
            }
        }
        if !data.suggested_ports.is_empty() {
            let ports: Vec<String> = data.suggested_ports.iter().map(u16::to_string).collect();
            let _ = writeln!(out, "Free ports nearby: {}", ports.join(", "));
        }
    }
    out
}

/// The summary for a person: counts, listeners, top programs and remote hosts.
pub(crate) fn summary_text(envelope: &Envelope<ConnectionsData>) -> String {
    let mut out = String::new();
    let Some(data) = &envelope.data else {
        let _ = writeln!(out, "{}", envelope.message);
        return out;
    };
    let s = &data.summary;
    let counts = |map: &std::collections::BTreeMap<&'static str, usize>| {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by_key(|(name, n)| (std::cmp::Reverse(**n), **name));
        entries
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "{} sockets on {}", data.connection_count, data.host);
    let _ = writeln!(out, "By state:    {}", counts(&s.by_state));
    let _ = writeln!(out, "By protocol: {}", counts(&s.by_protocol));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Listening ({}{}):",
        s.listener_count,
        if s.listeners_truncated {
            format!(", first {} shown", s.listeners.len())
        } else {
            String::new()
        }
    );
    let with_container = s.listeners.iter().any(|l| l.container.is_some());
    let with_netns = s.listeners.iter().any(|l| l.netns.is_some());
    let rows: Vec<Vec<String>> = s
        .listeners
        .iter()
        .map(|l| {
            let local = match &l.interface {
                None => endpoint(l.local_ip, Some(l.local_port)),
                Some(i) if l.local_ip.is_ipv6() => format!("[{}]%{i}:{}", l.local_ip, l.local_port),
                Some(i) => format!("{}%{i}:{}", l.local_ip, l.local_port),
            };
            let mut row = vec![
                l.protocol.to_string(),
                local,
                owner_cell(l.pid, l.program.as_deref()),
            ];
            if with_container {
                row.push(
                    l.container
                        .as_ref()
                        .map_or("-".to_string(), |c| format!("{}:{}", c.runtime, c.id)),
                );
            }
            if with_netns {
                row.push(match &l.netns {
                    Some(ns) => ns
                        .name
                        .as_deref()
                        .map_or(ns.inode.to_string(), str::to_string),
                    None => "-".to_string(),
                });
            }
            row
        })
        .collect();
    let mut headers = vec!["Proto", "Local Address", "PID/Program"];
    if with_container {
        headers.push("Container");
    }
    if with_netns {
        headers.push("Netns");
    }
    out.push_str(&table(&headers, &vec![false; headers.len()], &rows));
    if let Some(namespaces) = &s.by_netns {
        let _ = writeln!(out);
        let _ = writeln!(out, "By network namespace:");
        let rows: Vec<Vec<String>> = namespaces
            .iter()
            .map(|n| {
                vec![
                    n.count.to_string(),
                    n.inode.to_string(),
                    n.name.as_deref().unwrap_or("-").to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["Sockets", "Inode", "Name"],
            &[true, true, false],
            &rows,
        ));
    }
    if !s.top_programs.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Top programs:");
        let rows: Vec<Vec<String>> = s
            .top_programs
            .iter()
            .map(|p| vec![p.count.to_string(), format!("{}/{}", p.pid, p.program)])
            .collect();
        out.push_str(&table(&["Sockets", "PID/Program"], &[true, false], &rows));
    }
    if !s.top_remote_hosts.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Top remote hosts:");
        let rows: Vec<Vec<String>> = s
            .top_remote_hosts
            .iter()
            .map(|r| vec![r.count.to_string(), r.foreign_ip.to_string()])
            .collect();
        out.push_str(&table(&["Sockets", "Address"], &[true, false], &rows));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", envelope.message);
    out
}

/// Renders an aligned text table; `right` marks right-aligned (numeric) columns.
pub(crate) fn table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    // Characters, not bytes; most cells are ASCII, where the two agree.
    let chars = |s: &str| {
        if s.is_ascii() {
            s.len()
        } else {
            s.chars().count()
        }
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| chars(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(chars(cell));
        }
    }
    // Every line written straight into the output (100,000 rows are 100,000 lines).
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let start = out.len();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(chars(cell));
            let right = right.get(i).copied().unwrap_or(false);
            if right {
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(cell);
            if !right {
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_by_characters_aligns_and_trims_line_ends() {
        let rows = vec![
            vec!["nginx".to_string(), "80".to_string(), "".to_string()],
            vec!["señal".to_string(), "8080".to_string(), "x".to_string()],
        ];
        let text = table(&["Program", "Port", "N"], &[false, true, false], &rows);
        assert_eq!(
            text, "Program Port N\nnginx     80\nseñal   8080 x\n",
            "{text}"
        );
    }
}
