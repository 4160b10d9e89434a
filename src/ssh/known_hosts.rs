//! A small OpenSSH `known_hosts` matcher: plain, hashed (`|1|salt|hash`) and `[host]:port`
//! entries, comma-separated patterns with `*`/`?` wildcards and `!` negation, and the `@revoked`
//! marker (`@cert-authority` lines are skipped: we do not accept host certificates).
//!
//! Written here rather than using `russh::keys::known_hosts` because that one splits on single
//! spaces only, fails the whole file on one unreadable key, and knows neither wildcards nor
//! markers. Pure functions over the file's text; reading and appending the file is the caller's.

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::PublicKey;
use russh::keys::{Algorithm, HashAlg};
use sha1::Sha1;

/// What known_hosts says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    /// A line for this host holds this key.
    Known,
    /// No line names this host.
    Unknown,
    /// Lines name this host, but with other keys: `line` is the first (1-based), `algorithm`
    /// its key type.
    Changed { line: usize, algorithm: String },
    /// The key is marked `@revoked` on `line`.
    Revoked { line: usize },
}

/// The name OpenSSH looks up: `host` on port 22, else `[host]:port`.
pub(crate) fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// A line to append for `host`/`port` holding `key` (plain, not hashed), without newline.
pub(crate) fn entry_line(host: &str, port: u16, key: &PublicKey) -> Option<String> {
    let key_text = key_openssh(key)?;
    Some(format!("{} {key_text}", lookup_name(host, port)))
}

/// `ssh-ed25519 AAAA...` (no comment).
pub(crate) fn key_openssh(key: &PublicKey) -> Option<String> {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh().ok().map(|s| s.trim().to_string())
}

/// `SHA256:...` as `ssh-keygen -l` prints it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

struct Line<'a> {
    number: usize,
    revoked: bool,
    hosts: &'a str,
    key: Option<PublicKey>,
    algorithm: &'a str,
}

fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let mut fields = raw.split_ascii_whitespace();
        let mut first = fields.next()?;
        if first.starts_with('#') {
            return None;
        }
        let mut revoked = false;
        if first.starts_with('@') {
            if first != "@revoked" {
                return None; // @cert-authority and unknown markers
            }
            revoked = true;
            first = fields.next()?;
        }
        let algorithm = fields.next()?;
        let base64 = fields.next()?;
        let key = PublicKey::from_openssh(&format!("{algorithm} {base64}")).ok();
        Some(Line {
            number: i + 1,
            revoked,
            hosts: first,
            key,
            algorithm,
        })
    })
}

/// Checks `key` offered by `host`:`port` against known_hosts text.
pub(crate) fn check(text: &str, host: &str, port: u16, key: &PublicKey) -> KeyCheck {
    let name = lookup_name(host, port);
    let mut known = false;
    let mut changed = None;
    for line in lines(text) {
        let same_key = line
            .key
            .as_ref()
            .is_some_and(|k| k.key_data() == key.key_data());
        if line.revoked {
            // A revoked key is refused whatever host it is listed for.
            if same_key {
                return KeyCheck::Revoked { line: line.number };
            }
            continue;
        }
        if !hosts_match(line.hosts, &name) {
            continue;
        }
        if same_key {
            known = true;
        } else if changed.is_none() {
            changed = Some(KeyCheck::Changed {
                line: line.number,
                algorithm: line.algorithm.to_string(),
            });
        }
    }
    if known {
        KeyCheck::Known
    } else {
        changed.unwrap_or(KeyCheck::Unknown)
    }
}

/// Key algorithms known_hosts holds for this host, in file order, RSA expanded to its
/// signature variants; offered first in key exchange so the server shows the key we know.
pub(crate) fn known_algorithms(text: &str, host: &str, port: u16) -> Vec<Algorithm> {
    let name = lookup_name(host, port);
    let mut algs: Vec<Algorithm> = Vec::new();
    for line in lines(text) {
        if line.revoked || !hosts_match(line.hosts, &name) {
            continue;
        }
        let Some(key) = &line.key else { continue };
        let expanded = match key.algorithm() {
            Algorithm::Rsa { .. } => vec![
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256),
                },
                Algorithm::Rsa { hash: None },
            ],
            other => vec![other],
        };
        for a in expanded {
            if !algs.contains(&a) {
                algs.push(a);
            }
        }
    }
    algs
}

