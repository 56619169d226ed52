//! `bench queries`: what one GraphQL request costs, beside what its SQL
//! costs PostgreSQL alone.
//!
//! C workers (default 32), each a keep-alive HTTP/1.1 connection signed in
//! as its own seeded user, send one case back to back for a warm-up and
//! then a measured window. Per case it reports req/s, p50/p99 latency, CPU
//! per request of the server, of PostgreSQL (the postmaster and all its
//! children) and of the client, and SQL statements per request (from
//! pg_stat_statements, reset at the window's start). In the same run,
//! pgbench sends the same load as raw SQL — `BEGIN; set_config(role,
//! app.user_id); <the case's one statement>; COMMIT` — with the same
//! connections and users, measured the same way: that is the ceiling.
//!
//! Runs are interleaved (each run rotates the case order and alternates
//! which of server and pgbench goes first) and medians of `--runs` runs are
//! printed, because a 2-core machine drifts by more than the differences
//! we look for.
//!
//! With `--postgraphile`, PostGraphile 4.14.1 answers the read cases too,
//! on the same database, data and RLS, as a third side of every run (see
//! [`crate::postgraphile`]).
//!
//! The embedded cluster gets `shared_preload_libraries=pg_stat_statements`
//! in its postgresql.conf before the server starts it; everything stays on
//! loopback, with bounded counts and durations.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::postgraphile::PostGraphile;
use crate::server::{JWT_SECRET, Server, api_binary, api_command, cluster_cpu_seconds, cpu_seconds};

/// The seeded users' password (api/src/seed.rs, DEMO_PASSWORD).
const SEED_PASSWORD: &str = "demo-password";
/// The category of case b: 1/30 of the places (667 at scale 1000).
const CATEGORY: &str = "cafe";

