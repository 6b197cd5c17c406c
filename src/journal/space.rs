//! Whether the journal's filesystem has room for what the retention limits
//! let the journal grow to (issue 16): a pure decision from numbers the
//! caller measured (`app` asks `statvfs` at start). Nothing here does I/O.

use std::path::Path;

/// Sled's disk use for append-only data, in tenths of the payload: about
/// 2.1 times (a million 208-byte values took 440 MB; docs/notes.md §2).
pub const DISK_FACTOR_TENTHS: u64 = 21;

/// Disk the journal takes beyond `max_bytes` × 2.1: the snapshot and meta
/// trees, sled's config and lock files, and log segments not yet reclaimed.
/// A round margin, not a measurement.
pub const SLED_HEADROOM: u64 = 64 << 20;

/// About how much disk a journal bounded by `max_bytes` of event JSON takes
/// when it is full.
pub fn disk_need(max_bytes: u64) -> u64 {
    (max_bytes / 10)
        .saturating_mul(DISK_FACTOR_TENTHS)
        .saturating_add(SLED_HEADROOM)
}

/// The warning to log when the journal in `dir`, which takes `used` bytes
/// of disk now, may grow past the `free` bytes its filesystem has left under
/// the `max_bytes` limit; `None` when it fits. The message names the dir,
/// the free space, the need and what to do.
pub fn low_space_warning(dir: &Path, max_bytes: u64, free: u64, used: u64) -> Option<String> {
    let need = disk_need(max_bytes);
    let more = need.saturating_sub(used);
    if free >= more {
        return None;
    }
    Some(format!(
        "the journal in {} may fill its disk: its filesystem has {} free, and a full journal \
         needs about {} more ([journal] max_bytes = {} of event JSON takes about {} on disk, \
         {} of it in use); free some space, lower [journal] max_bytes, or move [journal] dir \
         to a bigger disk",
        dir.display(),
        human(free),
        human(more),
        human(max_bytes),
        human(need),
        human(used),
    ))
}

/// A size for a log line: `"1.1 GiB"`, `"512 MiB"`, `"4.0 KiB"`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn the_need_is_the_payload_times_sleds_factor_plus_headroom() {
        assert_eq!(disk_need(0), SLED_HEADROOM);
        assert_eq!(disk_need(100 * MIB), 210 * MIB + SLED_HEADROOM);
        // The default 512 MiB needs about 1.1 GiB.
        let need = disk_need(512 * MIB);
        assert!((GIB..GIB + 200 * MIB).contains(&need), "{need}");
        assert_eq!(disk_need(u64::MAX), u64::MAX, "saturates, never wraps");
    }

    #[test]
    fn enough_free_space_is_no_warning() {
        let dir = Path::new("/var/lib/tablo/journal");
        let need = disk_need(512 * MIB);
        assert_eq!(low_space_warning(dir, 512 * MIB, need, 0), None);
        assert_eq!(low_space_warning(dir, 512 * MIB, 8 * GIB, 0), None);
        // What the journal already takes counts as room it has.
        assert_eq!(
            low_space_warning(dir, 512 * MIB, need - 300 * MIB, 300 * MIB),
            None
        );
        assert_eq!(low_space_warning(dir, 512 * MIB, 0, need), None);
        assert_eq!(low_space_warning(dir, 512 * MIB, 0, 2 * need), None);
    }

    #[test]
    fn too_little_free_space_warns_naming_dir_free_need_and_fix() {
        let dir = Path::new("/var/lib/tablo/journal");
        let need = disk_need(512 * MIB);
        assert!(low_space_warning(dir, 512 * MIB, need - 1, 0).is_some());
        assert!(low_space_warning(dir, 512 * MIB, need - 300 * MIB - 1, 300 * MIB).is_some());
        let text = low_space_warning(dir, 512 * MIB, 200 * MIB, 100 * MIB).unwrap();
        for part in [
            "/var/lib/tablo/journal",
            "has 200 MiB free",
            "about 1.0 GiB more",
            "max_bytes = 512 MiB",
            "about 1.1 GiB on disk",
            "100 MiB of it in use",
            "lower [journal] max_bytes",
            "move [journal] dir",
        ] {
            assert!(text.contains(part), "{part:?} not in {text:?}");
        }
    }

    #[test]
    fn sizes_read_well_in_the_log() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(4096), "4 KiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(512 * MIB), "512 MiB");
        assert_eq!(human(disk_need(512 * MIB)), "1.1 GiB");
    }
}