/// Does a comma-separated host pattern list match `name`? A matching negated pattern wins.
fn hosts_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            if hashed_match(hashed, name) {
                matched = true;
            }
        } else if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob(pattern.as_bytes(), name.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// `salt|hash` (base64 each): HMAC-SHA1 of the name keyed by the salt.
fn hashed_match(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `*` and `?` wildcards, ASCII case-insensitive as OpenSSH matches host names. Iterative with
/// one backtrack point, so linear-ish and no recursion on hostile patterns.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn plain_and_port_entries() {
        let text = format!("example.com {ED1}\n[example.com]:2222 {ED2}\n");
        assert_eq!(check(&text, "example.com", 22, &key(ED1)), KeyCheck::Known);
        assert_eq!(
            check(&text, "example.com", 2222, &key(ED2)),
            KeyCheck::Known
        );
        assert_eq!(
            check(&text, "example.com", 2222, &key(ED1)),
            KeyCheck::Changed {
                line: 2,
                algorithm: "ssh-ed25519".into()
            }
        );
        assert_eq!(
            check(&text, "example.com", 2200, &key(ED1)),
            KeyCheck::Unknown
        );
        assert_eq!(check(&text, "other.com", 22, &key(ED1)), KeyCheck::Unknown);
    }

    /// `ssh-keygen -H` output for `example.com` (the hash from the russh test vector) and a
    /// hashed `[localhost]:13265` made the same way.
    #[test]
    fn hashed_entries() {
        let text = format!("|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak= {ED2}\n");
        assert_eq!(check(&text, "example.com", 22, &key(ED2)), KeyCheck::Known);
        assert!(matches!(
            check(&text, "example.com", 22, &key(ED1)),
            KeyCheck::Changed { line: 1, .. }
        ));
        assert_eq!(
            check(&text, "example.org", 22, &key(ED2)),
            KeyCheck::Unknown
        );
        // A mangled hash never matches and never panics.
        let bad = format!("|1|!!!|nuuC5 {ED2}\n|1|onlysalt {ED2}\n");
        assert_eq!(check(&bad, "example.com", 22, &key(ED2)), KeyCheck::Unknown);
    }

    #[test]
    fn comments_tabs_lists_wildcards_negation_markers() {
        let text = format!(
            "# comment\n\n   \nweb1,web2\t{ED1} a comment\n*.corp,!bad.corp {ED2}\n@cert-authority * {ED1}\nbroken-line\nx ssh-ed25519 notbase64\n"
        );
        assert_eq!(check(&text, "web2", 22, &key(ED1)), KeyCheck::Known);
        assert_eq!(check(&text, "db.corp", 22, &key(ED2)), KeyCheck::Known);
        assert_eq!(check(&text, "DB.CORP", 22, &key(ED2)), KeyCheck::Known);
        assert_eq!(check(&text, "bad.corp", 22, &key(ED2)), KeyCheck::Unknown);
        // The @cert-authority line does not make ED1 known for everyone.
        assert_eq!(check(&text, "elsewhere", 22, &key(ED1)), KeyCheck::Unknown);
        // A line whose key cannot be read still counts as a key for that host.
        assert!(matches!(
            check(&text, "x", 22, &key(ED1)),
            KeyCheck::Changed { line: 8, .. }
        ));
        let revoked = format!("@revoked * {ED1}\nweb1 {ED1}\n");
        assert_eq!(
            check(&revoked, "web1", 22, &key(ED1)),
            KeyCheck::Revoked { line: 1 }
        );
    }

    #[test]
    fn known_algorithms_in_file_order() {
        let rsa = concat!(
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCruMupHi2XJxtUeRdPKqxo8tGzJI7A5z+EaUJu2NlEoHnbzgsFEAFl6xWrkNnf6zQtYi/",
            "lPAV+CgCSi/vIe+AOga0Q6VVDV+VasCacIhbI+1bzCoFHz4jlV48XbvFT3T7nGmYJguOmmztZWft0/mHNf0LA3DhJY5/sGgXhHkLWAsi1B5RFGkGIoM7jvoUe9Z9",
            "Ce89P7nnEzE57lFeNN2D3NJODw+NGoDinq3tQ+1RyQnXEbUBdovmVDcQ5CpTqAogqrOKT2epJWgzohpgO/VNw/Ll2BBQzcWwN2hrR1kzOj3qtjQEkM/fnzLhvYzR43",
            "Y0umA3vlwAtCczrnzwyXh0l"
        );
        let text = format!("[h]:2222 {rsa}\n[h]:2222 {ED1}\nh {ED2}\n");
        let algs = known_algorithms(&text, "h", 2222);
        assert_eq!(
            algs,
            vec![
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512)
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256)
                },
                Algorithm::Rsa { hash: None },
                Algorithm::Ed25519
            ]
        );
        assert_eq!(known_algorithms(&text, "h", 22), vec![Algorithm::Ed25519]);
        assert!(known_algorithms(&text, "nope", 22).is_empty());
    }

    #[test]
    fn entry_line_round_trips() {
        let line = entry_line("127.0.0.1", 2022, &key(ED1)).unwrap();
        assert_eq!(line, format!("[127.0.0.1]:2022 {ED1}"));
        assert_eq!(check(&line, "127.0.0.1", 2022, &key(ED1)), KeyCheck::Known);
        assert!(fingerprint(&key(ED1)).starts_with("SHA256:"));
    }

    #[test]
    fn glob_cases() {
        let cases = [
            ("*", "anything", true),
            ("web?", "web1", true),
            ("web?", "web12", false),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
            ("", "x", false),
            ("[h]:22", "[h]:22", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} vs {t}");
        }
    }
}