/// Options of `bench queries`.
#[derive(clap::Args)]
pub struct Args {
    /// Data set: `api seed --scale N` (N users, 20·N places, 100 reviews per user).
    #[arg(long, default_value_t = 1000)]
    scale: u32,
    /// Keep-alive connections, and pgbench clients; each signs in as its own seeded user.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds per case and run, for the server and for pgbench each.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of load before each measured window (connections, caches, plans).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Runs of every case; medians are printed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Cases, comma-separated: a (myReviews + place), b (places by category, by rating), c (setPreference).
    #[arg(long, value_delimiter = ',', default_value = "a,b,c")]
    cases: Vec<CaseName>,
    /// Keep the seeded database here and reuse it on the next run (seeding
    /// scale 1000 takes minutes). Default: a temporary folder, deleted after.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server binary (default: `api` next to this binary).
    #[arg(long)]
    api: Option<PathBuf>,
    /// Extra server environment, KEY=VALUE, repeatable (e.g. DATABASE_POOL_SIZE=10).
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// Of the HTTP connections to the server, this many send no token:
    /// anonymous viewers beside signed-in ones (case b only). pgbench and
    /// PostGraphile stay signed in, so their ratios compare unlike loads.
    #[arg(long, default_value_t = 0)]
    anonymous: usize,
    /// Skip the pgbench ceiling.
    #[arg(long)]
    no_pgbench: bool,
    /// Also run the read cases against PostGraphile 4.14.1 (installed with
    /// npm into DATA_DIR/postgraphile once; needs Node.js), as a third side.
    #[arg(long)]
    postgraphile: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CaseName {
    A,
    B,
    C,
}

/// One request shape, as GraphQL and as the SQL that ideally answers it.
struct Case {
    name: &'static str,
    what: &'static str,
    /// Request bodies, used in turn (the write varies its value).
    bodies: Vec<String>,
    /// The case's one statement for pgbench; `:r` is a random 0..=10.
    sql: &'static str,
    /// The same read as a PostGraphile request body (none for the write:
    /// PostGraphile 4 has no upsert without a plugin).
    postgraphile: Option<String>,
}

impl Case {
    fn new(name: CaseName) -> Self {
        let body = |query: &str, variables: Value| json!({ "query": query, "variables": variables }).to_string();
        match name {
            CaseName::A => Self {
                name: "a",
                what: "myReviews(first: 20) { edges { node { rating comment place { name } } } }",
                bodies: vec![body(
                    "query CaseA { myReviews(first: 20) { edges { node { rating comment place { name } } } } }",
                    json!({}),
                )],
                sql: "SELECT r.rating, r.comment, p.name FROM review r JOIN place p ON p.id = r.place_id \
                      WHERE r.user_id = current_setting('app.user_id')::uuid ORDER BY r.id DESC LIMIT 21",
                // RLS (review_owner) leaves the viewer's own reviews, as myReviews reads them.
                postgraphile: Some(body(
                    "query CaseA { allReviews(first: 20, orderBy: ID_DESC) { nodes { rating comment placeByPlaceId { name } } } }",
                    json!({}),
                )),
            },
            CaseName::B => Self {
                name: "b",
                what: "places(first: 20, category: $c, orderBy: RATING_DESC) { edges { node { id name rating } } }",
                bodies: vec![body(
                    "query CaseB($c: String!) { places(first: 20, category: $c, orderBy: RATING_DESC) { edges { node { id name rating } } } }",
                    json!({ "c": CATEGORY }),
                )],
                sql: "SELECT id, name, rating FROM place WHERE category = 'cafe' \
                      ORDER BY rating DESC NULLS LAST, id LIMIT 21",
                postgraphile: Some(body(
                    "query CaseB($c: String!) { allPlaces(first: 20, condition: {category: $c}, orderBy: RATING_DESC) { nodes { id name rating } } }",
                    json!({ "c": CATEGORY }),
                )),
            },
            CaseName::C => Self {
                name: "c",
                what: "mutation setPreference(input: {category: \"cafe\", rating: $r}) { __typename } (an upsert; the selection every release serves, for A/B)",
                bodies: (0..=10)
                    .map(|r| {
                        body(
                            "mutation CaseC($r: Float!) { setPreference(input: {category: \"cafe\", rating: $r}) { __typename } }",
                            json!({ "r": f64::from(r) / 2.0 }),
                        )
                    })
                    .collect(),
                sql: "INSERT INTO preference (user_id, category, rating) \
                      VALUES (current_setting('app.user_id')::uuid, 'cafe', :r::int / 2.0) \
                      ON CONFLICT (user_id, category) DO UPDATE SET rating = EXCLUDED.rating \
                      RETURNING id, category, rating, created_at, updated_at",
                postgraphile: None,
            },
        }
    }
}

/// One measured window.
#[derive(Clone, Default)]
struct Window {
    requests: u64,
    errors: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU seconds in the window: the api server (0 for pgbench), PostgreSQL, the client.
    server_cpu: f64,
    pg_cpu: f64,
    client_cpu: f64,
    /// Statement executions in the window (pg_stat_statements calls), and the busiest ones.
    statements: u64,
    top: Vec<(u64, String)>,
}

impl Window {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    fn ms_per_request(&self, cpu: f64) -> f64 {
        cpu * 1000.0 / (self.requests.max(1) as f64)
    }

    fn statements_per_request(&self) -> f64 {
        self.statements as f64 / (self.requests.max(1) as f64)
    }
}

/// The embedded cluster, reached as its superuser with psql and pgbench.
struct Pg {
    bin: PathBuf,
    port: u16,
    password: String,
    postmaster: u32,
    /// Where psql, pgbench and PostGraphile reach it: the folder of its
    /// Unix socket when it has one (as the server's own logins do), else
    /// 127.0.0.1. The ceiling and the peer use the server's transport, so
    /// the ratios compare the work done, not the path to the database.
    host: String,
}

impl Pg {
    fn open(data_dir: &Path) -> Self {
        let pid_file = std::fs::read_to_string(data_dir.join("pg/postmaster.pid"))
            .expect("the embedded PostgreSQL is not running");
        let line = |n: usize| pid_file.lines().nth(n).unwrap_or_default().trim().to_owned();
        let password = std::fs::read_to_string(data_dir.join("pg.password"))
            .expect("cannot read the cluster's password")
            .trim()
            .to_owned();
        let port: u16 = line(3).parse().expect("postmaster.pid: bad port");
        // Line 5: the folder of the cluster's socket, empty without one.
        let socket_dir = line(4);
        let host = if socket_dir.starts_with('/') { socket_dir } else { "127.0.0.1".to_owned() };
        Self { bin: pg_bin(), port, password, postmaster: line(0).parse().expect("postmaster.pid: bad pid"), host }
    }

