//! `bench fanout`: N graphql-ws subscribers to `placeChanged` on loopback,
//! places written at a steady rate through the API, and what arrives
//! measured. Latency is measured from the moment a write is sent (its
//! timestamp travels in the place's description) to the moment a
//! subscriber has parsed the event: it includes the HTTP request, the
//! commit, the listener, fan-out and the websocket.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::lean_ws::Socket;
use crate::server::{Server, api_binary, api_command, cpu_seconds, rss_kib};

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0))
}

/// The server's warnings and errors during the run (its log is at warn level).
fn print_server_warnings(data_dir: &Path) {
    let log = std::fs::read_to_string(data_dir.join("api.log")).unwrap_or_default();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    let slow = warnings.iter().filter(|l| l.contains(" slow ")).count();
    println!("server warnings/errors      {} ({slow} of them slow requests or queries)", warnings.len());
    let warnings: Vec<&&str> = warnings.iter().filter(|l| !l.contains(" slow ")).collect();
    for line in warnings.iter().take(3) {
        println!("  {}", line.chars().take(400).collect::<String>());
    }
}

/// A service account to write places with.
async fn service_token(api: &Path, server: &Server) -> String {
    let args = ["user", "create", "--email", "bench@bench.test", "--username", "bench", "--role", "service"];
    api_command(api, &server.data_dir, &args, Some("bench-password\n")).await;
    let body: Value = reqwest::Client::new()
        .post(server.graphql_url())
        .json(&json!({ "query": "mutation { signIn(input: {login: \"bench\", password: \"bench-password\"}) { token } }" }))
        .send()
        .await
        .expect("sending the request")
        .json()
        .await
        .expect("reading the JSON body");
    body["data"]["signIn"]["token"].as_str().unwrap_or_else(|| panic!("sign-in failed: {body}")).to_owned()
}

/// Latency histogram in 100 µs buckets up to 60 s, shared by all subscribers
/// without locks.
pub struct Histogram(Vec<AtomicU64>);

impl Histogram {
    const BUCKET_MICROS: u64 = 100;

    pub fn new() -> Self {
        Self((0..600_000).map(|_| AtomicU64::new(0)).collect())
    }

