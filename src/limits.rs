//! Limits shared by the configuration (which validates against them) and the fan-out over
//! hosts (which applies them), so that neither names the other.

/// Hosts one call queries at once unless `[ssh] max_parallel` says otherwise.
pub(crate) const DEFAULT_MAX_PARALLEL: usize = 16;

/// At most this many hosts in one call (a host list, glob or group); `[ssh] max_parallel` is
/// at most this too.
pub(crate) const MAX_HOSTS_PER_CALL: usize = 256;
