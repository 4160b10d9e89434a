//! The `netstat` tool: an allow-list over netstat's arguments, a runner for the
//! local `netstat` binary (no shell, 3 s timeout, killed when the request is dropped), and a
//! native rendering of netstat's columns for machines without the binary.
//!
//! Only `-a -n -t -u -l -p --help` and short flags combined from those letters (`-tulpn`) pass
//! [`NetstatArgs::parse`]; everything else is an [`InputError`] naming the offending argument.
//! This module knows nothing of MCP: the server calls [`NetstatTool::run`] and renders the
//! [`Envelope`] it returns.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::child::ChildError;
use crate::error::{Error, InputError};
use crate::model::{Socket, TcpState, Transport};
use crate::parse::clip;
use crate::parse::render::{RenderOptions, Shown, render_netstat};
use crate::query::{Envelope, HostSpec, OWNER_HINT, Service};
use crate::source::{OwnerCoverage, Want};

/// How long the `netstat` binary may run before it is killed.
pub(crate) const NETSTAT_TIMEOUT: Duration = Duration::from_secs(3);

/// At most this many arguments are accepted (every allowed flag once, with room for repeats).
const MAX_ARGS: usize = 16;

/// At most this many characters per argument.
const MAX_ARG_CHARS: usize = 32;

/// At most this many bytes of output are returned (cut at a line boundary, with a last line
/// saying what was left out); the rest is dropped and `truncated` is set.
pub(crate) const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// The letters that may appear in short flags.
const SHORT_FLAGS: &str = "antulp";

const ARGS_ALLOWED: &str = "may only contain the flags -a, -n, -t, -u, -l, -p and --help, or short \
flags combined from those letters such as -tulpn or -an (no other flags, no operands, no shell \
syntax)";

/// Validated `netstat` arguments: every one of them is on the allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetstatArgs {
    /// The arguments as given (all allowed), passed to the binary unchanged.
    pub(crate) argv: Vec<String>,
    pub(crate) all: bool,
    pub(crate) numeric: bool,
    pub(crate) tcp: bool,
    pub(crate) udp: bool,
    pub(crate) listening: bool,
    pub(crate) programs: bool,
    pub(crate) help: bool,
}

/// Input of the `netstat` tool (the one place it is declared: schema and decoding derive from
/// it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(deny_unknown_fields)]
pub(crate) struct NetstatInput {
    /// netstat arguments, e.g. ["-tulpn"] or ["-a", "-n"]. Allowed: -a -n -t -u -l -p --help,
    /// and short flags combined from those letters; at most 16 arguments of at most 32
    /// characters. Default: none (netstat's plain listing).
    #[schemars(extend(
        "items" = {"type": "string", "pattern": "^(--help|-[antulp]+)$", "maxLength": 32},
        "maxItems" = 16
    ))]
    pub(crate) args: Option<Vec<String>>,
}

impl NetstatInput {
    /// Checks the arguments against the allow-list.
    pub(crate) fn validate(&self) -> Result<NetstatArgs, InputError> {
        NetstatArgs::parse(self.args.as_deref().unwrap_or_default())
    }
}

impl NetstatArgs {
    /// Checks every argument against the allow-list.
    pub(crate) fn parse(args: &[String]) -> Result<NetstatArgs, InputError> {
        if args.len() > MAX_ARGS {
            return Err(InputError::new(
                "args",
                format!("{} arguments", args.len()),
                format!("may hold at most {MAX_ARGS} arguments and {ARGS_ALLOWED}"),
            ));
        }
        let mut out = NetstatArgs {
            argv: args.to_vec(),
            ..NetstatArgs::default()
        };
        for arg in args {
            let refuse = || InputError::new("args", crate::query::quoted(arg), ARGS_ALLOWED);
            if arg.chars().count() > MAX_ARG_CHARS {
                return Err(InputError::new(
                    "args",
                    format!(
                        "an argument of {} characters ('{}')",
                        arg.chars().count(),
                        crate::query::shorten(arg)
                    ),
                    format!(
                        "may hold arguments of at most {MAX_ARG_CHARS} characters and {ARGS_ALLOWED}"
                    ),
                ));
            }
            if arg == "--help" {
                out.help = true;
                continue;
            }
            let letters = arg.strip_prefix('-').ok_or_else(refuse)?;
            if letters.is_empty() || !letters.chars().all(|c| SHORT_FLAGS.contains(c)) {
                return Err(refuse());
            }
            for c in letters.chars() {
                match c {
                    'a' => out.all = true,
                    'n' => out.numeric = true,
                    't' => out.tcp = true,
                    'u' => out.udp = true,
                    'l' => out.listening = true,
                    'p' => out.programs = true,
                    _ => return Err(refuse()),
                }
            }
        }
        Ok(out)
    }

