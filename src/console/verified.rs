//! The console's knowledge of whether the log is intact: the last full verification (`audit::verify`, what
//! `concierge audit verify` runs) and the state of the files it covered. A log that has not changed since is
//! not verified again; a small one is verified while the page waits; a large one (over [`INLINE_BYTES`]) is
//! verified on a background thread, one run at a time, while the page shows the last result and says that a
//! run is under way — so the Verify page stays fast however long the log, and never claims more than it checked.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::audit::keys::PublicKey;
use crate::audit::verify;

/// Logs up to this size are verified while the page waits (about 50 ms per 16 MiB on this project's machine).
pub(super) const INLINE_BYTES: u64 = 16 * 1024 * 1024;

/// Every file of the log that verification reads, with its length and modification time: if none changed,
/// neither did the answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Fingerprint {
    /// Per file: path, length, modification time, and inode and change time (which an edit that puts the
    /// length and modification time back cannot restore).
    files: Vec<(PathBuf, u64, Option<SystemTime>, u64, i64, i64)>,
    /// The trusted key the answer was verified with.
    key: String,
}

impl Fingerprint {
    pub(super) fn of(dir: &Path, key: &PublicKey) -> Fingerprint {
        use std::os::unix::fs::MetadataExt;
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                // Followed, as the verifier follows them: a symlinked segment's own changes count.
                let Ok(meta) = std::fs::metadata(e.path()) else {
                    continue;
                };
                if meta.is_dir() {
                    // Streams are one level down; nothing deeper belongs to the log.
                    if d == dir {
                        stack.push(e.path());
                    }
                } else if d != dir {
                    files.push((
                        e.path(),
                        meta.len(),
                        meta.modified().ok(),
                        meta.ino(),
                        meta.ctime(),
                        meta.ctime_nsec(),
                    ));
                }
            }
        }
        files.sort();
        Fingerprint {
            files,
            key: key.encode(),
        }
    }

    pub(super) fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.1).sum()
    }
}

/// One full verification.
#[derive(Debug, Clone)]
pub(super) struct Verified {
    pub report: verify::Report,
    pub at: SystemTime,
    pub took: Duration,
    pub fingerprint: Fingerprint,
}

/// What the Verify page shows.
pub(super) enum Answer {
    /// Verified against the log as it is now.
    Current(Verified),
    /// The last result; the log has changed since and a new run is under way.
    Running {
        last: Option<Verified>,
        since: SystemTime,
    },
    Failed(String),
}

#[derive(Default)]
struct State {
    last: Option<Verified>,
    /// Started at, while a background run is under way.
    running: Option<SystemTime>,
}

#[derive(Clone)]
pub(super) struct Verifier {
    state: Arc<Mutex<State>>,
    /// Logs up to this many bytes are verified while the page waits.
    inline: u64,
}

impl Default for Verifier {
    fn default() -> Verifier {
        Verifier {
            state: Arc::default(),
            inline: INLINE_BYTES,
        }
    }
}

fn run(dir: &Path, key: &PublicKey, fingerprint: Fingerprint) -> std::io::Result<Verified> {
    let started = Instant::now();
    let at = SystemTime::now();
    let report = verify::verify(dir, key)?;
    Ok(Verified {
        report,
        at,
        took: started.elapsed(),
        fingerprint,
    })
}

impl Verifier {
    /// The answer for the log under `dir`, verified with `key`.
    pub(super) fn answer(&self, dir: &Path, key: &PublicKey) -> Answer {
        // Taken before reading: a write during the run makes the next visit verify again.
        let now = Fingerprint::of(dir, key);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = &state.last {
            if last.fingerprint == now {
                return Answer::Current(last.clone());
            }
        }
        if now.bytes() <= self.inline {
            return match run(dir, key, now) {
                Ok(v) => {
                    state.last = Some(v.clone());
                    Answer::Current(v)
                }
                Err(e) => Answer::Failed(format!("{}: {e}", dir.display())),
            };
        }
        let since = match state.running {
            Some(t) => t,
            None => {
                let t = SystemTime::now();
                state.running = Some(t);
                let (me, dir, key) = (self.clone(), dir.to_path_buf(), key.clone());
                let spawned = std::thread::Builder::new()
                    .name("console-verify".into())
                    .spawn(move || {
                        // A panic in the verifier must not leave "running" set for ever.
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            run(&dir, &key, now)
                        }))
                        .unwrap_or_else(|_| Err(std::io::Error::other("the verifier panicked")));
                        let mut state = me.state.lock().unwrap_or_else(|p| p.into_inner());
                        state.running = None;
                        match result {
                            Ok(v) => state.last = Some(v),
                            Err(e) => tracing::warn!(error = %e, "the console's verification of the log failed"),
                        }
                    });
                if spawned.is_err() {
                    state.running = None;
                    return Answer::Failed("cannot start a thread to verify the log".into());
                }
                t
            }
        };
        Answer::Running {
            last: state.last.clone(),
            since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::keys::SigningKey;
    use crate::audit::writer::{Options, Writer};

    fn log(dir: &Path, key: &Arc<SigningKey>, n: u64) {
        let (w, t) = Writer::open(dir, key.clone(), Options::new("audit")).unwrap();
        for i in 0..n {
            let line = format!("{{\"type\":\"decision\",\"time\":\"2027-01-01T10:00:00.000Z\",\"request_id\":\"r{i}\"}}");
            let ack = w.submit_bytes(line.as_bytes(), true).unwrap();
            w.written_blocking(ack, Duration::from_secs(5)).unwrap();
        }
        drop(w);
        t.join().unwrap();
    }

    #[test]
    fn a_changed_log_is_verified_again_and_a_large_one_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(SigningKey::generate().unwrap().1);
        let public = key.public();
        log(dir.path(), &key, 50);
        let v = Verifier::default();
        let Answer::Current(first) = v.answer(dir.path(), &public) else {
            panic!("a small log is verified at once")
        };
        assert!(first.report.intact);
        let Answer::Current(again) = v.answer(dir.path(), &public) else {
            panic!()
        };
        assert_eq!(again.at, first.at, "unchanged: not verified again");
        // Tampering changes the files: the next answer is a new verification, and says so.
        let seg = crate::audit::chain::segments(&dir.path().join("audit")).unwrap()[0]
            .1
            .clone();
        let text = std::fs::read_to_string(&seg)
            .unwrap()
            .replace("\"r7\"", "\"r8\"");
        std::fs::write(&seg, text).unwrap();
        let Answer::Current(after) = v.answer(dir.path(), &public) else {
            panic!()
        };
        assert!(!after.report.intact);

        // A log over the inline size: the page gets the last result at once, the run goes on a thread.
        let big = Verifier {
            inline: 0,
            ..Verifier::default()
        };
        let Answer::Running { last: None, .. } = big.answer(dir.path(), &public) else {
            panic!("nothing verified yet: running")
        };
        let mut answer = big.answer(dir.path(), &public);
        for _ in 0..100 {
            if matches!(answer, Answer::Current(_)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            answer = big.answer(dir.path(), &public);
        }
        let Answer::Current(done) = answer else {
            panic!("the background run finished")
        };
        assert!(!done.report.intact, "the same verdict as inline");
    }
}
