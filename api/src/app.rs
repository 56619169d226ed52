//! Start-up: resolve the database (embedded or DATABASE_URL), apply or check
//! migrations, open the pool, bind the listener.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::auth::{AuthGuard, HashPool, JwtKeys, RateLimits};
use crate::config::{AppEnv, CaptureMode, Config, ConfigError};
use crate::db;
use crate::db::embedded::{self, EmbeddedError, EmbeddedPostgres};
use crate::graphql::{Limits, build_schema};
use crate::http::{
    AppState, BodyLimits, CloseAll, Closing, ConnectionLimits, PersistedQueries, WsCaps, WsConfig, router,
};
use crate::ops::metrics::Metrics;
use crate::realtime::{self, Realtime, RealtimeConfig};

/// Why the server, or a command that needs the database, could not start.
/// Each variant says what was being done; the cause follows it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error(transparent)]
    ViewerRoles(#[from] db::RoleCheckError),
    /// Connecting to DATABASE_URL, DATABASE_LISTEN_URL or the embedded
    /// database failed.
    #[error("cannot connect to {what}: {source}")]
    Connect { what: &'static str, source: DbErr },
    /// A statement of the start-up itself failed.
    #[error("{doing}: {source}")]
    Database { doing: &'static str, source: DbErr },
    /// Staging and production refuse to serve with pending migrations.
    #[error(
        "{} pending migration(s): {}; apply them with `api migrate up`, or start with --migrate (APP_ENV={env:?})",
        pending.len(),
        pending.join(", ")
    )]
    PendingMigrations { pending: Vec<String>, env: AppEnv },
    #[error("migration failed: {0}")]
    Migration(#[source] DbErr),
    /// Reading the change feed's position or epoch failed (the message is
    /// the client-safe one of [`crate::error::ApiError`]).
    #[error("{doing}: {message}")]
    ChangeFeed { doing: &'static str, message: String },
    #[error("{doing}: {source}")]
    Io { doing: String, source: std::io::Error },
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    /// CAPTURE_MODE=logical where the database does not allow it.
    #[error("{0}")]
    Capture(String),
}

impl StartError {
    fn database(doing: &'static str) -> impl FnOnce(DbErr) -> Self {
        move |source| Self::Database { doing, source }
    }

    fn connect(what: &'static str) -> impl FnOnce(DbErr) -> Self {
        move |source| Self::Connect { what, source }
    }
}

/// Where the database is, and who to be there. The URLs hold passwords:
/// they are secrets, kept out of `Debug` output and logs.
pub struct DatabaseTarget {
    /// For migrations, seeding and the CLI: the DATABASE_URL role, or the
    /// embedded superuser. Never used for requests.
    pub admin_url: SecretString,
    /// For requests: the DATABASE_URL role, or `app_authenticator` on the
    /// embedded database. Either way requests switch to a viewer role.
    pub serve_url: SecretString,
    /// The embedded database's sequencer login (`app_sequencer`), for the
    /// logical capture; `None` with DATABASE_URL (see DATABASE_SEQUENCER_URL).
    pub sequencer_url: Option<SecretString>,
    /// Keeps the embedded PostgreSQL alive; dropping it stops the cluster.
    pub embedded: Option<EmbeddedPostgres>,
}

/// DATABASE_URL if set, otherwise the embedded database, started and with
/// its `app` database created.
pub async fn database_target(config: &Config) -> Result<DatabaseTarget, StartError> {
    if let Some(url) = &config.database_url {
        return Ok(DatabaseTarget {
            admin_url: url.clone(),
            serve_url: url.clone(),
            sequencer_url: None,
            embedded: None,
        });
    }
    let data_dir = config.data_dir.clone();
    let pg_bin = config.pg_bin.clone();
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&data_dir, pg_bin.as_deref()))
        .await
        .map_err(|e| StartError::Io { doing: "starting the embedded PostgreSQL".into(), source: e.into() })??;
    if let Some(socket) = pg.socket() {
        tracing::info!(port = pg.port(), socket = %socket.display(), "embedded PostgreSQL running on 127.0.0.1 and a Unix socket");
    } else {
        tracing::info!(port = pg.port(), "embedded PostgreSQL running on 127.0.0.1");
    }
    let maintenance = db::connect_admin(&pg.superuser_url("postgres"))
        .await
        .map_err(StartError::connect("the embedded PostgreSQL"))?;
    let exists = maintenance
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [embedded::DATABASE.into()],
        ))
        .await
        .map_err(StartError::database("cannot look the embedded database up"))?
        .is_some();
    if !exists {
        maintenance
            .execute_unprepared(&format!("CREATE DATABASE {}", embedded::DATABASE))
            .await
            .map_err(StartError::database("cannot create the embedded database"))?;
    }
    maintenance.close().await.map_err(StartError::database("cannot close the maintenance connection"))?;
    let serve_url =
        pg.login_url(migration::AUTHENTICATOR_ROLE, &authenticator_password(&config.data_dir)?, embedded::DATABASE);
    let sequencer_url =
        pg.login_url(migration::SEQUENCER_ROLE, &sequencer_password(&config.data_dir)?, embedded::DATABASE);
    Ok(DatabaseTarget {
        admin_url: pg.superuser_url(embedded::DATABASE),
        serve_url: serve_url.into(),
        sequencer_url: Some(sequencer_url.into()),
        embedded: Some(pg),
    })
}

