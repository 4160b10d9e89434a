//! OpenSSH client configuration (`~/.ssh/config`): `Host` aliases as remote hosts.
//!
//! Opt-in (`[ssh] use_ssh_config = true`, or `ssh_config = "PATH"`). The per-host lookup —
//! which `Host` blocks apply to a name, first value wins, `IdentityFile`s accumulate, negated
//! patterns — is `russh-config`'s. That crate reads one file, one `Keyword value` per line,
//! and only after a first `Host` line, so this module fills exactly what it lacks, in one
//! pass that turns the user's files into a single text russh-config can read:
//!
//! - **`Include`** (globs, `~`, paths relative to the including file's directory, nested to
//!   depth 16 as OpenSSH allows; a missing file is no error, as in OpenSSH). An `Include`
//!   inside a `Host` block splices the file there and re-opens the block after it.
//! - **`Match`** blocks: `Match all` applies to every host; `Match host` / `Match originalhost`
//!   with one pattern list are read as `Host` with those patterns (our names are the aliases,
//!   so both compare with the alias). Any other criterion (`exec`, `user`, `localuser`,
//!   `canonical`, `final`, `tagged`, `localnetwork`, several criteria) cannot be decided without
//!   running or resolving something: such a block never applies, with a warning naming the
//!   file and line. (russh-config would otherwise merge the block's lines into the previous
//!   `Host`.)
//! - **`Keyword=value`** and tab separators, which russh-config does not split.
//! - **Directives before the first `Host`** (they apply to every host in OpenSSH; russh-config
//!   refuses the file).
//! - **`~` and `%` tokens** in `IdentityFile` and `UserKnownHostsFile`, expanded with the
//!   configuration's home directory (`%d %h %p %r %n %u %%`).
//! - **Listing the aliases**: every `Host` pattern without wildcards or negation.
//! - **Validation with file and line**: a bad `Port` is an error (russh-config drops it).
//!
//! `ProxyJump` lists are parsed by [`parse_proxy_jump`]. `ProxyCommand` is reported (an alias
//! that needs it is not offered: we never run a local command from the configuration).
//! This module does no network I/O.

use std::path::{Path, PathBuf};

/// How deeply `Include` may nest (OpenSSH's `READCONF_MAX_DEPTH`).
const MAX_INCLUDE_DEPTH: usize = 16;
/// Largest ssh_config text we read, all includes together.
const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;
/// The longest line read (a `Host` line of hundreds of kilobytes made the glob compiler give
/// up with a panic).
const MAX_LINE_BYTES: usize = 8192;
/// The longest value `%` tokens expand to (PATH_MAX): a `HostName %n%n…` or an
/// `IdentityFile %h%h…` cannot multiply a file's size into gigabytes.
const MAX_EXPANDED_BYTES: usize = 4096;
/// Files read through `Include` at most, counting each time a file is read again.
const MAX_INCLUDED_FILES: usize = 1024;
/// IdentityFiles of one host at most (OpenSSH's `SSH_MAX_IDENTITY_FILES`).
const MAX_IDENTITY_FILES: usize = 100;

/// A problem with an ssh_config file, reported at start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SshConfigError {
    #[error("cannot read ssh_config file {path}: {source}", path = path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ssh_config file {path} line {line}: {problem}", path = path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// Where a `Host` alias was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AliasOrigin {
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
}

/// An ssh_config file with its includes, ready for lookups.
#[derive(Debug, Clone)]
pub(crate) struct SshConfigFile {
    /// The aliases (`Host` patterns without wildcards), in order of first appearance.
    pub(crate) aliases: Vec<(String, AliasOrigin)>,
    /// Things read but not applied (unsupported `Match` criteria, unknown tokens).
    pub(crate) warnings: Vec<String>,
    /// The flattened text handed to russh-config.
    flat: String,
    /// Its `Host` blocks: the patterns of each and where it is in `flat`, so that a lookup
    /// hands russh-config only the blocks that can apply (it compiles every pattern of the
    /// text it gets, per lookup: 1,000 aliases took 52 s to load).
    blocks: Vec<(Vec<String>, std::ops::Range<usize>)>,
    home: Option<PathBuf>,
    local_user: String,
}

