//! The proxy's shipper: a thread of its own (with its own small runtime) that sends each stream's new records
//! and checkpoints to the record store every `ship_interval`. Serving never waits on it: records are on local
//! disk before anything else happens to them, and this only reads the files. When the database is down or
//! slow, the files are the queue; the next run that reaches it catches up in order.
//!
//! What it keeps current: per stream the first seq the store does not hold (the writer's retention keeps
//! every segment from there on, so nothing unshipped is deleted), the lag metrics, and the state
//! `/healthz/records` answers from.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::ship::StreamShipper;
use super::{KeyState, PgError, PostgresSettings, Registered};
use crate::audit::Shipping;
use crate::metrics::ShipMetrics;

/// What `/healthz/records` answers from.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<HealthInner>,
}

#[derive(Debug, Default)]
struct HealthInner {
    /// The last run's error, if it failed.
    error: Option<String>,
    /// Records written but not yet in the store, over every stream, after the last run.
    lag: u64,
    /// Since when records have been waiting (the first run that left some behind).
    waiting_since: Option<Instant>,
    waiting_since_wall: Option<SystemTime>,
    last_success: Option<SystemTime>,
    runs: u64,
    max_lag: Duration,
    /// Whether the store trusts this instance's key (`None`: not known before a run reached the store).
    key: Option<KeyState>,
    instance: String,
    public_key: String,
}

impl Health {
    /// `(healthy, text)`: unhealthy when the last run failed and records wait, or records have waited longer
    /// than `max_lag`.
    pub fn status(&self) -> (bool, String) {
        let h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let since = |t: Option<SystemTime>| {
            t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
                .unwrap_or_else(|| "never".into())
        };
        let waited = h.waiting_since.map(|t| t.elapsed()).unwrap_or_default();
        if h.runs == 0 {
            return (true, "starting: no shipping run has ended yet\n".into());
        }
        let (healthy, text) = Self::shipping(&h, waited, since);
        // Shipped but not verifiable is not healthy: a reviewer's `audit verify --postgres` will fail on it.
        match &h.key {
            Some(KeyState::Other { have, at }) => (
                false,
                format!(
                    "key mismatch: the record store trusts another key for this instance ({have}, registered {at}); \
                     its records are shipped but will not verify centrally (see the README, rotating an instance's key)\n{text}"
                ),
            ),
            Some(KeyState::NotRegistered) => (
                healthy,
                format!(
                    "{text}note: this instance's key is not registered in the record store, so central verification \
                     reports it NOT VERIFIED until `concierge audit register` is run\n"
                ),
            ),
            Some(KeyState::Registered) | None => (healthy, text),
        }
    }

    /// This instance's id and checkpoint key (encoded), as the store should know them.
    pub(crate) fn instance(&self) -> (String, String) {
        let h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (h.instance.clone(), h.public_key.clone())
    }

    /// Where shipping stands (the key aside).
    fn shipping(
        h: &HealthInner,
        waited: Duration,
        since: impl Fn(Option<SystemTime>) -> String,
    ) -> (bool, String) {
        if let Some(e) = &h.error {
            let healthy = h.lag == 0 && waited <= h.max_lag;
            return (
                healthy,
                format!(
                    "failing: {e}\n{} record(s) wait on local disk; last shipped {}\n",
                    h.lag,
                    since(h.last_success)
                ),
            );
        }
        if h.lag == 0 {
            return (true, "ok: every record is in the record store\n".into());
        }
        let behind = waited > h.max_lag;
        (
            !behind,
            format!(
                "{}: {} record(s) to ship, waiting since {}\n",
                if behind { "behind" } else { "ok (catching up)" },
                h.lag,
                since(h.waiting_since_wall)
            ),
        )
    }
}

/// A running shipper; [`Shipper::finish`] runs a last time and stops it.
pub struct Shipper {
    stop: std::sync::mpsc::Sender<()>,
    done: std::sync::mpsc::Receiver<()>,
    pub health: Arc<Health>,
}

