//! A realtime GraphQL data layer over PostgreSQL, filtered row by row for
//! every viewer.
//!
//! Crate map:
//! - [`app`]: start-up (database, migrations, pool, listener) and shutdown.
//! - [`config`], [`cli`]: settings and the command line.
//! - [`db`]: the pool, the per-request transaction that carries the viewer
//!   into PostgreSQL (`SET LOCAL ROLE` + `app.user_id`), the embedded database.
//! - [`auth`]: viewers, roles, tokens, password hashes.
//! - [`error`]: every client-visible error and its code.
//! - [`graphql`]: schema assembly, context access, pagination.
//! - [`http`]: routes, GraphiQL, health checks, metrics, request ids, the
//!   websocket protocol.
//! - [`ops`]: backups with retention, Prometheus metrics.
//! - Domains, each with its types, resolvers, row policy and queries:
//!   [`accounts`], [`places`], [`routines`], [`airdrops`], [`posts`].
//! - [`realtime`]: the change feed: listener, subscriber streams, cursors.
//! - [`commands`], [`seed`]: the CLI's non-serving commands.

pub mod accounts;
pub mod airdrops;
pub mod app;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod ops;
pub mod places;
pub mod posts;
pub mod realtime;
pub mod routines;
pub mod seed;

pub use app::Application;
pub use config::Config;
