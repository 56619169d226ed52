//! Versioned schema migrations: tables, indexes, roles, row-level security
//! policies and triggers. Each migration is plain SQL (see `sql/`) because
//! roles, policies and triggers are the point of this schema and read best as
//! the SQL PostgreSQL will run; every migration has a working `down`.

pub use sea_orm_migration::MigrationStatus;
pub use sea_orm_migration::prelude::*;

/// Declares one migration per SQL pair `sql/<file>.up.sql` and
/// `sql/<file>.down.sql`. The module name is the migration's name in the
/// ledger (`seaql_migrations`): never rename one that has shipped.
macro_rules! sql_migrations {
    ($($(#[doc = $doc:literal])* $module:ident => $file:literal,)+) => {
        $(
            $(#[doc = $doc])*
            mod $module {
                use sea_orm_migration::prelude::*;

                pub struct Migration;

                impl MigrationName for Migration {
                    fn name(&self) -> &str {
                        stringify!($module)
                    }
                }

                #[async_trait::async_trait]
                impl MigrationTrait for Migration {
                    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                        crate::run_sql(manager, include_str!(concat!("sql/", $file, ".up.sql"))).await
                    }

                    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                        crate::run_sql(manager, include_str!(concat!("sql/", $file, ".down.sql"))).await
                    }
                }
            }
        )+

        pub struct Migrator;

        #[async_trait::async_trait]
        impl MigratorTrait for Migrator {
            fn migrations() -> Vec<Box<dyn MigrationTrait>> {
                vec![$(Box::new($module::Migration)),+]
            }
        }
    };
}

sql_migrations! {
    /// Roles, the shared `users` table and the sign-up / sign-in functions.
    m20261122_000001_accounts => "000001_accounts",
    /// Places, reviews and preferences (the Planwise seed).
    m20261122_000002_places => "000002_places",
    /// The change log and its capture triggers (realtime).
    m20261122_000003_realtime => "000003_realtime",
    /// Routines, runs and user stats (the Dropfarm seed).
    m20261122_000004_routines => "000004_routines",
    /// Airdrop projects and participation (the Dropfarm seed).
    m20261122_000005_airdrops => "000005_airdrops",
    /// Posts and comments (the Allogator seed).
    m20261122_000006_posts => "000006_posts",
    /// Password hashes readable by the sign-in functions only.
    m20261122_000007_private_password_hash => "000007_private_password_hash",
    /// Commit times on the change feed's commit stamps (listener lag).
    m20261123_000008_commit_time => "000008_commit_time",
    /// Sign-in functions only the request login can call (as `app_signin`).
    m20261127_000009_private_sign_in => "000009_private_sign_in",
    /// The change feed's epoch: signed cursors name the database they came from.
    m20261127_000010_feed_epoch => "000010_feed_epoch",
    /// One-direction indexes for keyset pagination (cursors that are sort keys).
    m20261127_000011_keyset_indexes => "000011_keyset_indexes",
    /// A capture function per published table and operation, generated
    /// once, instead of SQL built and planned on every write.
    m20261127_000012_compiled_capture => "000012_compiled_capture",
    /// A request's start (viewer, timeout, access mode, account check) in one statement.
    m20261127_000013_start_request => "000013_start_request",
    /// Logical capture: writers only append to the log; a sequencer stamps
    /// the commit order from a logical replication slot.
    m20261127_000014_logical_capture => "000014_logical_capture",
    /// Sessions that can end: refresh tokens (hashed, rotated), the
    /// session check at request start, profile and password changes,
    /// account deletion.
    m20261127_000016_sessions => "000016_sessions",
    /// The account functions keyed on `app.user_id` (no account argument),
    /// and pruning of expired sessions and their refresh tokens on a timer.
    m20261127_000017_session_bounds => "000017_session_bounds",
    /// The request start of 000016 for less of PostgreSQL's CPU: parameters
    /// set by assignment, the account and session read in one statement.
    m20261128_000018_cheaper_request_start => "000018_cheaper_request_start",
    /// The request start's account check as one join (000018's session
    /// EXISTS was planned as a hashed subplan, set up at every start).
    m20261129_000019_account_check_as_a_join => "000019_account_check_as_a_join",
}

/// The database roles a request may run as, one per kind of viewer. The
/// server's login role switches to exactly one of them at the start of every
/// request transaction (`SET LOCAL ROLE`).
pub const VIEWER_ROLES: [&str; 5] = ["app_anon", "app_user", "app_read", "app_service", "app_admin"];

/// The role the request pool logs in as. It is created `NOLOGIN NOINHERIT`:
/// it has no privileges of its own besides switching to a viewer role, and an
/// operator (or the embedded database) enables `LOGIN` with a password.
pub const AUTHENTICATOR_ROLE: &str = "app_authenticator";

/// The role the sign-in and sign-up resolvers switch to for the one
/// statement that reads a password hash or creates an account: the only
/// role that may execute those functions. The request login is its only
/// member; no viewer role is.
pub const SIGNIN_ROLE: &str = "app_signin";

/// The role the server reads and prunes the change log as.
pub const REALTIME_ROLE: &str = "app_realtime";

/// The login the change-feed sequencer connects as (LOGIN REPLICATION,
/// a member of [`REALTIME_ROLE`]): logical decoding needs REPLICATION,
/// which the request login must not have.
pub const SEQUENCER_ROLE: &str = "app_sequencer";

/// The publication the sequencer's slot decodes: inserts into `change_log`.
pub const CHANGE_LOG_PUBLICATION: &str = "app_change_log";

/// The channel the capture triggers notify (with no payload).
pub const CHANGES_CHANNEL: &str = "app_changes";

/// Runs one SQL script (several statements) through the simple query protocol.
async fn run_sql(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await.map(|_| ())
}