fn authenticator_password(data_dir: &Path) -> Result<SecretString, EmbeddedError> {
    login_password(data_dir, "authenticator.password")
}

fn sequencer_password(data_dir: &Path) -> Result<SecretString, EmbeddedError> {
    login_password(data_dir, "sequencer.password")
}

/// A login's password, generated once into DATA_DIR.
fn login_password(data_dir: &Path, file: &str) -> Result<SecretString, EmbeddedError> {
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(password) => Ok(password.trim().into()),
        Err(_) => {
            let password = embedded::random_hex(24)?;
            embedded::write_secret(&path, &password)?;
            Ok(password.into())
        }
    }
}

/// The embedded database's request login may log in once migrations have
/// created it. The password is hex, so inlining it is safe.
async fn enable_embedded_login(admin: &DatabaseConnection, data_dir: &Path) -> Result<(), StartError> {
    let password = authenticator_password(data_dir)?;
    let sql = format!("ALTER ROLE {} LOGIN PASSWORD '{}'", migration::AUTHENTICATOR_ROLE, password.expose_secret());
    admin.execute_unprepared(&sql).await.map_err(StartError::database("cannot enable the request login"))?;
    // The logical capture's sequencer (migration 000014 created the role).
    let password = sequencer_password(data_dir)?;
    let sql =
        format!("ALTER ROLE {} LOGIN REPLICATION PASSWORD '{}'", migration::SEQUENCER_ROLE, password.expose_secret());
    admin.execute_unprepared(&sql).await.map(|_| ()).map_err(StartError::database("cannot enable the sequencer login"))
}

/// The capture mode to run: CAPTURE_MODE, with `auto` resolved by what the
/// database allows. `logical` refuses to start without it; `auto` falls
/// back to `trigger` and says why.
async fn capture(config: &Config, target: &DatabaseTarget, feed: &db::Pool) -> Result<realtime::Capture, StartError> {
    let url = config.database_sequencer_url.clone().or_else(|| target.sequencer_url.clone());
    let logical = match (config.capture_mode, url) {
        (CaptureMode::Trigger, _) => Err("CAPTURE_MODE=trigger".to_owned()),
        (_, None) => Err("no sequencer login: set DATABASE_SEQUENCER_URL to a login with REPLICATION that is a member of app_realtime".to_owned()),
        (_, Some(url)) => realtime::sequencer::check(url.expose_secret()).await.map(|()| url),
    };
    match logical {
        Ok(url) => Ok(realtime::Capture::Logical { url, state: Default::default() }),
        Err(why) if config.capture_mode == CaptureMode::Logical => {
            Err(StartError::Capture(format!("CAPTURE_MODE=logical, but the database does not allow it: {why}")))
        }
        Err(why) => {
            if config.capture_mode == CaptureMode::Auto {
                tracing::warn!(reason = %why, "logical capture unavailable; using the trigger capture (docs/OPERATIONS.md, \"Change capture\")");
            }
            realtime::listener::use_trigger_capture(feed).await.map_err(|e| StartError::ChangeFeed {
                doing: "cannot switch the capture to trigger",
                message: e.message(),
            })?;
            Ok(realtime::Capture::Trigger)
        }
    }
}