impl Shipper {
    /// Start shipping `shipping`'s streams to `settings`' store on a thread of its own.
    pub fn start(
        settings: PostgresSettings,
        shipping: &Shipping,
        metrics: ShipMetrics,
    ) -> std::io::Result<Shipper> {
        let health = Arc::new(Health::default());
        {
            let mut h = health.inner.lock().unwrap_or_else(|p| p.into_inner());
            h.max_lag = settings.max_lag;
            h.instance = shipping.instance.clone();
            h.public_key = shipping.public_key.encode();
        }
        let (stop, stop_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let batch = settings.ship_batch;
        let run = Run {
            settings,
            instance: shipping.instance.clone(),
            key: shipping.public_key.clone(),
            streams: shipping
                .streams
                .iter()
                .map(|s| Stream {
                    name: s.name,
                    shipper: {
                        let mut sh = StreamShipper::new(&shipping.instance, &s.dir, batch);
                        // A long catch-up in runs of at most 20 transactions, the lag refreshed between.
                        sh.max_batches = Some(20);
                        sh
                    },
                    written: s.written.clone(),
                    keep_from: s.keep_from.clone(),
                })
                .collect(),
            metrics,
            health: health.clone(),
            clients: Vec::new(),
            registered: false,
            key_checked: None,
            backoff: Duration::ZERO,
        };
        std::thread::Builder::new()
            .name("concierge-ship".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    tracing::error!("record store shipper: no runtime; records stay on local disk");
                    return;
                };
                rt.block_on(run.serve(stop_rx));
                let _ = done_tx.send(());
            })?;
        Ok(Shipper { stop, done, health })
    }

    /// Run once more (what the writers flushed at shutdown), for at most `within`, and stop.
    pub fn finish(self, within: Duration) {
        let _ = self.stop.send(());
        let _ = self.done.recv_timeout(within);
    }
}

struct Stream {
    name: &'static str,
    shipper: StreamShipper,
    written: tokio::sync::watch::Receiver<(u64, u64, bool)>,
    keep_from: Arc<std::sync::atomic::AtomicU64>,
}

struct Run {
    settings: PostgresSettings,
    instance: String,
    key: crate::audit::keys::PublicKey,
    streams: Vec<Stream>,
    metrics: ShipMetrics,
    health: Arc<Health>,
    /// Connected: `ship_connections` clients, the first for everything but a catch-up's concurrent inserts.
    clients: Vec<tokio_postgres::Client>,
    registered: bool,
    /// When the store's key for this instance was last compared with ours (again every [`KEY_CHECK`]: an
    /// operator may register the instance while it runs).
    key_checked: Option<Instant>,
    backoff: Duration,
}

const KEY_CHECK: Duration = Duration::from_secs(60);

impl Run {
    async fn serve(mut self, stop: std::sync::mpsc::Receiver<()>) {
        let mut next = Instant::now();
        loop {
            // The stop signal is a std channel (the server's side is not async): poll it between sleeps.
            let stopping = match stop.try_recv() {
                Ok(()) | Err(std::sync::mpsc::TryRecvError::Disconnected) => true,
                Err(std::sync::mpsc::TryRecvError::Empty) => false,
            };
            if stopping || Instant::now() >= next {
                let (ok, more) = self.once().await;
                let wait = if ok && more {
                    Duration::ZERO // catching up: the next run at once
                } else if ok {
                    self.backoff = Duration::ZERO;
                    self.settings.ship_interval
                } else {
                    // Retry soon, then less often (at most every 30 s) while the database stays away.
                    self.backoff = (self.backoff * 2)
                        .clamp(Duration::from_millis(500), Duration::from_secs(30))
                        .max(self.settings.ship_interval);
                    self.backoff
                };
                next = Instant::now() + wait;
                if stopping {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50).min(self.settings.ship_interval)).await;
            self.refresh();
        }
    }

    /// One run over every stream: whether it reached the store, and whether records are left to ship.
    async fn once(&mut self) -> (bool, bool) {
        let result = self.ship().await;
        let ok = result.is_ok();
        let more = matches!(result, Ok(true));
        if let Err(e) = &result {
            self.clients.clear(); // reconnect next time
            let first = self
                .health
                .inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .error
                .is_none();
            if first {
                tracing::error!(error = %e, "record store unreachable or refusing; records stay on local disk and are shipped when it is back");
            }
        }
        self.metrics.run(ok);
        let mut h = self.health.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ok && h.error.is_some() {
            tracing::info!("record store reachable again; shipping");
        }
        h.runs += 1;
        h.error = result.err().map(|e| e.to_string());
        if ok {
            h.last_success = Some(SystemTime::now());
        }
        drop(h);
        self.refresh();
        (ok, more)
    }