    fn command(&self, tool: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.bin.join(tool));
        command
            .env("PGPASSWORD", &self.password)
            .args(["-h", &self.host, "-p", &self.port.to_string(), "-U", "postgres"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs SQL as the superuser in the app database; rows as tab-separated lines.
    async fn psql(&self, sql: &str) -> String {
        let output = self
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", "app", "-c", sql])
            .output()
            .await
            .expect("cannot run psql");
        assert!(output.status.success(), "psql failed on {sql}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    async fn reset_statements(&self) {
        self.psql("SELECT pg_stat_statements_reset()").await;
    }

    /// Statement executions since the reset in the app database, and the
    /// busiest statements (our own psql calls left out).
    async fn statements(&self) -> (u64, Vec<(u64, String)>) {
        let rows = self
            .psql(
                "SELECT calls, regexp_replace(left(query, 110), '\\s+', ' ', 'g') FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC",
            )
            .await;
        let top: Vec<(u64, String)> = rows
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter_map(|(calls, query)| Some((calls.parse().ok()?, query.to_owned())))
            .collect();
        (top.iter().map(|(calls, _)| calls).sum(), top.into_iter().take(12).collect())
    }

    fn cpu(&self) -> f64 {
        cluster_cpu_seconds(self.postmaster)
    }

    /// The superuser's URL of the app database (at [`Pg::host`]), for
    /// PostGraphile: node-postgres takes a socket's folder as a host
    /// percent-encoded from its leading `/`.
    fn url(&self) -> String {
        let encode = |text: &str| -> String {
            text.bytes()
                .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
                .collect()
        };
        let host = if self.host.starts_with('/') { encode(&self.host) } else { self.host.clone() };
        format!("postgres://postgres:{}@{host}:{}/app", encode(&self.password), self.port)
    }
}

/// PG_BIN, else the newest /usr/lib/postgresql/*/bin with psql and pgbench.
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, dir)| dir.join("pgbench").is_file() && dir.join("psql").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).expect("no pgbench: apt-get install postgresql-15, or set PG_BIN")
}

fn check(args: &Args) -> Result<(), String> {
    let within = |value: u64, low: u64, high: u64, name: &str| {
        if (low..=high).contains(&value) { Ok(()) } else { Err(format!("--{name} must be between {low} and {high}")) }
    };
    within(u64::from(args.scale), 1, 100_000, "scale")?;
    within(args.connections as u64, 1, 1000, "connections")?;
    within(args.seconds, 1, 600, "seconds")?;
    within(args.warmup, 0, 600, "warmup")?;
    within(args.runs as u64, 1, 21, "runs")?;
    if args.connections as u64 > u64::from(args.scale) {
        return Err("--connections must not exceed --scale: each connection signs in as its own seeded user".into());
    }
    if let Some(pair) = args.server_env.iter().find(|pair| !pair.contains('=')) {
        return Err(format!("--server-env {pair}: expected KEY=VALUE"));
    }
    if args.cases.is_empty() {
        return Err("--cases needs at least one of a, b, c".into());
    }
    within(args.anonymous as u64, 0, args.connections as u64, "anonymous")?;
    if args.anonymous > 0 && args.cases.iter().any(|case| *case != CaseName::B) {
        return Err("--anonymous needs --cases b: myReviews and setPreference need a signed-in viewer".into());
    }
    Ok(())
}

pub async fn run(args: Args) {
    if let Err(message) = check(&args) {
        eprintln!("{message}");
        std::process::exit(2);
    }
    let api = api_binary(args.api.as_deref());
    let (data_dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (PathBuf::from(format!("/tmp/bench-queries-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&data_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", data_dir.display()));
    let seeded = prepare_data(&api, &data_dir, args.scale).await;

    let mut env = vec![
        // The sign-ins of all connections come from one address at once.
        ("SIGN_IN_PER_IP_PER_MINUTE".to_owned(), "100000".to_owned()),
        ("MAX_CONNECTIONS".to_owned(), (args.connections + 100).to_string()),
    ];
    for pair in &args.server_env {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.to_owned()));
    }
    let server = Server::start(&api, data_dir.clone(), temporary, &env).await;
    let pg = Pg::open(&data_dir);
    pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await;
    if seeded {
        println!("VACUUM ANALYZE after seeding ...");
        pg.psql("VACUUM ANALYZE").await;
    }
    let users = sign_in(&server, args.connections).await;
    let ids: Vec<String> = users.iter().map(|(id, _)| id.clone()).collect();
    let postgraphile =
        if args.postgraphile { Some(PostGraphile::start(&data_dir, &pg.url(), JWT_SECRET).await) } else { None };

    settle(&server, &pg).await;
    println!("load average: {} (other work on the machine skews every number)", load_average());
    println!(
        "{} connections, {} s warm-up + {} s measured per case and side, {} runs, scale {}; server {}",
        args.connections,
        args.warmup,
        args.seconds,
        args.runs,
        args.scale,
        api.display()
    );
    println!(
        "psql, pgbench and PostGraphile reach PostgreSQL at {} (the server's own logins: its start-up log says)",
        pg.host
    );

    let cases: Vec<Case> = args.cases.iter().map(|c| Case::new(*c)).collect();
    let mut results: Vec<[Vec<Window>; 3]> = vec![Default::default(); cases.len()];
    for run in 0..args.runs {
        for k in 0..cases.len() {
            // Rotate the case order per run, and which side goes first.
            let index = (k + run) % cases.len();
            let case = &cases[index];
            let mut sides = vec![Side::Server];
            if !args.no_pgbench {
                sides.push(Side::Pgbench);
            }
            if postgraphile.is_some() && case.postgraphile.is_some() {
                sides.push(Side::PostGraphile);
            }
            let first = (run + k) % sides.len();
            sides.rotate_left(first);
            for side in sides {
                let w = match (side, &postgraphile, &case.postgraphile) {
                    (Side::Server, _, _) => {
                        let anonymous = args.anonymous;
                        measure_http(&server.graphql_url(), server.pid(), &pg, &case.bodies, &users, anonymous, &args)
                            .await
                    }
                    (Side::Pgbench, _, _) => measure_pgbench(&pg, &data_dir, case, &ids, &args).await,
                    (Side::PostGraphile, Some(pgl), Some(body)) => {
                        measure_http(&pgl.url, pgl.pid(), &pg, std::slice::from_ref(body), &users, 0, &args).await
                    }
                    (Side::PostGraphile, _, _) => continue,
                };
                print_window(run, case.name, side.label(), &w);
                results[index][side as usize].push(w);
            }
        }
    }
    print_summary(&cases, &results, &args);
    if let Some(pgl) = postgraphile {
        pgl.stop().await;
    }
    server.stop().await;
}

/// Who answers a window's load.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Server = 0,
    Pgbench = 1,
    PostGraphile = 2,
}

