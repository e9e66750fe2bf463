//! Wiring: from validated [`Settings`] to a running server — listeners, TLS and its reloader, the admin
//! endpoint, signals, and a graceful shutdown with a deadline.
//!
//! Invariant: [`Server::start`] either returns a server with every listener bound and every certificate loaded,
//! or an error and nothing running; `/readyz` answers 200 only between those two points and the start of a drain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::config::{LogFormat, LogSettings, Settings};
use crate::firmographics::Firmographics;
use crate::metrics::{Metrics, ReloadResult};
use crate::proxy::body::ResponseBody;
use crate::proxy::server::{self, Lifecycle, ListenerConfig, Phase};
use crate::proxy::Proxy;
use crate::tls::{self, CertReloader, SniResolver, TlsError};
use arc_swap::ArcSwap;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Upstream(#[from] crate::proxy::upstream::UpstreamSetupError),
    #[error("company and location sources:\n{0}")]
    Sources(String),
    #[error("rule files:\n{0}")]
    Rules(String),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("consent.cookie_key: {0}")]
    CookieKey(#[from] crate::consent::first_party::CookieKeyError),
    #[error("audit.postgres: cannot start the shipper: {0}")]
    Shipper(String),
}

/// One error per line, indented under the heading of a [`StartError`].
fn indented(errors: &[impl std::fmt::Display]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the grace period.
    Clean,
    /// The deadline passed with connections still open; they were cut.
    Deadline,
}

/// A running proxy.
pub struct Server {
    /// Bound proxy listener addresses, in the order of `settings.listeners`.
    pub listeners: Vec<SocketAddr>,
    /// Bound admin address.
    pub admin: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    phase: watch::Sender<Phase>,
    drain_tx: Option<mpsc::Sender<()>>,
    drain_rx: mpsc::Receiver<()>,
    ready: Arc<AtomicBool>,
    reloader: Option<Arc<CertReloader>>,
    sources: Arc<SourcesReloader>,
    grace: Duration,
    admin_task: Option<JoinHandle<()>>,
    audit: Arc<crate::audit::Audit>,
    access_log: Option<crate::accesslog::AccessLog>,
    shipper: Option<crate::postgres::shipper::Shipper>,
}

