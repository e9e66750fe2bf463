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

mod audit;
mod experiments;
mod inspect;
mod records;
mod serve;

use crate::config::{LogFormat, Overrides, Settings};
use crate::consent::policy::LookupPermit;
pub use audit::{AuditCommand, FeedbackCommand};

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
    Audit(audit::AuditCommand),
    /// Visitors' answers to feedback prompts, per rule.
    #[command(subcommand)]
    Feedback(audit::FeedbackCommand),
    /// Experiments: control groups, exposures, conversions and lift, per account.
    #[command(subcommand)]
    Experiments(experiments::ExperimentsCommand),
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
    /// The visitor's choice in our banner: accept (both tiers), reject (neither), none (no choice made).
    #[arg(long, value_enum, default_value = "none")]
    pub consent: ConsentChoice,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A banner choice for `explain --consent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsentChoice {
    Accept,
    Reject,
    None,
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

    pub(super) fn load(&self) -> Result<Settings, crate::config::ConfigErrors> {
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
    /// Run the demo on this rules folder (yours, reloaded as you edit it) instead of the built-in demo rules.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Check(args) => serve::check(args),
        Command::Demo(args) => serve::demo(args),
        Command::Lookup(args) => inspect::lookup(args),
        Command::Consent(ConsentCommand::Decode { string, json }) => {
            inspect::consent_decode(&string, json)
        }
        Command::Consent(ConsentCommand::Decide(args)) => inspect::consent_decide(args),
        Command::Consent(ConsentCommand::Keygen { out, force }) => {
            inspect::consent_keygen(&out, force)
        }
        Command::Explain(args) => inspect::explain(args),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Feedback(cmd) => audit::run_feedback(cmd),
        Command::Experiments(cmd) => experiments::run(cmd),
    }
}

pub(super) fn print_config_errors(errors: &crate::config::ConfigErrors) {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    eprintln!("{} error(s) in the configuration", errors.0.len());
}

/// Settings and company/location sources for the offline commands (`lookup`, `consent decide`), which never
/// talk to the origin: a config without `[upstream]` is fine. Errors are printed; the exit code is returned.
pub(super) fn load_sources(
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

/// Headers for an offline request (`consent decide`, `explain`) from 'Name: value' and 'NAME=VALUE' arguments.
pub(super) fn request_headers(
    headers: &[String],
    cookies: &[String],
) -> Result<http::HeaderMap, ExitCode> {
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
