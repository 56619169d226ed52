//! Load tools for the api server. Each starts the release `api` next to
//! itself on an embedded database of its own (a DATA_DIR in /tmp), so client
//! and server share the machine, as they would in a test of one box.
//!
//! - [`fanout`]: N graphql-ws subscribers to `placeChanged`, places written
//!   at a steady rate, every delivery measured.
//! - [`queries`]: GraphQL reads and a write at C keep-alive connections on a
//!   `--scale` data set: req/s, latency, CPU and SQL statements per request,
//!   with pgbench running the same SQL as the ceiling, in the same run, and
//!   with `--postgraphile`, PostGraphile 4.14.1 answering the reads too.
//! - [`sendfloor`]: no server; the kernel's cost of a websocket frame
//!   written to each of N loopback sockets per event, the floor under
//!   `fanout`'s CPU per delivery.
//! - [`postgraphile`]: installing and starting PostGraphile for that.
//! - [`server`]: starting the server, and its CPU and memory from /proc.
//!
//! ```text
//! cargo build --release -p api -p bench
//! target/release/bench fanout --subscribers 1000 --rate 100 --seconds 20
//! target/release/bench queries --scale 1000 --data-dir /tmp/bench-queries-1000
//! ```

// A failed step in a test (or a load run) is the failure report: panicking
// with the step's message is the point, so the workspace's ban on
// `unwrap` (meant for the server) does not apply here. Prefer `expect` with
// what was being done.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fanout;
mod lean_ws;
mod postgraphile;
mod queries;
mod sendfloor;
mod server;
mod writes;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load tools for the api server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Subscribers to placeChanged, writes at a steady rate, deliveries measured.
    Fanout(fanout::Args),
    /// The kernel's floor under a delivery: frames to N loopback sockets per event, no server.
    Sendfloor(sendfloor::Args),
    /// Two read cases and a write at C connections, beside pgbench running their SQL.
    Queries(queries::Args),
    /// Single-row writes on a published table over SQL, with capture off, trigger (fallback) and logical, interleaved.
    Writes {
        /// Concurrent writers (one connection each).
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Length of each measured phase.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Rounds over all capture modes (the median round is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The writers' synchronous_commit: `off` takes the WAL flush out of each commit, leaving CPU and locks.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        synchronous_commit: String,
    },
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Fanout(args) => fanout::run(args).await,
        Command::Queries(args) => queries::run(args).await,
        Command::Sendfloor(args) => sendfloor::run(args).await,
        Command::Writes { writers, seconds, rounds, synchronous_commit } => {
            writes::run(writers, seconds, rounds, synchronous_commit == "on").await;
        }
    }
}