impl Server {
    /// Bind everything and start serving. Must be called inside a Tokio runtime.
    pub async fn start(mut settings: Settings) -> Result<Server, StartError> {
        let metrics = Metrics::new();
        let audit = crate::audit::Audit::open(&settings.audit, Some(metrics.clone()))?;
        let audit_dir = settings.audit.dir.clone();
        // The record store's shipper: its own thread; serving never waits on it.
        let shipper = match (&settings.audit.postgres, &audit.shipping) {
            (Some(db), Some(shipping)) => {
                tracing::info!(store = %crate::postgres::shown(&db.url), instance = %shipping.instance, "shipping records to the record store");
                Some(
                    crate::postgres::shipper::Shipper::start(db.clone(), shipping, metrics.ship())
                        .map_err(|e| StartError::Shipper(e.to_string()))?,
                )
            }
            _ => None,
        };
        let records_health = shipper.as_ref().map(|s| s.health.clone());
        settings.consent.load_keys(&audit_dir, true)?;
        let settings = Arc::new(settings);
        let loaded = crate::sources::Sources::load(&settings.firmographics, &settings.rules_dir)
            .map_err(|e| match (e.rules.is_empty(), e.firmographics.is_empty()) {
                (true, _) => StartError::Sources(indented(&e.firmographics)),
                (false, true) => StartError::Rules(indented(&e.rules)),
                (false, false) => StartError::Rules(format!(
                    "{}\ncompany and location sources:\n{}",
                    indented(&e.rules),
                    indented(&e.firmographics)
                )),
            })?;
        tracing::info!(
            personalizations = loaded.rules.personalizations.len(),
            experiments = loaded.experiments.experiments.len(),
            version = %loaded.rules.version,
            dir = %settings.rules_dir.display(),
            "rules loaded"
        );
        if loaded.rules.personalizations.is_empty() {
            tracing::warn!(
                dir = %settings.rules_dir.display(),
                exists = settings.rules_dir.is_dir(),
                "no rule files found: nothing will be personalized (set rules.dir or --rules to the folder with accounts/, segments/, regions/)"
            );
        }
        let sources = Arc::new(SourcesReloader {
            settings: settings.clone(),
            current: Arc::new(ArcSwap::from_pointee(loaded)),
            metrics: metrics.clone(),
            fingerprint: std::sync::Mutex::new(crate::watch::fingerprint(watched(&settings))),
            refused: std::sync::Mutex::new(None),
            last: crate::sources::ReloadStatus::default(),
        });
        tracing::info!(dir = %settings.audit.dir.display(), "audit log");
        // Independent of `log.level`: `log.access_log` alone turns it on.
        let access_log = settings.log.access_log.then(|| {
            crate::accesslog::AccessLog::start(
                settings.log.format,
                Box::new(std::io::stderr()),
                metrics.access_log_dropped(),
            )
        });
        let proxy = Proxy::new(
            settings.clone(),
            metrics.clone(),
            sources.current.clone(),
            audit.clone(),
            access_log.clone(),
        )?;
        let (phase, phase_rx) = watch::channel(Phase::Serving);
        let (drain_tx, drain_rx) = mpsc::channel(1);
        let lifecycle = Lifecycle {
            phase: phase_rx.clone(),
            drain: drain_tx.clone(),
            idle: settings.timeouts.client_idle,
        };
        let permits = Arc::new(Semaphore::new(settings.limits.max_connections));

        // Certificates first: nothing binds if they are broken.
        let mut resolver = None;
        if settings.listeners.iter().any(|l| l.tls) {
            let store = tls::load_store(&settings.tls)?;
            for c in &store.entries {
                tracing::info!(cert = %c.cert.display(), key = %c.key.display(), names = ?c.names, "certificate loaded");
            }
            resolver = Some(SniResolver::new(store));
        }

        let mut bound = Vec::new();
        for l in &settings.listeners {
            let listener = server::bind(l.address).map_err(|source| StartError::Bind {
                addr: l.address,
                source,
            })?;
            let acceptor = match (&resolver, l.tls) {
                (Some(r), true) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
                    r.clone(),
                    settings.tls.min_version,
                    l.http2,
                )?)),
                _ => None,
            };
            bound.push((listener, l.clone(), acceptor));
        }
        let admin_listener = match settings.admin {
            Some(addr) => {
                Some(server::bind(addr).map_err(|source| StartError::Bind { addr, source })?)
            }
            None => None,
        };

        let mut listeners = Vec::new();
        for (listener, l, tls) in bound {
            let addr = listener.local_addr().unwrap_or(l.address);
            tracing::info!(address = %addr, tls = l.tls, http2 = l.http2, "listening");
            listeners.push(addr);
            let config = ListenerConfig { settings: l, tls };
            tokio::spawn(server::serve_listener(
                listener,
                config,
                proxy.clone(),
                lifecycle.clone(),
                permits.clone(),
            ));
        }

        let reloader =
            resolver.map(|r| Arc::new(CertReloader::new(settings.tls.clone(), r, metrics.clone())));
        if let (Some(reloader), Some(every)) = (&reloader, settings.tls.watch_interval) {
            let r = reloader.clone();
            spawn_watcher(every, phase_rx.clone(), move || {
                if r.files_changed() {
                    let _ = r.reload("certificate files changed");
                }
            });
        }
        if let Some(every) = settings.firmographics.watch_interval {
            let s = sources.clone();
            spawn_watcher(every, phase_rx.clone(), move || {
                // A set that failed is tried again only once its files change again (one log line per change).
                if s.files_changed() && !s.already_refused() {
                    let _ = s.reload("source files changed");
                }
            });
        }
        drop(lifecycle);
        // The signed per-interval counts of page decisions: one `counts` record per checkpoint interval.
        {
            let audit = audit.clone();
            let every = settings.audit.checkpoint_interval;
            let mut phase = phase_rx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => audit.write_counts(),
                        _ = phase.changed() => return,
                    }
                }
            });
        }

        let ready = Arc::new(AtomicBool::new(true));
        let mut admin = None;
        let admin_task = admin_listener.map(|listener| {
            admin = listener.local_addr().ok();
            if let Some(a) = admin {
                tracing::info!(address = %a, "admin listening");
            }
            let console = settings.console.token.as_ref().map(|t| {
                tracing::info!("console on the admin listener under /console/");
                let console = Arc::new(
                    crate::console::Console::new(
                        crate::console::Credential::new(&t.0),
                        settings.clone(),
                        metrics.clone(),
                        sources.current.clone(),
                        sources.last.clone(),
                    )
                    .with_records_health(records_health.clone()),
                );
                console.warm();
                console
            });
            tokio::spawn(serve_admin(
                listener,
                metrics.clone(),
                ready.clone(),
                records_health,
                console.map(|c| (c, proxy.clone())),
            ))
        });
        tracing::info!(upstream = %settings.upstream.url, "concierge started");

        Ok(Server {
            listeners,
            admin,
            metrics,
            phase,
            drain_tx: Some(drain_tx),
            drain_rx,
            ready,
            reloader,
            sources,
            grace: settings.timeouts.shutdown_grace,
            admin_task,
            audit,
            access_log,
            shipper,
        })
    }

    /// Reload the company and location sources now (SIGHUP); on failure the previous tables keep serving.
    pub fn reload_sources(&self, reason: &str) -> Result<(), String> {
        self.sources.reload(reason)
    }

    /// The rules currently in use.
    pub fn rules(&self) -> Arc<crate::rules::RuleSet> {
        self.sources.current.load().rules.clone()
    }

    /// The company and location tables currently in use.
    pub fn firmographics(&self) -> Arc<Firmographics> {
        self.sources.current.load().firmographics.clone()
    }

    /// Reload certificates now (SIGHUP). `None` when no TLS listener is configured.
    pub fn reload_tls(&self, reason: &str) -> Option<Result<usize, TlsError>> {
        self.reloader.as_ref().map(|r| r.reload(reason))
    }

    /// Stop accepting, let in-flight requests finish within the grace period, then drop what is left.
    pub async fn shutdown(mut self) -> Drained {
        self.ready.store(false, Ordering::SeqCst);
        let _ = self.phase.send(Phase::Draining);
        self.drain_tx.take();
        let outcome = match tokio::time::timeout(self.grace, self.drain_rx.recv()).await {
            Ok(_) => Drained::Clean,
            Err(_) => {
                let _ = self.phase.send(Phase::Closing);
                // Connection tasks drop their connections as soon as they see Closing.
                let _ = tokio::time::timeout(Duration::from_secs(2), self.drain_rx.recv()).await;
                Drained::Deadline
            }
        };
        if let Some(t) = self.admin_task.take() {
            t.abort();
        }
        // Everything queued is written, and a final checkpoint signs it.
        let audit = self.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
        // What the flush wrote goes to the record store too, if it is reachable within a few seconds (else it
        // is shipped at the next start).
        if let Some(shipper) = self.shipper.take() {
            let _ =
                tokio::task::spawn_blocking(move || shipper.finish(Duration::from_secs(5))).await;
        }
        if let Some(log) = self.access_log.take() {
            let _ = tokio::task::spawn_blocking(move || log.stop()).await;
        }
        outcome
    }

    /// The audit log's writers.
    pub fn audit(&self) -> Arc<crate::audit::Audit> {
        self.audit.clone()
    }
}

