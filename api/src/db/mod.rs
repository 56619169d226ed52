//! Connections: the request pool, the per-request transaction that carries
//! the viewer into PostgreSQL, migrations, and the embedded default database.

pub mod embedded;
mod request;

pub use request::{LoaderDb, RequestDb, TxGuard, begin_request};

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, TransactionTrait};

use crate::config::Config;

/// Opens the request pool with the seed's pool settings.
pub async fn connect_pool(url: &str, config: &Config) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        // sqlx has one pool size; the seed's size + overflow is its ceiling,
        // and the idle timeout closes what bursts opened.
        .max_connections(config.pool_max_connections())
        .min_connections(0)
        .acquire_timeout(config.pool_timeout())
        .connect_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(config.database_idle_timeout))
        .sqlx_logging(false)
        .set_application_name("api");
    Database::connect(options).await
}

/// Opens a small pool for administrative work (migrations, seeding).
pub async fn connect_admin(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(2).min_connections(0).sqlx_logging(false).set_application_name("api-admin");
    Database::connect(options).await
}

/// Names of migrations not yet applied. Reads the ledger without creating it,
/// so the unprivileged request login can ask too.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    Ok(Migrator::get_pending_migrations_read_only(db).await?.iter().map(|m| m.name().to_owned()).collect())
}

/// Fails fast, with what to do, when the login role cannot switch to every
/// viewer role: otherwise the first request of that kind would fail instead.
pub async fn check_viewer_roles(db: &DatabaseConnection) -> Result<(), String> {
    let tx = db.begin().await.map_err(|e| format!("cannot reach the database: {e}"))?;
    for role in migration::VIEWER_ROLES {
        let sql = format!("SET LOCAL ROLE {role}");
        if let Err(err) = tx.execute_unprepared(&sql).await {
            return Err(format!(
                "the database login cannot switch to role {role} ({err}); run: GRANT {} TO <login role>",
                migration::VIEWER_ROLES.join(", ")
            ));
        }
    }
    tx.rollback().await.map_err(|e| e.to_string())
}
