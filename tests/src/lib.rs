//! Test harness: a real PostgreSQL, a real server, real HTTP.
//!
//! - One PostgreSQL cluster per test binary, in a temp folder, on a free
//!   port and a private unix socket, started on first use. A watchdog
//!   process stops it and deletes the folder when the test process exits.
//! - A template database migrated once; each test gets its own database
//!   cloned from it (`CREATE DATABASE .. TEMPLATE`), so tests are isolated
//!   and run in parallel.
//! - Each test spawns the server in-process on port 0, connected as the
//!   restricted `app_authenticator` login (not a superuser, owns nothing),
//!   exactly as in production.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use serde_json::{Value, json};

pub use serde_json;

/// The HS256 key of every test server, so tests can forge tokens.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
const TEMPLATE: &str = "app_template";

/// A PostgreSQL cluster in a temp folder, on a free port and a private unix
/// socket, stopped and deleted by a watchdog once the test process exits.
pub struct Cluster {
    port: u16,
    socket_dir: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    /// `-c` options of [`Cluster::start_with`], after the defaults.
    settings: String,
}

impl Cluster {
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@localhost:{}/{database}?host={}", self.port, self.socket_dir.display())
    }

    /// A URL over TCP to `localhost` on the cluster's port, for a cluster
    /// started to listen on 127.0.0.1 (see [`Cluster::start_with`]); append
    /// the query string (`?sslmode=..`).
    pub fn tcp_url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@localhost:{}/{database}", self.port)
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.current_dir("/").stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Stops the server (fast shutdown), as an outage would.
    pub fn stop(&self) {
        run(self.pg_ctl().args(["stop", "-w", "-m", "fast", "-D"]).arg(&self.data), "pg_ctl stop");
    }

    /// What the server has logged so far (its warnings and errors).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.socket_dir.join("postgres.log")).unwrap_or_default()
    }

    /// Starts it again on the same port.
    pub fn start_again(&self) {
        run(
            self.pg_ctl()
                .args(["start", "-w", "-s", "-D"])
                .arg(&self.data)
                .arg("-l")
                .arg(self.socket_dir.join("postgres.log"))
                .args(["-o", &self.options()])
                .process_group(0),
            "pg_ctl start",
        );
    }

    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_preload_libraries=pg_stat_statements{}",
            self.port,
            self.socket_dir.display(),
            self.settings
        )
    }

    /// Creates, starts and guards a new cluster, listening on its unix
    /// socket only.
    pub fn start() -> Self {
        Self::start_with(&[], "")
    }

    /// Like [`Cluster::start`], plus server `settings` (`name=value`, each
    /// passed as `-c` after the defaults, so `listen_addresses=127.0.0.1`
    /// overrides the default of no TCP; through pg_ctl's shell, so no
    /// spaces) and `hba_first`: lines put at the top of pg_hba.conf, where
    /// they win over initdb's `trust` lines.
    pub fn start_with(settings: &[&str], hba_first: &str) -> Self {
        let bin = api::db::embedded::find_pg_bin(None).unwrap_or_else(|e| panic!("{e}"));
        let run_as = api::db::embedded::postgres_user_if_root().unwrap_or_else(|e| panic!("{e}"));
        // Short path: unix socket paths are limited to ~107 bytes.
        let dir = PathBuf::from(format!("/tmp/apitest-{}-{}", std::process::id(), api::db::embedded::random_hex(3)));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        if let Some((uid, gid)) = run_as {
            for path in [&dir, &data] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown: {e}"));
            }
        }
        let as_postgres = |program: &Path| {
            let mut cmd = Command::new(program);
            cmd.current_dir("/").stdin(Stdio::null());
            if let Some((uid, gid)) = run_as {
                cmd.uid(uid).gid(gid);
            }
            cmd
        };
        run(
            as_postgres(&bin.join("initdb"))
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
                .arg(&data),
            "initdb",
        );
        if !hba_first.is_empty() {
            let hba = data.join("pg_hba.conf");
            let initdb_lines = std::fs::read_to_string(&hba).unwrap_or_else(|e| panic!("{}: {e}", hba.display()));
            std::fs::write(&hba, format!("{hba_first}\n{initdb_lines}"))
                .unwrap_or_else(|e| panic!("{}: {e}", hba.display()));
        }
        let settings = settings.iter().map(|s| format!(" -c {s}")).collect();
        let port = free_port();
        let cluster = Self { port, socket_dir: dir.clone(), data: data.clone(), bin: bin.clone(), run_as, settings };
        cluster.start_again();
        // Stops the cluster and removes its folder once this process is gone.
        // Never waited for: it must outlive us (it is reparented to init).
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \"$0\" stop -m immediate -D \"$1\" >/dev/null 2>&1; rm -rf \"$2\"",
            pid = std::process::id()
        );
        #[allow(clippy::zombie_processes)]
        as_postgres(Path::new("/bin/sh"))
            .arg("-c")
            .arg(script)
            .arg(bin.join("pg_ctl"))
            .arg(&data)
            .arg(&dir)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the cluster watchdog: {e}"));
        cluster
    }

    /// A new database on this cluster with every migration applied.
    pub async fn migrated_database(&self, name: &str) -> String {
        let admin = Database::connect(self.url("postgres", "postgres")).await.unwrap_or_else(|e| panic!("{e}"));
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap_or_else(|e| panic!("{e}"));
        let db = Database::connect(self.url("postgres", name)).await.unwrap_or_else(|e| panic!("{e}"));
        Migrator::up(&db, None).await.unwrap_or_else(|e| panic!("migrating failed: {e}"));
        db.execute_unprepared("ALTER ROLE app_authenticator LOGIN").await.unwrap_or_else(|e| panic!("{e}"));
        db.close().await.unwrap_or_else(|e| panic!("{e}"));
        admin.close().await.unwrap_or_else(|e| panic!("{e}"));
        name.to_owned()
    }
}

