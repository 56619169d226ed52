//! The `api` command line: serve (default), migrate, user, seed, schema.

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "api", version, about = "Realtime GraphQL over PostgreSQL, filtered row by row for every viewer")]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GraphQL over HTTP and websockets (the default).
    Serve,
    /// Apply, roll back or inspect migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Load generated data.
    Seed(SeedArgs),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Back the database up with pg_dump (custom format), or verify or prune backups.
    Backup(BackupArgs),
    /// Restore a backup with pg_restore --clean --if-exists.
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
        /// Do not ask before restoring over a database that holds data.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Folder of the backups.
    #[arg(long, default_value = "./backups", global = true)]
    pub dir: std::path::PathBuf,
    #[command(subcommand)]
    pub action: Option<BackupAction>,
}

#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Check that an archive reads, restore it into a scratch database and compare row counts with the source.
    Verify { file: std::path::PathBuf },
    /// Apply the retention policy (daily 30 days, weekly 6 months, monthly 2 years); a dry run unless --apply.
    Prune {
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Roll back the last N applied migrations.
    Down {
        #[arg(short = 'n', long = "num", default_value_t = 1)]
        n: u32,
    },
    /// List migrations and whether each is applied; exits 1 when some are pending.
    Status,
    /// Drop every table, then apply all migrations.
    Fresh,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create an account; the password is read from a prompt, or from stdin when piped.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: String,
        #[arg(long, value_enum, default_value_t = RoleArg::User)]
        role: RoleArg,
        #[arg(long, default_value = "")]
        full_name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Service,
    Reader,
    User,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct SeedArgs {
    /// A small deterministic demo set: places around Lisbon, a few users with reviews and preferences.
    #[arg(long)]
    pub demo: bool,
    /// A benchmark set: N users, 20·N places, 100 reviews and 5 preferences per user.
    #[arg(long, value_name = "N")]
    pub scale: Option<u32>,
}
