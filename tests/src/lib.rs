//! Test harness: a real PostgreSQL, a real server, real HTTP.
//!
//! - One PostgreSQL cluster per test binary, in a temp folder, on a free
//!   port and a private unix socket, started on first use. A watchdog
//!   process stops it and deletes the folder when the test process exits.
//! - A template database migrated once; each test gets its own database
//!   cloned from it (`CREATE DATABASE .. TEMPLATE`), so tests are isolated
//!   and run in parallel, and dropped when the test ends.
//! - Each test spawns the server in-process on port 0, connected as the
//!   restricted `app_authenticator` login (not a superuser, owns nothing),
//!   exactly as in production.

//!
//! The harness is split by concern; everything is re-exported here, so
//! tests use `tests::TestApp`, `tests::create_database`, ...:
//!
//! - [`cluster`]: the PostgreSQL clusters (shared and private).
//! - [`database`]: a database per test, dropped when the test ends.
//! - [`config`]: the settings of a test server.
//! - [`app`]: the server in-process, and GraphQL over HTTP to it.
//! - [`accounts`]: signing up and giving roles.
//! - [`sql`]: SQL as the superuser or as a request's role.
//! - [`ws`]: the GraphQL websocket client and change-feed cursors.
//! - [`raw_ws`]: hand-made websocket frames.
//! - [`metrics`]: scraping `/metrics`.
//! - [`pgbouncer`]: a transaction pooler in front of the cluster.

// A failed step in a test (or a load run) is the failure report: panicking
// with the step's message is the point, so the workspace's ban on
// `unwrap` (meant for the server) does not apply here. Prefer `expect` with
// what was being done.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod accounts;
pub mod app;
pub mod cluster;
pub mod config;
pub mod database;
pub mod logs;
pub mod metrics;
pub mod pgbouncer;
pub mod raw_ws;
pub mod sql;
pub mod ws;

pub use accounts::TestUser;
pub use app::{TestApp, error_code, eventually};
pub use cluster::{Cluster, shared_cluster, superuser_url};
pub use config::{JWT_SECRET, capture_mode_under_test, test_config, test_config_on};
pub use database::create_database;
pub use metrics::Scrape;
pub use pgbouncer::PgBouncer;
pub use raw_ws::{
    client_control_frame, client_text_frame, raw_frames_until, raw_upgrade, raw_websocket, server_frames,
};
pub use serde_json;
pub use ws::{Received, WsClient};
