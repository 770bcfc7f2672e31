//! The `jetway` binary: parse configuration, start logging, run.

use std::process::ExitCode;

use jetway::config::{Cli, Command, ConfigError};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::load(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ConfigError::Cli(err)) => err.exit(),
        Err(err) => {
            eprintln!("jetway: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Openapi) = cli.command {
        println!("{}", jetway::http::openapi::document_json());
        return ExitCode::SUCCESS;
    }
    jetway::telemetry::init(cli.config.log_format, &cli.config.log);
    match jetway::run(cli.config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("jetway cannot run: {err}");
            eprintln!("jetway: {err}");
            ExitCode::FAILURE
        }
    }
}