    /// `netstat -tulpn`, for messages.
    pub(crate) fn command_line(&self) -> String {
        let mut line = String::from("netstat");
        for a in &self.argv {
            line.push(' ');
            line.push_str(a);
        }
        line
    }

    /// Which transports the listing covers: netstat lists both when given neither.
    fn transports(&self) -> (bool, bool) {
        if self.tcp || self.udp {
            (self.tcp, self.udp)
        } else {
            (true, true)
        }
    }

    /// Whether netstat would print this socket under these flags (net-tools' rules: `-a` all,
    /// `-l` only listening, neither only non-listening; an unconnected UDP socket counts as
    /// listening).
    fn shows(&self, s: &Socket) -> bool {
        let (tcp, udp) = self.transports();
        let listening = match s.protocol.transport() {
            Transport::Tcp if !tcp => return false,
            Transport::Udp if !udp => return false,
            Transport::Tcp => s.state == Some(TcpState::Listen),
            Transport::Udp => s.state.is_none(),
        };
        self.all || listening == self.listening
    }

    fn listing(&self) -> Shown {
        if self.all {
            Shown::All
        } else if self.listening {
            Shown::Listening
        } else {
            Shown::Connected
        }
    }
}

/// Where the output of the `netstat` tool came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OutputSource {
    /// The local `netstat` binary ran.
    Binary,
    /// No `netstat` binary: the columns were rendered from the native collector.
    Native,
}

/// `data` of the `netstat` tool.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct NetstatData {
    /// The command that was answered, e.g. `netstat -tulpn`.
    pub(crate) command: String,
    /// `binary` when the local netstat ran, `native` when its columns were rendered from the
    /// native socket collector because no netstat binary exists.
    pub(crate) source: OutputSource,
    /// netstat's exit status; null for the native rendering.
    pub(crate) exit_code: Option<i32>,
    /// netstat's standard output (or the native rendering), as text.
    pub(crate) output: String,
    /// netstat's standard error, trimmed (e.g. its warning that some processes could not be
    /// identified without root); empty when there was none.
    pub(crate) stderr: String,
    /// True when `output` was cut at 64 KiB (its last line then says how much was left out).
    pub(crate) truncated: bool,
}

/// Runs the `netstat` tool.
#[derive(Debug, Clone)]
pub(crate) struct NetstatTool {
    program: OsString,
    timeout: Duration,
}

impl Default for NetstatTool {
    fn default() -> Self {
        NetstatTool::new("netstat", NETSTAT_TIMEOUT)
    }
}

impl NetstatTool {
    /// A runner for `program` (looked up in `PATH` when it has no slash) with a timeout.
    pub(crate) fn new(program: impl Into<OsString>, timeout: Duration) -> NetstatTool {
        NetstatTool {
            program: program.into(),
            timeout,
        }
    }

