//! Where records are read from: one or more local audit folders (their union: one instance each), or the
//! PostgreSQL record store (every instance). The readers — `audit export`, `audit stats`, `feedback report`,
//! `experiments report` and the console — go through this, so the store and the folders give one answer.

use std::path::PathBuf;

use serde_json::Value;

use crate::postgres::read::{Order, Pushdown};
use crate::postgres::PostgresSettings;

/// Records to read.
pub enum Records {
    Files(Vec<PathBuf>),
    Store(PostgresSettings),
}

impl Records {
    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            Records::Files(dirs) => dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Records::Store(db) => format!("the record store {}", crate::postgres::shown(&db.url)),
        }
    }

    /// Every complete line of `stream`: folder after folder in chain order, or from the store (`order`,
    /// narrowed by `pushdown`; the caller still filters every line).
    pub fn lines(
        &self,
        stream: &str,
        pushdown: &Pushdown,
        order: Order,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), String> {
        self.rows(stream, pushdown, order, |_, line| {
            f(line);
            true
        })
    }

    /// [`Records::lines`] with each line's instance (a folder's, if it names one), until `f` returns
    /// `false`.
    pub fn rows(
        &self,
        stream: &str,
        pushdown: &Pushdown,
        order: Order,
        mut f: impl FnMut(Option<&str>, &[u8]) -> bool,
    ) -> Result<(), String> {
        match self {
            Records::Files(dirs) => {
                for dir in dirs {
                    let sdir = dir.join(stream);
                    if !sdir.is_dir() {
                        continue;
                    }
                    let instance = std::fs::read_to_string(dir.join(crate::audit::INSTANCE_FILE))
                        .ok()
                        .map(|t| t.trim().to_string())
                        .filter(|t| crate::audit::valid_instance(t));
                    let mut read = || -> std::io::Result<bool> {
                        for (_, path) in crate::audit::chain::segments(&sdir)? {
                            for line in crate::audit::chain::Lines::open(&path)? {
                                let (_, line, complete) = line?;
                                if !complete {
                                    break; // an unfinished last line
                                }
                                if !f(instance.as_deref(), &line) {
                                    return Ok(false);
                                }
                            }
                        }
                        Ok(true)
                    };
                    match read() {
                        Ok(true) => {}
                        Ok(false) => return Ok(()),
                        Err(e) => return Err(format!("{}: {e}", sdir.display())),
                    }
                }
                Ok(())
            }
            Records::Store(db) => block_on(async {
                let client = db.connect().await?;
                crate::postgres::read::rows(&client, &db.url, stream, pushdown, order, |i, l| {
                    f(Some(i), l)
                })
                .await
            })
            .map(|_| ()),
        }
    }

    /// The experiment report's input from `stream` between `pushdown`'s times, into `report`: a folder's
    /// every line, or the store's facts of its exposures and conversions (from their columns) and the lines
    /// of those without one. The report's filter still judges each.
    pub fn report_into(
        &self,
        stream: &str,
        pushdown: &Pushdown,
        report: &mut crate::experiments::report::Builder,
    ) -> Result<(), String> {
        match self {
            Records::Files(_) => self.lines(stream, pushdown, Order::Any, |l| report.add_line(l)),
            Records::Store(db) => report_from_store(db, stream, pushdown, report),
        }
    }

    /// Fold every line of `stream` (narrowed by `pushdown`; the caller still filters every line) into parts
    /// made by `make`, for the caller to merge: one part from folders, read in chain order; from the store,
    /// a part per connection reading pieces of it at once (the order of lines is any).
    pub fn fold<B: Send>(
        &self,
        stream: &str,
        pushdown: &Pushdown,
        make: impl Fn() -> B + Sync,
        add: impl Fn(&mut B, &[u8]) + Sync,
    ) -> Result<Vec<B>, String> {
        match self {
            Records::Files(_) => {
                let mut part = make();
                self.lines(stream, pushdown, Order::Any, |l| add(&mut part, l))?;
                Ok(vec![part])
            }
            Records::Store(db) => {
                let span = block_on(async {
                    let client = db.connect().await?;
                    crate::postgres::read::span(&client, &db.url, stream, pushdown, false).await
                })?;
                in_pieces(db, span, pushdown, make, async |client, piece, part| {
                    crate::postgres::read::rows(
                        client,
                        &db.url,
                        stream,
                        piece,
                        Order::Any,
                        |_, l| {
                            add(part, l);
                            true
                        },
                    )
                    .await
                })
            }
        }
    }

    /// One record of the store by its key (`None` for folders).
    pub fn record(&self, instance: &str, stream: &str, seq: u64) -> Result<Option<String>, String> {
        match self {
            Records::Files(_) => Ok(None),
            Records::Store(db) => block_on(async {
                let client = db.connect().await?;
                crate::postgres::read::record(&client, &db.url, instance, stream, seq).await
            }),
        }
    }

    /// Every instance and stream the store knows, with its newest record and checkpoint (at most `limit`;
    /// none for folders).
    pub(crate) fn instances(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::postgres::read::StreamState>, String> {
        match self {
            Records::Files(_) => Ok(Vec::new()),
            Records::Store(db) => block_on(async {
                let client = db.connect().await?;
                crate::postgres::read::instances(&client, &db.url, limit).await
            }),
        }
    }

    /// [`Records::lines`], each line that is JSON with its value.
    pub fn values(
        &self,
        stream: &str,
        pushdown: &Pushdown,
        order: Order,
        mut f: impl FnMut(&[u8], &Value),
    ) -> Result<(), String> {
        self.lines(stream, pushdown, order, |line| {
            if let Ok(v) = serde_json::from_slice::<Value>(line) {
                f(line, &v);
            }
        })
    }
}

