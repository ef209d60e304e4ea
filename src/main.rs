//! The `constellation` binary: parse flags, set up logging, run, and map the outcome to an exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = constellation::cli::Cli::parse();
    constellation::logging::init(cli.verbosity());
    match constellation::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!(
                "constellation: {}",
                constellation::logging::error_line(&err)
            );
            std::process::ExitCode::FAILURE
        }
    }
}