impl Side {
    const ALL: [Side; 3] = [Side::Server, Side::Pgbench, Side::PostGraphile];

    fn label(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Pgbench => "pgbench",
            Side::PostGraphile => "postgraphile",
        }
    }
}

/// Migrates and seeds `data_dir` unless a previous run did (a marker file
/// says so), and makes the cluster load pg_stat_statements. True if it seeded.
async fn prepare_data(api: &Path, data_dir: &Path, scale: u32) -> bool {
    let marker = data_dir.join(format!("bench-seeded-scale-{scale}"));
    let seeded = if marker.exists() {
        println!("reusing the data set in {}", data_dir.display());
        false
    } else {
        println!("seeding scale {scale} in {} (once; pass --data-dir to reuse it) ...", data_dir.display());
        let started = Instant::now();
        api_command(api, data_dir, &["migrate", "up"], None).await;
        api_command(api, data_dir, &["seed", "--scale", &scale.to_string()], None).await;
        std::fs::write(&marker, b"").expect("writing the marker file");
        println!("seeded in {:.0} s", started.elapsed().as_secs_f64());
        true
    };
    // The server starts the cluster with this file; pg_stat_statements must
    // be preloaded to count statements.
    let conf = data_dir.join("pg/postgresql.conf");
    let text = std::fs::read_to_string(&conf).unwrap_or_else(|e| panic!("cannot read {}: {e}", conf.display()));
    if !text.contains("pg_stat_statements") {
        let mut file = std::fs::OpenOptions::new().append(true).open(&conf).expect("opening postgresql.conf");
        std::io::Write::write_all(
            &mut file,
            b"\n# bench queries: count statements per request\nshared_preload_libraries = 'pg_stat_statements'\n",
        )
        .expect("appending to postgresql.conf");
    }
    seeded
}