/// Run `check` every `every` until the server stops serving. It touches the file system, so it runs on the
/// blocking pool, never on the runtime's workers.
fn spawn_watcher(
    every: Duration,
    mut phase: watch::Receiver<Phase>,
    check: impl Fn() + Send + Sync + 'static,
) {
    let check = Arc::new(check);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = phase.changed() => return,
            }
            let check = check.clone();
            let _ = tokio::task::spawn_blocking(move || check()).await;
        }
    });
}

/// Every source file: company/location data and the rule files.
fn watched(settings: &Settings) -> Vec<std::path::PathBuf> {
    crate::sources::watched(&settings.firmographics, &settings.rules_dir)
}

/// Rebuilds the company and location tables and the rules from their files as one set, swapping the set in
/// only when every part of it loads cleanly (the previous set keeps serving otherwise).
struct SourcesReloader {
    settings: Arc<Settings>,
    current: Arc<ArcSwap<crate::sources::Sources>>,
    metrics: Arc<Metrics>,
    /// The files as last loaded into `current`.
    fingerprint: std::sync::Mutex<crate::watch::Fingerprint>,
    /// The files as they were when a set was last refused (not retried, nor logged again, until they change).
    refused: std::sync::Mutex<Option<crate::watch::Fingerprint>>,
    /// How the last reload went (for the console).
    last: crate::sources::ReloadStatus,
}

