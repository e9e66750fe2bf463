//! Command-line interface: arguments (clap), exit codes, and human output.
//!
//! Exit codes: 0 success; 1 the command ran and found problems or failed at run time (`check` found errors,
//! a port could not be bound); 2 the configuration or the arguments are invalid.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app;

/// `println!` that ends the process quietly when stdout is closed (`concierge lookup … | head`) instead of
/// panicking on the broken pipe.
macro_rules! outln {
    () => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock()).is_err() {
            std::process::exit(0);
        }
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}
use crate::config::{LogFormat, Overrides, Settings};
use crate::consent::policy::LookupPermit;

#[derive(Debug, Parser)]
#[command(
    name = "concierge",
    version,
    about = "Privacy-first consent and firmographic personalization proxy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve(ServeArgs),
    /// Validate everything `serve` would load (config, certificates, CA file) and exit.
    Check(ServeArgs),
    /// Run the built-in demo origin (the example site) with the proxy in front of it.
    Demo(DemoArgs),
    /// Show the company and location behind IP addresses, and why a company was not assigned.
    Lookup(LookupArgs),
    /// Consent signals.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Dry run for one visitor and URL: company and location, the consent Decision, every rule with why it
    /// applies or not, the plan, and (with --html) the rewritten page.
    Explain(ExplainArgs),
    /// The tamper-evident audit log: keygen, verify, export, stats.
    #[command(subcommand)]
    Audit(crate::cli_audit::AuditCommand),
    /// Visitors' answers to feedback prompts, per rule.
    #[command(subcommand)]
    Feedback(crate::cli_audit::FeedbackCommand),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Rules directory. Overrides rules.dir.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// The visitor's (resolved) IP address.
    #[arg(long, value_name = "IP")]
    pub ip: String,
    /// The page, as a URL or a path with query (e.g. '/pricing?utm_campaign=spring').
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// A request header, e.g. 'Sec-GPC: 1' or 'Referer: https://www.linkedin.com/' (repeatable).
    #[arg(long = "header", short = 'H', value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// A cookie, e.g. 'concierge_consent=…' (repeatable).
    #[arg(long = "cookie", short = 'b', value_name = "NAME=VALUE")]
    pub cookies: Vec<String>,
    /// An HTML file to rewrite as the origin's page; the result goes to standard output.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Decode a TCF v2 TC string, a GPP string or a US Privacy string (exit 2 with the reason if malformed).
    Decode {
        /// The string (TC strings start with C, GPP strings with D, US Privacy strings are like 1YNN).
        string: String,
        /// Print JSON (IAB field names) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The consent Decision for a visitor: jurisdiction, permitted tiers, reasons, and whether the company
    /// lookup would run — with the configured geo data and policy.
    Decide(DecideArgs),
    /// Write a new key for the first-party consent cookie (consent.cookie_key), readable by its owner only.
    Keygen {
        /// Where to write the key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// TOML configuration file ([consent], [geo], [firmographics] and rules.dir are used).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Rules directory (account networks). Overrides rules.dir.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// The visitor's (resolved) IP address.
    #[arg(long, value_name = "IP")]
    pub ip: String,
    /// A request header, e.g. 'Sec-GPC: 1' (repeatable).
    #[arg(long = "header", short = 'H', value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// A cookie, e.g. 'euconsent-v2=CP...' (repeatable).
    #[arg(long = "cookie", short = 'b', value_name = "NAME=VALUE")]
    pub cookies: Vec<String>,
    /// The request's query string (e.g. 'gdpr_consent=CP...&gpp_sid=7').
    #[arg(long, value_name = "QUERY")]
    pub query: Option<String>,
    /// Decide as for a visitor on HTTPS (our consent cookie is then read under its `__Host-` name).
    #[arg(long)]
    pub https: bool,
    /// Decide as of this time (RFC 3339, e.g. 2026-11-24T12:00:00Z) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// TOML configuration file (its [firmographics] and [geo] sections and rules.dir are used).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Rules directory (account networks and aliases). Overrides rules.dir.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Print JSON (one array) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Addresses to look up.
    #[arg(value_name = "IP", required = true)]
    pub ips: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Human,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> LogFormat {
        match f {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see concierge.example.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Plain-HTTP listen address; repeatable. Replaces the file's listeners.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Origin URL, e.g. http://127.0.0.1:3000. Overrides upstream.url.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Rules directory. Overrides rules.dir.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Admin listen address (health, readiness, metrics), or "off". Overrides admin.address.
    #[arg(long, value_name = "ADDR|off")]
    pub admin: Option<String>,
    /// Log format. Overrides log.format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            rules: self.rules.clone(),
            log_format: self.log_format.map(Into::into),
            admin: self.admin.clone(),
        }
    }

    fn load(&self) -> Result<Settings, crate::config::ConfigErrors> {
        Settings::load(self.config.as_deref(), &self.overrides())
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the proxy listens.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Admin listen address, or "off".
    #[arg(long, default_value = "127.0.0.1:9901", value_name = "ADDR|off")]
    pub admin: String,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(args),
        Command::Demo(args) => demo(args),
        Command::Lookup(args) => lookup(args),
        Command::Consent(ConsentCommand::Decode { string, json }) => consent_decode(&string, json),
        Command::Consent(ConsentCommand::Decide(args)) => consent_decide(args),
        Command::Consent(ConsentCommand::Keygen { out, force }) => consent_keygen(&out, force),
        Command::Explain(args) => explain(args),
        Command::Audit(cmd) => crate::cli_audit::run(cmd),
        Command::Feedback(cmd) => crate::cli_audit::run_feedback(cmd),
    }
}

fn consent_keygen(out: &std::path::Path, force: bool) -> ExitCode {
    if out.exists() && !force {
        eprintln!(
            "error: {} exists; pass --force to replace it (cookies it signed stop verifying unless it goes to consent.cookie_previous_keys)",
            out.display()
        );
        return ExitCode::from(2);
    }
    match crate::consent::first_party::CookieKey::create(out) {
        Ok(key) => {
            outln!(
                "cookie key {} written to {} (set consent.cookie_key to it)",
                key.id(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_config_errors(errors: &crate::config::ConfigErrors) {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    eprintln!("{} error(s) in the configuration", errors.0.len());
}

fn serve(args: ServeArgs) -> ExitCode {
    let settings = match args.load() {
        Ok(s) => s,
        Err(e) => {
            print_config_errors(&e);
            return ExitCode::from(2);
        }
    };
    app::init_logging(&settings.log);
    match app::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "concierge stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: ServeArgs) -> ExitCode {
    let settings = match args.load() {
        Ok(s) => s,
        Err(e) => {
            print_config_errors(&e);
            return ExitCode::FAILURE;
        }
    };
    let mut problems: Vec<String> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for l in &settings.listeners {
        let kind = if l.tls { "https" } else { "http" };
        let h2 = if l.http2 {
            "HTTP/1.1 + HTTP/2"
        } else {
            "HTTP/1.1"
        };
        let redirect = l
            .redirect_to_https
            .map(|p| format!(", redirects to https port {p}"))
            .unwrap_or_default();
        lines.push(format!("listener  {} ({kind}, {h2}{redirect})", l.address));
    }
    lines.push(format!(
        "upstream  {} (Host: {:?})",
        settings.upstream.url, settings.upstream.host_header
    ));
    let mut consent = settings.consent.clone();
    if let Err(e) = consent.load_keys(&settings.audit.dir, false) {
        problems.push(format!("consent.cookie_key: {e}"));
    }
    if settings.listeners.iter().any(|l| l.tls) {
        match crate::tls::load_store(&settings.tls) {
            Ok(store) => {
                for c in &store.entries {
                    lines.push(format!(
                        "certificate {} for {}",
                        c.cert.display(),
                        c.names.join(", ")
                    ));
                }
            }
            Err(e) => problems.push(format!("tls: {e}")),
        }
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let result = rt.block_on(async {
                crate::proxy::upstream::Upstream::new(&settings.upstream, &settings.timeouts)
                    .map(|_| ())
            });
            if let Err(e) = result {
                problems.push(e.to_string());
            }
        }
        Err(e) => problems.push(format!("cannot start a runtime: {e}")),
    }
    match crate::rules::RuleSet::load(&settings.rules_dir) {
        Ok(r) => {
            lines.push(format!(
                "rules     {} personalizations in {} (version {})",
                r.personalizations.len(),
                settings.rules_dir.display(),
                r.version
            ));
            for c in &r.conflicts {
                lines.push(format!(
                    "conflict  `{}` ({}): {} wins over {}",
                    c.selector, c.slot, c.winner, c.loser
                ));
            }
        }
        Err(errors) => problems.extend(errors.iter().map(|e| e.to_string())),
    }
    match crate::firmographics::Firmographics::load(&settings.firmographics, &settings.rules_dir) {
        Ok(f) => {
            lines.push(format!(
                "accounts  {} in {}",
                f.accounts().len(),
                settings.rules_dir.join("accounts").display()
            ));
            let fs = &settings.firmographics;
            for file in &fs.files {
                lines.push(format!("vendor    {}", file.display()));
            }
            for db in &fs.company_dbs {
                lines.push(format!(
                    "mmdb      {} (organization: {})",
                    db.path.display(),
                    db.organization
                ));
            }
            for (what, db) in [
                ("geo", &fs.geo_db),
                ("anonymous", &fs.anonymous_ip_db),
                ("connection", &fs.connection_type_db),
            ] {
                if let Some(p) = db {
                    lines.push(format!("{what:<9} {}", p.display()));
                }
            }
        }
        Err(errors) => problems.extend(errors.iter().map(|e| e.to_string())),
    }
    match settings.admin {
        Some(a) => lines.push(format!("admin     {a} (/healthz, /readyz, /metrics)")),
        None => lines.push("admin     off".into()),
    }
    if problems.is_empty() {
        let source = settings
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or("flags only".into());
        outln!("configuration OK ({source})");
        for l in lines {
            outln!("  {l}");
        }
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        eprintln!("{} error(s)", problems.len());
        ExitCode::FAILURE
    }
}

fn demo(args: DemoArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = rt.block_on(async move {
        let origin = crate::demo::start_origin(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let overrides = Overrides {
            listen: vec![args.listen.to_string()],
            upstream: Some(format!("http://{origin}")),
            rules: None,
            log_format: args.log_format.map(Into::into),
            admin: Some(args.admin.clone()),
        };
        let audit_dir = std::env::temp_dir().join(format!("concierge-demo-{}", std::process::id()));
        std::fs::create_dir_all(&audit_dir)?;
        let key_path = audit_dir.join("demo-signing.key");
        crate::audit::keys::create(&key_path)?;
        let settings = Settings::from_toml(
            &crate::demo::settings_toml(&audit_dir.join("log"), &key_path),
            &overrides,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        app::init_logging(&settings.log);
        let server = app::Server::start(settings).await.map_err(|e| {
            anyhow::anyhow!("{e}\nhint: another program uses that port; pick others with --listen ADDR --admin ADDR|off")
        })?;
        let proxy_addr = server.listeners.first().copied().unwrap_or(args.listen);
        outln!("{}", crate::demo::banner(proxy_addr, origin, server.admin));
        outln!(
            "Audit log (consent and decision records, feedback): {log}\n  check it: concierge audit verify {log} --public-key {pubkey}\n  feedback: concierge feedback report {log}\n",
            log = audit_dir.join("log").display(),
            pubkey = crate::audit::keys::public_path(&key_path).display()
        );
        app::wait_for_stop(&server).await?;
        app::stop(server).await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Settings and company/location sources for the offline commands (`lookup`, `consent decide`), which never
/// talk to the origin: a config without `[upstream]` is fine. Errors are printed; the exit code is returned.
fn load_sources(
    config: Option<&std::path::Path>,
    rules: Option<PathBuf>,
) -> Result<(Settings, crate::firmographics::Firmographics), ExitCode> {
    let overrides = Overrides {
        upstream: Some("http://127.0.0.1:9".into()),
        rules,
        ..Default::default()
    };
    let mut settings = Settings::load(config, &overrides).map_err(|e| {
        print_config_errors(&e);
        ExitCode::from(2)
    })?;
    // The consent cookie's keys, to verify a `--cookie concierge_consent=…` as the proxy would (never created
    // here: without a key no cookie verifies).
    let audit_dir = settings.audit.dir.clone();
    settings.consent.load_keys(&audit_dir, false).map_err(|e| {
        eprintln!("error: consent.cookie_key: {e}");
        ExitCode::from(2)
    })?;
    let f = crate::firmographics::Firmographics::load(&settings.firmographics, &settings.rules_dir)
        .map_err(|errors| {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!(
                "{} error(s) in the company and location sources",
                errors.len()
            );
            ExitCode::FAILURE
        })?;
    Ok((settings, f))
}

fn lookup(args: LookupArgs) -> ExitCode {
    use crate::firmographics::NoCompany;

    let mut ips = Vec::new();
    for text in &args.ips {
        match text.parse::<std::net::IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                eprintln!("error: `{text}` is not an IP address");
                return ExitCode::from(2);
            }
        }
    }
    let f = match load_sources(args.config.as_deref(), args.rules.clone()) {
        Ok((_, f)) => f,
        Err(code) => return code,
    };
    if args.json {
        let out: Vec<serde_json::Value> = ips
            .iter()
            .map(|ip| {
                let (company, reason) = match f.company(*ip, LookupPermit::operator()) {
                    Ok(m) => (serde_json::to_value(&m).ok(), None),
                    Err(r) => (None, serde_json::to_value(&r).ok()),
                };
                serde_json::json!({
                    "ip": ip.to_string(),
                    "company": company,
                    "no_company": reason,
                    "geo": f.geo(*ip),
                })
            })
            .collect();
        match serde_json::to_string_pretty(&out) {
            Ok(text) => outln!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    for ip in ips {
        outln!("{ip}");
        match f.company(ip, LookupPermit::operator()) {
            Ok(m) => {
                let c = &m.company;
                let domain = c
                    .domain
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let source = match &m.source {
                    crate::firmographics::MatchSource::Account { file } => {
                        format!("account file {}", file.display())
                    }
                    crate::firmographics::MatchSource::Vendor { file } => {
                        format!("vendor file {}", file.display())
                    }
                    crate::firmographics::MatchSource::Mmdb {
                        file,
                        organization,
                        via_alias,
                    } => {
                        let alias = if *via_alias {
                            ", matched to the account by its aliases"
                        } else {
                            ""
                        };
                        format!(
                            "{} (organization \"{organization}\"{alias})",
                            file.display()
                        )
                    }
                };
                let network = m
                    .network
                    .map(|n| format!(", network {n}"))
                    .unwrap_or_default();
                outln!("  company  {}{domain} — {source}{network}", c.name);
                let mut attrs = Vec::new();
                if c.account {
                    attrs.push("target account".to_string());
                }
                for (k, v) in [
                    ("industry", &c.industry),
                    ("employees", &c.employees),
                    ("country", &c.country),
                    ("owner", &c.owner),
                ] {
                    if let Some(v) = v {
                        attrs.push(format!("{k} {v}"));
                    }
                }
                if !attrs.is_empty() {
                    outln!("           {}", attrs.join(" · "));
                }
            }
            Err(reason) => {
                let why = match reason {
                    NoCompany::NoMatch => "no source knows this address".to_string(),
                    NoCompany::NotACompany { kind, name, source } => {
                        format!(
                            "{kind} network{} (per {})",
                            if name.is_empty() {
                                String::new()
                            } else {
                                format!(" of {name}")
                            },
                            source.display()
                        )
                    }
                    NoCompany::Anonymizer { flag } => format!("anonymizer ({flag})"),
                    NoCompany::Mobile => "mobile (cellular) connection".to_string(),
                    NoCompany::DenyListed { organization } => {
                        format!("{organization} is on the deny list")
                    }
                };
                outln!("  company  none: {why}");
            }
        }
        let geo = f.geo(ip);
        match (geo.country, geo.subdivision) {
            (None, _) => outln!("  geo      unknown"),
            (Some(c), None) => outln!("  geo      {c}"),
            (Some(c), Some(s)) => outln!("  geo      {c}, {s}"),
        }
    }
    ExitCode::SUCCESS
}

/// Headers for an offline request (`consent decide`, `explain`) from 'Name: value' and 'NAME=VALUE' arguments.
fn request_headers(headers: &[String], cookies: &[String]) -> Result<http::HeaderMap, ExitCode> {
    use http::header::{HeaderName, HeaderValue};
    let mut map = http::HeaderMap::new();
    for h in headers {
        let parsed = h.split_once(':').and_then(|(n, v)| {
            Some((
                HeaderName::from_bytes(n.trim().as_bytes()).ok()?,
                HeaderValue::from_str(v.trim()).ok()?,
            ))
        });
        let Some((name, value)) = parsed else {
            eprintln!("error: --header `{h}` is not a header; write 'Name: value'");
            return Err(ExitCode::from(2));
        };
        map.append(name, value);
    }
    if !cookies.is_empty() {
        if let Some(bad) = cookies.iter().find(|c| !c.contains('=')) {
            eprintln!("error: --cookie `{bad}` is not a cookie; write 'NAME=VALUE'");
            return Err(ExitCode::from(2));
        }
        match HeaderValue::from_str(&cookies.join("; ")) {
            Ok(v) => {
                map.append(http::header::COOKIE, v);
            }
            Err(_) => {
                eprintln!("error: a --cookie value holds characters a Cookie header cannot carry");
                return Err(ExitCode::from(2));
            }
        }
    }
    Ok(map)
}

fn explain(args: ExplainArgs) -> ExitCode {
    use crate::classify::Lookup;
    use crate::rules::Verdict;

    let Ok(ip) = args.ip.parse::<std::net::IpAddr>() else {
        eprintln!("error: --ip `{}` is not an IP address", args.ip);
        return ExitCode::from(2);
    };
    let Ok(uri) = args.url.parse::<http::Uri>() else {
        eprintln!("error: --url `{}` is not a URL or path", args.url);
        return ExitCode::from(2);
    };
    let headers = match request_headers(&args.headers, &args.cookies) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let html = match &args.html {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("error: --html {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let (settings, f) = match load_sources(args.config.as_deref(), args.rules.clone()) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let rules = match crate::rules::RuleSet::load(&settings.rules_dir) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s) in the rule files", errors.len());
            return ExitCode::FAILURE;
        }
    };
    // The page decided exactly as the proxy decides it: one generation of sources, the same pipeline. An
    // https:// URL is read as the proxy reads an HTTPS request (the `__Host-` consent cookie).
    let sources = crate::sources::Sources {
        firmographics: std::sync::Arc::new(f),
        rules: std::sync::Arc::new(rules),
    };
    let view = crate::pipeline::RequestView {
        path: uri.path(),
        query: uri.query(),
        headers: &headers,
        client: ip,
        secure: args.url.starts_with("https://"),
        now: crate::classify::unix_now(),
    };
    let decided = crate::pipeline::plan_page(
        crate::pipeline::classify(&view, &sources, &settings),
        &view,
        &sources,
        &settings,
    );
    let (c, plan) = (&decided.classification, &decided.plan);
    let page = crate::pipeline::page(&settings, c);
    let ops = decided.ops.clone();
    let additions = crate::rewrite::Additions::of(plan, &page);
    let describe = |p: &crate::rules::Personalization, a: &crate::rules::Action| {
        decided.describe(&view, &settings, p, a)
    };
    // The decision record the proxy would write for this request (client pseudonymized as configured; the
    // keyed hash differs from the proxy's, whose key lives only in its memory).
    let record = decided.recorded(settings.audit.record_refusals).then(|| {
        let client = crate::audit::Pseudonymizer::new(
            settings.audit.client,
            settings.audit.client_key_rotation,
        )
        .client(ip);
        decided.record("explain", client, uri.path(), decided.planned_outcome())
    });
    let rewritten = html.map(|body| {
        let mut rw = crate::rewrite::Rewriter::new(ops, None, 64 * 1024 * 1024);
        let (head, e1) = rw.write(&body);
        let (tail, e2) = rw.end();
        let out = [head, tail].concat();
        (out, e1.or(e2))
    });
    let status = |v: &Verdict| -> (&'static str, String) {
        match v {
            Verdict::Applied => ("applied", String::new()),
            Verdict::NotPermitted(w) => ("not permitted", w.clone()),
            Verdict::NotMatched(w) => ("not matched", w.clone()),
            Verdict::Overridden(w) => ("overridden", w.clone()),
        }
    };
    if args.json {
        let mut out = decided.explain(&view, &settings, ip, &args.url, record.clone());
        if let Some((html, error)) = &rewritten {
            out.html = Some(String::from_utf8_lossy(html).into_owned());
            out.rewrite_error = Some(error.clone());
        }
        return match serde_json::to_string_pretty(&out) {
            Ok(t) => {
                outln!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // With --html, the page goes to stdout and the explanation to stderr, so the page can be redirected.
    let mut text = Vec::new();
    let d = &c.decision;
    text.push(format!(
        "visitor    {ip} {} — {}",
        match (&c.geo.country, &c.geo.subdivision) {
            (Some(cc), Some(sub)) => format!("{cc}-{sub}"),
            (Some(cc), None) => cc.clone(),
            _ => "location unknown".into(),
        },
        match &c.company {
            Lookup::NotRun => "company lookup not run (firmographic not permitted)".to_string(),
            Lookup::Matched(m) => format!(
                "company {}{}",
                m.company.name,
                m.company
                    .domain
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            Lookup::NoCompany(_) => "no company".to_string(),
        }
    ));
    let tiers: Vec<&str> = d.permitted.iter().map(|t| t.name()).collect();
    text.push(format!(
        "consent    {} ({}): permitted {}{}",
        d.jurisdiction.region,
        d.jurisdiction.regime.name(),
        tiers.join(", "),
        if d.show_banner { "; banner shown" } else { "" }
    ));
    text.push(format!("           reasons: {}", d.reasons.join(", ")));
    text.push(format!("rules      version {}", plan.rules_version));
    for (p, v) in &plan.verdicts {
        let (what, why) = status(v);
        text.push(format!(
            "  {what:<14} {:<36} {}",
            p.id,
            if why.is_empty() {
                format!("({:?}, {:?})", p.scale, p.tier).to_lowercase()
            } else {
                why
            }
        ));
    }
    text.push("plan".into());
    if decided.ops.is_empty() {
        text.push("  nothing to change".into());
    }
    for (p, a) in &plan.actions {
        let (what, value) = describe(p, a);
        text.push(format!(
            "  {:<24} {what:<22} {value:?}  [{}]",
            a.selector, p.id
        ));
    }
    if additions.banner {
        text.push("  + the consent banner (end of <head>)".into());
    }
    for p in &additions.prompts {
        if let Some(f) = &p.feedback {
            text.push(format!(
                "  + feedback prompt {:?}{} (start of <body>)  [{}]",
                f.question,
                if f.comment {
                    " with a comment field"
                } else {
                    ""
                },
                p.id
            ));
        }
    }
    if additions.why_link {
        text.push(format!(
            "  + \"Why am I seeing this?\" link to {} (end of <body>)",
            crate::feedback::why_href(page.prefix, uri.path())
        ));
    }
    match &record {
        Some(r) => text.push(format!(
            "record     {}  (for a 200 text/html response)",
            serde_json::to_string(&crate::audit::Record::Decision(Box::new(r.clone())))
                .unwrap_or_default()
        )),
        None => text.push("record     none (no lookup ran and nothing to change)".into()),
    }
    match rewritten {
        Some((html, error)) => {
            for line in &text {
                eprintln!("{line}");
            }
            if let Some(e) = error {
                eprintln!("rewrite    gave up ({e}); the rest of the page is unchanged");
            }
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(&html)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::SUCCESS;
            }
        }
        None => {
            for line in &text {
                outln!("{line}");
            }
        }
    }
    ExitCode::SUCCESS
}

fn consent_decide(args: DecideArgs) -> ExitCode {
    use crate::classify::{classify, Lookup};

    let Ok(ip) = args.ip.parse::<std::net::IpAddr>() else {
        eprintln!("error: --ip `{}` is not an IP address", args.ip);
        return ExitCode::from(2);
    };
    let headers = match request_headers(&args.headers, &args.cookies) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let now = match &args.at {
        None => crate::classify::unix_now(),
        Some(t) => match humantime::parse_rfc3339_weak(t) {
            Ok(time) => time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            Err(e) => {
                eprintln!("error: --at `{t}` is not an RFC 3339 time ({e})");
                return ExitCode::from(2);
            }
        },
    };
    let (settings, f) = match load_sources(args.config.as_deref(), args.rules.clone()) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let c = classify(
        &f,
        &settings.consent,
        ip,
        &headers,
        args.query.as_deref(),
        args.https,
        now,
    );
    if args.json {
        let out = serde_json::json!({
            "ip": ip.to_string(),
            "geo": c.geo,
            "decision": c.decision,
            "company": c.company,
        });
        return match serde_json::to_string_pretty(&out) {
            Ok(text) => {
                outln!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let d = &c.decision;
    let tiers: Vec<&str> = d.permitted.iter().map(|t| t.name()).collect();
    outln!("{ip}");
    outln!(
        "  location:       {}",
        match (&c.geo.country, &c.geo.subdivision) {
            (Some(cc), Some(sub)) => format!("{cc}-{sub}"),
            (Some(cc), None) => cc.clone(),
            _ => "unknown (no geo data for this address)".into(),
        }
    );
    outln!(
        "  jurisdiction:   {} ({})",
        d.jurisdiction.region,
        d.jurisdiction.regime.name()
    );
    outln!("  permitted:      {}", tiers.join(", "));
    outln!(
        "  banner:         {}",
        if d.show_banner {
            "shown (opt-in region, no decisive signal)"
        } else {
            "not shown"
        }
    );
    let company = match &c.company {
        Lookup::NotRun => "lookup not run (the firmographic tier is not permitted)".to_string(),
        Lookup::Matched(m) => format!(
            "{}{}",
            m.company.name,
            m.company
                .domain
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        Lookup::NoCompany(n) => format!(
            "none ({})",
            serde_json::to_value(n)
                .ok()
                .and_then(|v| v.get("reason").and_then(|r| r.as_str().map(str::to_string)))
                .unwrap_or_default()
        ),
    };
    outln!("  company:        {company}");
    outln!("  reasons:");
    for r in &d.reasons {
        outln!("    {r}");
    }
    ExitCode::SUCCESS
}

fn consent_decode(string: &str, json: bool) -> ExitCode {
    use crate::consent::{gpp, tcf, usp};
    let s = string.trim();
    let decoded: Result<(&str, serde_json::Value), String> = if s.len() == 4 && s.starts_with('1') {
        usp::decode(s)
            .map(|u| ("US Privacy", serde_json::to_value(u).unwrap_or_default()))
            .map_err(|e| e.to_string())
    } else if s.starts_with('D') {
        gpp::decode(s)
            .map(|g| ("GPP", serde_json::to_value(g).unwrap_or_default()))
            .map_err(|e| e.to_string())
    } else {
        tcf::decode(s)
            .map(|t| {
                let mut v = serde_json::to_value(&t).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert(
                        "violations".into(),
                        serde_json::to_value(t.violations()).unwrap_or_default(),
                    );
                }
                ("TCF v2 TC string", v)
            })
            .map_err(|e| e.to_string())
    };
    match decoded {
        Err(reason) => {
            eprintln!("error: {reason}");
            ExitCode::from(2)
        }
        Ok((_, value)) if json => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok((kind, value)) => {
            outln!("{kind}");
            print_value(&value, 1);
            ExitCode::SUCCESS
        }
    }
}

/// Indented `key: value` lines for a decoded signal; id sets on one line.
fn print_value(v: &serde_json::Value, depth: usize) {
    let pad = "  ".repeat(depth);
    if let serde_json::Value::Object(map) = v {
        for (k, v) in map {
            match v {
                serde_json::Value::Object(_) => {
                    outln!("{pad}{k}:");
                    print_value(v, depth + 1);
                }
                serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                    outln!("{pad}{k}:");
                    for item in items {
                        print_value(item, depth + 1);
                        outln!();
                    }
                }
                serde_json::Value::Array(items) => {
                    let list: Vec<String> = items.iter().map(|i| i.to_string()).collect();
                    outln!("{pad}{k}: [{}]", list.join(", "));
                }
                serde_json::Value::String(s) => outln!("{pad}{k}: {s}"),
                serde_json::Value::Null => outln!("{pad}{k}: (not decoded)"),
                other => outln!("{pad}{k}: {other}"),
            }
        }
    }
}