    /// Runs netstat with the validated arguments, or renders its columns natively when there
    /// is no netstat binary. Dropping the future kills a running netstat.
    pub(crate) async fn run(
        &self,
        service: &Service,
        args: &NetstatArgs,
    ) -> Result<Envelope<NetstatData>, Error> {
        let output = match crate::child::run(&self.program, &args.argv, self.timeout).await {
            Ok(output) => output,
            Err(ChildError::NotFound) => {
                tracing::debug!("no netstat binary; rendering natively");
                return native(service, args, "no netstat binary was found").await;
            }
            Err(ChildError::PermissionDenied(e)) => {
                tracing::warn!(cause = %e, "netstat binary not executable; rendering natively");
                return native(service, args, "the netstat binary could not be executed").await;
            }
            Err(ChildError::Spawn(e)) => {
                return Err(Error::Command {
                    program: args.command_line(),
                    status: "not started".into(),
                    stderr: e.to_string(),
                });
            }
            Err(ChildError::Wait(e)) => {
                return Err(Error::Command {
                    program: args.command_line(),
                    status: "failed while running".into(),
                    stderr: e.to_string(),
                });
            }
            Err(ChildError::Timeout(_)) => {
                return Err(Error::CommandTimeout {
                    program: args.command_line(),
                    secs: self.timeout.as_secs().max(1),
                    hint: if args.numeric {
                        ""
                    } else {
                        "; add -n: without it netstat looks up a name for every address and port, which can take seconds"
                    },
                });
            }
        };
        let stderr = clip(String::from_utf8_lossy(&output.stderr).trim(), 1000).to_string();
        if !output.status.success() {
            return Err(Error::Command {
                program: args.command_line(),
                status: output.status.to_string(),
                stderr: clip(&stderr, 1000).to_string(),
            });
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let capped = cap_output(&text);
        let mut message = format!("Ran `{}` on the local host", args.command_line());
        if !args.help {
            let _ = write!(message, ", {} lines of output", capped.total_lines);
        }
        if capped.truncated {
            let _ = write!(message, ". {}", capped.note);
        }
        if args.programs && stderr.contains("processes could be identified") {
            let _ = write!(
                message,
                ". netstat could not identify every process, so some PID/Program cells show '-'; to see them, {OWNER_HINT}"
            );
        }
        Ok(Envelope::ok(
            message,
            NetstatData {
                command: args.command_line(),
                source: OutputSource::Binary,
                exit_code: output.status.code(),
                output: capped.text,
                stderr,
                truncated: capped.truncated,
            },
        ))
    }
}

/// netstat's output within [`MAX_OUTPUT_BYTES`].
struct Capped {
    text: String,
    truncated: bool,
    total_lines: usize,
    /// What was left out and how to narrow the query (also the text's last line).
    note: String,
}

/// Bytes of the answer kept for everything but the output (message, command, stderr, keys).
const ENVELOPE_ROOM: usize = 2 * 1024;

/// How many bytes `text` takes inside a JSON string.
fn json_escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

/// Keeps whole lines of `text` while the answer's text block (the output as a JSON string, plus
/// the rest of the envelope) stays within [`MAX_OUTPUT_BYTES`]; the last line then says how
/// many lines were left out and how to narrow the query.
fn cap_output(text: &str) -> Capped {
    let total_lines = text.lines().count();
    let limit = MAX_OUTPUT_BYTES - ENVELOPE_ROOM;
    if json_escaped_len(text) <= limit {
        return Capped {
            text: text.to_string(),
            truncated: false,
            total_lines,
            note: String::new(),
        };
    }
    // Room for the closing line.
    let limit = limit - 320;
    let mut used = 0;
    let mut end = 0;
    let mut kept_lines = 0;
    for line in text.split_inclusive('\n') {
        let cost = json_escaped_len(line);
        if used + cost > limit {
            break;
        }
        used += cost;
        end += line.len();
        kept_lines += 1;
    }
    let kept = &text[..end];
    let note = format!(
        "The output was cut at {} KiB: {} of {} lines left out. Narrow it with -t, -u or -l (e.g. -tl for TCP listeners), or use query_network_connections (filters, summary, paging) or check_port_occupation",
        MAX_OUTPUT_BYTES / 1024,
        total_lines - kept_lines,
        total_lines
    );
    Capped {
        text: format!("{kept}[{note}]\n"),
        truncated: true,
        total_lines,
        note,
    }
}

const NATIVE_HELP: &str = "usage: netstat [-a] [-n] [-t] [-u] [-l] [-p]

(native rendering: no netstat binary is installed; only these flags are supported)
  -a   all sockets, listening and connected
  -l   only listening sockets
  -n   numeric addresses (always on here)
  -p   add the PID/Program name column
  -t   TCP sockets
  -u   UDP sockets
Neither -t nor -u lists both.
";

/// The `netstat` columns rendered from the native collector.
async fn native(
    service: &Service,
    args: &NetstatArgs,
    why: &str,
) -> Result<Envelope<NetstatData>, Error> {
    let data = |output: String| NetstatData {
        command: args.command_line(),
        source: OutputSource::Native,
        exit_code: None,
        output,
        stderr: String::new(),
        truncated: false,
    };
    if args.help {
        return Ok(Envelope::ok(
            format!("{why}; showing the native rendering's usage"),
            data(NATIVE_HELP.to_string()),
        ));
    }
    let (tcp, udp) = args.transports();
    let want = Want {
        tcp,
        udp,
        owners: args.programs,
        ..Want::all()
    };
    let (_, snapshot) = service.snapshot(&HostSpec::Local, None, want).await?;
    let mut shown: Vec<Socket> = snapshot
        .sockets
        .into_iter()
        .filter(|s| args.shows(s))
        .collect();
    shown.sort_by_key(|s| s.protocol);
    let text = render_netstat(
        &shown,
        &RenderOptions {
            wide: false,
            programs: args.programs,
            listing: args.listing(),
        },
    );
    let capped = cap_output(&text);
    let mut message = format!(
        "{why}, so `{}` was answered by rendering netstat's columns from the native collector: {} sockets (addresses are always numeric",
        args.command_line(),
        shown.len()
    );
    if !args.tcp && !args.udp {
        message.push_str("; UNIX domain sockets are not listed");
    }
    message.push(')');
    if args.programs
        && let OwnerCoverage::Partial { .. } = snapshot.owners
    {
        let _ = write!(
            message,
            ". Some processes could not be inspected, so some PID/Program cells show '-'; to see them, {OWNER_HINT}"
        );
    }
    if capped.truncated {
        let _ = write!(message, ". {}", capped.note);
    }
    let mut d = data(capped.text);
    d.truncated = capped.truncated;
    Ok(Envelope::ok(message, d))
}

/// netstat's output is cut by its own bound (`truncated`), not by rows.
impl crate::query::output::Rows for NetstatData {
    fn row_count(&self) -> usize {
        0
    }
    fn keep_rows(&mut self, _n: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Owner, Protocol};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn parse(args: &[&str]) -> Result<NetstatArgs, InputError> {
        NetstatArgs::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn allowed_flags_alone_and_combined() {
        let a = parse(&["-tulpn"]).unwrap();
        assert!(a.tcp && a.udp && a.listening && a.programs && a.numeric && !a.all && !a.help);
        let a = parse(&["-a", "-n"]).unwrap();
        assert!(a.all && a.numeric && !a.tcp);
        assert!(parse(&["--help"]).unwrap().help);
        assert_eq!(parse(&[]).unwrap(), NetstatArgs::default());
        assert_eq!(parse(&["-an", "-t"]).unwrap().argv, vec!["-an", "-t"]);
    }

    #[test]
    fn refused_arguments_are_named() {
        for bad in [
            "-r", "-x", ";ls", "$(id)", "-", "--", "-tx", "--all", "-W", "tcp", "", "-t;ls",
            "`id`", "-a|sh", "--help=x", "-é",
        ] {
            let err = parse(&["-t", bad]).unwrap_err();
            assert_eq!(err.param, "args");
            assert_eq!(err.given, format!("'{bad}'"), "{bad}");
            let text = err.to_string();
            assert!(text.contains("-tulpn") && text.contains("--help"), "{text}");
        }
        // Control characters are escaped, never echoed raw.
        let err = parse(&["-t\n\u{1b}[2J"]).unwrap_err();
        assert_eq!(err.given, "'-t\\n\\u{1b}[2J'");
    }

    #[test]
    fn too_many_arguments_are_refused() {
        let many = vec!["-t".to_string(); MAX_ARGS + 1];
        assert!(NetstatArgs::parse(&many).is_err());
        let enough = vec!["-t".to_string(); MAX_ARGS];
        assert!(NetstatArgs::parse(&enough).is_ok());
    }

    #[test]
    fn json_arguments_decode_through_the_derived_schema() {
        use crate::query::schema::{decode, input_schema};
        use serde_json::{Value, json};
        let schema = input_schema::<NetstatInput>();
        let run = |v: Value| {
            decode::<NetstatInput>(&schema, v.as_object().unwrap()).and_then(|i| i.validate())
        };
        assert!(run(json!({"args": ["-tl"]})).unwrap().listening);
        assert_eq!(run(json!({})).unwrap(), NetstatArgs::default());
        let e = run(json!({"args": "-t"})).unwrap_err();
        assert_eq!(e.param, "args");
        let e = run(json!({"args": ["-t", 5]})).unwrap_err();
        assert!(e.given.contains('5'), "{e}");
        let e = run(json!({"cmd": "ls"})).unwrap_err();
        assert!(e.to_string().contains("'cmd'"), "{e}");
        // A huge argument is refused without being echoed back.
        let huge = format!("-{}", "t".repeat(100_000));
        let e = run(json!({ "args": [huge] })).unwrap_err();
        assert!(e.to_string().len() < 600, "{}", e.to_string().len());
        assert!(e.to_string().contains("at most 32 characters"), "{e}");
    }

    #[test]
    fn long_output_is_cut_at_a_line_with_a_closing_line() {
        let line =
            "tcp        0      0 127.0.0.1:5000          127.0.0.1:6000          ESTABLISHED\n";
        let text = line.repeat(5000);
        let capped = cap_output(&text);
        assert!(capped.truncated);
        assert!(
            capped.text.len() <= MAX_OUTPUT_BYTES,
            "{}",
            capped.text.len()
        );
        let last = capped.text.lines().last().unwrap();
        assert!(
            last.contains("lines left out") && last.contains("of 5000 lines"),
            "{last}"
        );
        let kept = capped.text.lines().count() - 1;
        assert!(last.contains(&format!("{} of 5000", 5000 - kept)), "{last}");
        assert!(
            capped
                .text
                .lines()
                .rev()
                .skip(1)
                .all(|l| l == line.trim_end())
        );
        let small = cap_output(line);
        assert!(!small.truncated && small.text == line);
    }

    fn sock(protocol: Protocol, port: u16, state: Option<TcpState>, fport: Option<u16>) -> Socket {
        let ip = if protocol.is_ipv6() {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        let mut s = Socket::new(protocol, ip, port, Endpoint { ip, port: fport });
        s.state = state;
        s
    }

    #[test]
    fn selection_follows_net_tools() {
        let listen = sock(Protocol::Tcp, 80, Some(TcpState::Listen), None);
        let estab = sock(Protocol::Tcp6, 80, Some(TcpState::Established), Some(5000));
        let udp_unconnected = sock(Protocol::Udp, 53, None, None);
        let udp_connected = sock(Protocol::Udp, 5353, Some(TcpState::Established), Some(53));
        let all = [&listen, &estab, &udp_unconnected, &udp_connected];
        let shown = |args: &[&str]| -> Vec<u16> {
            let a = parse(args).unwrap();
            all.iter()
                .filter(|s| a.shows(s))
                .map(|s| s.local_port)
                .collect()
        };
        assert_eq!(shown(&["-tl"]), vec![80]);
        assert_eq!(shown(&["-ul"]), vec![53]);
        assert_eq!(shown(&["-l"]), vec![80, 53]);
        assert_eq!(shown(&["-t"]), vec![80]);
        assert_eq!(shown(&[]), vec![80, 5353]);
        assert_eq!(shown(&["-an"]), vec![80, 80, 53, 5353]);
        assert_eq!(shown(&["-ua"]), vec![53, 5353]);
    }

    #[test]
    fn native_rendering_has_netstat_columns() {
        let mut s = sock(Protocol::Tcp, 8080, Some(TcpState::Listen), None);
        s.foreign.ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        s.owners.push(Owner {
            pid: 42,
            program: "nginx".into(),
        });
        let mut mapped = sock(Protocol::Tcp6, 22, Some(TcpState::Established), Some(40000));
        mapped.local_ip = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        let text = render_netstat(
            &[s, mapped],
            &RenderOptions {
                wide: false,
                programs: true,
                listing: Shown::All,
            },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Active Internet connections (servers and established)"
        );
        assert!(lines[1].starts_with("Proto Recv-Q Send-Q Local Address"));
        // net-tools pads the program column to 20 characters, header included.
        assert!(lines[1].ends_with("State       PID/Program name    "));
        assert_eq!(
            lines[2],
            "tcp        0      0 127.0.0.1:8080          0.0.0.0:*               LISTEN      42/nginx            "
        );
        assert!(lines[3].starts_with("tcp6       0      0 10.0.0.1:22             ::1:40000"));
        assert!(lines[3].trim_end().ends_with("ESTABLISHED -"));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("abc", 10), "abc");
    }
}
