//! The CLI's commands. Each returns an exit code, or one line of error.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use crate::accounts::{CreateUser, create_user_as_admin};
use crate::app::{Application, DatabaseTarget, database_target, shutdown_signal};
use crate::auth::{Role, hash_password};
use crate::cli::{BackupAction, BackupArgs, MigrateAction, RoleArg, SeedArgs, UserAction};
use crate::config::Config;
use crate::db;
use crate::ops::backup::{self, Tools};

pub async fn serve(config: Config) -> Result<ExitCode, String> {
    let host = config.host.clone();
    let shutdown = shutdown_signal().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let app = Application::build(config).await?;
    tracing::info!("serving on http://{host}:{} (GraphiQL at /graphiql)", app.port());
    app.run_until(shutdown).await.map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// An administrative connection, and the embedded database behind it if any.
async fn admin(config: &Config) -> Result<(DatabaseConnection, DatabaseTarget), String> {
    config.validate()?;
    let target = database_target(config).await?;
    let conn =
        db::connect_admin(&target.admin_url).await.map_err(|e| format!("cannot connect to the database: {e}"))?;
    Ok((conn, target))
}

pub async fn migrate(config: &Config, action: MigrateAction) -> Result<ExitCode, String> {
    let (conn, _target) = admin(config).await?;
    let failed = |e: sea_orm::DbErr| format!("migration failed: {e}");
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

pub async fn user(config: &Config, action: UserAction) -> Result<ExitCode, String> {
    let UserAction::Create { email, username, role, full_name } = action;
    let password = read_password()?;
    if password.chars().count() < 8 {
        return Err("the password must have at least 8 characters".into());
    }
    let hash = hash_password(password).await.map_err(|e| e.message())?;
    let role = match role {
        RoleArg::Admin => Role::Admin,
        RoleArg::Service => Role::Service,
        RoleArg::Reader => Role::Reader,
        RoleArg::User => Role::User,
    };
    let full_name = if full_name.is_empty() { username.clone() } else { full_name };
    let (conn, _target) = admin(config).await?;
    // Through row-level security like every write: as app_admin.
    let tx = conn.begin().await.map_err(|e| e.to_string())?;
    tx.execute_unprepared("SET LOCAL ROLE app_admin").await.map_err(|e| e.to_string())?;
    let user = create_user_as_admin(
        &tx,
        CreateUser { email: &email, username: &username, password_hash: &hash, full_name: &full_name, role },
    )
    .await
    .map_err(|e| format!("cannot create the user: {}", e.message()))?;
    tx.commit().await.map_err(|e| e.to_string())?;
    println!("created {} ({}) with role {}", user.username, user.id, user.role);
    Ok(ExitCode::SUCCESS)
}

/// From a prompt without echo when interactive, else the first line of stdin.
fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords differ".into());
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn seed(config: &Config, args: &SeedArgs) -> Result<ExitCode, String> {
    let (conn, _target) = admin(config).await?;
    let pending = db::pending_migrations(&conn).await.map_err(|e| e.to_string())?;
    if !pending.is_empty() {
        return Err(format!("{} pending migration(s): run `api migrate up` first", pending.len()));
    }
    let summary = match args.scale {
        Some(n) => crate::seed::scale(&conn, n).await,
        None => crate::seed::demo(&conn).await,
    }
    .map_err(|e| format!("seeding failed: {}", e.message()))?;
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

async fn server_major(conn: &DatabaseConnection) -> Result<u32, String> {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, "SHOW server_version_num"))
        .await
        .map_err(|e| e.to_string())?;
    let num: String = row.and_then(|r| r.try_get_by_index(0).ok()).unwrap_or_default();
    Ok(num.parse::<u32>().unwrap_or(0) / 10_000)
}

/// Rows per table of the public schema, exactly.
pub async fn row_counts(conn: &DatabaseConnection) -> Result<Vec<(String, i64)>, String> {
    let tables = conn
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
        ))
        .await
        .map_err(|e| e.to_string())?;
    let mut counts = Vec::new();
    for row in tables {
        let table: String = row.try_get_by_index(0).map_err(|e| e.to_string())?;
        let count = conn
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT count(*) FROM \"{table}\""),
            ))
            .await
            .map_err(|e| e.to_string())?
            .and_then(|r| r.try_get_by_index::<i64>(0).ok())
            .unwrap_or(-1);
        counts.push((table, count));
    }
    Ok(counts)
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

