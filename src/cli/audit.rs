//! `concierge audit …`: keygen, verify, export, stats (and a hidden load generator for tests and benchmarks);
//! `concierge feedback report`, which reads the same log's `feedback` stream.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};

use super::records::ReadSource;
use crate::audit::keys::{PublicKey, SigningKey};
use crate::audit::query::{self, Filter};
use crate::audit::{verify, AUDIT_STREAM};
use crate::config::{Overrides, Settings};
use crate::postgres::read::{Order, Pushdown};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Create an Ed25519 signing key for checkpoints: FILE (private, mode 0600) and FILE.pub (public; give it
    /// to reviewers and keep a copy away from the log).
    Keygen {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE", default_value = "audit-signing.key")]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check every record's hash and sequence and every checkpoint's signature; name the first bad record.
    /// Exit 0 only if the log is intact, 1 if not, 2 on usage errors.
    Verify(VerifyArgs),
    /// Records as JSON Lines or CSV, filtered.
    Export(ExportArgs),
    /// Decision and consent counts by jurisdiction, tier, outcome and reason.
    Stats(StatsArgs),
    /// Create or upgrade the PostgreSQL record store's schema (versioned, in one transaction, under an
    /// advisory lock; a schema newer than this Concierge is refused).
    Migrate(MigrateArgs),
    /// Register an instance's checkpoint public key in the PostgreSQL record store: the key central
    /// verification trusts for that instance's chains (a different key already registered is refused).
    Register(RegisterArgs),
    /// Send the records and checkpoints of a local log that the record store does not hold yet, in order, in
    /// transactions (a resend is harmless).
    Ship(ShipArgs),
    /// Write N synthetic records through the writer (decisions, and every fourth an exposure), printing each
    /// acknowledged sequence number (crash tests, benchmarks).
    #[command(hide = true)]
    Generate {
        dir: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Records in flight before waiting for acknowledgements.
        #[arg(long, default_value_t = 256)]
        window: usize,
    },
}

#[derive(Debug, Args)]
pub struct Source {
    /// The audit directory (default: audit.dir from --config, else ./audit).
    pub dir: Option<PathBuf>,
    /// TOML configuration file (audit.dir and audit.signing_key are used).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PostgresArgs {
    /// The record store (postgres://user@host:port/db); default: audit.postgres from --config.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// A file holding the database password (else CONCIERGE_POSTGRES_PASSWORD, else none).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// PEM roots for the server's certificate (else the system's).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// TOML configuration file (audit.postgres is used).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl PostgresArgs {
    fn settings(&self) -> Result<crate::postgres::PostgresSettings, String> {
        if let Some(url) = &self.postgres {
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| format!("--postgres: not a PostgreSQL URL: {e}"))?;
            return Ok(crate::postgres::PostgresSettings::for_url(
                url,
                self.password_file.clone(),
                self.ca_file.clone(),
            ));
        }
        match settings(&self.config)? {
            Some(s) => s.audit.postgres.clone().ok_or_else(|| {
                "the configuration has no [audit.postgres]; give --postgres URL".to_string()
            }),
            None => Err("give --postgres URL or --config FILE with [audit.postgres]".into()),
        }
    }
}

