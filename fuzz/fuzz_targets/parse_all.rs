//! Fuzz target: the format detector and every parser over arbitrary text. Any panic is a bug.
//! Run: `cargo +nightly fuzz run parse_all -- -max_total_time=60` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstat_mcp::model::{Protocol, Transport};
use netstat_mcp::parse::{self, ByteOrder, Format, proc_net, ss};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse::detect(&text);
    let _ = parse::parse_auto(&text);
    for format in Format::ALL {
        let parsed = parse::parse(format, &text);
        let lines = text.lines().count();
        assert!(parsed.skipped.iter().all(|k| k.line_no >= 1 && k.line_no <= lines));
    }
    let _ = proc_net::detect_byte_order(&text);
    let _ = proc_net::parse(&text, Some(ByteOrder::Big));
    let _ = proc_net::parse_table(&text, Protocol::Udp6, ByteOrder::Little);
    let _ = ss::parse_as(&text, Some(Transport::Udp));
    let _ = parse::ss_info::parse(&text);
    let _ = netstat_mcp::model::TcpInfo::from_kernel(data);
    let _ = netstat_mcp::model::SkMem::from_kernel(data);
});