/// Development applies pending migrations; staging and production refuse to
/// start (or seed) with any, naming them.
pub(crate) async fn prepare_schema(config: &Config, admin: &DatabaseConnection) -> Result<(), StartError> {
    let pending = db::pending_migrations(admin).await.map_err(StartError::database("cannot read migration status"))?;
    if pending.is_empty() {
        return Ok(());
    }
    if config.app_env != AppEnv::Development && !config.migrate {
        return Err(StartError::PendingMigrations { pending, env: config.app_env });
    }
    tracing::info!(?pending, env = ?config.app_env, "applying pending migrations");
    Migrator::up(admin, None).await.map_err(StartError::Migration)
}

/// The JWT keys: JWT_SECRET (and JWT_PREVIOUS_SECRET), or in development
/// one generated once into DATA_DIR.
fn jwt_keys(config: &Config) -> Result<JwtKeys, StartError> {
    let ttl = Duration::from_secs(config.jwt_ttl_seconds);
    let (secret, previous) = jwt_secrets(config)?;
    Ok(JwtKeys::new(&secret, previous.as_ref(), ttl))
}

/// Change-feed cursor keys, derived from the JWT secrets (so rotating
/// JWT_SECRET with JWT_PREVIOUS_SECRET keeps cursors working too).
async fn cursor_keys(config: &Config, feed: &db::Pool) -> Result<realtime::CursorKeys, StartError> {
    let identity = realtime::listener::feed_identity(feed)
        .await
        .map_err(|e| StartError::ChangeFeed { doing: "cannot read the change feed's epoch", message: e.message() })?;
    let (secret, previous) = jwt_secrets(config)?;
    let previous = previous.as_ref().map(|p| p.expose_secret().as_bytes());
    Ok(realtime::CursorKeys::new(secret.expose_secret().as_bytes(), previous, identity))
}

/// JWT_SECRET and JWT_PREVIOUS_SECRET, or in development a secret
/// generated once into DATA_DIR.
fn jwt_secrets(config: &Config) -> Result<(SecretString, Option<SecretString>), StartError> {
    if let Some(secret) = &config.jwt_secret {
        return Ok((secret.clone(), config.jwt_previous_secret.clone()));
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartError::Io { doing: "cannot create DATA_DIR".into(), source })?;
    let path = config.data_dir.join("jwt.secret");
    let secret = match std::fs::read_to_string(&path) {
        Ok(secret) if secret.trim().len() >= 32 => secret.trim().to_owned(),
        _ => {
            let secret = embedded::random_hex(32).map_err(EmbeddedError::from)?;
            embedded::write_secret(&path, &secret)?;
            secret
        }
    };
    Ok((secret.into(), None))
}

/// Where the change feed starts: the newest finished position of the log.
async fn log_head(pool: &db::Pool) -> Result<realtime::Cursor, StartError> {
    realtime::listener::start_position(pool)
        .await
        .map_err(|e| StartError::ChangeFeed { doing: "cannot read the change log", message: e.message() })
}

/// How long shutdown waits for websockets to take their close frame.
const WEBSOCKET_DRAIN: Duration = Duration::from_secs(5);

/// File descriptors kept for everything but client connections: the
/// request pool (counted apart), the change feed, the listener, logs,
/// backups, DNS lookups.
const RESERVED_FILES: u64 = 64;

/// Raises the open-files soft limit to the hard limit (the default soft
/// limit of 1024 is what 1,100 idle connections used to exhaust) and
/// returns the soft limit now in force.
fn raise_open_files_limit() -> u64 {
    // An infinite hard limit cannot be the soft one: Linux caps it at nr_open.
    let nr_open = || std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse::<u64>().ok();
    let raised = rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|err| nr_open().map_or(Err(err), rlimit::increase_nofile_limit));
    match raised {
        Ok(limit) => limit,
        Err(err) => {
            let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
            tracing::warn!(error = %err, soft, "cannot raise the open-files limit");
            soft
        }
    }
}