/// The `Host` blocks of a flattened text (which starts with a `Host` line).
fn blocks_of(flat: &str) -> Vec<(Vec<String>, std::ops::Range<usize>)> {
    let mut blocks: Vec<(Vec<String>, std::ops::Range<usize>)> = Vec::new();
    let mut at = 0;
    for line in flat.split_inclusive('\n') {
        if let Some(patterns) = line.strip_prefix("Host ") {
            if let Some(last) = blocks.last_mut() {
                last.1.end = at;
            }
            blocks.push((
                patterns
                    .split_ascii_whitespace()
                    .map(str::to_string)
                    .collect(),
                at..flat.len(),
            ));
        }
        at += line.len();
    }
    blocks
}

/// Whether a `Host` line's patterns can match `name`: true for any pattern this cheap matcher
/// does not read exactly (classes, alternations), so the blocks it keeps are a superset of
/// what russh-config's globs match; russh-config then decides, negations included.
fn may_match(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        !p.starts_with('!')
            && (p.contains(['[', '{', '\\']) || wildcard_match(p.as_bytes(), name.as_bytes()))
    })
}

/// `*` (any run) and `?` (one character) matching, iterative with one backtrack point.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// What ssh_config says about one host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The name looked up (the alias).
    pub(crate) alias: String,
    /// `HostName`, else the alias.
    pub(crate) hostname: String,
    pub(crate) user: Option<String>,
    /// `Port`, else 22.
    pub(crate) port: u16,
    /// `IdentityFile`s in order (`~` and tokens expanded).
    pub(crate) identity_files: Vec<PathBuf>,
    /// `ProxyJump`, unparsed (`none` already removed).
    pub(crate) proxy_jump: Option<String>,
    /// `ProxyCommand` is set (we do not run it).
    pub(crate) proxy_command: bool,
    /// `UserKnownHostsFile` (the first file when several are named).
    pub(crate) user_known_hosts_file: Option<PathBuf>,
}

/// One hop of a `ProxyJump` list: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JumpSpec {
    pub(crate) user: Option<String>,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