/// PgBouncer in transaction pooling mode in front of the shared cluster, as
/// the seeds deploy it: Debian's `pgbouncer`, run as the cluster's user,
/// listening on a free loopback port. Stopped when dropped, or by a watchdog
/// once the test process is gone.
pub struct PgBouncer {
    port: u16,
    dir: PathBuf,
    child: std::process::Child,
}

impl PgBouncer {
    /// Starts one whose pools hold at most `server_connections` server
    /// connections per database and user, so clients must share them.
    pub fn start(server_connections: u32) -> Self {
        let cluster = cluster();
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .unwrap_or_else(|| panic!("pgbouncer is not installed: apt-get install pgbouncer (.ci/run does)"));
        let dir =
            PathBuf::from(format!("/tmp/apitest-bouncer-{}-{}", std::process::id(), api::db::embedded::random_hex(3)));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let port = free_port();
        // Trust on loopback, as the cluster trusts its private socket; sqlx
        // sends extra_float_digits at startup, which PgBouncer must ignore.
        let ini = format!(
            "[databases]\n* = host={socket} port={pg_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\n\
             pool_mode = transaction\ndefault_pool_size = {server_connections}\nmax_client_conn = 200\n\
             ignore_startup_parameters = extra_float_digits\nlogfile = {dir}/pgbouncer.log\n",
            socket = cluster.socket_dir.display(),
            pg_port = cluster.port,
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("users.txt"), "\"app_authenticator\" \"\"\n\"postgres\" \"\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(binary);
        cmd.arg(dir.join("pgbouncer.ini")).current_dir("/").stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(Stdio::null()).process_group(0);
        // PgBouncer refuses to run as root.
        if let Some((uid, gid)) = cluster.run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown: {e}"));
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start pgbouncer: {e}"));
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; kill {child} 2>/dev/null; rm -rf \"$0\"",
            pid = std::process::id(),
            child = child.id()
        );
        #[allow(clippy::zombie_processes)]
        Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg(&dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the pgbouncer watchdog: {e}"));
        let bouncer = Self { port, dir, child };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "pgbouncer did not listen: {}", bouncer.log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        bouncer
    }

    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// PgBouncer's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static TEMPLATE_READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

fn run(cmd: &mut Command, what: &str) {
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(output.status.success(), "{what} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// The cluster shared by the tests of this process.
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

/// The superuser URL of a database on the test cluster.
pub fn superuser_url(database: &str) -> String {
    cluster().url("postgres", database)
}

async fn ensure_template() {
    TEMPLATE_READY
        .get_or_init(|| async {
            let admin = Database::connect(superuser_url("postgres")).await.unwrap_or_else(|e| panic!("{e}"));
            admin.execute_unprepared(&format!("CREATE DATABASE {TEMPLATE}")).await.unwrap_or_else(|e| panic!("{e}"));
            let template = Database::connect(superuser_url(TEMPLATE)).await.unwrap_or_else(|e| panic!("{e}"));
            Migrator::up(&template, None).await.unwrap_or_else(|e| panic!("migrating the template failed: {e}"));
            // The request login may log in here (trust auth on a private socket).
            template.execute_unprepared("ALTER ROLE app_authenticator LOGIN").await.unwrap_or_else(|e| panic!("{e}"));
            template.close().await.unwrap_or_else(|e| panic!("{e}"));
            admin.close().await.unwrap_or_else(|e| panic!("{e}"));
        })
        .await;
}

/// A fresh database for one test. `migrated`: cloned from the migrated
/// template; otherwise empty.
pub async fn create_database(migrated: bool) -> String {
    // Even for an empty database: the roles the migrations create are
    // cluster-wide, and two tests migrating at once would both create them.
    ensure_template().await;
    let name = format!("t_{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
    let admin = Database::connect(superuser_url("postgres")).await.unwrap_or_else(|e| panic!("{e}"));
    let template = if migrated { format!(" TEMPLATE {TEMPLATE}") } else { String::new() };
    admin.execute_unprepared(&format!("CREATE DATABASE {name}{template}")).await.unwrap_or_else(|e| panic!("{e}"));
    admin.close().await.unwrap_or_else(|e| panic!("{e}"));
    name
}

/// Settings of a test server; tests may change them before `spawn_with`.
pub fn test_config(database: &str) -> api::Config {
    test_config_on(cluster(), database)
}

/// Settings of a test server on a database of `on`.
pub fn test_config_on(on: &Cluster, database: &str) -> api::Config {
    api::Config {
        host: "127.0.0.1".into(),
        port: 0,
        database_url: Some(on.url("app_authenticator", database)),
        database_pool_size: 4,
        database_max_overflow: 2,
        database_pool_timeout: 10,
        database_idle_timeout: 300,
        database_slow_query_ms: 200,
        database_statement_timeout_ms: 5000,
        request_timeout_ms: 15000,
        database_listen_url: None,
        database_transaction_pooler: false,
        realtime_buffer: 4096,
        realtime_retention_hours: 24,
        ws_init_timeout: 10,
        ws_keepalive: 15,
        data_dir: std::env::temp_dir().join("apitest-unused"),
        pg_bin: None,
        app_env: api::config::AppEnv::Development,
        migrate: false,
        jwt_secret: Some(JWT_SECRET.into()),
        jwt_previous_secret: None,
        jwt_ttl_seconds: 3600,
        password_hash_threads: 0,
        password_hash_wait_ms: 10_000,
        // Tests sign many users up and in from 127.0.0.1: the limits are
        // tested with low values of their own (hostile::auth_limits).
        sign_in_per_ip_per_minute: 1_000_000,
        sign_in_per_login_per_minute: 1_000_000,
        sign_up_per_ip_per_hour: 1_000_000,
        sign_up_per_email_per_hour: 1_000_000,
        auth_rate_limit_keys: 100_000,
        trust_x_forwarded_for: false,
        max_query_depth: 15,
        max_query_complexity: 5000,
        max_mutation_fields: 10,
        max_body_bytes: 1024 * 1024,
        persisted_query_cache_bytes: 1024 * 1024,
        max_connections: 10_000,
        // Websockets: three quarters of max_connections, and (tests open
        // many from 127.0.0.1) no per-address cap in practice; the caps are
        // tested with low values of their own (hostile::connections).
        max_ws_connections: None,
        max_ws_per_ip: 10_000,
        http_header_read_timeout: 10,
        http_body_read_timeout: 30,
        http_idle_timeout: 60,
        log_format: api::config::LogFormat::Text,
    }
}

/// A running server on its own database.
pub struct TestApp {
    pub address: String,
    /// The server's change feed, to observe it from tests.
    pub realtime: api::realtime::Realtime,
    pub database: String,
    pub http: reqwest::Client,
    /// A superuser connection to the test database, for arranging fixtures
    /// and for probing what PostgreSQL itself allows.
    pub db: DatabaseConnection,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A signed-in account.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub token: String,
    pub username: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let database = create_database(true).await;
        Self::spawn_with(test_config(&database)).await
    }

    pub async fn spawn_with(config: api::Config) -> Self {
        Self::spawn_on(cluster(), config).await
    }

    /// A server on a database of `on` (see [`Cluster::migrated_database`]).
    pub async fn spawn_on(on: &Cluster, config: api::Config) -> Self {
        // Server warnings and errors (e.g. the cause of an INTERNAL_SERVER_ERROR)
        // show in the output of a failing test.
        static LOGGING: OnceLock<()> = OnceLock::new();
        LOGGING.get_or_init(|| {
            let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
        });
        let database = config
            .database_url
            .as_deref()
            .and_then(|url| url.split('?').next()?.rsplit('/').next())
            .unwrap_or_default()
            .to_owned();
        let app = api::Application::build(config).await.unwrap_or_else(|e| panic!("server did not start: {e}"));
        let address = format!("http://127.0.0.1:{}", app.port());
        let realtime = app.realtime();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            // A dropped TestApp leaves its server running to the test's end.
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        }));
        let db = Database::connect(on.url("postgres", &database)).await.unwrap_or_else(|e| panic!("{e}"));
        Self { address, realtime, database, http: reqwest::Client::new(), db, stop, server }
    }

    /// A server whose request pool has one connection and a one-second
    /// acquire timeout, to exhaust with [`TestApp::hold_the_only_connection`].
    pub async fn spawn_with_one_connection() -> Self {
        let mut config = test_config(&create_database(true).await);
        config.database_pool_size = 1;
        config.database_max_overflow = 0;
        config.database_pool_timeout = 1;
        Self::spawn_with(config).await
    }

    /// Starts a request that waits on a table lock, holding the pool's
    /// only connection. Roll the returned lock back to let it finish; the
    /// task yields the request's HTTP status.
    pub async fn hold_the_only_connection(&self) -> (DatabaseTransaction, tokio::task::JoinHandle<Option<u16>>) {
        let lock = self.db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        lock.execute_unprepared("LOCK TABLE place IN ACCESS EXCLUSIVE MODE").await.unwrap_or_else(|e| panic!("{e}"));
        let slow = tokio::spawn({
            let (http, url) = (self.http.clone(), format!("{}/graphql", self.address));
            async move {
                let response = http.post(url).json(&json!({ "query": "{ places { totalCount } }" })).send().await;
                response.ok().map(|r| r.status().as_u16())
            }
        });
        // Until the request holds the connection and waits on the lock.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self
            .count("SELECT count(*) FROM pg_locks WHERE NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            .await
            == 0
        {
            assert!(std::time::Instant::now() < deadline, "the request never blocked on the lock");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        (lock, slow)
    }

    /// Shuts the server down as SIGTERM would and waits until it has.
    pub async fn shut_down(self) {
        let _ = self.stop.send(());
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(30), self.server).await;
        let result = stopped.unwrap_or_else(|_| panic!("the server did not stop within 30 s"));
        result.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    }

    /// POSTs a GraphQL request and returns the JSON body (whatever the status).
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("request failed: {e}"));
        response.json().await.unwrap_or_else(|e| panic!("body is not JSON: {e}"))
    }

