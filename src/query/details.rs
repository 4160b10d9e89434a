//! What rows and summaries say about a socket's owner and place: the owning process's details,
//! its container, the network namespace. Shared by the rows (`output`) and the summaries
//! (`summary`), which both build on it.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde::ser::SerializeStruct;

use crate::model::{Netns, ProcessInfo};

/// What the process table says about an owning process; each field is left out when unknown.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Default)]
pub(crate) struct OwnerDetails {
    /// The user the process runs as (effective uid): its name, else the uid as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<Arc<str>>,
    /// The effective user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uid: Option<u32>,
    /// The command line, arguments joined by spaces, at most 256 characters (a cut one ends
    /// with `…`); `[name]` for a kernel thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) command: Option<Arc<str>>,
    /// The systemd unit the process runs in, as `ps -o unit` shows it (`nginx.service`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unit: Option<Arc<str>>,
    /// The container the process runs in, from its cgroup path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) container: Option<ContainerRef>,
}

impl OwnerDetails {
    pub(crate) fn of(info: &ProcessInfo) -> OwnerDetails {
        OwnerDetails {
            user: info.user.clone(),
            uid: info.uid,
            command: info.command.clone(),
            unit: info.unit.clone(),
            container: info.container.as_ref().map(|c| ContainerRef {
                runtime: c.runtime.as_str(),
                id: c.id.clone(),
            }),
        }
    }

    /// Writes the fields that are known into a struct being serialized.
    pub(crate) fn write_fields<S: SerializeStruct>(&self, st: &mut S) -> Result<(), S::Error> {
        if let Some(user) = &self.user {
            st.serialize_field("user", user)?;
        }
        if let Some(uid) = &self.uid {
            st.serialize_field("uid", uid)?;
        }
        if let Some(command) = &self.command {
            st.serialize_field("command", command)?;
        }
        if let Some(unit) = &self.unit {
            st.serialize_field("unit", unit)?;
        }
        if let Some(container) = &self.container {
            st.serialize_field("container", container)?;
        }
        Ok(())
    }
}

/// A container, as its cgroup path names it.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct ContainerRef {
    /// `docker`, `podman`, `containerd`, `kubernetes` or `lxc`.
    #[schemars(extend("enum" = ["docker", "podman", "containerd", "kubernetes", "lxc"]))]
    pub(crate) runtime: &'static str,
    /// The short id (12 hex digits, as `docker ps` shows it), or the container's name for lxc.
    pub(crate) id: Arc<str>,
}

/// A network namespace.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct NetnsRef {
    /// Its nsfs inode (what `ls -L -i /proc/<pid>/ns/net` shows), unique on the machine.
    pub(crate) inode: u64,
    /// Its name under /run/netns (`ip netns`), else `runtime:id` of the container holding it;
    /// null when neither.
    pub(crate) name: Option<Arc<str>>,
}

impl NetnsRef {
    pub(crate) fn of(netns: &Netns) -> NetnsRef {
        NetnsRef {
            inode: netns.inode,
            name: netns.name.clone(),
        }
    }
}