/// MAX_CONNECTIONS and the HTTP timeouts, the cap lowered to what the
/// open-files limit leaves once the pool and the rest are served: past
/// that, accepting would fail (EMFILE) for clients and the database alike.
fn connection_limits(config: &Config) -> ConnectionLimits {
    let open_files = raise_open_files_limit();
    let reserved = RESERVED_FILES + u64::from(config.pool_max_connections());
    let fits = usize::try_from(open_files.saturating_sub(reserved)).unwrap_or(usize::MAX).max(1);
    if config.max_connections > fits {
        tracing::warn!(
            "MAX_CONNECTIONS={} lowered to {fits}: the open-files limit is {open_files}, {reserved} of them reserved (raise the hard limit, e.g. LimitNOFILE=, to allow more)",
            config.max_connections
        );
    }
    let limits = ConnectionLimits {
        max_connections: config.max_connections.min(fits),
        header_read_timeout: Duration::from_secs(config.http_header_read_timeout),
        idle_timeout: Duration::from_secs(config.http_idle_timeout),
    };
    tracing::info!(
        max_connections = limits.max_connections,
        open_files,
        header_read_timeout_s = config.http_header_read_timeout,
        body_read_timeout_s = config.http_body_read_timeout,
        idle_timeout_s = config.http_idle_timeout,
        max_body_bytes = config.max_body_bytes,
        "connection limits"
    );
    limits
}

/// MAX_WS_CONNECTIONS (by default three quarters of the effective
/// MAX_CONNECTIONS) and MAX_WS_PER_IP. When MAX_CONNECTIONS was lowered to
/// fit the open-files limit, a configured websocket cap is lowered with it,
/// so plain HTTP keeps its reserve (config::http_reserve).
fn ws_caps(config: &Config, max_connections: usize) -> WsCaps {
    let most = max_connections - crate::config::http_reserve(max_connections);
    let max_ws = match config.max_ws_connections {
        None => crate::config::default_max_ws_connections(max_connections),
        Some(wanted) if wanted > most => {
            tracing::warn!(
                "MAX_WS_CONNECTIONS={wanted} lowered to {most}: the effective MAX_CONNECTIONS is {max_connections}, and a tenth of it is kept for plain HTTP"
            );
            most
        }
        Some(wanted) => wanted,
    };
    tracing::info!(max_ws_connections = max_ws, max_ws_per_ip = config.max_ws_per_ip, "websocket limits");
    WsCaps::new(max_ws, config.max_ws_per_ip)
}

