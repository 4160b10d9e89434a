//! Many hosts in one call: which hosts a `host` argument selects, and running one query on
//! each of them with bounded concurrency.
//!
//! A `host` argument is a comma-separated list (a JSON array of strings is read the same way)
//! of **names** (`web-1`, or a configured address), **globs** over names (`web-*`, `db-?`,
//! `web-[12]`) and **groups** (`@prod`, the `groups` of `[[remote_hosts]]` entries). The
//! selection keeps the order of first mention and never lists a host twice. A glob or group
//! that selects nothing is the caller's error (with the names that exist); an explicit name
//! that is not configured becomes that host's own error in the answer, so one typo never hides
//! the other hosts' answers.
//!
//! [`fan_out`] runs the per-host work with at most `max_parallel` hosts in flight, reports
//! each finished host as it finishes (for progress notifications), and returns the outcomes in
//! selection order. Dropping its future (a cancelled request) drops every host's work, which
//! stops their remote commands.
//!
//! This module knows neither rmcp nor SSH.

use futures::StreamExt as _;

use crate::error::InputError;

pub(crate) use crate::limits::MAX_HOSTS_PER_CALL;

/// One item of a `host` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// A name or configured address, matched exactly (`localhost` and friends included).
    Name(String),
    /// A glob over configured names.
    Glob(String),
    /// `@group`: the entries whose `groups` hold it.
    Group(String),
}

/// What a selection needs to know about one configured host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    pub(crate) name: &'a str,
    pub(crate) groups: &'a [String],
}

/// Whether `text` asks for several hosts (a list, a glob or a group) rather than one.
pub(crate) fn is_multi(text: &str) -> bool {
    let t = text.trim();
    t.contains(',') || t.starts_with('@') || t.contains(['*', '?', '['])
}

/// Splits a `host` argument into patterns.
pub(crate) fn parse_patterns<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<HostPattern>, InputError> {
    let mut out = Vec::new();
    for item in items {
        for token in item.split(',') {
            let token = token.trim();
            if token.is_empty() {
                continue;
            }
            if token.len() > 253 || token.chars().any(|c| c.is_control()) {
                return Err(host_error(
                    token,
                    "must be a configured host name, a glob over names (web-*) or a group (@prod), each at most 253 characters",
                ));
            }
            let pattern = if let Some(group) = token.strip_prefix('@') {
                if group.is_empty() {
                    return Err(host_error(token, "names a group after `@` (e.g. @prod)"));
                }
                HostPattern::Group(group.to_string())
            } else if token.contains(['*', '?', '[']) {
                if globset::Glob::new(token).is_err() {
                    return Err(host_error(
                        token,
                        "is not a valid glob (use * and ?, e.g. web-*)",
                    ));
                }
                HostPattern::Glob(token.to_string())
            } else {
                HostPattern::Name(token.to_string())
            };
            if !out.contains(&pattern) {
                out.push(pattern);
            }
        }
    }
    if out.is_empty() {
        return Err(host_error("", "must name at least one host"));
    }
    Ok(out)
}

fn host_error(given: &str, allowed: &str) -> InputError {
    InputError::new("host", format!("\"{}\"", given.escape_debug()), allowed)
}

/// The names a list of patterns selects, in order of first mention. Explicit names are kept
/// as given (configured or not: the caller reports unknown ones per host).
pub(crate) fn select(
    patterns: &[HostPattern],
    candidates: &[Candidate<'_>],
) -> Result<Vec<String>, InputError> {
    let mut names: Vec<String> = Vec::new();
    let push = |n: &str, names: &mut Vec<String>| {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    };
    for pattern in patterns {
        match pattern {
            HostPattern::Name(n) => push(n, &mut names),
            HostPattern::Glob(g) => {
                let matcher = globset::Glob::new(g)
                    .map_err(|_| host_error(g, "is not a valid glob"))?
                    .compile_matcher();
                let hits: Vec<&str> = candidates
                    .iter()
                    .map(|c| c.name)
                    .filter(|n| matcher.is_match(n))
                    .collect();
                if hits.is_empty() {
                    return Err(host_error(
                        g,
                        &format!(
                            "matches no configured host; configured hosts: {}",
                            list(candidates.iter().map(|c| c.name))
                        ),
                    ));
                }
                for h in hits {
                    push(h, &mut names);
                }
            }
            HostPattern::Group(g) => {
                let hits: Vec<&str> = candidates
                    .iter()
                    .filter(|c| c.groups.iter().any(|x| x == g))
                    .map(|c| c.name)
                    .collect();
                if hits.is_empty() {
                    let mut groups: Vec<&str> = candidates
                        .iter()
                        .flat_map(|c| c.groups.iter().map(String::as_str))
                        .collect();
                    groups.sort_unstable();
                    groups.dedup();
                    let known = if groups.is_empty() {
                        "none are configured (add groups = [\"prod\"] to [[remote_hosts]] entries)"
                            .to_string()
                    } else {
                        format!(
                            "configured groups: {}",
                            list(groups.iter().map(|g| format!("@{g}")))
                        )
                    };
                    return Err(host_error(
                        &format!("@{g}"),
                        &format!("names no group; {known}"),
                    ));
                }
                for h in hits {
                    push(h, &mut names);
                }
            }
        }
        if names.len() > MAX_HOSTS_PER_CALL {
            return Err(host_error(
                &pattern_text(pattern),
                &format!("selects more than {MAX_HOSTS_PER_CALL} hosts; narrow the selection"),
            ));
        }
    }
    Ok(names)
}

fn pattern_text(p: &HostPattern) -> String {
    match p {
        HostPattern::Name(n) | HostPattern::Glob(n) => n.clone(),
        HostPattern::Group(g) => format!("@{g}"),
    }
}

/// The first 20 items, comma-separated, with "…" when there are more.
fn list<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let items: Vec<String> = items.map(|s| s.as_ref().to_string()).collect();
    if items.is_empty() {
        return "(none)".into();
    }
    let mut text = items
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 20 {
        text.push_str(&format!(", … ({} in all)", items.len()));
    }
    text
}

