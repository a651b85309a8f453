//! The data-cache sizes this CPU reports, read once per process: GEMM block sizes scale
//! with them (`crate::matmul` blocking), so one binary fits each machine's caches.
//!
//! Source: Linux sysfs (`/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size,
//! shared_cpu_list}`). Where that is missing or unreadable (other OSes, sandboxes) every
//! level falls back to [`CacheSizes::REFERENCE`], the machine the blocks were tuned on, so
//! the blocking is then exactly the tuned one.

use std::sync::OnceLock;

/// Data-cache capacity in bytes available to one core at each level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSizes {
    pub l1d: usize,
    /// private L2 (or an L2 shared by several cores, divided among them)
    pub l2: usize,
    /// the last-level cache divided among the cores that share it; 0 where there is none
    pub l3: usize,
}

impl CacheSizes {
    /// The 2-core Zen 4 host the GEMM blocks were measured on: 32 KiB L1d, 1 MiB L2 per
    /// core, 32 MiB L3 shared by both cores.
    pub const REFERENCE: CacheSizes = CacheSizes {
        l1d: 32 << 10,
        l2: 1 << 20,
        l3: 16 << 20,
    };
}

/// This CPU's cache sizes (read once; fields sysfs does not give take the reference's).
pub fn cache_sizes() -> CacheSizes {
    static SIZES: OnceLock<CacheSizes> = OnceLock::new();
    *SIZES.get_or_init(|| {
        let levels = read_sysfs(std::path::Path::new("/sys/devices/system/cpu/cpu0/cache"));
        from_levels(&levels)
    })
}

/// One `indexN` directory: (level, type, size in bytes, cores sharing it).
type Level = (u32, String, usize, usize);

fn read_sysfs(dir: &std::path::Path) -> Vec<Level> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("index"))
        .filter_map(|e| {
            let p = e.path();
            let level = read(p.join("level"))?.trim().parse().ok()?;
            let kind = read(p.join("type"))?.trim().to_string();
            let size = parse_size(&read(p.join("size"))?)?;
            let sharing = read(p.join("shared_cpu_list"))
                .map_or(1, |s| count_cpus(&s))
                .max(1);
            Some((level, kind, size, sharing))
        })
        .collect()
}

/// Per-core sizes from the reported levels; missing or zero levels take the reference's
/// (except L3, where 0 stays 0 only if L1 and L2 were read: a CPU without an L3).
fn from_levels(levels: &[Level]) -> CacheSizes {
    let per_core = |lvl: u32| {
        levels
            .iter()
            .filter(|(l, kind, size, _)| *l == lvl && kind != "Instruction" && *size > 0)
            .map(|(_, _, size, sharing)| size / sharing)
            .max()
    };
    let r = CacheSizes::REFERENCE;
    match (per_core(1), per_core(2)) {
        (Some(l1d), Some(l2)) => CacheSizes {
            l1d,
            l2,
            l3: per_core(3).unwrap_or(0),
        },
        _ => r,
    }
}

/// `"32K"`, `"1024K"`, `"32M"` or plain bytes.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<usize>().ok().map(|n| n * mult)
}

/// Number of CPUs in a list such as `"0-3,8,10-11"` (0 if unparsable).
fn count_cpus(s: &str) -> usize {
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => usize::from(p.parse::<usize>().is_ok()),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse_sysfs_forms() {
        assert_eq!(parse_size("32K\n"), Some(32 << 10));
        assert_eq!(parse_size("1024K"), Some(1 << 20));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("big"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(count_cpus("0-1\n"), 2);
        assert_eq!(count_cpus("0-3,8,10-11"), 7);
        assert_eq!(count_cpus("5"), 1);
        assert_eq!(count_cpus("x"), 0);
    }

    #[test]
    fn cache_sizes_per_core_and_fallbacks() {
        let lv = |l: u32, t: &str, size: usize, sh: usize| (l, t.to_string(), size, sh);
        // Sapphire Rapids-like: 48 KiB L1d, 2 MiB L2, 105 MiB L3 over 52 cores.
        let spr = [
            lv(1, "Data", 48 << 10, 1),
            lv(1, "Instruction", 32 << 10, 1),
            lv(2, "Unified", 2 << 20, 1),
            lv(3, "Unified", 105 << 20, 52),
        ];
        assert_eq!(
            from_levels(&spr),
            CacheSizes {
                l1d: 48 << 10,
                l2: 2 << 20,
                l3: (105 << 20) / 52
            }
        );
        // No L3 reported: a machine without one.
        assert_eq!(from_levels(&spr[..3]).l3, 0);
        // Nothing readable: the reference, so blocking is the tuned one.
        assert_eq!(from_levels(&[]), CacheSizes::REFERENCE);
        assert_eq!(from_levels(&spr[1..2]), CacheSizes::REFERENCE);
        // Whatever this machine reports is positive where it matters.
        let here = cache_sizes();
        assert!(here.l1d > 0 && here.l2 > 0, "{here:?}");
    }
}