/// A built server, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    close_all: CloseAll,
    connections: ConnectionLimits,
    body: BodyLimits,
    embedded: Option<EmbeddedPostgres>,
    /// How often /metrics' database statistics are refreshed; `None`: never.
    database_stats: Option<Duration>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        if config.app_env != AppEnv::Development {
            for (name, url) in
                [("DATABASE_URL", &config.database_url), ("DATABASE_LISTEN_URL", &config.database_listen_url)]
            {
                if let Some(why) = url.as_ref().and_then(|url| db::unverified_tls(url.expose_secret())) {
                    tracing::warn!(
                        "{name}: {why}, so its traffic may be plaintext or intercepted; use sslmode=verify-full with sslrootcert (docs/OPERATIONS.md)"
                    );
                }
            }
        }
        let mut target = database_target(&config).await?;
        {
            // Behind a transaction-mode pooler, migrations (session-level
            // work) go over the direct connection that LISTEN uses.
            let admin_url = match &config.database_listen_url {
                Some(direct) if config.database_transaction_pooler => direct,
                _ => &target.admin_url,
            };
            let admin = db::connect_admin(admin_url).await.map_err(StartError::connect("the database"))?;
            prepare_schema(&config, &admin).await?;
            if target.embedded.is_some() {
                enable_embedded_login(&admin, &config.data_dir).await?;
            }
            admin.close().await.map_err(StartError::database("cannot close the migration connection"))?;
        }
        let pool = db::connect_pool(&target.serve_url, &config).await.map_err(StartError::connect("the database"))?;
        db::check_viewer_roles(&pool).await?;
        let listen_url = config.database_listen_url.clone().unwrap_or_else(|| target.serve_url.clone());
        let feed = db::connect_feed(&listen_url).await.map_err(StartError::connect("DATABASE_LISTEN_URL"))?;
        let realtime = Realtime::new(
            pool.clone(),
            feed.clone(),
            log_head(&feed).await?,
            RealtimeConfig {
                listen_url,
                buffer: config.realtime_buffer,
                retention: Duration::from_secs(config.realtime_retention_hours * 3600),
                poll_interval: Duration::from_millis(500),
            },
            cursor_keys(&config, &feed).await?,
        );
        let capture = capture(&config, &target, &feed).await?;
        tracing::info!(capture = capture.name(), "change capture");
        realtime.set_capture(capture);
        let metrics = std::sync::Arc::new(Metrics::new(&pool, &realtime));
        let (closing, close_all) = Closing::new();
        let connections = connection_limits(&config);
        let state = AppState {
            pool,
            schema: build_schema(Limits {
                max_depth: config.max_query_depth,
                max_complexity: config.max_query_complexity,
                max_mutation_fields: config.max_mutation_fields,
            }),
            jwt: jwt_keys(&config)?,
            realtime,
            ws: WsConfig {
                init_timeout: Duration::from_secs(config.ws_init_timeout),
                keepalive: Duration::from_secs(config.ws_keepalive),
            },
            ws_caps: std::sync::Arc::new(ws_caps(&config, connections.max_connections)),
            metrics,
            slow_request: Duration::from_millis(config.database_slow_query_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            persisted_queries: PersistedQueries::new(config.persisted_query_cache_bytes),
            closing,
            auth: AuthGuard {
                hashing: HashPool::new(
                    config.password_hash_threads,
                    Duration::from_millis(config.password_hash_wait_ms),
                )
                .map_err(|source| StartError::Io { doing: "cannot start a password hashing thread".into(), source })?,
                limits: std::sync::Arc::new(RateLimits::new(&config.rate_limits())),
                session_ttl: Duration::from_secs(config.session_ttl_seconds),
            },
            examples: config.app_env == AppEnv::Development,
        };
        let address = format!("{}:{}", config.host, config.port);
        let listener = match TcpListener::bind(&address).await {
            Ok(listener) => listener,
            Err(source) => return Err(StartError::Listen { address, source }),
        };
        Ok(Self {
            listener,
            state,
            close_all,
            connections,
            body: BodyLimits {
                max_bytes: config.max_body_bytes,
                read_timeout: Duration::from_secs(config.http_body_read_timeout),
            },
            embedded: target.embedded.take(),
            database_stats: (config.database_stats_interval > 0)
                .then(|| Duration::from_secs(config.database_stats_interval)),
        })
    }

    /// The change feed (for tests and tools that watch it).
    pub fn realtime(&self) -> Realtime {
        self.state.realtime.clone()
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// Serves until `shutdown` resolves, then finishes the HTTP requests in
    /// flight, closes websockets with 1012 (service restart), closes the pool
    /// and stops the embedded database.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self { listener, state, close_all, connections, body, embedded, database_stats } = self;
        let pool = state.pool.clone();
        let feed_pool = state.realtime.feed().clone();
        let listener_task = realtime::listener::spawn(state.realtime.clone());
        let sequencer_task = state.realtime.spawn_sequencer();
        let stats = database_stats.map(|every| state.metrics.spawn_database_stats(state.pool.clone(), every));
        // Websockets are told to close as soon as shutdown begins, while
        // the server finishes the HTTP requests in flight.
        let (begun_tx, begun) = tokio::sync::oneshot::channel();
        let shutdown = async move {
            shutdown.await;
            let _ = begun_tx.send(());
        };
        let serve = crate::http::serve(listener, router(state, body), connections, shutdown);
        let (result, begun) = tokio::join!(serve, async {
            let begun = begun.await.is_ok();
            if begun {
                close_all.begin();
            }
            begun
        });
        if begun && !close_all.finished(WEBSOCKET_DRAIN).await {
            tracing::warn!("websockets still open after {WEBSOCKET_DRAIN:?}; dropping them");
        }
        listener_task.abort();
        if let Some(task) = sequencer_task {
            task.abort();
        }
        if let Some(stats) = stats {
            stats.abort();
        }
        let _ = pool.close().await;
        let _ = feed_pool.close().await;
        if let Some(mut pg) = embedded {
            let _ = tokio::task::spawn_blocking(move || pg.stop()).await;
        }
        result
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when
/// this is called, not when the future is first polled: call it before the
/// server announces itself, or a signal sent right after would kill the
/// process with the default action instead of shutting it down.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutting down");
    })
}
