//! Memory figures of a process from Linux's /proc/PID/status (the bench's and the tests'
//! resident-memory readings share this one parser). None where there is no /proc.

/// The status line `key` (e.g. "VmRSS", "RssAnon", "RssFile", "VmHWM") of process `pid`
/// (None: this process), in bytes.
pub fn status_bytes(pid: Option<u32>, key: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    parse_status_bytes(&std::fs::read_to_string(path).ok()?, key)
}

fn parse_status_bytes(status: &str, key: &str) -> Option<u64> {
    let rest = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_line_in_bytes() {
        let s = "Name:\tgidd\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t 12 kB\n";
        assert_eq!(parse_status_bytes(s, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status_bytes(s, "RssAnon"), Some(12 * 1024));
        assert_eq!(parse_status_bytes(s, "VmHWM"), Some(2048 * 1024));
        // a key is a whole name, not a prefix of one
        assert_eq!(parse_status_bytes(s, "Vm"), None);
        assert_eq!(parse_status_bytes(s, "RssFile"), None);
    }

    #[test]
    fn this_process_has_a_resident_set_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(status_bytes(None, "VmRSS").unwrap() > 0);
        }
    }
}
