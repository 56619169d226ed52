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
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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

#[derive(Default)]
struct Totals {
    delivered: AtomicU64,
    out_of_order: AtomicU64,
}

async fn subscriber(url: String, latencies: Arc<Mutex<Vec<u32>>>, totals: Arc<Totals>, ready: Arc<AtomicU64>) -> u64 {
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
    let mut last_seq = 0u64;
    let mut mine = Vec::with_capacity(4096);
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
                if seq <= last_seq {
                    totals.out_of_order.fetch_add(1, Ordering::Relaxed);
                }
                last_seq = seq;
                received += 1;
                totals.delivered.fetch_add(1, Ordering::Relaxed);
                mine.push(u32::try_from(now_micros().saturating_sub(sent)).unwrap_or(u32::MAX));
                if mine.len() == mine.capacity() {
                    latencies.lock().await.append(&mut mine);
                }
            }
            Some("complete" | "error") => break,
            _ => {}
        }
    }
    latencies.lock().await.append(&mut mine);
    received
}

#[tokio::main]
async fn main() {
    let Cli { command: Command::Fanout { subscribers, rate, seconds, connect_concurrency } } = Cli::parse();
    let server = Server::start().await;
    let token = service_token(&server).await;
    let ws_url = format!("{}/graphql/ws", server.address.replacen("http", "ws", 1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(server.pid());

    println!("connecting {subscribers} subscribers to {ws_url} ...");
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let totals = Arc::new(Totals::default());
    let ready = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(subscribers);
    let connect_started = Instant::now();
    for _ in 0..subscribers {
        let (url, lat, tot, rdy) = (ws_url.clone(), latencies.clone(), totals.clone(), ready.clone());
        tasks.push(tokio::spawn(subscriber(url, lat, tot, rdy)));
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

    let writes = u64::from(rate) * seconds;
    println!("writing {writes} places at {rate}/s for {seconds} s ...");
    let http = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let write_started = Instant::now();
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
    let delivered = totals.delivered.load(Ordering::Relaxed);
    let rss_busy = rss_kib(server.pid());

    let mut lat = std::mem::take(&mut *latencies.lock().await);
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0) as f64 / 1000.0;
    println!();
    println!("subscribers                 {subscribers}");
    println!("writes                      {writes} at {rate}/s (sent in {write_secs:.1} s)");
    println!("deliveries expected         {expected}");
    println!("deliveries received         {delivered}");
    println!("events lost                 {}", expected.saturating_sub(delivered));
    println!("out of order                {}", totals.out_of_order.load(Ordering::Relaxed));
    println!("delivered/s (whole run)     {:.0}", delivered as f64 / all_secs);
    println!("latency p50 / p99 / max     {:.1} / {:.1} / {:.1} ms", pct(0.50), pct(0.99), pct(1.0));
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