pub async fn backup(config: &Config, args: BackupArgs) -> Result<ExitCode, String> {
    if let Some(BackupAction::Prune { apply }) = args.action {
        return prune(&args.dir, apply);
    }
    let tools = Tools::find(config.pg_bin.as_deref())?;
    let (conn, target) = admin(config).await?;
    tools.check_server(server_major(&conn).await?)?;
    match args.action {
        None => {
            let (file, bytes) = tools.backup(&target.admin_url, &args.dir)?;
            println!("wrote {} ({})", file.display(), backup::size(bytes));
        }
        Some(BackupAction::Verify { file }) => {
            let entries = tools.list(&file)?;
            println!("{}: {entries} archive entries", file.display());
            let scratch = format!("verify_{}", crate::db::embedded::random_hex(6));
            conn.execute_unprepared(&format!("CREATE DATABASE {scratch}")).await.map_err(|e| e.to_string())?;
            let scratch_url = with_database(&target.admin_url, &scratch);
            let outcome = async {
                tools.restore(&file, &scratch_url)?;
                let restored = db::connect_admin(&scratch_url).await.map_err(|e| e.to_string())?;
                let (expected, got) = (row_counts(&conn).await?, row_counts(&restored).await?);
                restored.close().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((expected, got))
            }
            .await;
            conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))
                .await
                .map_err(|e| e.to_string())?;
            let (expected, got) = outcome?;
            let mut differ = 0;
            for (table, rows) in &expected {
                let restored = got.iter().find(|(t, _)| t == table).map_or(-1, |(_, n)| *n);
                let mark = if restored == *rows { "ok" } else { "DIFFERS" };
                if restored != *rows {
                    differ += 1;
                }
                println!("{table:<32} source {rows:>10}  restored {restored:>10}  {mark}");
            }
            if differ > 0 || expected.len() != got.len() {
                return Err(format!("{differ} table(s) differ from the source"));
            }
            println!("verified: the archive restores and every table matches the source");
        }
        Some(BackupAction::Prune { .. }) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

fn prune(dir: &std::path::Path, apply: bool) -> Result<ExitCode, String> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let (keep, delete) = backup::plan_prune(&names, chrono::Utc::now());
    for name in &keep {
        println!("keep   {name}");
    }
    for name in &delete {
        if apply {
            std::fs::remove_file(dir.join(name)).map_err(|e| format!("cannot delete {name}: {e}"))?;
            println!("delete {name}");
        } else {
            println!("would delete {name}");
        }
    }
    if !apply && !delete.is_empty() {
        println!("dry run: pass --apply to delete {} file(s)", delete.len());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(config: &Config, file: &std::path::Path, yes: bool) -> Result<ExitCode, String> {
    let tools = Tools::find(config.pg_bin.as_deref())?;
    tools.list(file)?;
    let (conn, target) = admin(config).await?;
    let tables = row_counts(&conn).await?;
    let holds_data = tables.iter().any(|(t, n)| *n > 0 && t != "seaql_migrations");
    if holds_data && !yes {
        if !std::io::stdin().is_terminal() {
            return Err("the target database holds data; pass --yes to restore over it".into());
        }
        eprint!("The target database holds data that the restore replaces. Continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).map_err(|e| e.to_string())?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            return Err("restore cancelled".into());
        }
    }
    tools.restore(file, &target.admin_url)?;
    println!("restored {}", file.display());
    Ok(ExitCode::SUCCESS)
}
