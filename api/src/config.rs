//! Configuration from flags, the environment and an optional `.env` file.
//! Every setting has a flag and an environment variable of the same name;
//! `api --help` lists them with their defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

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

/// How committed changes get their place in the change feed's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CaptureMode {
    /// `logical` where the database allows it (wal_level=logical and a
    /// sequencer login with REPLICATION), `trigger` otherwise.
    Auto,
    /// Writers only append to the change log; one server (the sequencer)
    /// reads the commit order from a logical replication slot. Refuses to
    /// start where the database does not allow it.
    Logical,
    /// Every writing transaction stamps its commit order itself, under a
    /// lock held through its commit (one published commit at a time).
    Trigger,
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
    pub database_url: Option<SecretString>,
    /// Connections the pool keeps for steady load, opened at start.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 20, global = true)]
    pub database_pool_size: u32,
    /// Extra connections the pool may open under bursts (pool max = size + overflow).
    #[arg(long, env = "DATABASE_MAX_OVERFLOW", default_value_t = 10, global = true)]
    pub database_max_overflow: u32,
    /// Seconds a request waits for a free connection before failing with SERVICE_UNAVAILABLE.
    #[arg(long, env = "DATABASE_POOL_TIMEOUT", default_value_t = 30, global = true)]
    pub database_pool_timeout: u64,
    /// Seconds between two reads of the database statistics that /metrics
    /// serves (sizes, rows, index scans, cache hits); 0 turns them off.
    #[arg(long, env = "DATABASE_STATS_INTERVAL", default_value_t = 15, global = true)]
    pub database_stats_interval: u64,
    /// Seconds an idle overflow connection is kept before it is closed.
    #[arg(long, env = "DATABASE_IDLE_TIMEOUT", default_value_t = 300, global = true)]
    pub database_idle_timeout: u64,
    /// Longest one SQL statement of a request may run, in milliseconds; past it the request fails with QUERY_TIMEOUT and rolls back.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 5000, global = true)]
    pub database_statement_timeout_ms: u64,
    /// Longest a whole query or mutation may run, in milliseconds (every statement together); past it the request fails with QUERY_TIMEOUT and rolls back.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 15000, global = true)]
    pub request_timeout_ms: u64,
    /// SQL statements and GraphQL requests slower than this many milliseconds are counted (api_db_slow_queries_total, api_graphql_slow_requests_total) and logged with their operation name.
    #[arg(long, env = "DATABASE_SLOW_QUERY_MS", default_value_t = 200, global = true)]
    pub database_slow_query_ms: u64,
    /// URL for LISTEN, on a direct connection (default DATABASE_URL): set it when DATABASE_URL goes through a transaction-mode pooler.
    #[arg(long, env = "DATABASE_LISTEN_URL", global = true, hide_env_values = true)]
    pub database_listen_url: Option<SecretString>,
    /// DATABASE_URL goes through a transaction-mode pooler (PgBouncer pool_mode=transaction): no statement cache, prepared statements live one transaction. Needs DATABASE_LISTEN_URL, which the server then also uses for the migrations it checks or applies at start.
    #[arg(long, env = "DATABASE_TRANSACTION_POOLER", global = true)]
    pub database_transaction_pooler: bool,
    /// How the change feed learns the commit order: logical (a sequencer reads a logical replication slot; writers take no lock), trigger (each writing transaction stamps itself under a lock held through commit), or auto (logical where wal_level=logical and a sequencer login exist). Every server of one database should use the same mode.
    #[arg(long, env = "CAPTURE_MODE", value_enum, default_value_t = CaptureMode::Auto, global = true)]
    pub capture_mode: CaptureMode,
    /// URL of the login the logical capture's sequencer uses (LOGIN REPLICATION, a member of app_realtime), on a direct connection. Unset: the embedded database's own; with DATABASE_URL, logical capture needs it.
    #[arg(long, env = "DATABASE_SEQUENCER_URL", global = true, hide_env_values = true)]
    pub database_sequencer_url: Option<SecretString>,
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
    pub jwt_secret: Option<SecretString>,
    /// The HS256 key being rotated out: tokens it signed stay valid until they expire, new ones use JWT_SECRET. Remove it after JWT_TTL_SECONDS.
    #[arg(long, env = "JWT_PREVIOUS_SECRET", global = true, hide_env_values = true)]
    pub jwt_previous_secret: Option<SecretString>,
    /// Access token lifetime in seconds. Short, because a client renews it with its refresh token (refreshSession); an ended session's tokens are refused at their next request anyway.
    #[arg(long, env = "JWT_TTL_SECONDS", default_value_t = 900, global = true)]
    pub jwt_ttl_seconds: u64,
    /// How long a session lasts without a refresh, in seconds (each refreshSession extends it by this much). 60 to 31536000 (a year); default 30 days.
    #[arg(long, env = "SESSION_TTL_SECONDS", default_value_t = 2_592_000, global = true)]
    pub session_ttl_seconds: u64,
    /// Threads that hash passwords (argon2, 19 MiB each once used); sign-ups and sign-ins beyond them wait. 0: one per core, at most 4.
    #[arg(long, env = "PASSWORD_HASH_THREADS", default_value_t = 0, global = true)]
    pub password_hash_threads: usize,
    /// Milliseconds a sign-up or sign-in waits for a free hashing thread before failing with SERVICE_UNAVAILABLE (retry shortly).
    #[arg(long, env = "PASSWORD_HASH_WAIT_MS", default_value_t = 2000, global = true)]
    pub password_hash_wait_ms: u64,
    /// Sign-in attempts per minute from one client address (IPv6: per /64), as a burst refilled over the minute.
    #[arg(long, env = "SIGN_IN_PER_IP_PER_MINUTE", default_value_t = 30, global = true)]
    pub sign_in_per_ip_per_minute: u32,
    /// Sign-in attempts per minute on one login (email or username), from anywhere.
    #[arg(long, env = "SIGN_IN_PER_LOGIN_PER_MINUTE", default_value_t = 10, global = true)]
    pub sign_in_per_login_per_minute: u32,
    /// Sign-ups per hour from one client address (IPv6: per /64).
    #[arg(long, env = "SIGN_UP_PER_IP_PER_HOUR", default_value_t = 10, global = true)]
    pub sign_up_per_ip_per_hour: u32,
    /// Sign-up attempts per hour with one email.
    #[arg(long, env = "SIGN_UP_PER_EMAIL_PER_HOUR", default_value_t = 5, global = true)]
    pub sign_up_per_email_per_hour: u32,
    /// Addresses and logins each sign-up/sign-in limit tracks at most (bounded memory); when full, new ones share one bucket.
    #[arg(long, env = "AUTH_RATE_LIMIT_KEYS", default_value_t = 100_000, global = true)]
    pub auth_rate_limit_keys: usize,
    /// Take the client address from the last X-Forwarded-For entry (set only behind a proxy that appends it; otherwise clients could pick their address).
    #[arg(long, env = "TRUST_X_FORWARDED_FOR", global = true)]
    pub trust_x_forwarded_for: bool,
    /// Deepest selection nesting a query may have.
    #[arg(long, env = "MAX_QUERY_DEPTH", default_value_t = 15, global = true)]
    pub max_query_depth: usize,
    /// Highest cost a document may have, counted before it runs: one point
    /// per field, lists by the page size they ask for times their items,
    /// 10 per SQL statement, more for searches and recommendations (see
    /// api/src/graphql/cost.rs). Past it: QUERY_TOO_EXPENSIVE.
    #[arg(long, env = "MAX_QUERY_COMPLEXITY", default_value_t = 5000, global = true)]
    pub max_query_complexity: usize,
    /// Most root fields one mutation may have (each is a write in the same
    /// transaction). Past it: TOO_MANY_MUTATION_FIELDS.
    #[arg(long, env = "MAX_MUTATION_FIELDS", default_value_t = 10, global = true)]
    pub max_mutation_fields: usize,
    /// Largest request body in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,
    /// Memory for automatic persisted queries (documents kept by their SHA-256), in bytes; least recently used documents go first. 0 turns them off (PERSISTED_QUERY_NOT_SUPPORTED). At most 1 GiB.
    #[arg(long, env = "PERSISTED_QUERY_CACHE_BYTES", default_value_t = 8 * 1024 * 1024, global = true)]
    pub persisted_query_cache_bytes: usize,
    /// Connections open at once (websockets included); at it, connections waiting a second or more for a request are closed to make way, and new ones wait in the accept queue. Lowered at start to fit the open-files limit.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000, global = true)]
    pub max_connections: usize,
    /// Websockets open at once (default: three quarters of the effective MAX_CONNECTIONS); an upgrade past it gets 503 TOO_MANY_CONNECTIONS at once, so plain HTTP always keeps the rest of the connections. At most MAX_CONNECTIONS minus a tenth of it (at least 1).
    #[arg(long, env = "MAX_WS_CONNECTIONS", global = true)]
    pub max_ws_connections: Option<usize>,
    /// Websockets open at once from one client address (IPv6: per /64; see TRUST_X_FORWARDED_FOR); past it: 503 TOO_MANY_CONNECTIONS.
    #[arg(long, env = "MAX_WS_PER_IP", default_value_t = 100, global = true)]
    pub max_ws_per_ip: usize,
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
/// A persisted-query cache larger than this is a typo (a value in bits, say):
/// a client's documents are a few kilobytes each.
const MAX_PERSISTED_QUERY_CACHE_BYTES: usize = 1 << 30;

