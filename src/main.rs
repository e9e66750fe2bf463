#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    concierge::cli::run(concierge::cli::Cli::parse())
}