    /// Like `graphql`, but fails the test on any error and returns `data`.
    pub async fn data(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.graphql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Signs up `username` (email `username@test.io`, password `password-<username>`).
    pub async fn sign_up(&self, username: &str) -> TestUser {
        let data = self
            .data(
                None,
                "mutation($input: SignUpInput!) { signUp(input: $input) { token user { id username } } }",
                json!({ "input": { "email": format!("{username}@test.io"), "username": username, "password": format!("password-{username}"), "fullName": username } }),
            )
            .await;
        TestUser {
            id: data["signUp"]["user"]["id"].as_str().unwrap_or_default().to_owned(),
            token: data["signUp"]["token"].as_str().unwrap_or_default().to_owned(),
            username: username.to_owned(),
        }
    }

    /// Signs up `username` and gives it `role` (admin, service, reader) directly in the database.
    pub async fn sign_up_as(&self, username: &str, role: &str) -> TestUser {
        let user = self.sign_up(username).await;
        self.db
            .execute_unprepared(&format!("UPDATE users SET role = '{role}' WHERE id = '{}'", user.id))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        user
    }

    /// Runs a `SELECT count(*) ..` as the superuser.
    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: no row"));
        row.try_get_by_index::<i64>(0).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Inserts a place directly (as the superuser).
    pub async fn insert_place(
        &self,
        id: &str,
        category: &str,
        lat: f64,
        lng: f64,
        rating: Option<f64>,
        ratings_total: Option<i32>,
    ) {
        let rating = rating.map_or("NULL".to_owned(), |r| r.to_string());
        let total = ratings_total.map_or("NULL".to_owned(), |t| t.to_string());
        self.db
            .execute_unprepared(&format!(
                "INSERT INTO place (id, name, lat, lng, category, rating, user_ratings_total) VALUES ('{id}', 'Place {id}', {lat}, {lng}, '{category}', {rating}, {total})"
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// A transaction on the test database running exactly as a request of
    /// `user` would: the viewer role and `app.user_id` set locally. For
    /// proving what row-level security allows with no resolver in between.
    pub async fn as_request_role(&self, role: &str, user_id: &str) -> DatabaseTransaction {
        let tx = self.db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        tx.execute_unprepared(&format!("SET LOCAL ROLE {role}; SELECT set_config('app.user_id', '{user_id}', true)"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tx
    }
}

impl TestApp {
    /// The change feed's position now: subscribe with it as `after` and no
    /// event written from here on can be missed, however late the
    /// subscription starts (graphql-ws does not acknowledge subscriptions).
    pub async fn change_cursor(&self) -> String {
        self.data(None, "{ changeCursor }", json!({})).await["changeCursor"].as_str().unwrap_or_default().to_owned()
    }

    /// A websocket to `/graphql/ws` speaking `subprotocol`.
    pub async fn websocket(&self, subprotocol: &str) -> WsClient {
        WsClient::connect(&self.address, subprotocol).await
    }

    /// A graphql-transport-ws connection, initialised with `token`.
    pub async fn subscriber(&self, token: Option<&str>) -> WsClient {
        let mut ws = self.websocket("graphql-transport-ws").await;
        let ack = ws.init(token).await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        ws
    }
}

/// A minimal GraphQL websocket client for tests, on tokio-tungstenite.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What the server sent: a JSON message, or the close frame's code.
#[derive(Debug, PartialEq)]
pub enum Received {
    Message(Value),
    Closed(Option<u16>),
}

impl WsClient {
    pub async fn connect(http_address: &str, subprotocol: &str) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/graphql/ws", http_address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap_or_else(|e| panic!("{e}"));
        request.headers_mut().insert("sec-websocket-protocol", subprotocol.parse().unwrap_or_else(|e| panic!("{e}")));
        let (socket, response) =
            tokio_tungstenite::connect_async(request).await.unwrap_or_else(|e| panic!("websocket: {e}"));
        assert_eq!(
            response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()),
            Some(subprotocol),
            "the server speaks the requested subprotocol"
        );
        Self { socket }
    }

    pub async fn send(&mut self, message: Value) {
        use futures_util::SinkExt;
        self.send_text(&message.to_string()).await;
        let _ = &mut self.socket.flush().await;
    }

    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(text.to_owned().into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Sends `connection_init` with the token and returns the answer.
    pub async fn init(&mut self, token: Option<&str>) -> Value {
        let payload = token.map_or(json!({}), |t| json!({ "Authorization": format!("Bearer {t}") }));
        self.send(json!({ "type": "connection_init", "payload": payload })).await;
        match self.receive().await {
            Received::Message(message) => message,
            Received::Closed(code) => panic!("closed with {code:?} instead of acknowledging"),
        }
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next message (answering and skipping server pings) or the close,
    /// within 20 seconds in all: pings do not extend the wait.
    pub async fn receive(&mut self) -> Received {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no message from the server within 20 s"));
            match next {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("{e}: {text}"));
                    if message["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    if message["type"] == "ka" {
                        continue;
                    }
                    return Received::Message(message);
                }
                Some(Ok(Message::Close(frame))) => return Received::Closed(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    /// The next text frame as it is, pings included.
    pub async fn raw_text(&mut self) -> String {
        use futures_util::StreamExt;
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(20), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no message from the server within 20 s"));
            match next {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => return text.as_str().to_owned(),
                Some(Ok(_)) => {}
                other => panic!("socket ended: {other:?}"),
            }
        }
    }

    /// The next text frame, or `None` once the server closes (20 s at most).
    pub async fn raw_text_or_close(&mut self) -> Option<String> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("the server neither wrote nor closed within 20 s"));
            match next {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => return Some(text.as_str().to_owned()),
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next message, failing the test on a close.
    pub async fn message(&mut self) -> Value {
        match self.receive().await {
            Received::Message(message) => message,
            Received::Closed(code) => panic!("closed with {code:?} while waiting for a message"),
        }
    }

    /// The payload `data` of the next `next` message of subscription `id`.
    pub async fn next_data(&mut self, id: &str) -> Value {
        let message = self.message().await;
        assert_eq!(message["id"], id, "{message}");
        assert_eq!(message["type"], "next", "{message}");
        assert!(message["payload"].get("errors").is_none(), "{message}");
        message["payload"]["data"].clone()
    }

    /// The close code the server ends the connection with.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(code) = self.receive().await {
                return code;
            }
        }
    }
}

/// The `extensions.code` of the first error of a response.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or("<no error code>")
}

/// One scrape of `GET /metrics`.
pub struct Scrape(pub String);

impl Scrape {
    /// The value of an unlabelled series (`name value`) or of a labelled
    /// one given with its labels (`name{a="x"}`); panics when it is absent.
    pub fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from:\n{}", self.0))
    }
}

impl TestApp {
    pub async fn metrics(&self) -> Scrape {
        let response = self.http.get(format!("{}/metrics", self.address)).send().await;
        let text = match response {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) => panic!("GET /metrics: {e}"),
        };
        Scrape(text)
    }
}

