//! Load tools for the api server. Each starts the release `api` next to
//! itself on an embedded database of its own (a DATA_DIR in /tmp), so client
//! and server share the machine, as they would in a test of one box.
//!
//! - [`fanout`]: N graphql-ws subscribers to `placeChanged`, places written
//!   at a steady rate, every delivery measured.
//! - [`queries`]: GraphQL reads and a write at C keep-alive connections on a
//!   `--scale` data set: req/s, latency, CPU and SQL statements per request,
//!   with pgbench running the same SQL as the ceiling, in the same run.
//! - [`server`]: starting the server, and its CPU and memory from /proc.
//!
//! ```text
//! cargo build --release -p api -p bench
//! target/release/bench fanout --subscribers 1000 --rate 100 --seconds 20
//! target/release/bench queries --scale 1000 --data-dir /tmp/bench-queries-1000
//! ```

mod fanout;
mod queries;
mod server;

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
    /// Two read cases and a write at C connections, beside pgbench running their SQL.
    Queries(queries::Args),
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Fanout(args) => fanout::run(args).await,
        Command::Queries(args) => queries::run(args).await,
    }
}
