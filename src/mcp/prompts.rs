//! The server's prompts: `diagnose_port`, the steps an agent follows with the tools when a
//! server cannot bind a port (who holds it, can it bind, what to do). Clients that show
//! prompts as commands offer it (`/diagnose_port 8080`).

use rmcp::model::{GetPromptResult, Prompt, PromptArgument, PromptMessage, Role};

/// The prompt's name.
pub(crate) const DIAGNOSE_PORT: &str = "diagnose_port";

/// Every prompt, for `prompts/list`.
pub(crate) fn list() -> Vec<Prompt> {
    vec![
        Prompt::new(
            DIAGNOSE_PORT,
            Some(
                "Why can a server not bind this port (EADDRINUSE), and what to do: who holds it, \
                 whether a server can bind it, free ports nearby.",
            ),
            Some(vec![
                PromptArgument::new("port")
                    .with_description("The port, 1-65535")
                    .with_required(true),
                PromptArgument::new("proto")
                    .with_description("tcp (default) or udp")
                    .with_required(false),
                PromptArgument::new("host")
                    .with_description(
                        "A configured remote host (see list_hosts); default this machine",
                    )
                    .with_required(false),
            ]),
        )
        .with_title("Diagnose a port conflict"),
    ]
}

/// Why a `prompts/get` was refused: the parameter and what it allows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PromptError(pub(crate) String);

/// `prompts/get diagnose_port` with its arguments (strings, as MCP sends them).
pub(crate) fn diagnose_port(
    port: Option<&str>,
    proto: Option<&str>,
    host: Option<&str>,
) -> Result<GetPromptResult, PromptError> {
    let port = match port.map(str::trim) {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            PromptError(format!(
                "invalid argument 'port': '{}' must be an integer between 1 and 65535",
                crate::error::shorten(p)
            ))
        })?,
        None => {
            return Err(PromptError(
                "missing argument 'port': an integer between 1 and 65535 is required".into(),
            ));
        }
    };
    let proto = match proto.map(|p| p.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("tcp") => "tcp",
        Some("udp") => "udp",
        Some(other) => {
            return Err(PromptError(format!(
                "invalid argument 'proto': '{}' must be one of: tcp, udp",
                crate::error::shorten(other)
            )));
        }
    };
    let host = host.map(str::trim).filter(|h| !h.is_empty());
    let host_arg = host.map_or_else(String::new, |h| {
        format!(", \"host\": {}", serde_json::Value::from(h))
    });
    let on = host.map_or_else(|| "this machine".to_string(), |h| format!("host {h}"));
    let text = format!(
        "A server cannot bind {proto} port {port} on {on} (EADDRINUSE), or may not be able to. \
Find out why and what to do, using the netstat-mcp tools:

1. Call check_port_occupation with {{\"port\": {port}, \"proto\": \"{proto}\"{host_arg}}}. \
Read data.owners (which processes hold it: program, pid, user, systemd unit, container) and \
data.bind: can_bind (for a server that sets SO_REUSEADDR, as nginx, node, Go and Python's \
socketserver do), reason (listener, in_use, time_wait, reuseport_group or free), \
with_reuseaddr and without_reuseaddr, notes (ephemeral_range, privileged, reserved), assumes \
and detail. If the server binds one address rather than all, call it again with \"address\".
2. Explain the cause in one or two sentences:
   - listener: another program is already serving there; name it (and its unit or container).
   - time_wait: only TIME_WAIT sockets remain from connections that just closed; the server \
binds if it sets SO_REUSEADDR, otherwise it must wait up to 60 s.
   - in_use: an outgoing connection or a UDP socket holds the port.
   - reuseport_group: listeners share the port with SO_REUSEPORT; only a process of the uid \
named in detail that also sets SO_REUSEPORT can join.
   - notes: privileged means the server needs root or CAP_NET_BIND_SERVICE; ephemeral_range \
means outgoing connections may take the port first, so pick another for a server.
3. Recommend what to do, most conservative first: use one of data.suggested_ports; stop or \
reconfigure the holding service through its own tools (systemctl stop <unit>, docker stop \
<container>); set SO_REUSEADDR in the server. Only if the user asks to free the port, and \
the server offers the free_port tool, call it with dry_run (the default) first and show the \
user exactly which processes it would signal before anything is done.
4. If the holder may be a container on this machine that the listing does not show, call \
check_port_occupation again with \"scope\": \"all\".

Answer with the cause, the evidence (the holders and the bind verdict), and the \
recommendation."
    );
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(format!("Diagnose {proto} port {port} on {on}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_and_named() {
        assert!(
            diagnose_port(None, None, None)
                .unwrap_err()
                .0
                .contains("'port'")
        );
        assert!(
            diagnose_port(Some("0"), None, None)
                .unwrap_err()
                .0
                .contains("'port'")
        );
        assert!(diagnose_port(Some("70000"), None, None).is_err());
        let e = diagnose_port(Some("80"), Some("sctp"), None).unwrap_err();
        assert!(e.0.contains("'proto'") && e.0.contains("tcp, udp"), "{e:?}");
        let ok = diagnose_port(Some("8080"), Some("UDP"), Some("web-1")).unwrap();
        let text = serde_json::to_string(&ok).unwrap();
        assert!(
            text.contains(r#"\"port\": 8080, \"proto\": \"udp\", \"host\": \"web-1\""#),
            "{text}"
        );
    }
}