/// Connections kept for plain HTTP out of `max_connections`: websockets may
/// hold the rest, never these, so a full set of sockets (one client's, say)
/// cannot keep anyone from making a request.
pub fn http_reserve(max_connections: usize) -> usize {
    (max_connections / 10).max(1)
}

/// The websocket cap when MAX_WS_CONNECTIONS is not set: three quarters of
/// the connections (0, so no websockets, only for a cap of 1).
pub fn default_max_ws_connections(max_connections: usize) -> usize {
    max_connections.saturating_mul(3) / 4
}

/// A setting out of range, or settings that do not go together; the
/// message names them, in one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl From<&str> for ConfigError {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}

impl From<String> for ConfigError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl Config {
    pub fn pool_max_connections(&self) -> u32 {
        self.database_pool_size + self.database_max_overflow
    }

    /// The sign-up and sign-in rate limits.
    pub fn rate_limits(&self) -> crate::auth::RateLimitConfig {
        crate::auth::RateLimitConfig {
            sign_in_per_ip_per_minute: self.sign_in_per_ip_per_minute,
            sign_in_per_login_per_minute: self.sign_in_per_login_per_minute,
            sign_up_per_ip_per_hour: self.sign_up_per_ip_per_hour,
            sign_up_per_login_per_hour: self.sign_up_per_email_per_hour,
            max_keys: self.auth_rate_limit_keys,
            trust_forwarded_for: self.trust_x_forwarded_for,
        }
    }