    /// The lag, from the writers' progress and what is known shipped (between runs too: records keep
    /// coming while the database is away).
    fn refresh(&self) {
        let mut lag = 0;
        for s in &self.streams {
            let written = s.written.borrow().0;
            // Before a run reached the store nothing more is known to be shipped than the guard says.
            let shipped = s
                .shipper
                .next_seq()
                .unwrap_or(s.keep_from.load(Ordering::Acquire));
            let behind = written.saturating_sub(shipped);
            self.metrics.lag(s.name, behind);
            lag += behind;
        }
        let mut h = self.health.inner.lock().unwrap_or_else(|p| p.into_inner());
        h.lag = lag;
        if lag == 0 {
            h.waiting_since = None;
            h.waiting_since_wall = None;
        } else if h.waiting_since.is_none() {
            h.waiting_since = Some(Instant::now());
            h.waiting_since_wall = Some(SystemTime::now());
        }
        self.metrics
            .lag_seconds(h.waiting_since.map_or(0, |t| t.elapsed().as_secs()));
    }

    /// Compare the key the store holds for this instance with ours; say so in the log when it changed.
    async fn check_key(&mut self) -> Result<(), PgError> {
        let state = super::key_state(
            &self.clients[0],
            &self.settings.url,
            &self.instance,
            &self.key,
        )
        .await?;
        self.key_checked = Some(Instant::now());
        self.metrics.key(&state);
        let mut h = self.health.inner.lock().unwrap_or_else(|p| p.into_inner());
        if h.key.as_ref() != Some(&state) {
            match &state {
                KeyState::Registered if h.key.is_some() => {
                    tracing::info!(instance = %self.instance, "this instance's key is now the one registered in the record store")
                }
                KeyState::Registered => {}
                KeyState::NotRegistered => {
                    tracing::warn!(instance = %self.instance, "this instance's key is not registered in the record store; central verification will not verify its records until `concierge audit register` is run")
                }
                KeyState::Other { have, at } => {
                    tracing::error!(instance = %self.instance, registered = %have, since = %at, "this instance's checkpoint key is not the one registered; its records are shipped but will not verify")
                }
            }
        }
        h.key = Some(state);
        Ok(())
    }

    /// `Ok(true)`: a stream has more to ship than one run sends.
    async fn ship(&mut self) -> Result<bool, PgError> {
        if self.clients.is_empty() {
            let mut client = self.settings.connect().await?;
            super::migrate(&mut client, &self.settings.url).await?;
            if self.settings.register && !self.registered {
                match super::register(&client, &self.settings.url, &self.instance, &self.key).await
                {
                    Ok(r) => {
                        if r == Registered::New {
                            tracing::info!(instance = %self.instance, key = %self.key.encode(), "instance registered in the record store");
                        }
                        self.registered = true;
                    }
                    // Shipped all the same: verification names the instance whose key does not match, and
                    // `/healthz/records` says so (the key check below).
                    Err(PgError::OtherKey { .. }) => self.registered = true,
                    Err(e) => return Err(e), // the database: tried again with the next run
                }
            }
            self.key_checked = None; // a new connection: look again
            let mut clients = vec![client];
            while clients.len() < self.settings.ship_connections {
                clients.push(self.settings.connect().await?);
            }
            self.clients = clients;
        }
        if self.key_checked.is_none_or(|t| t.elapsed() >= KEY_CHECK) {
            // Not a reason to hold records back: the last state stands, looked up again next run.
            if let Err(e) = self.check_key().await {
                tracing::debug!(error = %e, "the record store's key for this instance could not be looked up");
            }
        }
        let mut more = false;
        for s in &mut self.streams {
            let shipped = s.shipper.run(&mut self.clients, &self.settings.url).await?;
            more |= shipped.more;
            if shipped.records > 0 {
                self.metrics.shipped(s.name, shipped.records);
            }
            if let Some(next) = s.shipper.next_seq() {
                s.keep_from.store(next, Ordering::Release);
            }
        }
        Ok(more)
    }
}