#[derive(Debug, Args)]
pub struct ShipArgs {
    /// The audit directory (default: audit.dir from --config, else ./audit).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub db: PostgresArgs,
    /// The instance the log belongs to (default: <dir>/instance).
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// Records per transaction (the proxy's `ship_batch` is 1000: less memory beside serving).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Connections to insert over at once, a transaction each (committed in order).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub connections: u32,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub db: PostgresArgs,
    /// The instance id (audit.instance, or the contents of <audit.dir>/instance).
    #[arg(long, value_name = "ID")]
    pub instance: String,
    /// Its public key (FILE.pub from `audit keygen`, or the private key file).
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: PostgresArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: Source,
    /// The trusted public key (FILE.pub from `audit keygen`, or the private key file). Default: the public half
    /// of audit.signing_key from --config.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Verify every instance's chains in the PostgreSQL record store instead, against the keys registered
    /// there (`audit register`); the directory and --public-key are not used.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// With --postgres: a file holding the database password (else CONCIERGE_POSTGRES_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// With --postgres: PEM roots for the server's certificate.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

#[derive(Debug, Args)]
pub struct Window {
    /// From this time on (2026-11-24 or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only decision records for this company domain.
    #[arg(long, value_name = "DOMAIN")]
    pub account: Option<String>,
    /// Only decision records with this outcome or highest permitted tier.
    #[arg(long, value_name = "VALUE", value_parser = clap::builder::PossibleValuesParser::new(query::DECISIONS))]
    pub decision: Option<String>,
    /// Only records of this type.
    #[arg(long = "type", value_name = "TYPE", value_parser = clap::builder::PossibleValuesParser::new(query::RECORD_TYPES))]
    pub kind: Option<String>,
    /// Only records with this consent id: the visitor's proof-of-consent records and every decision that
    /// relied on that consent.
    #[arg(long, value_name = "ID")]
    pub consent: Option<String>,
    /// Only records of this request (the `X-Request-Id` the visitor's response carried).
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: ReadSource,
    #[command(flatten)]
    pub window: Window,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub source: ReadSource,
    #[command(flatten)]
    pub window: Window,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FeedbackCommand {
    /// Per rule: prompts shown, answers, response rate, share positive, latest comments.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub source: ReadSource,
    /// From this time on (2026-11-24 or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only records from visitors of this company domain (known only where consent allowed the lookup).
    #[arg(long, value_name = "DOMAIN")]
    pub account: Option<String>,
    /// Only this rule (its id as the report shows it, e.g. acme.example/home-hero).
    #[arg(long, value_name = "ID")]
    pub rule: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
}

pub fn run_feedback(cmd: FeedbackCommand) -> ExitCode {
    match cmd {
        FeedbackCommand::Report(a) => report(a),
    }
}

fn report(a: ReportArgs) -> ExitCode {
    let settings = match settings(&a.source.config) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let (since, until) = match (time(&a.since, "since"), time(&a.until, "until")) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return usage(e),
    };
    let records = match a.source.open(&settings) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let mut builder = crate::feedback::report::Builder::new(crate::feedback::report::Filter {
        since,
        until,
        account: a.account,
        rule: a.rule.clone(),
    });
    let rule_filter = a.rule;
    // Not narrowed: the report names every rule the records know, whatever the window.
    if let Err(e) = records.values(
        crate::audit::FEEDBACK_STREAM,
        &Pushdown::default(),
        Order::Any,
        |_, v| builder.add(v),
    ) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(rule) = &rule_filter {
        let current = settings
            .as_ref()
            .and_then(|s| crate::rules::RuleSet::load(&s.rules_dir).ok());
        let known_now = current
            .as_ref()
            .is_some_and(|r| r.personalizations.iter().any(|p| &p.id == rule));
        if !known_now && !builder.known_rules().contains(rule) {
            let known: Vec<&str> = builder.known_rules().iter().map(String::as_str).collect();
            return usage(format!(
                "--rule `{rule}` names no rule in the feedback records{}",
                if known.is_empty() {
                    " (there are none)".to_string()
                } else {
                    format!("; known rules: {}", known.join(", "))
                }
            ));
        }
    }
    let report = builder.finish();
    match a.format {
        ReportFormat::Table => print!("{}", report.table()),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        ReportFormat::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            let written = w
                .write_record(crate::feedback::report::Report::CSV_COLUMNS)
                .and_then(|()| {
                    report
                        .csv_rows()
                        .iter()
                        .try_for_each(|row| w.write_record(row))
                })
                .and_then(|()| w.flush().map_err(csv::Error::from));
            if written.is_err() {
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

pub(super) fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

pub(super) fn settings(config: &Option<PathBuf>) -> Result<Option<Settings>, String> {
    match config {
        None => Ok(None),
        Some(path) => Settings::load(Some(path.as_path()), &Overrides::default())
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

pub(super) fn audit_dir(source: &Source, settings: &Option<Settings>) -> PathBuf {
    source.dir.clone().unwrap_or_else(|| {
        settings
            .as_ref()
            .map_or_else(|| PathBuf::from("audit"), |s| s.audit.dir.clone())
    })
}

/// `--since`/`--until`: a date or an RFC 3339 time, as the canonical string records carry.
pub(super) fn time(t: &Option<String>, name: &str) -> Result<Option<String>, String> {
    match t {
        None => Ok(None),
        Some(text) => query::parse_time(text).map(Some).ok_or_else(|| {
            format!("--{name} `{text}` is not a date (2026-11-24) or an RFC 3339 time")
        }),
    }
}

fn filter(w: &Window) -> Result<Filter, String> {
    Ok(Filter {
        since: time(&w.since, "since")?,
        until: time(&w.until, "until")?,
        account: w.account.clone(),
        decision: w.decision.clone(),
        kind: w.kind.clone(),
        consent: w.consent.clone(),
        request_id: w.request_id.clone(),
    })
}

fn pushdown(f: &Filter) -> Pushdown {
    Pushdown::from(f)
}

pub fn run(cmd: AuditCommand) -> ExitCode {
    match cmd {
        AuditCommand::Keygen { out, force } => keygen(&out, force),
        AuditCommand::Verify(a) => verify_cmd(a),
        AuditCommand::Export(a) => export(a),
        AuditCommand::Stats(a) => stats(a),
        AuditCommand::Migrate(a) => migrate(a),
        AuditCommand::Register(a) => register(a),
        AuditCommand::Ship(a) => ship(a),
        AuditCommand::Generate {
            dir,
            key,
            count,
            window,
        } => generate(&dir, &key, count, window),
    }
}

/// A runtime for one database command (said on stderr when there is none).
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("error: {e}"))
        .ok()
}

fn ship(a: ShipArgs) -> ExitCode {
    let db = match a.db.settings() {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let config = settings(&a.db.config).ok().flatten();
    let dir = a
        .dir
        .clone()
        .or_else(|| config.as_ref().map(|s| s.audit.dir.clone()))
        .unwrap_or_else(|| PathBuf::from("audit"));
    if !dir.is_dir() {
        return usage(format!("{} is not a directory", dir.display()));
    }
    let instance = match &a.instance {
        Some(i) if crate::audit::valid_instance(i) => i.clone(),
        Some(i) => return usage(format!("--instance `{i}` is not an instance id")),
        None => match std::fs::read_to_string(dir.join(crate::audit::INSTANCE_FILE)) {
            Ok(t) if crate::audit::valid_instance(t.trim()) => t.trim().to_string(),
            _ => {
                return usage(format!(
                    "{} names no instance; give --instance ID",
                    dir.join(crate::audit::INSTANCE_FILE).display()
                ))
            }
        },
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(async {
        let mut client = db.connect().await?;
        crate::postgres::migrate(&mut client, &db.url).await?;
        let mut clients = vec![client];
        while clients.len() < a.connections as usize {
            clients.push(db.connect().await?);
        }
        let mut out = Vec::new();
        for stream in [AUDIT_STREAM, crate::audit::FEEDBACK_STREAM] {
            let path = dir.join(stream);
            if path.is_dir() {
                let s = crate::postgres::ship::ship_stream(
                    &mut clients,
                    &db.url,
                    &instance,
                    &path,
                    a.batch as usize,
                )
                .await?;
                out.push((stream, s));
            }
        }
        Ok::<_, crate::postgres::PgError>(out)
    });
    match result {
        Ok(streams) => {
            for (stream, s) in streams {
                println!(
                    "{instance}/{stream}: {} record(s), {} checkpoint(s) shipped",
                    s.records, s.checkpoints
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn register(a: RegisterArgs) -> ExitCode {
    if !crate::audit::valid_instance(&a.instance) {
        return usage(format!(
            "--instance `{}` is not an instance id (1 to 64 letters, digits, '.', '_' or '-')",
            a.instance
        ));
    }
    let key = match PublicKey::load(&a.public_key) {
        Ok(k) => k,
        Err(e) => return usage(format!("--public-key {}: {e}", a.public_key.display())),
    };
    let db = match a.db.settings() {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(async {
        let mut client = db.connect().await?;
        crate::postgres::migrate(&mut client, &db.url).await?;
        crate::postgres::register(&client, &db.url, &a.instance, &key).await
    });
    match result {
        Ok(r) => {
            println!(
                "instance {} {} with key {}",
                a.instance,
                if r == crate::postgres::Registered::New {
                    "registered"
                } else {
                    "was already registered"
                },
                key.encode()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(a: MigrateArgs) -> ExitCode {
    let db = match a.db.settings() {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(async {
        let mut client = db.connect().await?;
        crate::postgres::migrate(&mut client, &db.url).await
    });
    match result {
        Ok(m) if m.from == m.to => {
            println!(
                "{}: the schema is up to date (version {})",
                crate::postgres::shown(&db.url),
                m.to
            );
            ExitCode::SUCCESS
        }
        Ok(m) => {
            println!(
                "{}: schema version {} → {}",
                crate::postgres::shown(&db.url),
                m.from,
                m.to
            );
            for (v, what, _) in crate::postgres::MIGRATIONS.iter().filter(|x| x.0 > m.from) {
                println!("  {v}: {what}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(out: &Path, force: bool) -> ExitCode {
    if out.exists() && !force {
        return usage(format!(
            "{} exists; pass --force to replace it (checkpoints signed with the old key then need the old public key)",
            out.display()
        ));
    }
    let key = match crate::audit::keys::create(out) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let public = key.public().encode();
    let pub_path = crate::audit::keys::public_path(out);
    println!(
        "private key: {} (set audit.signing_key to it)",
        out.display()
    );
    println!("public key:  {} — {public}", pub_path.display());
    ExitCode::SUCCESS
}

/// `audit verify --postgres`: every instance from the database alone.
fn verify_db(a: &VerifyArgs, url: &str) -> ExitCode {
    if let Err(e) = url.parse::<tokio_postgres::Config>() {
        return usage(format!("--postgres: not a PostgreSQL URL: {e}"));
    }
    let db =
        crate::postgres::PostgresSettings::for_url(url, a.password_file.clone(), a.ca_file.clone());
    // A private scratch directory for the laid-out rows, removed at the end.
    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let scratch = Scratch(
        std::env::temp_dir().join(format!("concierge-verify-{}-{nanos}", std::process::id())),
    );
    if let Err(e) = std::fs::create_dir(&scratch.0) {
        eprintln!("error: no scratch directory {}: {e}", scratch.0.display());
        return ExitCode::FAILURE;
    }
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(async {
        let client = db.connect().await?;
        crate::postgres::verify::verify_all(&client, &db.url, &scratch.0).await
    });
    let reports = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut intact = !reports.is_empty();
    if a.json {
        let out: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| serde_json::json!({"instance": r.instance, "registered": r.report.is_some(), "report": r.report}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        intact &= reports
            .iter()
            .all(|r| r.report.as_ref().is_some_and(|r| r.intact));
    } else {
        for r in &reports {
            match &r.report {
                None => {
                    intact = false;
                    println!("instance {}: NOT VERIFIED — no key is registered for it (`concierge audit register`)", r.instance);
                }
                Some(report) => {
                    println!("instance {}:", r.instance);
                    print_streams(report);
                    match report.first_problem() {
                        None if report.intact => println!("  intact"),
                        None => {
                            intact = false;
                            println!("  nothing to verify");
                        }
                        Some((stream, p)) => {
                            intact = false;
                            println!(
                                "  TAMPERED: first bad record of instance {} in stream {stream}{}: {}",
                                r.instance,
                                p.seq.map(|s| format!(" at seq {s}")).unwrap_or_default(),
                                p.what
                            );
                        }
                    }
                }
            }
        }
        if reports.is_empty() {
            println!("nothing to verify: the database holds no instance");
        }
    }
    if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_streams(report: &verify::Report) {
    for s in &report.streams {
        println!(
            "stream {}: {} records in {} segment(s){}, {} signed checkpoint(s){}",
            s.stream,
            s.records,
            s.segments,
            match (s.first_seq, s.last_seq) {
                (Some(a), Some(b)) => format!(" (seq {a}..={b})"),
                _ => String::new(),
            },
            s.checkpoints,
            s.last_signed_seq
                .map(|q| format!(", last covers seq {q}"))
                .unwrap_or_default()
        );
        if let Some(i) = &s.instance {
            println!("  instance {i}");
        }
        if s.unsigned_tail > 0 {
            println!(
                "  {} record(s) after the last checkpoint are protected by the chain only",
                s.unsigned_tail
            );
        }
        for n in &s.notes {
            println!("  note: {n}");
        }
        for p in &s.problems {
            println!("  BAD {}: {}", p.at, p.what);
        }
    }
}

fn verify_cmd(a: VerifyArgs) -> ExitCode {
    if let Some(url) = &a.postgres {
        return verify_db(&a, url);
    }
    let settings = match settings(&a.source.config) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let dir = audit_dir(&a.source, &settings);
    let key_path = a
        .public_key
        .clone()
        .or_else(|| settings.as_ref().and_then(|s| s.audit.signing_key.clone()));
    let Some(key_path) = key_path else {
        return usage("no trusted key: pass --public-key FILE (the .pub written by `concierge audit keygen`) or --config with audit.signing_key");
    };
    let key = match PublicKey::load(&key_path) {
        Ok(k) => k,
        Err(e) => return usage(e),
    };
    if !dir.is_dir() {
        return usage(format!("{} is not a directory", dir.display()));
    }
    let report = match verify::verify(&dir, &key) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_streams(&report);
        match report.first_problem() {
            None if report.intact => println!("intact"),
            None => println!("nothing to verify in {}", dir.display()),
            Some((stream, p)) => println!(
                "TAMPERED: first bad record in stream {stream} at {}: {}",
                p.at, p.what
            ),
        }
    }
    if report.intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn export(a: ExportArgs) -> ExitCode {
    let settings = match settings(&a.source.config) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let f = match filter(&a.window) {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    let records = match a.source.open(&settings) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let push = pushdown(&f);
    let stdout = std::io::stdout();
    let out = std::io::BufWriter::new(stdout.lock());
    let mut failed: Option<String> = None;
    let result = match a.format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let _ = w.write_record(query::CSV_COLUMNS);
            let r = records.values(AUDIT_STREAM, &push, Order::Time, |_, v| {
                if failed.is_none() && f.matches(v) {
                    if let Err(e) = w.write_record(query::csv_row(v)) {
                        failed = Some(e.to_string());
                    }
                }
            });
            if let Err(e) = w.flush() {
                failed.get_or_insert(e.to_string());
            }
            r
        }
        Format::Jsonl => {
            let mut out = out;
            let r = records.values(AUDIT_STREAM, &push, Order::Time, |line, v| {
                if failed.is_none() && f.matches(v) {
                    if let Err(e) = out.write_all(line).and_then(|()| out.write_all(b"\n")) {
                        failed = Some(e.to_string());
                    }
                }
            });
            if let Err(e) = out.flush() {
                failed.get_or_insert(e.to_string());
            }
            r
        }
    };
    match result.and(failed.map_or(Ok(()), Err)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}: {e}", records.describe());
            ExitCode::FAILURE
        }
    }
}

fn stats(a: StatsArgs) -> ExitCode {
    let settings = match settings(&a.source.config) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let f = match filter(&a.window) {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    let records = match a.source.open(&settings) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let parts = records.fold(
        AUDIT_STREAM,
        &pushdown(&f),
        query::Stats::default,
        |stats, line| stats.add_line(line, &f),
    );
    let mut stats = query::Stats::default();
    match parts {
        Ok(parts) => parts.into_iter().for_each(|p| stats.merge(p)),
        Err(e) => {
            eprintln!("error: {}: {e}", records.describe());
            return ExitCode::FAILURE;
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&stats).unwrap_or_default()
        );
    } else {
        print!("{}", stats.table());
    }
    ExitCode::SUCCESS
}

/// Synthetic decision records through a real writer; prints `acked <seq>` as acknowledgements arrive.
fn generate(dir: &Path, key: &Path, count: u64, window: usize) -> ExitCode {
    let key = match SigningKey::load(key) {
        Ok(k) => Arc::new(k),
        Err(e) => return usage(e),
    };
    let mut options = crate::audit::writer::Options::new(AUDIT_STREAM);
    options.checkpoint_records = 500;
    let (writer, thread) = match crate::audit::writer::Writer::open(dir, key, options) {
        Ok(w) => w,
        Err(e) => return usage(e),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..count {
        // Decisions, and every fourth record an exposure (as a page's decision and its exposure share a
        // stream), of 100 accounts in two arms.
        let record = if i % 4 == 3 {
            let account = (i / 4) % 100;
            serde_json::json!({
                "type": "exposure",
                "time": crate::audit::writer::now_rfc3339(),
                "request_id": format!("gen-{i}"),
                "experiment": "generated",
                "arm": if account % 2 == 0 { "control" } else { "treatment" },
                "account": format!("account-{account}.example"),
                "page": "/",
                "rules": [format!("account-{account}.example/hero")],
                "rules_version": "generated",
                "control": 0.5,
            })
        } else {
            serde_json::json!({
                "type": "decision",
                "time": crate::audit::writer::now_rfc3339(),
                "request_id": format!("gen-{i}"),
                "page": "/",
                "jurisdiction": {"regime": "opt-out", "region": "US-CA"},
                "permitted": ["anonymous", "firmographic"],
                "reasons": ["generated"],
                "outcome": "personalized",
            })
        };
        // Wait for the oldest acknowledgement (and print it) when the window or the queue is full.
        let mut ack_oldest =
            |pending: &mut std::collections::VecDeque<crate::audit::writer::Ack>| {
                let Some(a) = pending.pop_front() else {
                    return false;
                };
                if let Ok(seq) = writer.written_blocking(a, std::time::Duration::from_secs(10)) {
                    let _ = writeln!(out, "acked {seq}");
                    let _ = out.flush();
                }
                true
            };
        loop {
            match writer.submit_durable(&record) {
                Ok(ack) => {
                    pending.push_back(ack);
                    break;
                }
                Err(e) => {
                    if !ack_oldest(&mut pending) {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        while pending.len() > window {
            ack_oldest(&mut pending);
        }
    }
    for a in pending {
        if let Ok(seq) = writer.written_blocking(a, std::time::Duration::from_secs(10)) {
            let _ = writeln!(out, "acked {seq}");
        }
    }
    let _ = out.flush();
    writer.flush();
    drop(writer);
    let _ = thread.join();
    ExitCode::SUCCESS
}
