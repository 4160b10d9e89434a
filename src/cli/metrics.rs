//! `netstat-mcp metrics`: one Prometheus text exposition (0.0.4) of this host, on stdout or
//! written atomically to a file for node_exporter's textfile collector.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::{delivered, print_error, print_text};
use crate::metrics::{DEFAULT_MAX_SERIES, Exporter, Format, MAX_MAX_SERIES, MetricsOptions};
use crate::source::Source;

#[derive(Debug, Args)]
pub struct MetricsOpts {
    /// Write the exposition to FILE (through a temporary file in the same directory, renamed
    /// over it, so a reader never sees half of one) instead of stdout. For node_exporter's
    /// textfile collector, FILE ends in `.prom` inside its --collector.textfile.directory.
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// At most N series per metric family; past it, label sets are summed into
    /// program="other" (info series are left out) and netstat_series_dropped counts them.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SERIES as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_MAX_SERIES as u64))]
    pub(crate) metrics_max_series: u64,
}

/// Exit 0 written, 2 error.
pub async fn metrics(source: Arc<dyn Source>, opts: &MetricsOpts) -> ExitCode {
    let exporter = Exporter::new(
        source,
        MetricsOptions {
            max_series: opts.metrics_max_series as usize,
            counters: false,
        },
    );
    let text = match exporter.scrape(Format::Text).await {
        Ok(text) => text,
        Err(e) => {
            print_error(&format!("netstat-mcp: {e}"));
            return ExitCode::from(2);
        }
    };
    match &opts.output {
        None => delivered(print_text(&text), ExitCode::SUCCESS),
        Some(path) => match write_atomically(path, text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                print_error(&format!(
                    "netstat-mcp: cannot write {}: {e}",
                    path.display()
                ));
                ExitCode::from(2)
            }
        },
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path` (readable by
/// all, as the textfile collector's user needs). The temporary file is removed on failure.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the output path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netstat.prom");
        write_atomically(&path, b"a 1\n").unwrap();
        write_atomically(&path, b"a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the output file");
        assert!(write_atomically(&dir.path().join("missing/x.prom"), b"").is_err());
    }
}