/// Runs `work` for every name with at most `max_parallel` in flight. `finished(index, name,
/// &result)` is called as each host finishes; the results come back in the order of `names`.
pub(crate) async fn fan_out<T, F, Fut>(
    names: &[String],
    max_parallel: usize,
    work: F,
    mut finished: impl FnMut(usize, &str, &T),
) -> Vec<T>
where
    F: Fn(usize, String) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut slots: Vec<Option<T>> = (0..names.len()).map(|_| None).collect();
    let mut stream = futures::stream::iter(names.iter().cloned().enumerate())
        .map(|(i, name)| {
            let fut = work(i, name);
            async move { (i, fut.await) }
        })
        .buffer_unordered(max_parallel.max(1));
    while let Some((i, result)) = stream.next().await {
        if let Some(name) = names.get(i) {
            finished(i, name, &result);
        }
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(result);
        }
    }
    slots.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn candidates(groups: &[Vec<String>]) -> Vec<Candidate<'_>> {
        const NAMES: [&str; 5] = ["web-1", "web-2", "web-3", "db-1", "bastion"];
        NAMES
            .iter()
            .zip(groups)
            .map(|(n, g)| Candidate { name: n, groups: g })
            .collect()
    }

    #[test]
    fn lists_globs_and_groups() {
        let groups = vec![
            vec!["prod".to_string(), "web".to_string()],
            vec!["web".to_string()],
            vec![],
            vec!["prod".to_string()],
            vec![],
        ];
        let c = candidates(&groups);
        let sel = |s: &str| select(&parse_patterns([s]).unwrap(), &c);
        assert_eq!(sel("web-*").unwrap(), ["web-1", "web-2", "web-3"]);
        assert_eq!(sel("@prod").unwrap(), ["web-1", "db-1"]);
        assert_eq!(
            sel("db-1, web-?, @prod").unwrap(),
            ["db-1", "web-1", "web-2", "web-3"]
        );
        // Explicit names are kept, even unknown ones (reported per host by the caller).
        assert_eq!(sel("web-2,nope").unwrap(), ["web-2", "nope"]);
        let e = sel("app-*").unwrap_err().to_string();
        assert!(
            e.contains(
                "Parameter 'host' matches no configured host; configured hosts: web-1, web-2"
            ),
            "{e}"
        );
        let e = sel("@dev").unwrap_err().to_string();
        assert!(
            e.contains("names no group; configured groups: @prod, @web"),
            "{e}"
        );
        assert!(parse_patterns([" , "]).is_err());
        assert!(parse_patterns(["@"]).is_err());
        assert!(is_multi("web-*") && is_multi("a,b") && is_multi("@prod") && !is_multi("web-1"));
    }

    #[tokio::test]
    async fn fan_out_bounds_concurrency_and_keeps_order() {
        let names: Vec<String> = (0..7).map(|i| format!("h{i}")).collect();
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let mut order = Vec::new();
        let results = fan_out(
            &names,
            3,
            |i, name| {
                let running = &running;
                let peak = &peak;
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    // Later hosts finish first.
                    tokio::time::sleep(Duration::from_millis(5 * (7 - i as u64))).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    name
                }
            },
            |i, _, _| order.push(i),
        )
        .await;
        assert_eq!(results, names);
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(order.len(), 7);
    }
}
