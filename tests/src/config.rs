//! The settings of a test server: production's, with the limits that would
//! get in the way of many tests from one address lifted (each limit has
//! tests of its own that set it low).

use crate::cluster::{Cluster, cluster};

/// The HS256 key of every test server, so tests can forge tokens.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// Settings of a test server; tests may change them before `spawn_with`.
pub fn test_config(database: &str) -> api::Config {
    test_config_on(cluster(), database)
}

/// Settings of a test server on a database of `on`.
pub fn test_config_on(on: &Cluster, database: &str) -> api::Config {
    api::Config {
        host: "127.0.0.1".into(),
        port: 0,
        database_url: Some(on.url("app_authenticator", database).into()),
        database_pool_size: 4,
        database_max_overflow: 2,
        database_pool_timeout: 10,
        database_idle_timeout: 300,
        // Off: the statistics reader's transaction would land in the
        // statement counts of the tests that read pg_stat_statements. The
        // metrics test turns it on.
        database_stats_interval: 0,
        database_slow_query_ms: 200,
        database_statement_timeout_ms: 5000,
        request_timeout_ms: 15000,
        database_listen_url: None,
        database_transaction_pooler: false,
        realtime_buffer: 4096,
        realtime_retention_hours: 24,
        ws_init_timeout: 10,
        ws_keepalive: 15,
        data_dir: std::env::temp_dir().join("apitest-unused"),
        pg_bin: None,
        app_env: api::config::AppEnv::Development,
        migrate: false,
        jwt_secret: Some(JWT_SECRET.into()),
        jwt_previous_secret: None,
        jwt_ttl_seconds: 3600,
        session_ttl_seconds: 2_592_000,
        password_hash_threads: 0,
        password_hash_wait_ms: 10_000,
        // Tests sign many users up and in from 127.0.0.1: the limits are
        // tested with low values of their own (hostile::auth_limits).
        sign_in_per_ip_per_minute: 1_000_000,
        sign_in_per_login_per_minute: 1_000_000,
        sign_up_per_ip_per_hour: 1_000_000,
        sign_up_per_email_per_hour: 1_000_000,
        auth_rate_limit_keys: 100_000,
        trust_x_forwarded_for: false,
        max_query_depth: 15,
        max_query_complexity: 5000,
        max_mutation_fields: 10,
        max_body_bytes: 1024 * 1024,
        persisted_query_cache_bytes: 1024 * 1024,
        max_connections: 10_000,
        // Websockets: three quarters of max_connections, and (tests open
        // many from 127.0.0.1) no per-address cap in practice; the caps are
        // tested with low values of their own (hostile::connections).
        max_ws_connections: None,
        max_ws_per_ip: 10_000,
        http_header_read_timeout: 10,
        http_body_read_timeout: 30,
        http_idle_timeout: 60,
        log_format: api::config::LogFormat::Text,
        capture_mode: capture_mode_under_test(),
        database_sequencer_url: (capture_mode_under_test() != api::config::CaptureMode::Trigger)
            .then(|| on.url(migration::SEQUENCER_ROLE, database).into()),
    }
}

/// The capture mode test servers run in: TEST_CAPTURE_MODE (trigger,
/// logical or auto), trigger when unset. CI runs the realtime tests once
/// more with TEST_CAPTURE_MODE=logical.
pub fn capture_mode_under_test() -> api::config::CaptureMode {
    use api::config::CaptureMode;
    match std::env::var("TEST_CAPTURE_MODE").as_deref() {
        Err(_) | Ok("trigger") => CaptureMode::Trigger,
        Ok("logical") => CaptureMode::Logical,
        Ok("auto") => CaptureMode::Auto,
        Ok(other) => panic!("TEST_CAPTURE_MODE={other}: expected trigger, logical or auto"),
    }
}
