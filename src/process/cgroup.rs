//! `/proc/<pid>/cgroup` → systemd unit and container. Pure: text in, names out.
//!
//! The file has one line per hierarchy, `ID:CONTROLLERS:PATH` (cgroups(7)): `0::PATH` for the
//! unified (v2) hierarchy, `N:memory:PATH`, `N:name=systemd:PATH`, ... for v1 ones; a hybrid
//! machine has both. The path may itself contain `:` (the `slice:prefix:id` form below), so a
//! line is split at its first two colons only.
//!
//! **Unit.** As `ps -o unit` (systemd's `cg_path_get_unit`): the path systemd tracks processes
//! in — the `name=systemd` v1 line on a legacy or hybrid machine, else the `0::` line — with
//! leading `*.slice` components skipped; the next component, when it is a unit name, is the
//! unit (`system.slice/nginx.service` → `nginx.service`; a user manager's processes show
//! `user@1000.service`, as `ps` does).
//!
//! **Container.** The runtimes name their cgroups as follows (each layout has a fixture
//! under `tests/fixtures/cgroup/`, with where it is documented and where the text was captured):
//! - docker, cgroupfs driver: `/docker/<64 hex>`; systemd driver:
//!   `/system.slice/docker-<64 hex>.scope` (Docker's "Runtime metrics" documentation).
//! - podman: `/machine.slice/libpod-<64 hex>.scope` (rootful, systemd), under
//!   `user@<uid>.service/user.slice/` rootless, optionally with a `/container` leaf;
//!   `/libpod_parent/libpod-<64 hex>` with cgroupfs (podman-run(1), `--cgroup-parent`).
//!   `libpod-conmon-…` is podman's monitor process, not the container.
//! - kubernetes: any container under a `kubepods` cgroup — cgroupfs:
//!   `/kubepods/<qos>/pod<uid>/<64 hex>`; systemd: `kubepods.slice/…/kubepods-<qos>-pod<uid>.slice/
//!   {cri-containerd,crio,docker}-<64 hex>.scope` (Kubernetes "Configuring a cgroup driver").
//! - containerd outside kubernetes: `cri-containerd-<id>.scope`, nerdctl's
//!   `nerdctl-<id>.scope` (runc's `slice:prefix:name` form, runc `docs/systemd.md`), and
//!   containerd's default `/<namespace>/<64 hex>` (containerd `oci/spec.go`).
//! - The `slice:prefix:id` form itself, as runc's systemd driver writes it into v1 paths
//!   on some hosts (`kubepods-besteffort-pod….slice:cri-containerd:<id>`).
//! - lxc: `/lxc/<name>` (LXC < 3.1), `/lxc.payload/<name>` (3.1, 3.2), `/lxc.payload.<name>`
//!   (4.0 and LXD; lxc.container.conf(5), `lxc.cgroup.dir`). `lxc.monitor…` is the host-side
//!   monitor, not the container.
//!
//! A path naming containers inside containers (docker in docker, a kind node) gives the
//! innermost one; the runtime is `kubernetes` when a `kubepods` component comes before it.
//! Nothing here guesses from a name alone: an unknown layout gives no container.

use std::sync::Arc;

use crate::model::{Container, Runtime};

/// What a `/proc/<pid>/cgroup` text tells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupInfo {
    pub unit: Option<String>,
    pub container: Option<Container>,
}

/// What a cgroup path names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupNames {
    /// The path below the cgroup2 mount (`/system.slice/nginx.service`).
    pub path: Arc<str>,
    pub unit: Option<Arc<str>>,
    pub container: Option<Container>,
}

impl CgroupNames {
    pub fn of_path(path: &str) -> CgroupNames {
        CgroupNames {
            path: Arc::from(path),
            unit: unit_of(path).map(Arc::from),
            container: container_of(path),
        }
    }
}

