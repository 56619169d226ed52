//! Configuration from flags, the environment and an optional `.env` file.
//! Every setting has a flag and an environment variable of the same name;
//! `api --help` lists them with their defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AppEnv {
    Development,
    Staging,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1", global = true)]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8000, global = true)]
    pub port: u16,
    /// PostgreSQL URL. Unset: the server runs its own embedded PostgreSQL in DATA_DIR.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections the pool keeps for steady load.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 20, global = true)]
    pub database_pool_size: u32,
    /// Extra connections the pool may open under bursts (pool max = size + overflow).
    #[arg(long, env = "DATABASE_MAX_OVERFLOW", default_value_t = 10, global = true)]
    pub database_max_overflow: u32,
    /// Seconds a request waits for a free connection before failing with SERVICE_UNAVAILABLE.
    #[arg(long, env = "DATABASE_POOL_TIMEOUT", default_value_t = 30, global = true)]
    pub database_pool_timeout: u64,
    /// Seconds an idle connection is kept before it is closed.
    #[arg(long, env = "DATABASE_IDLE_TIMEOUT", default_value_t = 300, global = true)]
    pub database_idle_timeout: u64,
    /// Requests slower than this many milliseconds are counted and logged with their operation name.
    #[arg(long, env = "DATABASE_SLOW_QUERY_MS", default_value_t = 200, global = true)]
    pub database_slow_query_ms: u64,
    /// URL for LISTEN, on a direct connection (default DATABASE_URL): set it when DATABASE_URL goes through a transaction-mode pooler.
    #[arg(long, env = "DATABASE_LISTEN_URL", global = true, hide_env_values = true)]
    pub database_listen_url: Option<String>,
    /// DATABASE_URL goes through a transaction-mode pooler (PgBouncer pool_mode=transaction): no statement cache, prepared statements live one transaction. Needs DATABASE_LISTEN_URL, which the server then also uses for the migrations it checks or applies at start.
    #[arg(long, env = "DATABASE_TRANSACTION_POOLER", global = true)]
    pub database_transaction_pooler: bool,
    /// Change events buffered in memory; a subscriber further behind catches up from the log.
    #[arg(long, env = "REALTIME_BUFFER", default_value_t = 4096, global = true)]
    pub realtime_buffer: usize,
    /// Hours the change log keeps events; older cursors must refetch.
    #[arg(long, env = "REALTIME_RETENTION_HOURS", default_value_t = 24, global = true)]
    pub realtime_retention_hours: u64,
    /// Seconds a websocket may take to send connection_init.
    #[arg(long, env = "WS_INIT_TIMEOUT", default_value_t = 10, global = true)]
    pub ws_init_timeout: u64,
    /// Seconds between server pings on idle websockets.
    #[arg(long, env = "WS_KEEPALIVE", default_value_t = 15, global = true)]
    pub ws_keepalive: u64,
    /// Folder of the embedded database and the development JWT secret.
    #[arg(long, env = "DATA_DIR", default_value = "./.data", global = true)]
    pub data_dir: PathBuf,
    /// Folder with initdb, pg_ctl and postgres (default: PATH, then /usr/lib/postgresql/*/bin).
    #[arg(long, env = "PG_BIN", global = true)]
    pub pg_bin: Option<PathBuf>,
    /// development applies pending migrations at start; staging and production refuse to serve with any.
    #[arg(long, env = "APP_ENV", value_enum, default_value_t = AppEnv::Development, global = true)]
    pub app_env: AppEnv,
    /// Apply pending migrations at start even in staging and production (where serving refuses otherwise).
    #[arg(long, env = "MIGRATE_ON_START", global = true)]
    pub migrate: bool,
    /// HS256 key for tokens. Required in production; generated once into DATA_DIR otherwise.
    #[arg(long, env = "JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The HS256 key being rotated out: tokens it signed stay valid until they expire, new ones use JWT_SECRET. Remove it after JWT_TTL_SECONDS.
    #[arg(long, env = "JWT_PREVIOUS_SECRET", global = true, hide_env_values = true)]
    pub jwt_previous_secret: Option<String>,
    /// Token lifetime in seconds.
    #[arg(long, env = "JWT_TTL_SECONDS", default_value_t = 3600, global = true)]
    pub jwt_ttl_seconds: u64,
    /// Deepest selection nesting a query may have.
    #[arg(long, env = "MAX_QUERY_DEPTH", default_value_t = 15, global = true)]
    pub max_query_depth: usize,
    /// Largest complexity (roughly, fields times list sizes) a query may have.
    #[arg(long, env = "MAX_QUERY_COMPLEXITY", default_value_t = 5000, global = true)]
    pub max_query_complexity: usize,
    /// Largest request body in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,
    /// Connections open at once (websockets included); at it, connections waiting a second or more for a request are closed to make way, and new ones wait in the accept queue. Lowered at start to fit the open-files limit.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000, global = true)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers: from accepting the connection, or from the first byte of a later request.
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT", default_value_t = 10, global = true)]
    pub http_header_read_timeout: u64,
    /// Seconds a request body may take to arrive (408 after).
    #[arg(long, env = "HTTP_BODY_READ_TIMEOUT", default_value_t = 30, global = true)]
    pub http_body_read_timeout: u64,
    /// Seconds a keep-alive connection may wait for its next request, or a response wait for the client to read it, before the connection is closed.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value_t = 60, global = true)]
    pub http_idle_timeout: u64,
    /// Log as text or as one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// The most connections one process may be asked to hold: far beyond what