    pub fn pool_timeout(&self) -> Duration {
        Duration::from_secs(self.database_pool_timeout)
    }

    /// Checks what clap cannot: combinations and ranges. The message is one
    /// line for the operator.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.database_pool_size == 0 {
            return Err("DATABASE_POOL_SIZE must be at least 1".into());
        }
        if self.database_statement_timeout_ms < 100 {
            return Err("DATABASE_STATEMENT_TIMEOUT_MS must be at least 100".into());
        }
        if self.request_timeout_ms < 100 {
            return Err("REQUEST_TIMEOUT_MS must be at least 100".into());
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
        if self.max_query_depth == 0 || self.max_query_complexity == 0 || self.max_mutation_fields == 0 {
            return Err("MAX_QUERY_DEPTH, MAX_QUERY_COMPLEXITY and MAX_MUTATION_FIELDS must be at least 1".into());
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_CEILING {
            return Err(format!("MAX_CONNECTIONS must be between 1 and {MAX_CONNECTIONS_CEILING}").into());
        }
        if let Some(max_ws) = self.max_ws_connections {
            let most = self.max_connections - http_reserve(self.max_connections);
            if max_ws == 0 || max_ws > most {
                return Err(format!(
                    "MAX_WS_CONNECTIONS must be between 1 and {most} (MAX_CONNECTIONS minus a tenth of it, kept for plain HTTP)"
                ).into());
            }
        }
        if self.max_ws_per_ip == 0 || self.max_ws_per_ip > MAX_CONNECTIONS_CEILING {
            return Err(format!("MAX_WS_PER_IP must be between 1 and {MAX_CONNECTIONS_CEILING}").into());
        }
        let http_timeouts = [self.http_header_read_timeout, self.http_body_read_timeout, self.http_idle_timeout];
        if http_timeouts.iter().any(|&seconds| seconds == 0 || seconds > HTTP_TIMEOUT_CEILING) {
            return Err(format!(
                "HTTP_HEADER_READ_TIMEOUT, HTTP_BODY_READ_TIMEOUT and HTTP_IDLE_TIMEOUT must be between 1 and {HTTP_TIMEOUT_CEILING} seconds"
            ).into());
        }
        if self.max_body_bytes == 0 {
            return Err("MAX_BODY_BYTES must be at least 1".into());
        }
        if self.persisted_query_cache_bytes > MAX_PERSISTED_QUERY_CACHE_BYTES {
            return Err(format!(
                "PERSISTED_QUERY_CACHE_BYTES must be at most {MAX_PERSISTED_QUERY_CACHE_BYTES} (1 GiB)"
            )
            .into());
        }
        if self.jwt_ttl_seconds == 0 {
            return Err("JWT_TTL_SECONDS must be at least 1".into());
        }
        if !(60..=31_536_000).contains(&self.session_ttl_seconds) {
            return Err("SESSION_TTL_SECONDS must be between 60 and 31536000 (a year)".into());
        }
        if self.password_hash_threads > 256 {
            return Err("PASSWORD_HASH_THREADS must be at most 256 (each holds 19 MiB)".into());
        }
        if !(1..=60_000).contains(&self.password_hash_wait_ms) {
            return Err("PASSWORD_HASH_WAIT_MS must be 1 to 60000".into());
        }
        for (name, value) in [
            ("SIGN_IN_PER_IP_PER_MINUTE", self.sign_in_per_ip_per_minute),
            ("SIGN_IN_PER_LOGIN_PER_MINUTE", self.sign_in_per_login_per_minute),
            ("SIGN_UP_PER_IP_PER_HOUR", self.sign_up_per_ip_per_hour),
            ("SIGN_UP_PER_EMAIL_PER_HOUR", self.sign_up_per_email_per_hour),
        ] {
            if !(1..=1_000_000).contains(&value) {
                return Err(format!("{name} must be 1 to 1000000").into());
            }
        }
        if !(100..=100_000_000).contains(&self.auth_rate_limit_keys) {
            return Err("AUTH_RATE_LIMIT_KEYS must be 100 to 100000000".into());
        }
        if self.app_env == AppEnv::Production && self.jwt_secret.is_none() {
            return Err("JWT_SECRET is required when APP_ENV=production".into());
        }
        if let Some(secret) = &self.jwt_secret
            && secret.expose_secret().len() < 32
        {
            return Err("JWT_SECRET must be at least 32 characters".into());
        }
        match (&self.jwt_secret, &self.jwt_previous_secret) {
            (_, None) => {}
            (None, Some(_)) => {
                return Err("JWT_PREVIOUS_SECRET needs JWT_SECRET (the key that replaces it)".into());
            }
            (Some(_), Some(previous)) if previous.expose_secret().len() < 32 => {
                return Err("JWT_PREVIOUS_SECRET must be at least 32 characters".into());
            }
            (Some(current), Some(previous)) if current.expose_secret() == previous.expose_secret() => {
                return Err("JWT_PREVIOUS_SECRET is the same as JWT_SECRET: set JWT_SECRET to the new key".into());
            }
            (Some(_), Some(_)) => {}
        }
        if self.database_sequencer_url.is_some() && self.capture_mode == CaptureMode::Trigger {
            return Err("DATABASE_SEQUENCER_URL is set but CAPTURE_MODE=trigger never uses it: unset one".into());
        }
        if self.app_env == AppEnv::Production && self.database_url.is_none() {
            return Err(
                "DATABASE_URL is required when APP_ENV=production (the embedded database is for development)".into()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::Cli;

    #[test]
    fn debug_output_of_the_configuration_shows_no_secret() {
        let cli = Cli::try_parse_from([
            "api",
            "--database-url=postgres://app:db-password-1@db.internal/app",
            "--database-listen-url=postgres://app:listen-password-2@db.internal/app",
            "--jwt-secret=jwt-secret-jwt-secret-jwt-secret-3",
            "--jwt-previous-secret=old-secret-old-secret-old-secret-4",
        ]);
        let config = cli.map(|cli| cli.config).map_err(|e| e.to_string());
        let shown = format!("{config:?}");
        for secret in ["db-password-1", "listen-password-2", "jwt-secret-jwt", "old-secret-old"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        // The settings are there, only redacted.
        assert!(shown.contains("database_url: Some(SecretBox<str>([REDACTED]))"), "{shown}");
    }
}
