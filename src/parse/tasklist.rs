//! Windows `tasklist /fo csv /nh`: `"Image Name","PID","Session Name","Session#","Mem Usage"`
//! per line, quoted CSV (a doubled quote is a quote). Only the image name and the pid are read;
//! they name the programs of Windows `netstat -ano`, which prints pids only.

use super::{Parsed, clip, content_lines};

/// (pid, image name) pairs, and the lines that were not readable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tasks {
    pub(crate) tasks: Vec<(u32, String)>,
    pub(crate) report: Parsed,
}

/// Parses `tasklist /fo csv /nh` output (a header line, if present, is recognised and skipped).
pub(crate) fn parse(text: &str) -> Tasks {
    let mut out = Tasks::default();
    for (no, line, trimmed) in content_lines(text) {
        let fields = csv_fields(trimmed);
        match fields.as_deref() {
            Some([name, pid, ..]) if name == "Image Name" && pid == "PID" => {}
            Some([name, pid, ..]) => match pid.parse::<u32>() {
                Ok(pid) => out.tasks.push((pid, name.clone())),
                Err(_) => {
                    out.report
                        .skip(no, line, format!("PID `{}` is not a number", clip(pid, 20)))
                }
            },
            _ => out.report.skip(
                no,
                line,
                "not a `\"name\",\"pid\",…` line of `tasklist /fo csv /nh`",
            ),
        }
    }
    out
}

/// Splits one CSV line of quoted fields; `None` when it is not one.
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        if chars.next()? != '"' {
            return None;
        }
        let mut field = String::new();
        loop {
            match chars.next()? {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => break,
                c => field.push(c),
            }
        }
        fields.push(field);
        match chars.next() {
            None => return (fields.len() >= 2).then_some(fields),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields() {
        let t = parse(
            "\"Image Name\",\"PID\",\"Session Name\",\"Session#\",\"Mem Usage\"\n\"System Idle Process\",\"0\",\"Services\",\"0\",\"8 K\"\n\"svchost.exe\",\"1012\",\"Services\",\"0\",\"31,748 K\"\n\"odd \"\"name\"\".exe\",\"7\",\"Console\",\"1\",\"1 K\"\nINFO: No tasks are running\n\"x\",\"pid\"\n",
        );
        assert_eq!(
            t.tasks,
            [
                (0, "System Idle Process".to_string()),
                (1012, "svchost.exe".to_string()),
                (7, "odd \"name\".exe".to_string())
            ]
        );
        assert_eq!(t.report.skipped.len(), 2);
    }
}