/// Waits until `condition` holds, checking every 50 ms, for at most 20 s.
pub async fn eventually(what: &str, condition: impl AsyncFn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl WsClient {
    /// Sends `text` while reading what the server answers, and returns the
    /// close code it ends the connection with: for a message the server
    /// refuses before reading it whole, when sending would never finish.
    pub async fn send_text_until_closed(&mut self, text: &str) -> Option<u16> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (mut sink, mut stream) = (&mut self.socket).split();
        let send = async {
            let _ = sink.send(Message::Text(text.to_owned().into())).await;
            std::future::pending::<()>().await;
        };
        let close = async {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                }
            }
        };
        let closed = async {
            tokio::select! {
                code = close => code,
                () = send => None,
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), closed)
            .await
            .unwrap_or_else(|_| panic!("the server did not close within 20 s"))
    }
}

impl TestApp {
    /// The change feed's position now, as a cursor signed for `user`
    /// (cursors are bound to the viewer they were issued to).
    pub async fn change_cursor_for(&self, user: &TestUser) -> String {
        let data = self.data(Some(&user.token), "{ changeCursor }", json!({})).await;
        data["changeCursor"].as_str().unwrap_or_default().to_owned()
    }

    /// Gives `user` a new role as an admin would, through `setUserRole`.
    pub async fn set_role(&self, admin: &TestUser, user: &TestUser, role: &str) {
        let set = "mutation($id: ID!, $role: Role!) { setUserRole(userId: $id, role: $role) { role } }";
        self.data(Some(&admin.token), set, json!({ "id": user.id, "role": role })).await;
    }
}

