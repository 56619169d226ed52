//! Versioned schema migrations: tables, indexes, roles, row-level security
//! policies and triggers. Each migration is plain SQL (see `sql/`) because
//! roles, policies and triggers are the point of this schema and read best as
//! the SQL PostgreSQL will run; every migration has a working `down`.

pub use sea_orm_migration::MigrationStatus;
pub use sea_orm_migration::prelude::*;

mod m20261122_000001_accounts;
mod m20261122_000002_places;
mod m20261122_000003_realtime;
mod m20261122_000004_routines;
mod m20261122_000005_airdrops;
mod m20261122_000006_posts;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_accounts::Migration),
            Box::new(m20261122_000002_places::Migration),
            Box::new(m20261122_000003_realtime::Migration),
            Box::new(m20261122_000004_routines::Migration),
            Box::new(m20261122_000005_airdrops::Migration),
            Box::new(m20261122_000006_posts::Migration),
        ]
    }
}

/// The database roles a request may run as, one per kind of viewer. The
/// server's login role switches to exactly one of them at the start of every
/// request transaction (`SET LOCAL ROLE`).
pub const VIEWER_ROLES: [&str; 5] = ["app_anon", "app_user", "app_read", "app_service", "app_admin"];

/// The role the request pool logs in as. It is created `NOLOGIN NOINHERIT`:
/// it has no privileges of its own besides switching to a viewer role, and an
/// operator (or the embedded database) enables `LOGIN` with a password.
pub const AUTHENTICATOR_ROLE: &str = "app_authenticator";

/// The role the server reads and prunes the change log as.
pub const REALTIME_ROLE: &str = "app_realtime";

/// The channel the capture triggers notify (with no payload).
pub const CHANGES_CHANNEL: &str = "app_changes";

/// Runs one SQL script (several statements) through the simple query protocol.
async fn run_sql(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await.map(|_| ())
}
