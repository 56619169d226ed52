//! Integration tests: one binary (one link, one PostgreSQL cluster) with a
//! module per area.

mod accounts;
mod airdrops;
mod backups;
mod dropfarm_allogator_db;
mod hostile;
mod http;
mod http_spec;
mod js_client;
mod migrations;
mod pagination;
mod pgbouncer;
mod places;
mod posts;
mod realtime;
mod realtime_capture;
mod recommendations;
mod request_path;
mod rls;
mod routines;
mod schema;
mod tls;
mod websocket;
