use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: see the workspace Cargo.toml. The
/// binary's choice only: the library (and the tests' in-process servers)
/// keep the system allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use api::cli::{Cli, Command};
use api::config::LogFormat;
use clap::Parser;

fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth one line.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("error: cannot read .env: {err}");
        return ExitCode::from(2);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            // One line for the operator; `--help` has the rest.
            let message = err.to_string();
            eprintln!("{}", message.lines().next().unwrap_or("error: invalid arguments"));
            return ExitCode::from(2);
        }
    };
    init_logging(cli.config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => api::commands::serve(cli.config).await,
            Command::Migrate { action } => api::commands::migrate(&cli.config, action).await,
            Command::User { action } => api::commands::user(&cli.config, action).await,
            Command::Seed(args) => api::commands::seed(&cli.config, &args).await,
            Command::Backup(args) => api::commands::backup(&cli.config, args).await,
            Command::Restore { file, yes } => api::commands::restore(&cli.config, &file, yes).await,
            Command::Schema => {
                print!("{}", api::graphql::sdl());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    // Colours only for a person at a terminal who did not ask for none
    // (NO_COLOR, which `with_ansi` would otherwise override): a log file
    // or journald would keep the escape codes, and styling every span's
    // fields costs each request CPU.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
