//! The two text formats a Prometheus server scrapes, written from plain families of samples.
//! Pure: no I/O.
//!
//! - Prometheus text 0.0.4 (`text/plain; version=0.0.4`): what `promtool check metrics` and
//!   node_exporter's textfile collector read. `# TYPE` names the sample (`x_total counter`);
//!   there is no `info` type, so an info family is a gauge named `x_info`.
//! - OpenMetrics 1.0.0 (`application/openmetrics-text`): `# TYPE` names the family without its
//!   suffix (`x counter`, samples `x_total`; `x info`, samples `x_info`) and the text ends with
//!   `# EOF`.
//!
//! Written by hand rather than with `prometheus-client`: that crate writes OpenMetrics only
//! (its 0.0.4 encoder is an open request), and the families here are rebuilt from a snapshot
//! at each scrape, which a registry of long-lived metric handles does not fit.

use std::fmt::Write as _;

/// How a family's samples are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    /// Samples are named `<family>_total`.
    Counter,
    /// Samples are named `<family>_info` and are always 1.
    Info,
}

/// Which text to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics when it ranks
    /// `application/openmetrics-text` above `text/plain` (by `q`, 1 when absent), else 0.0.4
    /// (also for no header, `*/*`, or anything unreadable).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut open, mut text) = (0.0f32, 0.0f32);
        for item in accept.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => open = open.max(q),
                "text/plain" | "*/*" | "text/*" => text = text.max(q),
                _ => {}
            }
        }
        if open > 0.0 && open > text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// One family: its name (without `_total`/`_info`), help, kind, label names and samples
/// (label values in the order of `labels`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) labels: &'static [&'static str],
    pub(crate) samples: Vec<(Vec<String>, f64)>,
}

impl Family {
    pub(crate) fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &'static [&'static str],
    ) -> Family {
        Family {
            name,
            help,
            kind,
            labels,
            samples: Vec::new(),
        }
    }

    fn sample_name(&self) -> String {
        match self.kind {
            Kind::Gauge => self.name.to_string(),
            Kind::Counter => format!("{}_total", self.name),
            Kind::Info => format!("{}_info", self.name),
        }
    }
}

/// Writes the families in `format`. Families without samples are still described (HELP and
/// TYPE), so a dashboard can tell "none now" from "not exported".
pub(crate) fn encode(families: &[Family], format: Format) -> String {
    let mut out =
        String::with_capacity(256 + 96 * families.iter().map(|f| f.samples.len()).sum::<usize>());
    for family in families {
        let sample = family.sample_name();
        let (described, kind) = match (format, family.kind) {
            (Format::Text, Kind::Gauge | Kind::Info) => (sample.as_str(), "gauge"),
            (Format::Text, Kind::Counter) => (sample.as_str(), "counter"),
            (Format::OpenMetrics, Kind::Gauge) => (family.name, "gauge"),
            (Format::OpenMetrics, Kind::Counter) => (family.name, "counter"),
            (Format::OpenMetrics, Kind::Info) => (family.name, "info"),
        };
        let _ = writeln!(out, "# HELP {described} {}", escape_help(family.help));
        let _ = writeln!(out, "# TYPE {described} {kind}");
        for (values, value) in &family.samples {
            out.push_str(&sample);
            if !family.labels.is_empty() {
                out.push('{');
                for (i, (name, v)) in family.labels.iter().zip(values).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(*value));
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// A sample value: integers without a fraction, others as Rust prints them (shortest exact).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Label values escape `\`, `"` and newlines (both formats).
fn escape_label(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// HELP text escapes `\` and newlines.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> Vec<Family> {
        let mut sockets = Family::new(
            "netstat_sockets",
            "Sockets.",
            Kind::Gauge,
            &["proto", "state"],
        );
        sockets
            .samples
            .push((vec!["tcp".into(), "LISTEN".into()], 3.0));
        let mut opened = Family::new("netstat_opened", "Opened.", Kind::Counter, &["program"]);
        opened.samples.push((vec!["a\"b\\c\nd".into()], 7.0));
        let mut info = Family::new("netstat_listener", "Listeners.", Kind::Info, &["port"]);
        info.samples.push((vec!["80".into()], 1.0));
        let mut duration =
            Family::new("netstat_scrape_duration_seconds", "Time.", Kind::Gauge, &[]);
        duration.samples.push((vec![], 0.0125));
        vec![sockets, opened, info, duration]
    }

    #[test]
    fn text_0_0_4_names_samples_in_type_lines() {
        let text = encode(&families(), Format::Text);
        assert_eq!(
            text,
            "# HELP netstat_sockets Sockets.\n# TYPE netstat_sockets gauge\n\
             netstat_sockets{proto=\"tcp\",state=\"LISTEN\"} 3\n\
             # HELP netstat_opened_total Opened.\n# TYPE netstat_opened_total counter\n\
             netstat_opened_total{program=\"a\\\"b\\\\c\\nd\"} 7\n\
             # HELP netstat_listener_info Listeners.\n# TYPE netstat_listener_info gauge\n\
             netstat_listener_info{port=\"80\"} 1\n\
             # HELP netstat_scrape_duration_seconds Time.\n\
             # TYPE netstat_scrape_duration_seconds gauge\nnetstat_scrape_duration_seconds 0.0125\n"
        );
    }

    #[test]
    fn openmetrics_names_families_and_ends_with_eof() {
        let text = encode(&families(), Format::OpenMetrics);
        assert!(text.contains("# TYPE netstat_opened counter\nnetstat_opened_total{"));
        assert!(
            text.contains("# TYPE netstat_listener info\nnetstat_listener_info{port=\"80\"} 1\n")
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn accept_headers_choose_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("garbage;;;q=x")), Format::Text);
    }
}
