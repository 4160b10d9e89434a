//! Limits shared by the configuration (which validates against them or reads them) and the
//! layers that apply them — the fan-out over hosts, the MCP server's actions — so that neither
//! names the other.

/// Hosts one call queries at once unless `[ssh] max_parallel` says otherwise.
pub(crate) const DEFAULT_MAX_PARALLEL: usize = 16;

/// At most this many hosts in one call (a host list, glob or group); `[ssh] max_parallel` is
/// at most this too.
pub(crate) const MAX_HOSTS_PER_CALL: usize = 256;

/// What the operator allows the MCP server to do beyond reading: `--allow-kill` and the
/// config's `[actions]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    /// Offer `free_port` (signal processes, close connections). Off by default.
    pub allow_kill: bool,
    /// Act only after the user confirmed through MCP elicitation; when false, a client
    /// without elicitation is trusted to have had the call approved (default true).
    pub require_elicitation: bool,
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            allow_kill: false,
            require_elicitation: true,
        }
    }
}
