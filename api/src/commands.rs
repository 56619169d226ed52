//! The CLI's commands. Each returns an exit code, or one line of error.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use crate::accounts::{CreateUser, create_user_as_admin};
use crate::app::{Application, DatabaseTarget, database_target, shutdown_signal};
use crate::auth::{Role, hash_password};
use crate::cli::{MigrateAction, RoleArg, SeedArgs, UserAction};
use crate::config::Config;
use crate::db;

pub async fn serve(config: Config) -> Result<ExitCode, String> {
    let host = config.host.clone();
    let app = Application::build(config).await?;
    tracing::info!("serving on http://{host}:{} (GraphiQL at /graphiql)", app.port());
    app.run_until(shutdown_signal()).await.map_err(|e| e.to_string())?;
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
