//! Load tools. `fanout`: N graphql-ws subscribers to `placeChanged` on
//! loopback, places written at a steady rate through the API, and what
//! arrives measured.
//!
//! ```text
//! cargo build --release -p api -p bench
//! target/release/bench fanout --subscribers 1000 --rate 100 --seconds 20
//! ```
//!
//! It starts the release `api` next to itself on an embedded database of
//! its own (a temp DATA_DIR), so client and server share the machine, as
//! they would in a test of one box. Latency is measured from the moment a
//! write is sent (its timestamp travels in the place's description) to the
//! moment a subscriber has parsed the event: it includes the HTTP request,
//! the commit, the listener, fan-out and the websocket.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod writes;

#[derive(Parser)]
#[command(about = "Load tools for the api server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Subscribers to placeChanged, writes at a steady rate, deliveries measured.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Writes per second.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// How long to write.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Connections opened at once while connecting.
        #[arg(long, default_value_t = 200)]
        connect_concurrency: usize,
    },
    /// Single-row writes on a published table over SQL, with capture off, generic and compiled.
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

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field overall.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The release server, next to this binary, on a fresh embedded database.
struct Server {
    child: tokio::process::Child,
    address: String,
    data_dir: PathBuf,
}

impl Server {
    async fn start() -> Self {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let api = exe.with_file_name("api");
        assert!(api.exists(), "build the server first: cargo build --release -p api");
        let data_dir = PathBuf::from(format!("/tmp/bench-{}", std::process::id()));
        let mut child = tokio::process::Command::new(&api)
            .env("DATA_DIR", &data_dir)
            .env("PORT", "0")
            .env("RUST_LOG", "warn,api::commands=info")
            .env("JWT_SECRET", "bench-secret-bench-secret-bench-secret-00")
            // Subscribers are the point here: let the server hold many sockets.
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", api.display()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap_or_else(|| panic!("stderr"))).lines();
        let address = loop {
            let line = lines.next_line().await.ok().flatten().unwrap_or_else(|| panic!("the server exited"));
            if let Some(rest) = line.split("serving on ").nth(1) {
                break rest.split_whitespace().next().unwrap_or_default().to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, address, data_dir }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A service account to write places with.
async fn service_token(server: &Server) -> String {
    let api = std::env::current_exe().unwrap_or_else(|e| panic!("{e}")).with_file_name("api");
    let mut create = tokio::process::Command::new(api)
        .args(["user", "create", "--email", "bench@bench.test", "--username", "bench", "--role", "service"])
        .env("DATA_DIR", &server.data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = create.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(b"bench-password\n").await;
    }
    assert!(create.wait().await.is_ok_and(|s| s.success()), "api user create failed");
    let body: Value = reqwest::Client::new()
        .post(format!("{}/graphql", server.address))
        .json(&json!({ "query": "mutation { signIn(input: {login: \"bench\", password: \"bench-password\"}) { token } }" }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    body["data"]["signIn"]["token"].as_str().unwrap_or_else(|| panic!("sign-in failed: {body}")).to_owned()
}

/// Latency histogram in 100 µs buckets up to 60 s, shared by all subscribers
/// without locks.
struct Histogram(Vec<AtomicU64>);

impl Histogram {
    const BUCKET_MICROS: u64 = 100;

    fn new() -> Self {
        Self((0..600_000).map(|_| AtomicU64::new(0)).collect())
    }

    fn record(&self, micros: u64) {
        let bucket = usize::try_from(micros / Self::BUCKET_MICROS).unwrap_or(usize::MAX).min(self.0.len() - 1);
        self.0[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The `p` quantile in milliseconds (upper edge of its bucket).
    fn quantile_ms(&self, p: f64) -> f64 {
        let counts: Vec<u64> = self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let target = ((total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= target {
                return ((i as u64 + 1) * Self::BUCKET_MICROS) as f64 / 1000.0;
            }
        }
        0.0
    }
}

#[derive(Default)]
struct Totals {
    delivered: AtomicU64,
}

/// Order fingerprints: every subscriber must see the same sequence.
type Fingerprints = Arc<std::sync::Mutex<Vec<u64>>>;

async fn subscriber(
    url: String,
    latencies: Arc<Histogram>,
    totals: Arc<Totals>,
    ready: Arc<AtomicU64>,
    expected: u64,
    fingerprints: Fingerprints,
) {
    let mut request = url.into_client_request().unwrap_or_else(|e| panic!("{e}"));
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap_or_else(|e| panic!("{e}")));
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap_or_else(|e| panic!("connect: {e}"));
    let send = |v: Value| Message::Text(v.to_string().into());
    let _ = ws.send(send(json!({ "type": "connection_init" }))).await;
    let _ = ws.next().await; // connection_ack
    let query = "subscription { placeChanged { place { id description } } }";
    let _ = ws.send(send(json!({ "type": "subscribe", "id": "1", "payload": { "query": query } }))).await;
    ready.fetch_add(1, Ordering::Relaxed);
    let mut fingerprint = 0xcbf2_9ce4_8422_2325_u64;
    let mut received = 0u64;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else { continue };
        let value: Value = match serde_json::from_str(text.as_str()) {
            Ok(v) => v,
            Err(_) => continue,
        };
        match value["type"].as_str() {
            Some("ping") => {
                let _ = ws.send(send(json!({ "type": "pong" }))).await;
            }
            Some("next") => {
                let place = &value["payload"]["data"]["placeChanged"]["place"];
                let seq: u64 = place["id"].as_str().and_then(|id| id.strip_prefix("b")?.parse().ok()).unwrap_or(0);
                let sent: u64 = place["description"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0);
                latencies.record(now_micros().saturating_sub(sent));
                fingerprint = (fingerprint ^ seq).wrapping_mul(0x0100_0000_01b3);
                received += 1;
                totals.delivered.fetch_add(1, Ordering::Relaxed);
                if received == expected {
                    fingerprints.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(fingerprint);
                }
            }
            Some("complete" | "error") => break,
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() {
    let (subscribers, rate, seconds, connect_concurrency) = match Cli::parse().command {
        Command::Fanout { subscribers, rate, seconds, connect_concurrency } => {
            (subscribers, rate, seconds, connect_concurrency)
        }
        Command::Writes { writers, seconds, rounds, synchronous_commit } => {
            return writes::run(writers, seconds, rounds, synchronous_commit == "on").await;
        }
    };
    let server = Server::start().await;
    let token = service_token(&server).await;
    let ws_url = format!("{}/graphql/ws", server.address.replacen("http", "ws", 1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(server.pid());

    println!("connecting {subscribers} subscribers to {ws_url} ...");
    let latencies = Arc::new(Histogram::new());
    let fingerprints: Fingerprints = Arc::default();
    let writes = u64::from(rate) * seconds;
    let totals = Arc::new(Totals::default());
    let ready = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(subscribers);
    let connect_started = Instant::now();
    for _ in 0..subscribers {
        let (url, lat, tot, rdy) = (ws_url.clone(), latencies.clone(), totals.clone(), ready.clone());
        tasks.push(tokio::spawn(subscriber(url, lat, tot, rdy, writes, fingerprints.clone())));
        // At most `connect_concurrency` handshakes in flight (the listen backlog is finite).
        while ready.load(Ordering::Relaxed) + (connect_concurrency as u64) < tasks.len() as u64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    while ready.load(Ordering::Relaxed) < subscribers as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("connected in {:.1} s", connect_started.elapsed().as_secs_f64());
    // Let subscriptions attach and the server settle before measuring memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = rss_kib(server.pid());

    println!("writing {writes} places at {rate}/s for {seconds} s ...");
    let http = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let write_started = Instant::now();
    let server_pid = server.pid().to_string();
    let (server_cpu_start, client_cpu_start) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let mut writers = Vec::new();
    for seq in 1..=writes {
        ticker.tick().await;
        let (http, url, token) = (http.clone(), format!("{}/graphql", server.address), token.clone());
        writers.push(tokio::spawn(async move {
            let query = "mutation($id: ID!, $d: String!) { createPlace(input: {id: $id, name: \"bench\", lat: 38.7, lng: -9.1, category: \"bench\", description: $d}) { id } }";
            let vars = json!({ "id": format!("b{seq:09}"), "d": now_micros().to_string() });
            let _ = http.post(url).bearer_auth(token).json(&json!({ "query": query, "variables": vars })).send().await;
        }));
    }
    for w in writers {
        let _ = w.await;
    }
    let write_secs = write_started.elapsed().as_secs_f64();
    let expected = writes * subscribers as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while totals.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_secs = write_started.elapsed().as_secs_f64();
    let server_cores = (cpu_seconds(&server_pid) - server_cpu_start) / all_secs;
    let client_cores = (cpu_seconds("self") - client_cpu_start) / all_secs;
    let delivered = totals.delivered.load(Ordering::Relaxed);
    let rss_busy = rss_kib(server.pid());

    let pct = |p: f64| latencies.quantile_ms(p);
    let orders = fingerprints.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let disagreeing = orders.iter().filter(|f| **f != orders[0]).count();
    println!();
    println!("subscribers                 {subscribers}");
    println!("writes                      {writes} at {rate}/s (sent in {write_secs:.1} s)");
    println!("deliveries expected         {expected}");
    println!("deliveries received         {delivered}");
    println!("events lost                 {}", expected.saturating_sub(delivered));
    println!("subscribers with all events {} ({} saw a different order than the first)", orders.len(), disagreeing);
    println!("delivered/s (whole run)     {:.0}", delivered as f64 / all_secs);
    println!("latency p50 / p99 / max     {:.1} / {:.1} / {:.1} ms", pct(0.50), pct(0.99), pct(1.0));
    println!("CPU used (cores of 2)       server {server_cores:.2}, this client {client_cores:.2}");
    println!("server RSS before/idle/busy {} / {} / {} MiB", rss_before / 1024, rss_idle / 1024, rss_busy / 1024);
    println!(
        "server memory per idle subscriber  {:.1} KiB",
        rss_idle.saturating_sub(rss_before) as f64 / subscribers.max(1) as f64
    );
    for t in tasks {
        t.abort();
    }
    server.stop().await;
}