// Raw websocket frames, for clients that must not answer pings as every
// websocket library does on its own.

/// Sends a websocket upgrade on `stream` by hand and returns the response
/// head (so the socket stays a plain one that answers nothing by itself).
pub async fn raw_upgrade(stream: &mut tokio::net::TcpStream, subprotocol: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET /graphql/ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("the upgrade is sent");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut byte)).await;
        assert_eq!(read.expect("an answer within 10 s").expect("the upgrade's answer"), 1, "closed mid-head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A client's text frame: final, masked (with a zero key, so the payload
/// reads as is), shorter than 126 bytes.
pub fn client_text_frame(text: &str) -> Vec<u8> {
    let length = u8::try_from(text.len()).ok().filter(|&n| n < 126).expect("a short message");
    let mut frame = vec![0x81, 0x80 | length, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// The server's frames in `bytes` (unmasked, unfragmented): each opcode
/// with its text, or for a close its code.
pub fn server_frames(mut bytes: &[u8]) -> Vec<(u8, String)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (length, start) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            126 | 127 => break,
            n => (usize::from(n), 2),
        };
        let Some(payload) = bytes.get(start..start + length) else { break };
        let text = if opcode == 0x8 && payload.len() >= 2 {
            u16::from_be_bytes([payload[0], payload[1]]).to_string()
        } else {
            String::from_utf8_lossy(payload).into_owned()
        };
        frames.push((opcode, text));
        bytes = &bytes[start + length..];
    }
    frames
}
