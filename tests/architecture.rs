//! The code's dependencies point one way. Read from the source text: every `crate::a::b`
//! path and every `super::x` naming a sibling module, outside comments and `#[cfg(test)]`
//! modules, is an arrow from the file that writes it.
//! - Between top-level modules the arrows form no circle, and none points up the layers
//!   ARCHITECTURE.md describes (faces over the core, the core over its sources).
//! - Between the files of one directory (siblings; the directory's `mod.rs` or namesake file
//!   is their façade and not counted) the arrows form no circle either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, lowest first; a module may use only modules of lower layers.
const LAYERS: &[&[&str]] = &[
    &["model", "text_file", "child", "limits"],
    &["config"],
    &["ssh"],
    &["error"],
    &["parse", "process", "owners"],
    &["fleet"],
    &["source"],
    &["query"],
    &["watch", "netstat_tool"],
    &["metrics"],
    &["stdio"],
    &["inflight", "http"],
    &["mcp"],
    &["cli"],
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code: test modules and comments left out.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers following `prefix` in `text` (`crate::` → `query`, `watch`, ...).
fn after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let tail = &rest[at + prefix.len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if end > 0 {
            found.push(&tail[..end]);
        }
        rest = &tail[end..];
    }
    found
}

/// A circle in `edges`, if any, as the modules along it.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(found) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(found);
        }
    }
    None
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let layer = |module: &str| LAYERS.iter().position(|l| l.contains(&module));
    let mut upward = Vec::new();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Sibling arrows, by directory.
    let mut siblings: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let parts: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        let module = parts[0].clone();
        let text = code(file);
        let Some(own) = layer(&module) else {
            panic!(
                "src/{} belongs to no layer: add {module} to LAYERS",
                rel.display()
            );
        };
        for used in after(&text, "crate::") {
            if used == module || layer(used).is_none() {
                continue;
            }
            top.entry(module.clone())
                .or_default()
                .insert(used.to_string());
            if layer(used).is_some_and(|l| l >= own) {
                upward.push(format!("src/{} uses crate::{used}", rel.display()));
            }
        }
        // Siblings: files of one directory, the façade (`mod.rs`) left out.
        let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let name = parts.last().cloned().unwrap_or_default();
        if name == "mod" {
            continue;
        }
        let here = src.join(&dir);
        let is_sibling = |m: &str| m != name && (here.join(format!("{m}.rs")).exists());
        let mut uses: BTreeSet<String> = after(&text, "super::")
            .into_iter()
            .filter(|m| is_sibling(m))
            .map(str::to_string)
            .collect();
        // `crate::a::b` names sibling `b` of a file in `src/a/`.
        let prefix = format!(
            "crate::{}::",
            dir.iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("::")
        );
        if !dir.as_os_str().is_empty() {
            uses.extend(
                after(&text, &prefix)
                    .into_iter()
                    .filter(|m| is_sibling(m))
                    .map(str::to_string),
            );
        }
        siblings
            .entry(dir)
            .or_default()
            .entry(name)
            .or_default()
            .extend(uses);
    }
    for (dir, edges) in &siblings {
        assert_eq!(
            circle(edges),
            None,
            "a circle between the files of src/{}",
            dir.display()
        );
    }
    assert_eq!(circle(&top), None, "a circle between top-level modules");
    assert!(
        upward.is_empty(),
        "arrows up the layers (ARCHITECTURE.md):\n{}",
        upward.join("\n")
    );
}