    pub fn record(&self, micros: u64) {
        let bucket = usize::try_from(micros / Self::BUCKET_MICROS).unwrap_or(usize::MAX).min(self.0.len() - 1);
        self.0[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The `p` quantile in milliseconds (upper edge of its bucket).
    pub fn quantile_ms(&self, p: f64) -> f64 {
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
    /// `next`s of an event the subscription had already received (or of
    /// no write of this run): not counted as delivered, so a repeat cannot
    /// hide a loss elsewhere in `events lost`.
    repeated: AtomicU64,
    /// Bytes of the text of one `next` message (the frame adds 2-4 bytes of header).
    next_bytes: AtomicU64,
    /// Messages (or frames) the client could not read, and the first of
    /// them: a change in what the server sends must show, not be skipped.
    not_understood: AtomicU64,
    first_not_understood: std::sync::Mutex<Option<String>>,
    /// Sockets the server ended (with a close frame or without) before the
    /// run's end, and the status code of the first close frame.
    closed_by_server: AtomicU64,
    first_close_code: std::sync::Mutex<Option<u16>>,
}

impl Totals {
    fn not_understood(&self, what: &str) {
        self.not_understood.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_not_understood.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert_with(|| what.chars().take(300).collect());
    }

    fn closed_by_server(&self, code: Option<u16>) {
        self.closed_by_server.fetch_add(1, Ordering::Relaxed);
        if let Some(code) = code {
            let mut first = self.first_close_code.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            first.get_or_insert(code);
        }
    }
}

/// What one subscription received, reported when the run ends: how many
/// events (repeats left out), which ones (a sum of their mixed sequence
/// numbers: the same for the same set, in any order) and in what order (an
/// FNV-1a fingerprint of the sequence numbers in arrival order).
#[derive(Clone, Copy)]
struct Received {
    events: u64,
    set: u64,
    order: u64,
}

impl Received {
    const START: Self = Self { events: 0, set: 0, order: 0xcbf2_9ce4_8422_2325 };

    fn add(&mut self, seq: u64) {
        self.events += 1;
        // splitmix64's finaliser: sums of distinct sets rarely collide.
        let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.set = self.set.wrapping_add(z ^ (z >> 31));
        self.order = (self.order ^ seq).wrapping_mul(0x0100_0000_01b3);
    }
}

/// The order check over every subscription's [`Received`]: subscriptions
/// that received the same set of events must have received them in the same
/// order (each write is one commit, delivered in commit order). Comparing
/// within sets keeps the check meaningful when writes failed or events were
/// lost: only a subscription whose set no other one has is left unchecked.
struct OrderCheck {
    /// Subscriptions with an event of every write that succeeded.
    complete: usize,
    /// Complete ones whose order differs from the first complete one's.
    complete_disagreeing: usize,
    /// Sets of events received by more than one subscription, the
    /// subscriptions in them, and those whose order differs from the first
    /// of their set.
    shared_sets: usize,
    compared: usize,
    disagreeing: usize,
    /// Subscriptions whose set no other one received (not compared).
    alone: usize,
    /// Subscriptions that did not report (their task failed or hung).
    unreported: usize,
}

impl OrderCheck {
    fn of(received: &[Received], succeeded_writes: u64, subscriptions: usize) -> Self {
        let mut sets: std::collections::HashMap<(u64, u64), (u64, usize, usize)> = std::collections::HashMap::new();
        for r in received {
            let (first_order, members, disagreeing) = sets.entry((r.events, r.set)).or_insert((r.order, 0, 0));
            *members += 1;
            *disagreeing += usize::from(r.order != *first_order);
        }
        // A write whose answer failed may still have committed: its event
        // then comes on top of all the others.
        let complete: Vec<&Received> = received.iter().filter(|r| r.events >= succeeded_writes).collect();
        let shared = sets.values().filter(|(_, members, _)| *members > 1);
        Self {
            complete: complete.len(),
            complete_disagreeing: complete.iter().filter(|r| r.order != complete[0].order).count(),
            shared_sets: shared.clone().count(),
            compared: shared.clone().map(|(_, members, _)| members).sum(),
            disagreeing: shared.map(|(_, _, disagreeing)| disagreeing).sum(),
            alone: sets.values().filter(|(_, members, _)| *members == 1).count(),
            unreported: subscriptions.saturating_sub(received.len()),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn subscriber(
    server: std::net::SocketAddr,
    source: std::net::SocketAddr,
    seed: u32,
    latencies: Arc<Histogram>,
    totals: Arc<Totals>,
    ready: Arc<AtomicU64>,
    expected: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
    per_socket: usize,
) -> Vec<Received> {
    let mut ws = Socket::connect(server, source, "/graphql/ws", "graphql-transport-ws", seed)
        .await
        .unwrap_or_else(|e| panic!("opening the websocket: {e}"));
    ws.send_text(r#"{"type":"connection_init"}"#).await.unwrap_or_else(|e| panic!("connection_init: {e}"));
    match ws.next_text().await {
        Ok(Some(text)) if matches!(read_message(text), Ok(Incoming::Ack)) => {}
        Ok(Some(text)) => {
            totals.not_understood(&format!("instead of connection_ack: {}", String::from_utf8_lossy(text)));
        }
        Ok(None) => totals.not_understood("closed before connection_ack"),
        Err(e) => totals.not_understood(&e),
    }
    // Fields every release serves (`name` carries the sequence number), so
    // `--api` can point at an older server for an A/B.
    let query = "subscription { placeChanged { place { name description } } }";
    // graphql-ws multiplexes: `per_socket` subscriptions on this one socket,
    // ids 1..=per_socket, each counted and fingerprinted on its own.
    for id in 1..=per_socket {
        let subscribe = json!({ "type": "subscribe", "id": id.to_string(), "payload": { "query": query } });
        ws.send_text(&subscribe.to_string()).await.unwrap_or_else(|e| panic!("subscribe: {e}"));
    }
    ready.fetch_add(per_socket as u64, Ordering::Relaxed);
    let mut received_of = vec![Received::START; per_socket];
    // One bit per write (numbered 1..=expected) and subscription.
    let words = usize::try_from(expected / 64 + 1).unwrap_or(usize::MAX);
    let mut seen_of = vec![vec![0u64; words]; per_socket];
    // The run's end: report what was received. Polled only while the socket
    // has nothing to read (biased, second), so it costs nothing per message.
    let stopped = stop.wait_for(|stop| *stop);
    tokio::pin!(stopped);
    loop {
        let next = tokio::select! {
            biased;
            next = ws.next_text() => Some(next),
            _ = &mut stopped => None,
        };
        let Some(next) = next else {
            // Leave as a client should (RFC 6455 7.1.2), not by a reset.
            let _ = ws.close(1000).await;
            break;
        };
        let text = match next {
            Ok(Some(text)) => text,
            Ok(None) => {
                totals.closed_by_server(ws.close_code());
                break;
            }
            Err(e) => {
                totals.not_understood(&e);
                break;
            }
        };
        match read_message(text) {
            Ok(Incoming::Next { id, seq, sent }) => {
                let Some(k) = usize::try_from(id).ok().filter(|k| (1..=per_socket).contains(k)) else {
                    totals.not_understood(&format!("a next for no subscription: {}", String::from_utf8_lossy(text)));
                    continue;
                };
                let (word, bit) = (usize::try_from(seq / 64).unwrap_or(usize::MAX), 1u64 << (seq % 64));
                match seen_of[k - 1].get_mut(word) {
                    Some(seen) if seq >= 1 && *seen & bit == 0 => *seen |= bit,
                    _ => {
                        totals.repeated.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                latencies.record(now_micros().saturating_sub(sent));
                totals.next_bytes.store(text.len() as u64, Ordering::Relaxed);
                received_of[k - 1].add(seq);
                totals.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Incoming::Ping) => {
                if let Err(e) = ws.send_text(r#"{"type":"pong"}"#).await {
                    totals.not_understood(&e);
                    break;
                }
            }
            Ok(Incoming::Complete | Incoming::Error) if per_socket == 1 => break,
            Ok(_) => {}
            Err(()) => totals.not_understood(&String::from_utf8_lossy(text)),
        }
    }
    received_of
}

/// What a server message says, as far as the bench is concerned.
#[derive(Debug, PartialEq)]
enum Incoming {
    /// An event for subscription `id`: the place's sequence number (its
    /// name is `b<seq>`) and when its write was sent (its description, in
    /// microseconds since the epoch).
    Next {
        id: u64,
        seq: u64,
        sent: u64,
    },
    Ping,
    Complete,
    Error,
    /// connection_ack.
    Ack,
    /// A graphql-ws pong.
    Pong,
}

/// Reads a graphql-ws message: the bench's `next` by scanning for its four
/// fields (the server writes compact JSON, so each key is one fixed byte
/// string, found wherever it is: key order does not matter), anything else,
/// or a `next` the scan cannot read, with serde. Err when neither can.
///
/// The scan cannot be fooled by the values: the bench writes them (digits
/// and `b<digits>`), and a quote inside any JSON string is escaped, so the
/// byte strings below only match as keys. Which is cheaper was measured
/// (docs/BENCHMARKS.md, stage 7): the scan takes about a fifth of serde's time.
fn read_message(text: &[u8]) -> Result<Incoming, ()> {
    if let Some(next) = scan_next(text) {
        return Ok(next);
    }
    if let Ok(next) = serde_json::from_slice::<Next>(text)
        && next.kind == "next"
    {
        let place = next.payload.data.place_changed.place;
        let seq = place.name.strip_prefix("b").and_then(|n| digits(n.as_bytes()));
        let sent = place.description.and_then(|d| digits(d.as_bytes()));
        return match (digits(next.id.as_bytes()), seq, sent) {
            (Some(id), Some(seq), Some(sent)) => Ok(Incoming::Next { id, seq, sent }),
            _ => Err(()),
        };
    }
    match serde_json::from_slice::<Kind>(text).map_err(|_| ())?.kind {
        "ping" => Ok(Incoming::Ping),
        "pong" => Ok(Incoming::Pong),
        "connection_ack" => Ok(Incoming::Ack),
        "complete" => Ok(Incoming::Complete),
        "error" => Ok(Incoming::Error),
        _ => Err(()),
    }
}

/// The fast path of [`read_message`]: None unless `text` is a `next` with
/// all four fields as the server writes them.
fn scan_next(text: &[u8]) -> Option<Incoming> {
    use memchr::memmem::Finder;
    static KEYS: std::sync::LazyLock<[Finder<'static>; 4]> = std::sync::LazyLock::new(|| {
        [
            Finder::new(br#""type":"next""#),
            Finder::new(br#""id":""#),
            Finder::new(br#""name":"b"#),
            Finder::new(br#""description":""#),
        ]
    });
    let [kind, id, name, description] = &*KEYS;
    kind.find(text)?;
    // The string value after `key`, up to its closing quote.
    let value = |key: &Finder| {
        let at = key.find(text)? + key.needle().len();
        let rest = &text[at..];
        Some(&rest[..memchr::memchr(b'"', rest)?])
    };
    Some(Incoming::Next { id: digits(value(id)?)?, seq: digits(value(name)?)?, sent: digits(value(description)?)? })
}

/// A decimal number of 1 to 19 digits (so it fits a u64), nothing else.
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// A graphql-ws message's type (other fields skipped).
#[derive(serde::Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
}

/// A `next` message of the bench's subscription, borrowed from its text.
#[derive(serde::Deserialize)]
struct Next<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    payload: NextPayload<'a>,
}

#[derive(serde::Deserialize)]
struct NextPayload<'a> {
    #[serde(borrow)]
    data: NextData<'a>,
}

#[derive(serde::Deserialize)]
struct NextData<'a> {
    #[serde(rename = "placeChanged", borrow)]
    place_changed: PlaceChanged<'a>,
}

#[derive(serde::Deserialize)]
struct PlaceChanged<'a> {
    #[serde(borrow)]
    place: BenchPlace<'a>,
}

#[derive(serde::Deserialize)]
struct BenchPlace<'a> {
    name: &'a str,
    description: Option<&'a str>,
}

/// The subscribers' own runtime: one thread, no work stealing, so the
/// client takes at most one of the two cores from the server it measures,
/// and the tasks and shared counters stay on one core. The writers
/// (reqwest) and the waits stay on the main runtime.
struct ClientRuntime {
    handle: tokio::runtime::Handle,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ClientRuntime {
    fn start() -> Self {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("subscribers".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building the subscribers' runtime");
                handle_tx.send(runtime.handle().clone()).expect("handing over the runtime");
                // Tasks spawned on a current-thread runtime run while this thread blocks on it.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("starting the subscribers' thread");
        let handle = handle_rx.recv().expect("the subscribers' runtime");
        Self { handle, stop, thread }
    }

    fn spawn<T: Send + 'static, F: Future<Output = T> + Send + 'static>(&self, task: F) -> tokio::task::JoinHandle<T> {
        self.handle.spawn(task)
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Options of `bench fanout`.
#[derive(clap::Args)]
pub struct Args {
    /// Subscriptions in all (over `subscribers / per-socket` sockets).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Subscriptions per websocket (graphql-ws multiplexes them over one
    /// socket): 50,000 subscriptions fit in 10,000 sockets with 5, under an
    /// open-files limit of 20,000.
    #[arg(long, default_value_t = 1)]
    per_socket: usize,
    /// Writes per second.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// How long to write.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// The server binary (default: `api` next to this binary), e.g. an older build for an A/B run.
    #[arg(long)]
    api: Option<PathBuf>,
}

pub async fn run(args: Args) {
    let Args { subscribers, per_socket, rate, seconds, connect_concurrency, api } = args;
    let per_socket = per_socket.clamp(1, 100);
    let sockets = subscribers.div_ceil(per_socket);
    let subscribers = sockets * per_socket;
    let api = api_binary(api.as_deref());
    // Each subscriber is a socket here too: tens of thousands of them need
    // more than the usual soft limit of open files.
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        println!("cannot raise this process's open-files limit: {err}");
    }
    let data_dir = PathBuf::from(format!("/tmp/bench-{}", std::process::id()));
    let env = [
        ("RUST_LOG".to_owned(), "warn,api::commands=info".to_owned()),
        // Subscribers are the point here: the server's connection cap
        // (MAX_CONNECTIONS, default 10,000) must not refuse any of them or
        // the writers, and must leave plain HTTP its reserve (a tenth)
        // beside the websocket cap below.
        ("MAX_CONNECTIONS".to_owned(), (2 * sockets + 1000).to_string()),
        // Websockets have caps of their own (server-wide and per client
        // address), and every subscriber here comes from one address.
        ("MAX_WS_CONNECTIONS".to_owned(), (sockets + 100).to_string()),
        ("MAX_WS_PER_IP".to_owned(), (sockets + 100).to_string()),
    ];
    let server = Server::start(&api, data_dir, true, &env).await;
    let token = service_token(&api, &server).await;
    let ws_url = format!("{}/graphql/ws", server.address.replacen("http", "ws", 1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(server.pid());

    println!("connecting {subscribers} subscriptions over {sockets} sockets ({per_socket} per socket) to {ws_url} ...");
    let latencies = Arc::new(Histogram::new());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let writes = u64::from(rate) * seconds;
    let totals = Arc::new(Totals::default());
    let ready = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(sockets);
    let client_runtime = ClientRuntime::start();
    let connect_started = Instant::now();
    let server_addr: std::net::SocketAddr = server
        .address
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("server address {}: {e}", server.address));
    for i in 0..sockets {
        let (lat, tot, rdy) = (latencies.clone(), totals.clone(), ready.clone());
        let source = std::net::SocketAddr::from(([127, 0, 0, 1 + u8::try_from(i / 20_000).unwrap_or(200)], 0));
        let seed = u32::try_from(i).unwrap_or(u32::MAX);
        let task = subscriber(server_addr, source, seed, lat, tot, rdy, writes, stop_rx.clone(), per_socket);
        tasks.push(client_runtime.spawn(task));
        // At most `connect_concurrency` handshakes in flight (the listen backlog is finite).
        while ready.load(Ordering::Relaxed) / per_socket as u64 + (connect_concurrency as u64) < tasks.len() as u64 {
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
            let query = "mutation($id: ID!, $d: String!) { createPlace(input: {id: $id, name: $id, lat: 38.7, lng: -9.1, category: \"bench\", description: $d}) { __typename } }";
            let vars = json!({ "id": format!("b{seq:09}"), "d": now_micros().to_string() });
            let sent = http.post(url).bearer_auth(token).json(&json!({ "query": query, "variables": vars })).send().await;
            // A write that failed is no event: say so, or it would count as lost.
            match sent {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    (status.is_success() && !text.contains("\"errors\"")).then_some(()).ok_or(format!("{status} {text}"))
                }
                Err(e) => Err(e.to_string()),
            }
        }));
    }
    let (mut failed_writes, mut first_failure) = (0u64, None);
    for w in writers {
        if let Ok(Err(failure)) = w.await {
            failed_writes += 1;
            first_failure.get_or_insert(failure);
        }
    }
    let write_secs = write_started.elapsed().as_secs_f64();
    // Deliveries of the writes that succeeded.
    let expected = (writes - failed_writes) * subscribers as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while totals.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_secs = write_started.elapsed().as_secs_f64();
    let server_cores = (cpu_seconds(&server_pid) - server_cpu_start) / all_secs;
    let client_cores = (cpu_seconds("self") - client_cpu_start) / all_secs;
    let delivered = totals.delivered.load(Ordering::Relaxed);
    let rss_busy = rss_kib(server.pid());
    let server_cpu_per_delivery = server_cores * all_secs / delivered.max(1) as f64 * 1e6;
    // Executions of subscription payloads, where the server counts them
    // (api_events_executed_total; builds before shared execution do not).
    let metrics = reqwest::get(format!("{}/metrics", server.address)).await;
    let metrics = match metrics {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let series =
        |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok());

    // Every subscription reports what it received (after the measurement:
    // this is no part of it).
    let _ = stop.send(true);
    let reports_by = Instant::now() + Duration::from_secs(30);
    let mut received = Vec::with_capacity(subscribers);
    for task in tasks {
        let left = reports_by.saturating_duration_since(Instant::now());
        if let Ok(Ok(report)) = tokio::time::timeout(left, task).await {
            received.extend(report);
        }
    }
    let order = OrderCheck::of(&received, writes - failed_writes, subscribers);

    let pct = |p: f64| latencies.quantile_ms(p);
    println!();
    println!("subscriptions               {subscribers} over {sockets} websockets ({per_socket} per socket)");
    println!("writes                      {writes} at {rate}/s (sent in {write_secs:.1} s)");
    println!("deliveries expected         {expected}");
    println!("deliveries received         {delivered}");
    println!(
        "writes failed               {failed_writes}{}",
        first_failure.map(|f| format!(" (first: {f})")).unwrap_or_default()
    );
    println!("events lost                 {}", expected.saturating_sub(delivered));
    println!("repeated (not counted)      {}", totals.repeated.load(Ordering::Relaxed));
    println!(
        "subscribers with all events {} of {subscribers} ({} saw a different order than the first of them)",
        order.complete, order.complete_disagreeing
    );
    println!(
        "order within each set       {} of {} subscriptions differ from the first with the same events \
         (arrival order of sequence numbers, compared within {} set(s) of events received by 2 or more; {} alone with theirs, {} unreported)",
        order.disagreeing, order.compared, order.shared_sets, order.alone, order.unreported
    );
    println!(
        "sockets closed by server    {}{}",
        totals.closed_by_server.load(Ordering::Relaxed),
        first(&totals.first_close_code, "first close code")
    );
    println!("delivered/s (whole run)     {:.0}", delivered as f64 / all_secs);
    println!("latency p50 / p99 / max     {:.1} / {:.1} / {:.1} ms", pct(0.50), pct(0.99), pct(1.0));
    println!("CPU used (cores of 2)       server {server_cores:.2}, this client {client_cores:.2}");
    println!("server CPU per delivery     {server_cpu_per_delivery:.1} µs");
    println!("client CPU per message      {:.1} µs", client_cores * all_secs / delivered.max(1) as f64 * 1e6);
    println!(
        "client could not read       {}{}",
        totals.not_understood.load(Ordering::Relaxed),
        first(&totals.first_not_understood, "first")
    );
    println!(
        "next message                {} bytes of text (compare `bench sendfloor --bytes`)",
        totals.next_bytes.load(Ordering::Relaxed)
    );
    match (series("api_events_executed_total"), series("api_events_delivered_total")) {
        (Some(executed), Some(sent)) => println!("payload executions          {executed:.0} for {sent:.0} deliveries"),
        _ => println!("payload executions          not counted by this server"),
    }
    println!("server RSS before/idle/busy {} / {} / {} MiB", rss_before / 1024, rss_idle / 1024, rss_busy / 1024);
    println!(
        "server memory per idle subscriber  {:.1} KiB (per subscription; per socket {:.1} KiB)",
        rss_idle.saturating_sub(rss_before) as f64 / subscribers.max(1) as f64,
        rss_idle.saturating_sub(rss_before) as f64 / sockets.max(1) as f64
    );
    print_server_warnings(&server.data_dir);
    client_runtime.stop();
    server.stop().await;
}

/// " (label: value)" for the first one kept in `slot`, or nothing.
fn first(slot: &std::sync::Mutex<Option<impl std::fmt::Display>>, label: &str) -> String {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map(|value| format!(" ({label}: {value})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(seqs: &[u64]) -> Received {
        let mut received = Received::START;
        for seq in seqs {
            received.add(*seq);
        }
        received
    }

    #[test]
    fn subscriptions_that_got_every_event_are_compared_by_arrival_order() {
        let reports = [received(&[1, 2, 3]), received(&[1, 2, 3]), received(&[2, 1, 3])];

        let check = OrderCheck::of(&reports, 3, 3);

        assert_eq!((check.complete, check.complete_disagreeing), (3, 1));
        assert_eq!((check.shared_sets, check.compared, check.disagreeing, check.alone), (1, 3, 1, 0));
    }

    #[test]
    fn when_writes_failed_the_subscriptions_with_every_event_of_the_others_are_still_complete() {
        // Writes 2 and 4 failed: 3 events are all there is.
        let reports = [received(&[1, 3, 5]), received(&[1, 3, 5]), received(&[3, 1, 5])];

        let check = OrderCheck::of(&reports, 3, 4);

        assert_eq!((check.complete, check.complete_disagreeing), (3, 1));
        assert_eq!(check.unreported, 1);
    }

    #[test]
    fn subscriptions_that_lost_the_same_events_are_compared_among_themselves() {
        let reports = [
            received(&[1, 2, 3, 4]),
            received(&[1, 3, 4]),
            received(&[1, 3, 4]),
            received(&[4, 3, 1]),
            // As many events as the three before, not the same ones.
            received(&[1, 2, 4]),
        ];

        let check = OrderCheck::of(&reports, 4, 5);

        assert_eq!((check.complete, check.complete_disagreeing), (1, 0));
        assert_eq!((check.shared_sets, check.compared, check.disagreeing, check.alone), (1, 3, 1, 2));
    }
}