/// Reads a `/proc/<pid>/cgroup` text. Lines that do not have the `ID:CONTROLLERS:PATH` shape
/// are ignored (the file is the kernel's, so there are none in practice).
pub fn parse(text: &str) -> CgroupInfo {
    let mut unified: Option<&str> = None;
    let mut systemd: Option<&str> = None;
    let mut others: Vec<&str> = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            unified = Some(path);
        } else if controllers.split(',').any(|c| c == "name=systemd") {
            systemd = Some(path);
        } else {
            others.push(path);
        }
    }
    // systemd tracks processes in its named v1 hierarchy when there is one; a process moved
    // only in the unified hierarchy (by hand, or a v2-only tool) still says where it is there.
    let tracked = match (systemd, unified) {
        (Some(s), _) if s != "/" => Some(s),
        (_, Some(u)) => Some(u),
        (s, None) => s,
    };
    let unit = tracked.and_then(unit_of).map(str::to_string);
    let container = systemd
        .into_iter()
        .chain(unified)
        .chain(others)
        .find_map(container_of);
    CgroupInfo { unit, container }
}

/// The unit a cgroup path belongs to, as systemd's `cg_path_get_unit` finds it.
pub(crate) fn unit_of(path: &str) -> Option<&str> {
    let mut components = path.split('/').filter(|c| !c.is_empty());
    let first = components.find(|c| !c.ends_with(".slice"))?;
    // systemd escapes a component that would clash with a controller file by prefixing `_`.
    let unit = first.strip_prefix('_').unwrap_or(first);
    is_unit_name(unit).then_some(unit)
}

/// Unit types that own processes (the ones that get a cgroup of their own).
const UNIT_SUFFIXES: [&str; 4] = [".service", ".scope", ".socket", ".mount"];

fn is_unit_name(name: &str) -> bool {
    UNIT_SUFFIXES.iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|stem| !stem.is_empty() && !stem.contains(['/', ':']))
    })
}

/// The innermost container a cgroup path names.
pub(crate) fn container_of(path: &str) -> Option<Container> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut found = None;
    for (i, &component) in components.iter().enumerate() {
        let parent = i.checked_sub(1).map(|p| components[p]);
        let in_kubepods = components[..i].iter().any(|c| c.contains("kubepods"));
        if let Some(c) = match_component(component, parent, i, &components, in_kubepods) {
            found = Some(c);
        }
    }
    found
}

fn match_component(
    component: &str,
    parent: Option<&str>,
    depth: usize,
    all: &[&str],
    in_kubepods: bool,
) -> Option<Container> {
    let k8s_or = |runtime| {
        if in_kubepods {
            Runtime::Kubernetes
        } else {
            runtime
        }
    };
    // runc's systemd driver form, seen literally in v1 paths: `<slice>:<prefix>:<id>`.
    if let [slice, prefix, id] = component.splitn(3, ':').collect::<Vec<_>>()[..] {
        let in_kubepods = in_kubepods || slice.contains("kubepods");
        let runtime = runtime_for_prefix(prefix)?;
        let runtime = if in_kubepods {
            Runtime::Kubernetes
        } else {
            runtime
        };
        return hex_id(id).map(|id| Container { runtime, id });
    }
    // `<prefix>-<id>.scope`, the systemd drivers' scope units.
    if let Some(stem) = component.strip_suffix(".scope")
        && let Some((prefix, id)) = stem.rsplit_once('-')
        && let Some(runtime) = runtime_for_prefix(prefix)
    {
        return hex_id(id).map(|id| Container {
            runtime: k8s_or(runtime),
            id,
        });
    }
    // podman with cgroupfs: `libpod_parent/libpod-<id>`.
    if let Some(id) = component.strip_prefix("libpod-")
        && let Some(id) = hex_id(id)
    {
        return Some(Container {
            runtime: Runtime::Podman,
            id,
        });
    }
    // lxc 4 and LXD: `lxc.payload.<name>`.
    if let Some(name) = component.strip_prefix("lxc.payload.")
        && !name.is_empty()
    {
        return Some(lxc(name));
    }
    // lxc before 4: `lxc/<name>` and `lxc.payload/<name>`, at the top.
    if depth == 1 && matches!(parent, Some("lxc" | "lxc.payload")) && !component.starts_with('.') {
        return Some(lxc(component));
    }
    // A bare 64-hex leaf: docker (`/docker/<id>`), kubernetes (`/kubepods/…/pod<uid>/<id>`),
    // containerd's default `/<namespace>/<id>`.
    let id = hex_id(component)?;
    if in_kubepods && parent.is_some_and(|p| p.starts_with("pod") || p.contains("-pod")) {
        return Some(Container {
            runtime: Runtime::Kubernetes,
            id,
        });
    }
    match parent {
        Some("docker") => Some(Container {
            runtime: k8s_or(Runtime::Docker),
            id,
        }),
        Some(_) if depth == 1 && all.len() == 2 && !in_kubepods => Some(Container {
            runtime: Runtime::Containerd,
            id,
        }),
        _ => None,
    }
}