impl SourcesReloader {
    fn watched(&self) -> crate::watch::Fingerprint {
        crate::watch::fingerprint(watched(&self.settings))
    }

    /// Whether any source file differs from what is loaded.
    fn files_changed(&self) -> bool {
        *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) != self.watched()
    }

    /// The files are as they were when the last set was refused.
    fn already_refused(&self) -> bool {
        let now = self.watched();
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|f| *f == now)
    }

    fn note(&self, reason: &str, errors: Vec<String>) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(crate::sources::LastReload {
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            reason: reason.to_string(),
            errors,
        });
    }

    /// Load the rules and the company/location sources as one set; swap it in whole, or keep the previous set.
    /// Each source's counter says whether *its* new version went live: when the set is refused, neither did.
    fn reload(&self, reason: &str) -> Result<(), String> {
        let before = self.watched();
        match crate::sources::Sources::load(&self.settings.firmographics, &self.settings.rules_dir)
        {
            Ok(mut s) => {
                s.generation = self.current.load().generation + 1;
                let accounts = s.firmographics.accounts().len();
                tracing::info!(
                    reason,
                    generation = s.generation,
                    personalizations = s.rules.personalizations.len(),
                    version = %s.rules.version,
                    accounts,
                    "rules and company sources reloaded"
                );
                self.current.store(Arc::new(s));
                self.metrics.source_reload("rules", ReloadResult::success);
                self.metrics
                    .source_reload("firmographics", ReloadResult::success);
                *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) = before;
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.note(reason, Vec::new());
                Ok(())
            }
            Err(errors) => {
                self.metrics.source_reload("rules", ReloadResult::failure);
                self.metrics
                    .source_reload("firmographics", ReloadResult::failure);
                let text = errors.to_string();
                tracing::error!(
                    reason,
                    rule_errors = errors.rules.len(),
                    source_errors = errors.firmographics.len(),
                    errors = %text,
                    "reload refused: the rules and company sources go live together or not at all; the previous set keeps serving"
                );
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(before);
                self.note(
                    reason,
                    errors
                        .rules
                        .iter()
                        .chain(&errors.firmographics)
                        .cloned()
                        .collect(),
                );
                Err(text)
            }
        }
    }
}

