//! Noticing that files changed: a fingerprint of size, modification and change times and inode per path,
//! compared by polling. Polling, not inotify: it works the same for edits in place, atomic renames and the
//! symlink swaps Kubernetes uses for mounted secrets and config maps, and costs a few `stat` calls per interval.

use std::path::PathBuf;
use std::time::SystemTime;

/// The observable state of a set of files (a missing file is `None`).
pub type Fingerprint = Vec<(PathBuf, Option<(u64, SystemTime, i64, u64)>)>;

/// Fingerprint `paths` (following symlinks).
pub fn fingerprint(paths: impl IntoIterator<Item = PathBuf>) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    paths
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok().map(|m| {
                let modified = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                (
                    m.len(),
                    modified,
                    m.ctime() * 1_000_000_000 + m.ctime_nsec(),
                    m.ino(),
                )
            });
            (p, meta)
        })
        .collect()
}
