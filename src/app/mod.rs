//! The `dermcam` subcommands, as library functions so tests can drive them.

pub mod bench;
pub mod check;
pub mod devices;
pub mod infer;
pub mod record;
pub mod run;

use std::path::{Path, PathBuf};

/// Resolves a path given on the command line or in defaults: as given if it exists,
/// otherwise under the data folders (`$DERMCAM_DATA_DIR`, `.`, `../share/dermcam` beside the
/// executable, `/usr/share/dermcam`).
pub fn resolve_data_path(p: &Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        return p.to_path_buf();
    }
    for dir in crate::config::data_dirs() {
        let candidate = dir.join(p);
        if candidate.exists() {
            return candidate;
        }
    }
    p.to_path_buf()
}

/// Peak resident set size of this process in MiB (`VmHWM`), if the kernel reports it.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The CPU model name, for benchmark reports.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
