//! The `qsess-syncd` binary: parse the command line, set up logging, run, map the outcome to an exit code.

use clap::Parser;
use qsess_syncd::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QSESS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn,refinery_core=warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("qsess-syncd: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{:#}", error);
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate(arguments) => {
            qsess_syncd::config::validate_database_url(&arguments.database_url)?;
            let applied = qsess_syncd::migrate(&arguments.database_url).await?;
            tracing::info!(applied, "database schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(arguments) => {
            let config = arguments.into_config()?;
            qsess_syncd::run(config, qsess_syncd::shutdown::signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(arguments) => {
            qsess_syncd::config::validate_redis_url(&arguments.redis.redis_url)?;
            qsess_syncd::config::validate_database_url(&arguments.database.database_url)?;
            let report = qsess_syncd::verify(&arguments.redis.redis_url, &arguments.database.database_url).await?;
            for difference in &report.differences {
                println!("{difference}");
            }
            println!(
                "redis: {} live sessions, postgres: {} live sessions, {} differences",
                report.redis_sessions,
                report.postgres_sessions,
                report.differences.len()
            );
            Ok(if report.matches() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