/// Waits (at most a minute) until PostgreSQL's background work after a
/// start (the change listener catching up on the log, autovacuum after a
/// seed) has calmed down, then prints what the idle server and cluster
/// cost: that much is in every window below.
async fn settle(server: &Server, pg: &Pg) {
    let server_pid = server.pid().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let from = (pg.cpu(), cpu_seconds(&server_pid), Instant::now());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let secs = from.2.elapsed().as_secs_f64();
        let (pg_cores, server_cores) = ((pg.cpu() - from.0) / secs, (cpu_seconds(&server_pid) - from.1) / secs);
        // Below a fifth of a core, or as calm as it gets within the minute.
        if pg_cores < 0.2 || Instant::now() > deadline {
            println!(
                "idle, before load: server {server_cores:.3} cores, PostgreSQL {pg_cores:.3} cores (background work, in every window below)"
            );
            return;
        }
    }
}

/// Signs in seeded users user0000000.. (one per connection): their ids and tokens.
async fn sign_in(server: &Server, connections: usize) -> Vec<(String, String)> {
    let http = reqwest::Client::new();
    let mut users = Vec::with_capacity(connections);
    for i in 0..connections {
        let query =
            "mutation($l: String!, $p: String!) { signIn(input: {login: $l, password: $p}) { token user { id } } }";
        let vars = json!({ "l": format!("user{i:07}"), "p": SEED_PASSWORD });
        let body: Value = http
            .post(server.graphql_url())
            .json(&json!({ "query": query, "variables": vars }))
            .send()
            .await
            .expect("sending the request")
            .json()
            .await
            .expect("reading the JSON body");
        let signed = &body["data"]["signIn"];
        match (signed["user"]["id"].as_str(), signed["token"].as_str()) {
            (Some(id), Some(token)) => users.push((raw_key(id), token.to_owned())),
            _ => panic!("sign-in of user{i:07} failed: {body}"),
        }
    }
    users
}

/// Flags shared by the workers of one window.
#[derive(Default)]
struct Phase {
    measuring: AtomicBool,
    stop: AtomicBool,
}

/// Latencies (µs) of successful requests and the count of failed ones, inside the window.
async fn worker(
    url: String,
    token: Option<String>,
    bodies: Arc<Vec<String>>,
    offset: usize,
    phase: Arc<Phase>,
) -> (Vec<u32>, u64) {
    // One connection per worker, kept alive, as a browser tab would.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()
        .expect("building the HTTP client");
    let auth = token.map(|token| format!("Bearer {token}"));
    let (mut latencies, mut errors) = (Vec::with_capacity(1 << 16), 0u64);
    let mut n = offset;
    while !phase.stop.load(Ordering::Relaxed) {
        let body = bodies[n % bodies.len()].clone();
        n += 1;
        let started = Instant::now();
        let mut request = client.post(&url).header("content-type", "application/json").body(body);
        if let Some(auth) = &auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await;
        let ok = match response {
            Ok(r) if r.status().is_success() => {
                r.bytes().await.is_ok_and(|b| !b.windows(9).any(|w| w == b"\"errors\""))
            }
            _ => false,
        };
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        if phase.measuring.load(Ordering::Relaxed) {
            if ok {
                latencies.push(micros);
            } else {
                errors += 1;
            }
        }
    }
    (latencies, errors)
}

