//! Integration tests: one binary (one link, one PostgreSQL cluster) with a
//! module per area.

// A failed step in a test (or a load run) is the failure report: panicking
// with the step's message is the point, so the workspace's ban on
// `unwrap` (meant for the server) does not apply here. Prefer `expect` with
// what was being done.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod airdrops;
mod backups;
mod browser;
mod codegen;
mod dropfarm_allogator_db;
mod foreign_keys;
mod harness;
mod hostile;
mod http;
mod http_spec;
mod js_client;
mod migrations;
mod nodes;
mod ops_deps;
mod pagination;
mod pgbouncer;
mod places;
mod posts;
mod realtime;
mod realtime_capture;
mod realtime_logical;
mod realtime_shared;
mod recommendations;
mod request_path;
mod rls;
mod routines;
mod schema;
mod session_bounds;
mod sessions;
mod tls;
mod websocket;
mod websocket_apq;