impl SshConfigFile {
    /// Reads `path` and everything it includes. `home` expands `~` and `%d`; `local_user` is
    /// `%u`.
    pub(crate) fn load(
        path: &Path,
        home: Option<&Path>,
        local_user: &str,
    ) -> Result<SshConfigFile, SshConfigError> {
        let text = crate::text_file::read_text(path, MAX_TEXT_BYTES).map_err(|source| {
            SshConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        SshConfigFile::parse(&text, path, home, local_user)
    }

    /// As [`SshConfigFile::load`] with the top-level text given (`path` names it in messages
    /// and anchors relative `Include`s).
    pub(crate) fn parse(
        text: &str,
        path: &Path,
        home: Option<&Path>,
        local_user: &str,
    ) -> Result<SshConfigFile, SshConfigError> {
        let mut flattener = Flattener {
            home: home.map(Path::to_path_buf),
            out: String::from("Host *\n"),
            included: 0,
            aliases: Vec::new(),
            warnings: Vec::new(),
        };
        flattener.file(text, path, 0, None)?;
        Ok(SshConfigFile {
            aliases: flattener.aliases,
            warnings: flattener.warnings,
            blocks: blocks_of(&flattener.out),
            flat: flattener.out,
            home: home.map(Path::to_path_buf),
            local_user: local_user.to_string(),
        })
    }

    /// The settings that apply to `name` (an alias, or any host name: wildcard blocks apply).
    pub(crate) fn resolve(&self, name: &str) -> Resolved {
        let mut text = String::new();
        for (patterns, range) in &self.blocks {
            if may_match(patterns, name) {
                text.push_str(&self.flat[range.clone()]);
            }
        }
        let config = match russh_config::parse(&text, name) {
            Ok(c) => c,
            // The flattened text always starts with a `Host` line, which is the only thing
            // russh-config refuses; keep a default rather than fail.
            Err(_) => russh_config::Config::default(name),
        };
        let hc = &config.host_config;
        let hostname = hc
            .hostname
            .as_deref()
            .map(|h| self.tokens(h, name, name, None, None))
            .unwrap_or_else(|| name.to_string());
        let port = hc.port.unwrap_or(22);
        let user = hc.user.clone();
        let expand = |p: &Path| -> PathBuf {
            let text = p.to_string_lossy();
            let text = self.tokens(&text, name, &hostname, user.as_deref(), Some(port));
            crate::config::expand_tilde(&text, self.home.as_deref())
        };
        let identity_files = hc
            .identity_file
            .iter()
            .flatten()
            .take(MAX_IDENTITY_FILES)
            .map(|p| expand(p))
            .collect();
        let user_known_hosts_file = hc.user_known_hosts_file.as_deref().and_then(|p| {
            let first = p.to_string_lossy();
            let first = first.split_whitespace().next()?.to_string();
            Some(expand(Path::new(&first)))
        });
        let proxy_jump = hc
            .proxy_jump
            .as_deref()
            .map(str::trim)
            .filter(|j| !j.is_empty() && !j.eq_ignore_ascii_case("none"))
            .map(str::to_string);
        let proxy_command = hc
            .proxy_command
            .as_deref()
            .is_some_and(|c| !c.trim().eq_ignore_ascii_case("none"));
        Resolved {
            alias: name.to_string(),
            hostname,
            user,
            port,
            identity_files,
            proxy_jump,
            proxy_command,
            user_known_hosts_file,
        }
    }

    /// Expands `%` tokens; unknown ones are kept as written. The result is cut at
    /// [`MAX_EXPANDED_BYTES`] (no path or host name is longer; the checks of the value then
    /// refuse it).
    fn tokens(
        &self,
        text: &str,
        alias: &str,
        hostname: &str,
        user: Option<&str>,
        port: Option<u16>,
    ) -> String {
        let mut out = String::with_capacity(text.len().min(MAX_EXPANDED_BYTES));
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if out.len() >= MAX_EXPANDED_BYTES {
                break;
            }
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('d') => match &self.home {
                    Some(h) => out.push_str(&h.to_string_lossy()),
                    None => out.push_str("%d"),
                },
                Some('h') => out.push_str(hostname),
                Some('n') => out.push_str(alias),
                Some('p') => out.push_str(&port.unwrap_or(22).to_string()),
                Some('r') => out.push_str(user.unwrap_or(&self.local_user)),
                Some('u') => out.push_str(&self.local_user),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

/// Parses a `ProxyJump` value: a comma-separated list of hops, outermost first.
pub(crate) fn parse_proxy_jump(value: &str) -> Result<Vec<JumpSpec>, String> {
    let mut hops = Vec::new();
    for raw in value.split(',') {
        let hop = raw.trim();
        if hop.is_empty() {
            return Err(format!("empty hop in ProxyJump `{}`", value.escape_debug()));
        }
        let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
        let (user, rest) = match hop.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => {
                return Err(format!(
                    "empty user in ProxyJump hop `{}`",
                    hop.escape_debug()
                ));
            }
            None => (None, hop),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, after) = inner.split_once(']').ok_or_else(|| {
                format!("no closing `]` in ProxyJump hop `{}`", hop.escape_debug())
            })?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(jump_port(p, hop)?),
                None if after.is_empty() => None,
                None => return Err(format!("unexpected `{}` after `]`", after.escape_debug())),
            };
            (h.to_string(), port)
        } else if rest.matches(':').count() == 1 {
            let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
            (h.to_string(), Some(jump_port(p, hop)?))
        } else {
            (rest.to_string(), None)
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("no host in ProxyJump hop `{}`", hop.escape_debug()));
        }
        hops.push(JumpSpec {
            user,
            host: host.to_string(),
            port,
        });
    }
    Ok(hops)
}

fn jump_port(p: &str, hop: &str) -> Result<u16, String> {
    p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
        format!(
            "port `{}` in ProxyJump hop `{}` is not 1..=65535",
            p.escape_debug(),
            hop.escape_debug()
        )
    })
}

struct Flattener {
    home: Option<PathBuf>,
    out: String,
    /// Files read so far through `Include` (an include DAG re-reads files: 3 per level over
    /// 15 levels is 14 million reads).
    included: usize,
    aliases: Vec<(String, AliasOrigin)>,
    warnings: Vec<String>,
}