/// Run one store query on a runtime of its own (the callers are synchronous: the CLI, or the console on a
/// blocking thread).
fn block_on<T>(
    fut: impl std::future::Future<Output = Result<T, crate::postgres::PgError>>,
) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(fut)
        .map_err(|e| e.to_string())
}

/// The experiment report from the store: its facts read in pieces over several connections at once
/// ([`in_pieces`]), merged at the end (the report depends neither on the order nor on reading in parts).
fn report_from_store(
    db: &PostgresSettings,
    stream: &str,
    pushdown: &Pushdown,
    report: &mut crate::experiments::report::Builder,
) -> Result<(), String> {
    use crate::postgres::read;
    let span = block_on(async {
        let client = db.connect().await?;
        read::lines_without_facts(&client, &db.url, stream, pushdown, report).await?;
        read::span(&client, &db.url, stream, pushdown, true).await
    })?;
    let parts = in_pieces(
        db,
        span,
        pushdown,
        || report.empty_like(),
        async |client, piece, part| read::facts(client, &db.url, stream, piece, part).await,
    )?;
    for part in parts {
        report.merge(part);
    }
    Ok(())
}

/// Read `span` of the store in pieces over several connections at once — as many as the machine has cores,
/// at most 4 —, each on a thread of its own folding into a part of its own (`make`); the parts, for the caller
/// to merge. A reader over millions of rows is bound by the client parsing them, so this splits it across
/// the cores. The span is cut into more pieces than threads, which take the next piece when done, so a busier
/// stretch of time does not keep one thread working alone.
fn in_pieces<B: Send>(
    db: &PostgresSettings,
    span: Option<(std::time::SystemTime, std::time::SystemTime)>,
    pushdown: &Pushdown,
    make: impl Fn() -> B + Sync,
    read: impl AsyncFn(&tokio_postgres::Client, &Pushdown, &mut B) -> Result<u64, crate::postgres::PgError>
        + Sync,
) -> Result<Vec<B>, String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, SystemTime};
    let Some((lo, hi)) = span else {
        return Ok(Vec::new());
    };
    let end = hi + Duration::from_micros(1);
    let whole = end.duration_since(lo).unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    const PIECES_PER_THREAD: u32 = 4;
    let pieces = threads as u32 * PIECES_PER_THREAD;
    let bounds: Vec<SystemTime> = (0..=pieces)
        .map(|i| {
            if i == pieces {
                end
            } else {
                lo + whole / pieces * i
            }
        })
        .collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let mut part = make();
                let (next, bounds, read) = (&next, &bounds, &read);
                s.spawn(move || {
                    block_on(async {
                        let client = db.connect().await?;
                        // A scan compiled for each piece would cost more than it saves.
                        let _ = client.batch_execute("SET jit = off").await;
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(w) = bounds.get(i..i + 2) else { break };
                            let piece = Pushdown {
                                within: Some((w[0], w[1])),
                                ..pushdown.clone()
                            };
                            read(&client, &piece, &mut part).await?;
                        }
                        Ok(part)
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("a thread reading the record store failed".into()))
            })
            .collect()
    })
}
