//! The CLI's commands. Each returns an exit code, or a [`CliError`]: one
//! line for the operator, saying what failed and why.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use secrecy::ExposeSecret;

use crate::accounts::{CreateUser, create_user_as_admin};
use crate::app::{Application, DatabaseTarget, StartError, database_target, shutdown_signal};
use crate::auth::{Role, hash_password};
use crate::cli::{BackupAction, BackupArgs, MigrateAction, RoleArg, SeedArgs, UserAction};
use crate::config::Config;
use crate::db;
use crate::ops::backup::{self, Manifest, Tools};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration, the database or the server could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("migration failed: {0}")]
    Migration(#[source] DbErr),
    /// A statement of the command failed.
    #[error("{doing}: {source}")]
    Database { doing: String, source: DbErr },
    /// A file, the terminal or the server's socket failed.
    #[error("{doing}: {source}")]
    Io { doing: String, source: std::io::Error },
    /// The operator's answer or input says no (the message says why).
    #[error("{0}")]
    Refused(&'static str),
    /// A step the API's own code refused, with its client-facing message.
    #[error("{doing}: {message}")]
    Api { doing: &'static str, message: String },
    /// pg_dump, pg_restore, or reading what they wrote.
    #[error(transparent)]
    Backup(#[from] backup::BackupError),
    /// A restored archive does not hold what it should (the message
    /// lists what differs).
    #[error("{0}")]
    Mismatch(String),
    #[error("the OS random generator failed: {0}")]
    Random(#[from] getrandom::Error),
}

impl From<crate::config::ConfigError> for CliError {
    fn from(err: crate::config::ConfigError) -> Self {
        Self::Start(err.into())
    }
}

impl CliError {
    fn database(doing: impl Into<String>) -> impl FnOnce(DbErr) -> Self {
        let doing = doing.into();
        move |source| Self::Database { doing, source }
    }

    fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let doing = doing.into();
        move |source| Self::Io { doing, source }
    }
}

pub async fn serve(config: Config) -> Result<ExitCode, CliError> {
    let host = config.host.clone();
    let shutdown = shutdown_signal().map_err(CliError::io("cannot install signal handlers"))?;
    let app = Application::build(config).await?;
    tracing::info!("serving on http://{host}:{} (GraphiQL at /graphiql)", app.port());
    app.run_until(shutdown).await.map_err(CliError::io("serving failed"))?;
    Ok(ExitCode::SUCCESS)
}

/// An administrative connection, and the embedded database behind it if any.
async fn admin(config: &Config) -> Result<(DatabaseConnection, DatabaseTarget), CliError> {
    config.validate()?;
    let target = database_target(config).await?;
    let conn = db::connect_admin(&target.admin_url)
        .await
        .map_err(|source| StartError::Connect { what: "the database", source })?;
    Ok((conn, target))
}

pub async fn migrate(config: &Config, action: MigrateAction) -> Result<ExitCode, CliError> {
    let (conn, _target) = admin(config).await?;
    let failed = CliError::Migration;
    match action {
        MigrateAction::Up => Migrator::up(&conn, None).await.map_err(failed)?,
        MigrateAction::Down { n } => Migrator::down(&conn, Some(n)).await.map_err(failed)?,
        MigrateAction::Fresh => Migrator::fresh(&conn).await.map_err(failed)?,
        MigrateAction::Status => {
            let all = Migrator::get_migration_with_status_read_only(&conn).await.map_err(failed)?;
            let mut pending = 0;
            for m in &all {
                println!("{:<40} {}", m.name(), m.status());
                if m.status() == migration::MigrationStatus::Pending {
                    pending += 1;
                }
            }
            if pending > 0 {
                println!("{pending} pending");
                return Ok(ExitCode::from(1));
            }
            println!("up to date");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn user(config: &Config, action: UserAction) -> Result<ExitCode, CliError> {
    let UserAction::Create { email, username, role, full_name } = action;
    let password = read_password()?;
    if password.chars().count() < 8 {
        return Err(CliError::Refused("the password must have at least 8 characters"));
    }
    let hash = hash_password(password)
        .await
        .map_err(|e| CliError::Api { doing: "cannot hash the password", message: e.message() })?;
    let role = match role {
        RoleArg::Admin => Role::Admin,
        RoleArg::Service => Role::Service,
        RoleArg::Reader => Role::Reader,
        RoleArg::User => Role::User,
    };
    let full_name = if full_name.is_empty() { username.clone() } else { full_name };
    let (conn, _target) = admin(config).await?;
    // Through row-level security like every write: as app_admin.
    let tx = conn.begin().await.map_err(CliError::database("cannot begin a transaction"))?;
    tx.execute_unprepared("SET LOCAL ROLE app_admin").await.map_err(CliError::database("cannot become app_admin"))?;
    let user = create_user_as_admin(
        &tx,
        CreateUser { email: &email, username: &username, password_hash: &hash, full_name: &full_name, role },
    )
    .await
    .map_err(|e| CliError::Api { doing: "cannot create the user", message: e.message() })?;
    tx.commit().await.map_err(CliError::database("cannot commit the new user"))?;
    println!("created {} ({}) with role {}", user.username, user.id, user.role);
    Ok(ExitCode::SUCCESS)
}

/// From a prompt without echo when interactive, else the first line of stdin.
fn read_password() -> Result<String, CliError> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(CliError::io("cannot read the password"))?;
        let again = rpassword::prompt_password("Again: ").map_err(CliError::io("cannot read the password"))?;
        if first != again {
            return Err(CliError::Refused("the passwords differ"));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(CliError::io("cannot read the password from stdin"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn seed(config: &Config, args: &SeedArgs) -> Result<ExitCode, CliError> {
    let (conn, _target) = admin(config).await?;
    // As serving does: development applies pending migrations (so `api seed
    // --demo` works on a fresh DATA_DIR, before the server ever started);
    // staging and production refuse, naming them.
    crate::app::prepare_schema(config, &conn).await?;
    let summary = match args.scale {
        Some(n) => crate::seed::scale(&conn, n).await,
        None => crate::seed::demo(&conn).await,
    }
    .map_err(|e| CliError::Api { doing: "seeding failed", message: e.message() })?;
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

async fn server_major(conn: &DatabaseConnection) -> Result<u32, CliError> {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, "SHOW server_version_num"))
        .await
        .map_err(CliError::database("cannot read the server's version"))?;
    let num: String = row.and_then(|r| r.try_get_by_index(0).ok()).unwrap_or_default();
    Ok(num.parse::<u32>().unwrap_or(0) / 10_000)
}

/// The same connection URL with another database name.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
    match query {
        Some(q) => format!("{prefix}/{database}?{q}"),
        None => format!("{prefix}/{database}"),
    }
}

pub async fn backup(config: &Config, args: BackupArgs) -> Result<ExitCode, CliError> {
    if let Some(BackupAction::Prune { apply }) = args.action {
        return prune(&args.dir, apply);
    }
    let tools = Tools::find(config.pg_bin.as_deref())?;
    let (conn, target) = admin(config).await?;
    tools.check_server(server_major(&conn).await?)?;
    match args.action {
        None => {
            let (file, bytes, manifest) =
                backup::take(&tools, &conn, target.admin_url.expose_secret(), &args.dir).await?;
            let rows: i64 = manifest.rows.values().sum();
            println!("wrote {} ({}): {} tables, {rows} rows", file.display(), backup::size(bytes), manifest.rows.len());
            println!("manifest {}", Manifest::path(&file).display());
        }
        Some(BackupAction::Verify { file }) => verify(&tools, &conn, target.admin_url.expose_secret(), &file).await?,
        Some(BackupAction::Prune { .. }) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Lists the archive, restores it into a scratch database and compares the
/// rows of every table with its manifest (or, without one, with the source
/// as it is now).
async fn verify(tools: &Tools, conn: &DatabaseConnection, admin_url: &str, file: &Path) -> Result<(), CliError> {
    let entries = tools.list(file).await?;
    println!("{}: {entries} archive entries", file.display());
    let expected = match Manifest::read(file)? {
        Some(manifest) => {
            println!("comparing with the rows its manifest recorded at {}", manifest.taken_at);
            manifest.rows
        }
        None => {
            println!("no manifest beside the archive: comparing with the source database as it is now");
            backup::row_counts(conn).await?
        }
    };
    let scratch = format!("verify_{}", crate::db::embedded::random_hex(6)?);
    conn.execute_unprepared(&format!("CREATE DATABASE {scratch}"))
        .await
        .map_err(CliError::database(format!("cannot create the scratch database {scratch}")))?;
    let scratch_url = with_database(admin_url, &scratch);
    let restored = async {
        tools.restore(file, &scratch_url).await?;
        let restored = db::connect_admin(&scratch_url.clone().into())
            .await
            .map_err(CliError::database(format!("cannot connect to the scratch database {scratch}")))?;
        let counts = backup::row_counts(&restored).await.map_err(CliError::Backup);
        restored.close().await.map_err(CliError::database("cannot close the scratch connection"))?;
        counts
    }
    .await;
    // Dropped whatever happened; an error in either is reported, both if both.
    let dropped = conn
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))
        .await
        .map_err(CliError::database(format!("the scratch database {scratch} could not be dropped")));
    match (restored.and_then(|restored| compare_rows(&expected, &restored)), dropped) {
        (Ok(()), Ok(_)) => {}
        (Err(err), Ok(_)) | (Ok(()), Err(err)) => return Err(err),
        (Err(err), Err(drop_err)) => return Err(CliError::Mismatch(format!("{err}; {drop_err}"))),
    }
    println!("verified: the archive restores and every table holds the rows it should");
    Ok(())
}

/// Prints expected against restored rows per table; an error if any differ.
fn compare_rows(expected: &BTreeMap<String, i64>, restored: &BTreeMap<String, i64>) -> Result<(), CliError> {
    let tables: BTreeSet<&String> = expected.keys().chain(restored.keys()).collect();
    let mut differ = 0;
    for table in tables {
        let (want, got) = (expected.get(table), restored.get(table));
        let show = |n: Option<&i64>| n.map_or_else(|| "missing".to_owned(), i64::to_string);
        let mark = if want == got { "ok" } else { "DIFFERS" };
        if want != got {
            differ += 1;
        }
        println!("{table:<32} expected {:>10}  restored {:>10}  {mark}", show(want), show(got));
    }
    if differ > 0 {
        return Err(CliError::Mismatch(format!(
            "{differ} table(s) of the restored archive differ from what it should hold"
        )));
    }
    Ok(())
}

/// Applies the retention policy to the archives of `dir` (a dry run unless
/// `apply`); an archive's manifest goes with it.
fn prune(dir: &Path, apply: bool) -> Result<ExitCode, CliError> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(CliError::io(format!("cannot read {}", dir.display())))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let (keep, delete) = backup::plan_prune(&names, chrono::Utc::now());
    for name in &keep {
        println!("keep   {name}");
    }
    for name in &delete {
        let archive = dir.join(name);
        let manifest = Manifest::path(&archive);
        if apply {
            std::fs::remove_file(&archive).map_err(CliError::io(format!("cannot delete {name}")))?;
            match std::fs::remove_file(&manifest) {
                Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                    return Err(CliError::Io { doing: format!("cannot delete {}", manifest.display()), source });
                }
                _ => {}
            }
            println!("delete {name}");
        } else {
            println!("would delete {name}");
        }
    }
    if !apply && !delete.is_empty() {
        println!("dry run: pass --apply to delete {} backup(s)", delete.len());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(config: &Config, file: &Path, yes: bool) -> Result<ExitCode, CliError> {
    let tools = Tools::find(config.pg_bin.as_deref())?;
    tools.list(file).await?;
    let manifest = Manifest::read(file)?;
    if let Some(manifest) = &manifest {
        let rows: i64 = manifest.rows.values().sum();
        println!(
            "backup taken {} from PostgreSQL {}: {} tables, {rows} rows",
            manifest.taken_at,
            manifest.server_version,
            manifest.rows.len()
        );
        let known: BTreeSet<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
        let unknown: Vec<&str> =
            manifest.migrations.iter().filter(|m| !known.contains(*m)).map(String::as_str).collect();
        if !unknown.is_empty() {
            eprintln!(
                "warning: the backup has migrations this build does not know ({}); serve it with the build that took it",
                unknown.join(", ")
            );
        }
    }
    let (conn, target) = admin(config).await?;
    let tables = backup::row_counts(&conn).await?;
    let holds_data = tables.iter().any(|(t, n)| *n > 0 && t != "seaql_migrations");
    if holds_data && !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Refused("the target database holds data; pass --yes to restore over it"));
        }
        eprint!("The target database holds data that the restore replaces. Continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).map_err(CliError::io("cannot read the answer"))?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            return Err(CliError::Refused("restore cancelled"));
        }
    }
    tools.restore(file, target.admin_url.expose_secret()).await?;
    println!("restored {}", file.display());
    // The restored log starts over at the backup's positions: cursors
    // handed out since would replay the wrong events or skip new ones.
    crate::realtime::renew_epoch(&conn)
        .await
        .map_err(CliError::database("restored, but renewing the change feed's epoch failed"))?;
    println!("renewed the change feed's epoch: cursors issued before the restore are refused; restart running servers");
    if let Some(manifest) = manifest {
        // The backup's tables only: --clean leaves others (say, of newer
        // migrations) as they were.
        let mut restored = backup::row_counts(&conn).await?;
        let others: Vec<String> = restored.keys().filter(|t| !manifest.rows.contains_key(*t)).cloned().collect();
        restored.retain(|table, _| manifest.rows.contains_key(table));
        compare_rows(&manifest.rows, &restored).map_err(|err| {
            CliError::Mismatch(format!(
                "restored, but the check after it failed: {err} (a server writing meanwhile would explain it)"
            ))
        })?;
        if !others.is_empty() {
            println!("not in the backup, left as they were: {}", others.join(", "));
        }
        println!("every table of the backup holds the rows it recorded");
    }
    Ok(ExitCode::SUCCESS)
}