impl Flattener {
    /// Appends `text` (from `path`) to the output. `enclosing` is the `Host` line in force
    /// where this file was included, re-emitted after each include.
    fn file(
        &mut self,
        text: &str,
        path: &Path,
        depth: usize,
        enclosing: Option<&str>,
    ) -> Result<(), SshConfigError> {
        let invalid = |line: usize, problem: String| SshConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            problem,
        };
        // The `Host` line currently in force in this file.
        let mut current: Option<String> = enclosing.map(str::to_string);
        for (i, raw) in text.lines().enumerate() {
            let no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() > MAX_LINE_BYTES {
                return Err(invalid(
                    no,
                    format!("the line is longer than {MAX_LINE_BYTES} bytes"),
                ));
            }
            let (keyword, args) = split_directive(line);
            if keyword.is_empty() {
                return Err(invalid(no, format!("`{}` has no keyword", clip(line))));
            }
            let lower = keyword.to_ascii_lowercase();
            match lower.as_str() {
                "host" => {
                    if args.is_empty() {
                        return Err(invalid(no, "Host needs at least one pattern".into()));
                    }
                    for pattern in args.split_whitespace() {
                        let plain = !pattern.contains(['*', '?', '!', '[']);
                        if plain && !self.aliases.iter().any(|(a, _)| a == pattern) {
                            self.aliases.push((
                                pattern.to_string(),
                                AliasOrigin {
                                    file: path.to_path_buf(),
                                    line: no,
                                },
                            ));
                        }
                    }
                    let host_line = format!("Host {args}");
                    self.out.push_str(&host_line);
                    self.out.push('\n');
                    current = Some(host_line);
                }
                "match" => {
                    let host_line = self.match_line(args, path, no);
                    self.out.push_str(&host_line);
                    self.out.push('\n');
                    current = Some(host_line);
                }
                "include" => {
                    if depth + 1 > MAX_INCLUDE_DEPTH {
                        return Err(invalid(
                            no,
                            format!("Include nested deeper than {MAX_INCLUDE_DEPTH} files"),
                        ));
                    }
                    for pattern in args.split_whitespace() {
                        let pattern = unquote(pattern);
                        for file in self.include_paths(pattern, path) {
                            self.included += 1;
                            if self.included > MAX_INCLUDED_FILES {
                                return Err(invalid(
                                    no,
                                    format!(
                                        "more than {MAX_INCLUDED_FILES} files read through Include (files included again and again, by several files or in a loop)"
                                    ),
                                ));
                            }
                            let included = match crate::text_file::read_text(&file, MAX_TEXT_BYTES)
                            {
                                Ok(t) => t,
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                                Err(source) => {
                                    return Err(SshConfigError::Read { path: file, source });
                                }
                            };
                            self.file(&included, &file, depth + 1, current.as_deref())?;
                            if let Some(h) = &current {
                                self.out.push_str(h);
                                self.out.push('\n');
                            }
                        }
                    }
                }
                "port" => {
                    let value = unquote(args.trim());
                    match value.parse::<u16>() {
                        Ok(p) if p != 0 => self.directive("Port", value),
                        _ => {
                            return Err(invalid(
                                no,
                                format!("Port `{}` is not 1..=65535", clip(value)),
                            ));
                        }
                    }
                }
                "identityfile" | "userknownhostsfile" | "certificatefile" => {
                    // russh-config expands `~` with the process's home, not the configuration's.
                    // IdentityFile takes one path (it may hold spaces); UserKnownHostsFile a list.
                    let list: Vec<&str> = if lower == "userknownhostsfile" {
                        args.split_whitespace().collect()
                    } else {
                        vec![args]
                    };
                    let paths: Vec<String> = list
                        .into_iter()
                        .map(|a| {
                            let p = crate::config::expand_tilde(unquote(a), self.home.as_deref());
                            p.to_string_lossy().into_owned()
                        })
                        .collect();
                    self.directive(keyword, &paths.join(" "));
                }
                _ => self.directive(keyword, args),
            }
            if self.out.len() > MAX_TEXT_BYTES {
                return Err(invalid(
                    no,
                    format!("more than {MAX_TEXT_BYTES} bytes of ssh_config text with includes"),
                ));
            }
        }
        Ok(())
    }

    fn directive(&mut self, keyword: &str, args: &str) {
        self.out.push_str(keyword);
        self.out.push(' ');
        self.out.push_str(args);
        self.out.push('\n');
    }

    /// The `Host` line a `Match` line stands for.
    fn match_line(&mut self, args: &str, path: &Path, no: usize) -> String {
        let words: Vec<&str> = args.split_whitespace().collect();
        match words.as_slice() {
            [all] if all.eq_ignore_ascii_case("all") => "Host *".to_string(),
            [criterion, list]
                if criterion.eq_ignore_ascii_case("host")
                    || criterion.eq_ignore_ascii_case("originalhost") =>
            {
                let patterns: Vec<&str> = list.split(',').filter(|p| !p.is_empty()).collect();
                format!("Host {}", patterns.join(" "))
            }
            _ => {
                self.warnings.push(format!(
                    "{} line {no}: `Match {}` is not supported (only `Match all`, `Match host` and `Match originalhost` with one pattern list); its block is ignored",
                    path.display(),
                    clip(args)
                ));
                // A pattern list whose only pattern is negated never matches.
                "Host !*".to_string()
            }
        }
    }

    /// Files an `Include` pattern names, sorted; relative patterns are relative to the
    /// including file's directory.
    fn include_paths(&mut self, pattern: &str, from: &Path) -> Vec<PathBuf> {
        let expanded = crate::config::expand_tilde(pattern, self.home.as_deref());
        let full = if expanded.is_absolute() {
            expanded
        } else {
            from.parent().unwrap_or(Path::new(".")).join(expanded)
        };
        let Some(name) = full.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Vec::new();
        };
        let dir = full.parent().unwrap_or(Path::new("/")).to_path_buf();
        if dir.to_string_lossy().contains(['*', '?', '[']) {
            self.warnings.push(format!(
                "{}: Include `{pattern}`: wildcards are supported in the file name only",
                from.display()
            ));
            return Vec::new();
        }
        if !name.contains(['*', '?', '[']) {
            return vec![full];
        }
        let Ok(glob) = globset::Glob::new(&name) else {
            self.warnings.push(format!(
                "{}: Include `{pattern}` is not a valid pattern",
                from.display()
            ));
            return Vec::new();
        };
        let matcher = glob.compile_matcher();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .filter(|e| matcher.is_match(e.file_name()))
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }
}