async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    records: Option<Arc<crate::postgres::shipper::Health>>,
    console: Option<(Arc<crate::console::Console>, Arc<Proxy>)>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        let ready = ready.clone();
        let records = records.clone();
        let console = console.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let path = req.uri().path();
                let for_console = path == "/console" || path.starts_with("/console/");
                let console = console.clone().filter(|_| for_console);
                let immediate = match &console {
                    None => Some(admin_response(path, &metrics, &ready, records.as_deref())),
                    Some(_) => None,
                };
                async move {
                    Ok::<_, std::convert::Infallible>(match (immediate, console) {
                        (Some(resp), _) => resp,
                        (None, Some((console, proxy))) => {
                            console_response(console, proxy, req).await
                        }
                        (None, None) => Response::new(ResponseBody::empty()),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// A console request, answered on a blocking thread (searches and verification read files): the proxy's worker
/// threads never wait on it.
async fn console_response(
    console: Arc<crate::console::Console>,
    proxy: Arc<Proxy>,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    // A browser says when another site made it ask (a link, a form, an image on a page elsewhere): the
    // console's credentials are cached by the browser, so such a request is refused before any work.
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site");
    drop(req);
    let head = method == "HEAD";
    // Refusals need no blocking thread: an unauthenticated or cross-site request is answered here.
    let quick = console.refusal(authorization.as_deref(), cross_site);
    // The preview's original page, fetched through the proxy's upstream client (only for an admitted request).
    let wanted = console.preview_origin(&crate::console::Request {
        method: &method,
        path: &path,
        query: query.as_deref(),
        authorization: authorization.as_deref(),
        original: None,
        cross_site,
    });
    let original = match wanted {
        Some((target, host)) => Some(proxy.fetch_page(&target, host.as_deref()).await.map(|f| {
            crate::console::OriginPage {
                status: f.status,
                content_type: f.content_type,
                body: f.body,
                rewritable: f.rewritable,
            }
        })),
        None => None,
    };
    let reply = match quick {
        Some(r) => r,
        None => tokio::task::spawn_blocking(move || {
            console.handle(&crate::console::Request {
                method: &method,
                path: &path,
                query: query.as_deref(),
                authorization: authorization.as_deref(),
                original,
                cross_site,
            })
        })
        .await
        .unwrap_or_else(|_| crate::console::Reply {
            status: 500,
            content_type: "text/plain; charset=utf-8",
            body: b"The console failed to render this page; the proxy is unaffected.\n".to_vec(),
            download: None,
            challenge: false,
            frame: false,
        }),
    };
    let body = if head { Vec::new() } else { reply.body };
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    let headers = if reply.frame {
        crate::console::FRAME_HEADERS
    } else {
        crate::console::SECURITY_HEADERS
    };
    for (name, value) in headers {
        h.insert(*name, HeaderValue::from_static(value));
    }
    if reply.challenge {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::console::CHALLENGE),
        );
    }
    if let Some(name) = reply.download {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    resp
}

fn admin_response(
    path: &str,
    metrics: &Metrics,
    ready: &AtomicBool,
    records: Option<&crate::postgres::shipper::Health>,
) -> Response<ResponseBody> {
    let (status, ctype, body) = match path {
        // Whether records reach the record store; never part of /readyz (serving does not depend on it).
        "/healthz/records" => match records {
            None => (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok: no record store is configured ([audit.postgres]); records are kept in the local log only\n"
                    .to_string(),
            ),
            Some(h) => {
                let (healthy, text) = h.status();
                (
                    if healthy {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    },
                    "text/plain; charset=utf-8",
                    text,
                )
            }
        },
        "/healthz" => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".to_string(),
        ),
        "/readyz" if ready.load(Ordering::SeqCst) => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".into(),
        ),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "draining\n".into(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.encode(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; try /healthz, /readyz, /healthz/records or /metrics\n".into(),
        ),
    };
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Install the global tracing subscriber (human or JSON). `RUST_LOG`, if set, overrides the configured level.
pub fn init_logging(log: &LogSettings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_new(&log.level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal; a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// Build the runtime, start, and serve until SIGTERM/SIGINT; SIGHUP reloads certificates.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = settings.worker_threads {
        rt.worker_threads(n);
    }
    let rt = rt.build()?;
    rt.block_on(async move {
        let server = Server::start(settings).await?;
        wait_for_stop(&server).await?;
        stop(server).await;
        Ok(())
    })
}

/// Serve until SIGTERM or SIGINT (reloading certificates on SIGHUP), then drain.
pub async fn wait_for_stop(server: &Server) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
            _ = hup.recv() => {
                if server.reload_tls("SIGHUP").is_none() {
                    tracing::info!("SIGHUP: no TLS listener, no certificates to reload");
                }
                let _ = server.reload_sources("SIGHUP");
            }
        }
    }
    Ok(())
}

/// Drain `server` and log how it went.
pub async fn stop(server: Server) {
    let grace = server.grace;
    match server.shutdown().await {
        Drained::Clean => tracing::info!("all connections finished; stopped"),
        Drained::Deadline => {
            tracing::warn!(?grace, "grace period over; remaining connections were cut")
        }
    }
}