/// one server serves well, and below tokio's semaphore ceiling.
const MAX_CONNECTIONS_CEILING: usize = 1_000_000;

/// The longest HTTP timeout: a day is no protection any more, and far
/// below what a deadline (an `Instant`) can hold.
const HTTP_TIMEOUT_CEILING: u64 = 24 * 3600;

impl Config {
    pub fn pool_max_connections(&self) -> u32 {
        self.database_pool_size + self.database_max_overflow
    }

    pub fn pool_timeout(&self) -> Duration {
        Duration::from_secs(self.database_pool_timeout)
    }

    /// Checks what clap cannot: combinations and ranges. The message is one
    /// line for the operator.
    pub fn validate(&self) -> Result<(), String> {
        if self.database_pool_size == 0 {
            return Err("DATABASE_POOL_SIZE must be at least 1".into());
        }
        if self.database_pool_timeout == 0 {
            return Err("DATABASE_POOL_TIMEOUT must be at least 1 second".into());
        }
        if self.realtime_buffer == 0 || self.ws_init_timeout == 0 || self.ws_keepalive == 0 {
            return Err("REALTIME_BUFFER, WS_INIT_TIMEOUT and WS_KEEPALIVE must be at least 1".into());
        }
        if self.database_transaction_pooler && (self.database_url.is_none() || self.database_listen_url.is_none()) {
            return Err("DATABASE_TRANSACTION_POOLER needs DATABASE_URL (the pooler) and DATABASE_LISTEN_URL (a direct connection for LISTEN and start-up migrations, which a transaction-mode pooler cannot carry)".into());
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_CEILING {
            return Err(format!("MAX_CONNECTIONS must be between 1 and {MAX_CONNECTIONS_CEILING}"));
        }
        let http_timeouts = [self.http_header_read_timeout, self.http_body_read_timeout, self.http_idle_timeout];
        if http_timeouts.iter().any(|&seconds| seconds == 0 || seconds > HTTP_TIMEOUT_CEILING) {
            return Err(format!(
                "HTTP_HEADER_READ_TIMEOUT, HTTP_BODY_READ_TIMEOUT and HTTP_IDLE_TIMEOUT must be between 1 and {HTTP_TIMEOUT_CEILING} seconds"
            ));
        }
        if self.max_body_bytes == 0 {
            return Err("MAX_BODY_BYTES must be at least 1".into());
        }
        if self.jwt_ttl_seconds == 0 {
            return Err("JWT_TTL_SECONDS must be at least 1".into());
        }
        if self.app_env == AppEnv::Production && self.jwt_secret.is_none() {
            return Err("JWT_SECRET is required when APP_ENV=production".into());
        }
        if let Some(secret) = &self.jwt_secret
            && secret.len() < 32
        {
            return Err("JWT_SECRET must be at least 32 characters".into());
        }
        match (&self.jwt_secret, &self.jwt_previous_secret) {
            (_, None) => {}
            (None, Some(_)) => {
                return Err("JWT_PREVIOUS_SECRET needs JWT_SECRET (the key that replaces it)".into());
            }
            (Some(_), Some(previous)) if previous.len() < 32 => {
                return Err("JWT_PREVIOUS_SECRET must be at least 32 characters".into());
            }
            (Some(current), Some(previous)) if current == previous => {
                return Err("JWT_PREVIOUS_SECRET is the same as JWT_SECRET: set JWT_SECRET to the new key".into());
            }
            (Some(_), Some(_)) => {}
        }
        if self.app_env == AppEnv::Production && self.database_url.is_none() {
            return Err(
                "DATABASE_URL is required when APP_ENV=production (the embedded database is for development)".into()
            );
        }
        Ok(())
    }
}