/// `Keyword value`, `Keyword=value`, `Keyword = value`, tabs: the keyword and the rest.
fn split_directive(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = &line[..end];
    let rest = line[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    (keyword, rest)
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

pub(super) fn clip(s: &str) -> String {
    s.chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SshConfigFile {
        SshConfigFile::parse(
            text,
            Path::new("/home/ops/.ssh/config"),
            Some(Path::new("/home/ops")),
            "ops",
        )
        .unwrap()
    }

    #[test]
    fn aliases_and_first_value_wins() {
        let c = parse(
            "# fleet\nUser everyone\nHost web-1 web-2\n  HostName 10.0.0.1\n  Port=2222\nHost web-*\n\tUser ops\n  IdentityFile ~/.ssh/id_web\nHost *\n  IdentityFile %d/.ssh/id_%r\n  Port 22\n",
        );
        let names: Vec<&str> = c.aliases.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["web-1", "web-2"]);
        assert_eq!(c.aliases[1].1.line, 3);
        let r = c.resolve("web-2");
        assert_eq!(r.hostname, "10.0.0.1");
        assert_eq!(r.port, 2222);
        // A directive before the first Host applies to every host and comes first.
        assert_eq!(r.user.as_deref(), Some("everyone"));
        assert_eq!(
            r.identity_files,
            [
                PathBuf::from("/home/ops/.ssh/id_web"),
                PathBuf::from("/home/ops/.ssh/id_everyone")
            ]
        );
        let other = c.resolve("db");
        assert_eq!(other.hostname, "db");
        assert_eq!(other.port, 22);
    }

    #[test]
    fn match_blocks() {
        let c = parse(
            "Host a\n  HostName 10.0.0.1\nMatch exec \"true\"\n  User root\nMatch originalhost a,b\n  Port 2200\nMatch all\n  User ops\n",
        );
        let r = c.resolve("a");
        // The unsupported Match block is ignored, not merged into `Host a`.
        assert_eq!(r.user.as_deref(), Some("ops"));
        assert_eq!(r.port, 2200);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("line 3"), "{:?}", c.warnings);
        assert!(c.warnings[0].contains("Match exec"), "{:?}", c.warnings);
    }

    #[test]
    fn includes_nest_and_reopen_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("conf.d")).unwrap();
        std::fs::write(d.join("conf.d/10-web"), "Host web-3\n  HostName 10.0.0.3\n").unwrap();
        std::fs::write(
            d.join("conf.d/20-db"),
            "Host db\n  HostName 10.0.0.9\n  Include ../deep\n",
        )
        .unwrap();
        std::fs::write(d.join("deep"), "User deep\n").unwrap();
        std::fs::write(d.join("bastion-opts"), "Port 2022\n").unwrap();
        let main = d.join("config");
        std::fs::write(
            &main,
            "Include conf.d/*\nInclude missing-file\nHost bastion\n  Include bastion-opts\n  User jump\n",
        )
        .unwrap();
        let c = SshConfigFile::load(&main, Some(d), "ops").unwrap();
        let names: Vec<&str> = c.aliases.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["web-3", "db", "bastion"]);
        assert_eq!(c.aliases[0].1.file, d.join("conf.d/10-web"));
        assert_eq!(c.resolve("db").user.as_deref(), Some("deep"));
        let b = c.resolve("bastion");
        assert_eq!(b.port, 2022);
        assert_eq!(b.user.as_deref(), Some("jump"));
    }

    #[test]
    fn the_block_prefilter_keeps_every_block_that_can_match() {
        assert!(wildcard_match(b"web-*", b"web-12"));
        assert!(wildcard_match(b"*", b""));
        assert!(wildcard_match(b"w?b*x", b"web-x"));
        assert!(wildcard_match(b"*.example.com", b"a.b.example.com"));
        assert!(!wildcard_match(b"web-*", b"db-1"));
        assert!(!wildcard_match(b"web", b"web-1"));
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            may_match(&p(&["db", "web-[0-9]"]), "web-1"),
            "classes are kept"
        );
        assert!(
            !may_match(&p(&["!web-1"]), "web-1"),
            "a negation alone matches nothing"
        );
        let flat = "Host *\nUser a\nHost web-*\nPort 2\nHost db\nPort 3\n";
        let blocks = blocks_of(flat);
        assert_eq!(blocks.len(), 3);
        assert_eq!(&flat[blocks[1].1.clone()], "Host web-*\nPort 2\n");
        assert_eq!(&flat[blocks[2].1.clone()], "Host db\nPort 3\n");
    }

    #[test]
    fn include_loops_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config");
        std::fs::write(&main, "Include config\n").unwrap();
        let e = SshConfigFile::load(&main, None, "ops").unwrap_err();
        assert!(e.to_string().contains("nested deeper than 16"), "{e}");
    }

    #[test]
    fn bad_port_names_file_and_line() {
        let e = SshConfigFile::parse("Host a\n Port 99999\n", Path::new("/x/config"), None, "u")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ssh_config file /x/config line 2: Port `99999` is not 1..=65535"
        );
    }

    #[test]
    fn proxy_jump_and_known_hosts() {
        let c = parse(
            "Host inner\n  ProxyJump ops@bastion:2222,[fd00::1]:22,ssh://edge\n  UserKnownHostsFile ~/.ssh/kh_%h /etc/other\n  StrictHostKeyChecking accept-new\nHost direct\n  ProxyJump none\n  ProxyCommand ssh -W %h:%p x\n",
        );
        let r = c.resolve("inner");
        assert_eq!(
            r.user_known_hosts_file,
            Some(PathBuf::from("/home/ops/.ssh/kh_inner"))
        );
        let hops = parse_proxy_jump(r.proxy_jump.as_deref().unwrap()).unwrap();
        assert_eq!(
            hops,
            [
                JumpSpec {
                    user: Some("ops".into()),
                    host: "bastion".into(),
                    port: Some(2222)
                },
                JumpSpec {
                    user: None,
                    host: "fd00::1".into(),
                    port: Some(22)
                },
                JumpSpec {
                    user: None,
                    host: "edge".into(),
                    port: None
                },
            ]
        );
        let d = c.resolve("direct");
        assert_eq!(d.proxy_jump, None);
        assert!(d.proxy_command);
        for bad in ["a,,b", "@x", "x:0", "x:abc", "[::1", ""] {
            assert!(parse_proxy_jump(bad).is_err(), "{bad}");
        }
    }
}
