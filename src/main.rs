//! The `jetway` binary: parse configuration, start logging, run.

use std::process::ExitCode;

use jetway::config::{Cli, Command, ConfigError};

/// mimalloc instead of the system allocator: a request allocates and frees many small blocks
/// across threads, and glibc malloc/free was a fifth of the gateway's CPU per publish
/// (docs/BENCHMARKS.md, "Where the time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    match cli.command {
        Some(Command::Openapi) => {
            println!("{}", jetway::openapi::document_json());
            return ExitCode::SUCCESS;
        }
        Some(Command::Token(args)) => {
            return match jetway::auth::mint(&args) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("jetway token: {err}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Healthcheck(args)) => {
            return match jetway::healthcheck::run(
                &args,
                cli.config.listen,
                cli.config.tls_cert.is_some(),
            )
            .await
            {
                Ok(answer) => {
                    println!("{answer}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("jetway healthcheck: {err}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
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
