//! [`TestApp`]: the real server, spawned in-process on port 0 against a
//! test's own database and connected as the restricted `app_authenticator`
//! login, as in production; plus GraphQL over HTTP to it.

use std::sync::OnceLock;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use serde_json::{Value, json};

use crate::cluster::{Cluster, cluster};
use crate::config::test_config;
use crate::database::create_database;

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
            .as_ref()
            .map(secrecy::ExposeSecret::expose_secret)
            .and_then(|url| url.split('?').next()?.rsplit('/').next())
            .unwrap_or_default()
            .to_owned();
        let app = api::Application::build(config).await.expect("server did not start");
        let address = format!("http://127.0.0.1:{}", app.port());
        let realtime = app.realtime();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            // A dropped TestApp leaves its server running to the test's end.
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        }));
        let db = Database::connect(on.url("postgres", &database)).await.expect("connecting to the database");
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
        let lock = self.db.begin().await.expect("beginning a transaction");
        lock.execute_unprepared("LOCK TABLE place IN ACCESS EXCLUSIVE MODE").await.expect("running LOCK TABLE place");
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
        let result = stopped.expect("the server did not stop within 30 s");
        result.expect("the server task panicked").expect("the server stopped with an error");
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
        let response = request.send().await.expect("request failed");
        response.json().await.expect("body is not JSON")
    }

    /// Like `graphql`, but fails the test on any error and returns `data`.
    pub async fn data(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.graphql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }
}

/// The `extensions.code` of the first error of a response.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or("<no error code>")
}

/// Waits until `condition` holds, checking every 50 ms, for at most 20 s.
pub async fn eventually(what: &str, condition: impl AsyncFn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
