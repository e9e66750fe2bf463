//! `concierge experiments report`: the experiments' results from the exposure and conversion records of the
//! audit log.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::audit::{settings, time, usage};
use super::records::ReadSource;
use crate::experiments::report::{Builder, Filter, Floors};
use crate::postgres::read::Pushdown;

#[derive(Debug, Subcommand)]
pub enum ExperimentsCommand {
    /// Per experiment and arm: accounts, exposures, conversions per goal; the split check; the lift with its
    /// interval. Accounts are the unit (they are what is randomized).
    Report(ExperimentsReportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Html,
}

#[derive(Debug, Args)]
pub struct ExperimentsReportArgs {
    #[command(flatten)]
    pub source: ReadSource,
    /// Only this experiment.
    #[arg(long, value_name = "ID")]
    pub experiment: Option<String>,
    /// From this time on (2027-01-10 or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Before this time.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The relative minimum detectable effect the sample-size estimate is for (0.2 = a 20% lift).
    #[arg(long, value_name = "SHARE", default_value_t = 0.2)]
    pub mde: f64,
}

pub fn run(cmd: ExperimentsCommand) -> ExitCode {
    match cmd {
        ExperimentsCommand::Report(a) => report(a),
    }
}

fn report(a: ExperimentsReportArgs) -> ExitCode {
    let settings = match settings(&a.source.config) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let (since, until) = match (time(&a.since, "since"), time(&a.until, "until")) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return usage(e),
    };
    if !(a.mde > 0.0 && a.mde.is_finite()) {
        return usage(format!(
            "--mde {} must be a positive share (0.2 = a 20% lift)",
            a.mde
        ));
    }
    let records = match a.source.open(&settings) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let mut floors = Floors {
        mde: a.mde,
        ..Floors::default()
    };
    if let Some(s) = &settings {
        floors.min_accounts = s.experiments.min_accounts;
        floors.min_exposures = s.experiments.min_exposures;
    }
    let push = Pushdown {
        since: since.clone(),
        until: until.clone(),
        types: vec!["exposure".into(), "conversion".into()],
        ..Pushdown::default()
    };
    let mut builder = Builder::new(Filter {
        since,
        until,
        experiment: a.experiment.clone(),
    });
    if let Err(e) = records.report_into(crate::audit::AUDIT_STREAM, &push, &mut builder) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(id) = &a.experiment {
        if !builder.known().contains(&id.as_str()) {
            let known = builder.known();
            let hint = crate::hint::closest(id, known.iter().copied())
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_default();
            return usage(format!(
                "--experiment `{id}` names no experiment in the records{}{hint}",
                if known.is_empty() {
                    " (there are none)".to_string()
                } else {
                    format!(" (known: {})", known.join(", "))
                }
            ));
        }
    }
    let report = builder.finish(floors);
    let text = match a.format {
        Format::Table => report.table(),
        Format::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        Format::Html => crate::experiments::html::render(&report),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let written = w
                .write_record(crate::experiments::report::Report::CSV_COLUMNS)
                .and_then(|()| {
                    report
                        .csv_rows()
                        .iter()
                        .try_for_each(|row| w.write_record(row))
                });
            match (written, w.into_inner()) {
                (Ok(()), Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => {
                    eprintln!("error: cannot write CSV");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let result = match &a.out {
        Some(path) => std::fs::write(path, text.as_bytes()),
        None => std::io::stdout().lock().write_all(text.as_bytes()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}: {e}",
                a.out
                    .as_ref()
                    .map_or("standard output".into(), |p| p.display().to_string())
            );
            ExitCode::FAILURE
        }
    }
}