fn runtime_for_prefix(prefix: &str) -> Option<Runtime> {
    Some(match prefix {
        "docker" => Runtime::Docker,
        "libpod" => Runtime::Podman,
        "cri-containerd" | "nerdctl" => Runtime::Containerd,
        "crio" => Runtime::Kubernetes,
        _ => return None,
    })
}

fn lxc(name: &str) -> Container {
    Container {
        runtime: Runtime::Lxc,
        id: Arc::from(name),
    }
}

/// A full container id (64 hex digits) to its 12-digit short form.
fn hex_id(text: &str) -> Option<Arc<str>> {
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Arc::from(text[..12].to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn c(path: &str) -> Option<(Runtime, String)> {
        container_of(path).map(|c| (c.runtime, c.id.to_string()))
    }

    #[test]
    fn units_follow_systemd() {
        assert_eq!(
            unit_of("/system.slice/nginx.service"),
            Some("nginx.service")
        );
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/session-3.scope"),
            Some("session-3.scope")
        );
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service"),
            Some("user@1000.service")
        );
        assert_eq!(
            unit_of("/system.slice/nginx.service/workers"),
            Some("nginx.service")
        );
        assert_eq!(unit_of("/"), None);
        assert_eq!(unit_of("/docker/abc"), None);
        assert_eq!(unit_of("/system.slice"), None);
        assert_eq!(unit_of("/init.scope"), Some("init.scope"));
        assert_eq!(unit_of("/system.slice/.service"), None);
    }

    #[test]
    fn prefixes_and_contexts() {
        let scope = |p: &str| format!("/system.slice/{p}-{ID}.scope");
        assert_eq!(
            c(&scope("docker")),
            Some((Runtime::Docker, "0123456789ab".into()))
        );
        assert_eq!(c(&scope("libpod")).unwrap().0, Runtime::Podman);
        assert_eq!(c(&scope("nerdctl")).unwrap().0, Runtime::Containerd);
        assert_eq!(c(&scope("cri-containerd")).unwrap().0, Runtime::Containerd);
        assert_eq!(c(&scope("libpod-conmon")), None, "podman's monitor");
        assert_eq!(c(&scope("crio-conmon")), None, "CRI-O's monitor");
        assert_eq!(
            c(&format!("/system.slice/docker-{}.scope", &ID[..60])),
            None
        );
        assert_eq!(
            c(&format!(
                "/kubepods.slice/kubepods-pod1.slice/docker-{ID}.scope"
            ))
            .unwrap()
            .0,
            Runtime::Kubernetes
        );
        assert_eq!(c(&format!("/default/{ID}")).unwrap().0, Runtime::Containerd);
        assert_eq!(
            c(&format!("/a/b/{ID}")),
            None,
            "no guessing from a deep hex leaf"
        );
        assert_eq!(c("/lxc.monitor.web"), None);
        assert_eq!(
            c("/lxc.payload.web/system.slice/nginx.service"),
            Some((Runtime::Lxc, "web".into()))
        );
        assert_eq!(c("/lxc/web"), Some((Runtime::Lxc, "web".into())));
        assert_eq!(c("/lxc/.lxc"), None);
        assert_eq!(c("/system.slice/docker.service"), None);
        assert_eq!(c("/"), None);
        // Upper-case hex is accepted and shown lower-case.
        assert_eq!(
            c(&format!("/docker/{}", ID.to_uppercase())).unwrap().1,
            "0123456789ab"
        );
    }

    #[test]
    fn lines_with_colons_in_the_path_and_junk() {
        let text =
            format!("garbage\n\n5:pids:/kubepods-besteffort-pod1_2.slice:cri-containerd:{ID}\n");
        let info = parse(&text);
        assert_eq!(
            info.container.map(|c| (c.runtime, c.id.to_string())),
            Some((Runtime::Kubernetes, "0123456789ab".into()))
        );
        assert_eq!(info.unit, None);
        assert_eq!(parse(""), CgroupInfo::default());
    }
}