/// One window of GraphQL load on `url`, served by process `pid` (the
/// server, or PostGraphile): every connection signed in as its own user,
/// but the first `anonymous`, which send no token (all run side by side
/// from the start).
async fn measure_http(
    url: &str,
    pid: u32,
    pg: &Pg,
    bodies: &[String],
    users: &[(String, String)],
    anonymous: usize,
    args: &Args,
) -> Window {
    let phase = Arc::new(Phase::default());
    let bodies = Arc::new(bodies.to_vec());
    let workers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, (_, token))| {
            let token = (i >= anonymous).then(|| token.clone());
            tokio::spawn(worker(url.to_owned(), token, bodies.clone(), i, phase.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    pg.reset_statements().await;
    let server_pid = pid.to_string();
    let before = (cpu_seconds(&server_pid), pg.cpu(), cpu_seconds("self"));
    let started = Instant::now();
    phase.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    phase.measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let after = (cpu_seconds(&server_pid), pg.cpu(), cpu_seconds("self"));
    let (statements, top) = pg.statements().await;
    phase.stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for w in workers {
        if let Ok((l, e)) = w.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let (p50_ms, p99_ms) = percentiles(&mut latencies);
    Window {
        requests: latencies.len() as u64,
        errors,
        seconds,
        p50_ms,
        p99_ms,
        server_cpu: after.0 - before.0,
        pg_cpu: after.1 - before.1,
        client_cpu: after.2 - before.2,
        statements,
        top,
    }
}

/// The pgbench script of a case: the request's transaction as raw SQL.
/// pgbench client k plays connection k's user (`:client_id` picks its id).
fn pgbench_script(case: &Case, user_ids: &[String]) -> String {
    let mut pick = String::from("CASE :client_id::int");
    for (k, id) in user_ids.iter().enumerate() {
        // Inlined into SQL: only a UUID's characters may pass.
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "not a user id: {id}");
        let _ = write!(pick, " WHEN {k} THEN '{id}'");
    }
    pick.push_str(" END");
    format!(
        "\\set r random(0, 10)\nBEGIN;\nSELECT set_config('role', 'app_user', true), set_config('app.user_id', {pick}, true);\n{};\nCOMMIT;\n",
        case.sql
    )
}

/// pgbench for warm-up + window + 1 s; the window is cut out of its
/// per-transaction log by completion time, and CPU and statements are read
/// while its connections are open, exactly as for the server.
async fn measure_pgbench(pg: &Pg, data_dir: &Path, case: &Case, user_ids: &[String], args: &Args) -> Window {
    let work = data_dir.join("pgbench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("creating the work folder");
    let script = work.join(format!("case-{}.sql", case.name));
    std::fs::write(&script, pgbench_script(case, user_ids)).expect("writing the pgbench script");
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(args.connections);
    let total = args.warmup + args.seconds + 1;
    let child = pg
        .command("pgbench")
        .current_dir(&work)
        .args(["-n", "-M", "prepared", "-l", "--log-prefix", "tx"])
        .args(["-c", &args.connections.to_string(), "-j", &threads.to_string(), "-T", &total.to_string()])
        .arg("-f")
        .arg(&script)
        .arg("app")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run pgbench");
    let pgbench_pid = child.id().unwrap_or(0).to_string();
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    pg.reset_statements().await;
    let before = (pg.cpu(), cpu_seconds(&pgbench_pid));
    let (from, started) = (now_micros(), Instant::now());
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (to, seconds) = (now_micros(), started.elapsed().as_secs_f64());
    let after = (pg.cpu(), cpu_seconds(&pgbench_pid));
    let (statements, top) = pg.statements().await;
    let output = child.wait_with_output().await.expect("waiting for pgbench");
    assert!(
        output.status.success(),
        "pgbench failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for entry in std::fs::read_dir(&work).into_iter().flatten().filter_map(Result::ok) {
        if !entry.file_name().to_string_lossy().starts_with("tx.") {
            continue;
        }
        // client_id transaction_no time script_no time_epoch time_us: `time`
        // is the latency in µs ("failed" if it failed), the last two when it ended.
        for line in std::fs::read_to_string(entry.path()).unwrap_or_default().lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(latency), Some(secs), Some(micros)) = (f.get(2), f.get(4), f.get(5)) else { continue };
            let ended = secs.parse::<u64>().unwrap_or(0) * 1_000_000 + micros.parse::<u64>().unwrap_or(0);
            if !(from..to).contains(&ended) {
                continue;
            }
            match latency.parse::<u32>() {
                Ok(l) => latencies.push(l),
                Err(_) => errors += 1,
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let (p50_ms, p99_ms) = percentiles(&mut latencies);
    Window {
        requests: latencies.len() as u64,
        errors,
        seconds,
        p50_ms,
        p99_ms,
        server_cpu: 0.0,
        pg_cpu: after.0 - before.0,
        client_cpu: after.1 - before.1,
        statements,
        top,
    }
}

/// /proc/loadavg's 1, 5 and 15 minute averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0))
}

/// p50 and p99 (nearest rank) in milliseconds.
fn percentiles(micros: &mut [u32]) -> (f64, f64) {
    if micros.is_empty() {
        return (0.0, 0.0);
    }
    micros.sort_unstable();
    let at =
        |p: f64| f64::from(micros[((micros.len() as f64 * p).ceil() as usize).clamp(1, micros.len()) - 1]) / 1000.0;
    (at(0.50), at(0.99))
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { f64::midpoint(values[mid - 1], values[mid]) }
}

fn print_window(run: usize, case: &str, side: &str, w: &Window) {
    println!(
        "run {} case {case} {side:<12}: {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  CPU ms/req: server {:.3}, PostgreSQL {:.3}, client {:.3}  statements/req {:.2}  errors {}",
        run + 1,
        w.per_second(),
        w.p50_ms,
        w.p99_ms,
        w.ms_per_request(w.server_cpu),
        w.ms_per_request(w.pg_cpu),
        w.ms_per_request(w.client_cpu),
        w.statements_per_request(),
        w.errors
    );
}

fn print_summary(cases: &[Case], results: &[[Vec<Window>; 3]], args: &Args) {
    let m = |ws: &[Window], f: &dyn Fn(&Window) -> f64| median(ws.iter().map(f).collect());
    println!();
    println!(
        "Medians of {} runs; {} connections, {} s per window, scale {}. pgbench: BEGIN; set_config(role, app.user_id); the one statement; COMMIT. \
         For PostGraphile, \"server CPU\" is its Node process.",
        args.runs, args.connections, args.seconds, args.scale
    );
    println!();
    println!(
        "| case | side | req/s | p50 ms | p99 ms | server CPU ms/req | PostgreSQL CPU ms/req | client CPU ms/req | statements/req | errors | server ÷ pgbench | server ÷ PostGraphile |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (case, sides) in cases.iter().zip(results) {
        let rate = |side: Side| m(&sides[side as usize], &Window::per_second);
        let ratio = |other: Side| {
            let (ours, theirs) = (rate(Side::Server), rate(other));
            if theirs > 0.0 { format!("{:.2}", ours / theirs) } else { String::new() }
        };
        for side in Side::ALL {
            let ws = &sides[side as usize];
            if ws.is_empty() {
                continue;
            }
            let (vs_pgbench, vs_postgraphile) = if side == Side::Server {
                (ratio(Side::Pgbench), ratio(Side::PostGraphile))
            } else {
                Default::default()
            };
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {:.3} | {:.3} | {:.2} | {} | {vs_pgbench} | {vs_postgraphile} |",
                case.name,
                side.label(),
                m(ws, &Window::per_second),
                m(ws, &|w| w.p50_ms),
                m(ws, &|w| w.p99_ms),
                if side == Side::Pgbench {
                    "–".into()
                } else {
                    format!("{:.3}", m(ws, &|w| w.ms_per_request(w.server_cpu)))
                },
                m(ws, &|w| w.ms_per_request(w.pg_cpu)),
                m(ws, &|w| w.ms_per_request(w.client_cpu)),
                m(ws, &Window::statements_per_request),
                ws.iter().map(|w| w.errors).sum::<u64>()
            );
        }
    }
    let server_p99: Vec<(&str, f64)> =
        cases.iter().zip(results).map(|(c, sides)| (c.name, m(&sides[Side::Server as usize], &|w| w.p99_ms))).collect();
    let worst = server_p99.iter().map(|(_, p)| *p).fold(0.0, f64::max);
    println!();
    println!(
        "server p99 at {} connections (target <= 50 ms): {} -> {}",
        args.connections,
        server_p99.iter().map(|(c, p)| format!("{c} {p:.1} ms")).collect::<Vec<_>>().join(", "),
        if worst <= 50.0 { "met" } else { "NOT met" }
    );
    println!();
    println!(
        "Statements are pg_stat_statements calls in the window over requests. They include the change listener's \
         reads after writes, and commit-time (deferred) trigger statements, which PostgreSQL counts as top-level. \
         PostgreSQL 15 does not count BEGIN/COMMIT that pgbench sends as prepared statements: add 2 to pgbench's."
    );
    println!("load average at the end: {}", load_average());
    println!();
    for (case, sides) in cases.iter().zip(results) {
        println!("case {}: {}", case.name, case.what);
        println!("  pgbench statement: {}", case.sql);
        for side in Side::ALL {
            let Some(last) = sides[side as usize].last() else { continue };
            println!("  statements per request, {} (last run; background work shows as < 1):", side.label());
            for (calls, query) in &last.top {
                let per = *calls as f64 / last.requests.max(1) as f64;
                if per >= 0.01 {
                    println!("    {per:>6.2}  {query}");
                }
            }
        }
    }
}

/// The row key inside an `id`: a global id ("User:<key>" in base64url)
/// since the Node release, the key itself before, so `--api` can point at
/// an older server for an A/B.
fn raw_key(id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("User:").map(str::to_owned))
        .unwrap_or_else(|| id.to_owned())
}
