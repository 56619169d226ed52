//! When PostgreSQL goes away, clients learn it fast, with a code and a
//! time to retry, and the server recovers by itself when it is back.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use tests::{Cluster, TestApp, error_code, test_config_on};

/// POSTs `query` and returns how long the answer took, its status, its
/// Retry-After header and its body.
async fn timed(app: &TestApp, token: Option<&str>, query: &str) -> (Duration, u16, Option<String>, Value) {
    let started = Instant::now();
    let mut request = app.http.post(format!("{}/graphql", app.address)).json(&json!({ "query": query }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = response.json().await.expect("a JSON body");
    (started.elapsed(), status, retry, body)
}

/// Ends the backends of the app's database that match `filter` (SQL on
/// pg_stat_activity), waits until they are gone, and says how many.
async fn end_backends(app: &TestApp, filter: &str) -> usize {
    let matching = format!("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND {filter}");
    let pids: Vec<i32> = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, matching))
        .await
        .expect("backends")
        .iter()
        .map(|row| row.try_get_by_index(0).expect("pid"))
        .collect();
    let list = pids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    app.count(&format!("SELECT count(pg_terminate_backend(pid)) FROM unnest(ARRAY[{list}]::int[]) pid")).await;
    let alive = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(ARRAY[{list}]::int[])");
    tests::eventually("the backends are gone", async || app.count(&alive).await == 0).await;
    pids.len()
}

async fn readyz(app: &TestApp) -> (Duration, u16) {
    let started = Instant::now();
    let response = app.http.get(format!("{}/readyz", app.address)).send().await.expect("the server answers");
    (started.elapsed(), response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_readyz_and_requests_fail_fast_and_recover_by_themselves() {
    // Arrange: a cluster of its own, so stopping it harms no other test; the
    // pool timeout is the shipped default, which requests used to wait out.
    let cluster = Cluster::start();
    let database = cluster.migrated_database("outage_fast").await;
    let mut config = test_config_on(&cluster, &database);
    config.database_pool_timeout = 30;
    let app = TestApp::spawn_on(&cluster, config).await;
    let user = app.sign_up("outage").await;
    assert_eq!(readyz(&app).await.1, 200);

    // Act
    cluster.stop();
    let (ready_took, ready_status) = readyz(&app).await;
    let (first_took, _, first_retry, first) = timed(&app, Some(&user.token), "{ me { username } }").await;
    let mut later = Vec::new();
    for _ in 0..5 {
        later.push(timed(&app, None, "{ places(first: 1) { totalCount } }").await);
    }

    // Assert: /readyz within 2 s, the first request within about as long
    // (it finds out), the next ones at once, each with a code and Retry-After.
    assert_eq!(ready_status, 503);
    assert!(ready_took < Duration::from_secs(2), "/readyz took {ready_took:?}");
    assert!(first_took < Duration::from_secs(3), "the first request took {first_took:?}");
    assert_eq!(error_code(&first), "SERVICE_UNAVAILABLE", "{first}");
    assert_eq!(first_retry.as_deref(), Some("1"));
    for (took, status, retry, body) in &later {
        assert!(*took < Duration::from_millis(500), "a request while the database is known down took {took:?}");
        assert_eq!((*status, retry.as_deref(), error_code(body)), (503, Some("1"), "SERVICE_UNAVAILABLE"));
    }
    let (down_ready_took, down_ready) = readyz(&app).await;
    assert_eq!(down_ready, 503);
    assert!(down_ready_took < Duration::from_millis(500), "/readyz while known down took {down_ready_took:?}");

    // Recovery needs nobody: the server notices the database is back.
    cluster.start_again();
    tests::eventually("/readyz is 200 again", async || readyz(&app).await.1 == 200).await;
    let back = app.data(Some(&user.token), "{ me { username } }", json!({})).await;
    assert_eq!(back["me"]["username"], "outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_request_is_service_unavailable_with_retry_after() {
    // Arrange: a request that holds its connection, waiting on a lock.
    let app = TestApp::spawn().await;
    let lock = app.db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE place IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let request = tokio::spawn({
        let app_http = app.http.clone();
        let url = format!("{}/graphql", app.address);
        async move {
            let response =
                app_http.post(url).json(&json!({ "query": "{ places { totalCount } }" })).send().await.expect("answer");
            let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (retry, response.json::<Value>().await.expect("JSON"))
        }
    });
    tests::eventually("the request waits on the lock", async || {
        app.count("SELECT count(*) FROM pg_locks WHERE NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").await
            == 1
    })
    .await;

    // Act: its connection dies (a failover, a restarted pooler, an OOM kill).
    app.count(
        "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l WHERE NOT l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    let (retry, body) = request.await.expect("the request task");
    lock.rollback().await.expect("unlock");

    // Assert
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE", "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    let again = app.data(None, "{ places { totalCount } }", json!({})).await;
    assert_eq!(again["places"]["totalCount"], 0, "the next request gets a live connection");
}

/// A connection kept warm between requests (db::warm) whose backend goes
/// away while nobody uses it (a restart, a pooler recycling it, an
/// administrator ending sessions left idle in a read's transaction, db::tx)
/// costs no request an error: the start finds it lost and takes another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_whose_backend_ended_while_it_waited_costs_no_request_an_error() {
    // Arrange: a read leaves the pool's only connection kept.
    let app = TestApp::spawn_with_one_connection().await;
    app.insert_place("p0", "cafe", 48.0, 2.0, None, None).await;
    let first = app.data(None, "{ places { totalCount } }", json!({})).await;
    assert_eq!(first["places"]["totalCount"], 1);

    // Act: its backend is ended while it waits, then a request comes.
    // Waiting until it is idle first: the read's end, queued on it, goes
    // out on its own after `db::warm::SETTLE`, and while that ROLLBACK
    // runs (longer on a loaded machine) the backend is `active`.
    let kept = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                AND application_name = 'api' AND state LIKE 'idle%'";
    tests::eventually("the kept connection is idle", async || app.count(kept).await == 1).await;
    let ended = end_backends(&app, "application_name = 'api' AND state LIKE 'idle%'").await;
    assert_eq!(ended, 1, "the pool's one connection, kept");
    let next = app.graphql(None, "{ places { totalCount } }", json!({})).await;

    // Assert
    assert!(next.get("errors").is_none(), "the next request runs: {next}");
    assert_eq!(next["data"]["places"]["totalCount"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_of_the_pool_ended_at_once_costs_no_request_an_error() {
    // Arrange: the pool's connections (kept warm and idle in sqlx) all
    // used once, as after a busy moment.
    let app = TestApp::spawn_with(tests::test_config(&tests::create_database(true).await)).await;
    app.insert_place("p0", "cafe", 48.0, 2.0, None, None).await;
    let burst = (0..6).map(|_| app.data(None, "{ places { totalCount } }", json!({})));
    for answer in futures_util::future::join_all(burst).await {
        assert_eq!(answer["places"]["totalCount"], 1);
    }

    // Act: every backend of the server's pool ends at once (a restart or
    // a failover looks the same from here), then requests come one by one.
    let ended = end_backends(&app, "application_name = 'api'").await;
    assert!(ended >= 2, "the pool had connections to end: {ended}");
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(app.graphql(None, "{ places { totalCount } }", json!({})).await);
    }

    // Assert: the dead connections are found and replaced, each request
    // on a live one.
    every_one_counted_the_place(&answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ends_idle_sessions_costs_no_request_an_error() {
    // Arrange: PostgreSQL ends the request pool's sessions idle for 200 ms
    // (idle_session_timeout, FATAL 57P05), as a managed database or a
    // pooler's server_idle_timeout may; the change feed's connection,
    // which idles by design, is left out of it.
    let database = tests::create_database(true).await;
    let mut config = tests::test_config(&database);
    let plain = tests::shared_cluster().url("app_authenticator", &database);
    config.database_url = Some(format!("{plain}&options[idle_session_timeout]=200").into());
    config.database_listen_url = Some(plain.into());
    let app = TestApp::spawn_with(config).await;
    app.insert_place("p0", "cafe", 48.0, 2.0, None, None).await;

    // Act: requests with pauses longer than the timeout between them.
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(app.graphql(None, "{ places { totalCount } }", json!({})).await);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    // Assert
    every_one_counted_the_place(&answers);
}

/// Asserts that each answer of `{ places { totalCount } }` ran, without
/// an error, and counted the one place.
fn every_one_counted_the_place(answers: &[Value]) {
    for answer in answers {
        assert!(answer.get("errors").is_none(), "every request runs: {answer}");
        assert_eq!(answer["data"]["places"]["totalCount"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_statement_ends_at_the_statement_timeout_with_its_own_code() {
    // Arrange: a statement that cannot finish (it waits on a lock) and a
    // short statement timeout.
    let database = tests::create_database(true).await;
    let mut config = tests::test_config(&database);
    config.database_statement_timeout_ms = 300;
    let app = TestApp::spawn_with(config).await;
    let lock = app.db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE place IN ACCESS EXCLUSIVE MODE").await.expect("lock");

    // Act
    let answer = tokio::time::timeout(Duration::from_secs(10), timed(&app, None, "{ places { totalCount } }")).await;
    lock.rollback().await.expect("unlock");
    let (took, status, _, body) = answer.expect("the statement is cancelled, not left waiting");

    // Assert
    assert_eq!(error_code(&body), "QUERY_TIMEOUT", "{body}");
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(!message.contains("canceling statement"), "no database text reaches the client: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_ends_at_the_request_timeout_however_short_each_statement_is() {
    // Arrange: statements may run 5 s, the whole request 500 ms; the
    // request waits on a lock, so only the request's deadline can end it.
    let database = tests::create_database(true).await;
    let mut config = tests::test_config(&database);
    config.request_timeout_ms = 500;
    let app = TestApp::spawn_with(config).await;
    let user = app.sign_up("deadline").await;
    let lock = app.db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE place IN ACCESS EXCLUSIVE MODE").await.expect("lock");

    // Act: a mutation that writes, then waits on the lock.
    let mutation = "mutation { setPreference(input: {category: \"before-the-lock\", rating: 1}) { preference { category } } createReview(input: {placeId: \"x\", rating: 4}) { review { id } } }";
    let answer = tokio::time::timeout(Duration::from_secs(10), timed(&app, Some(&user.token), mutation)).await;
    lock.rollback().await.expect("unlock");
    let (took, _, _, body) = answer.expect("the request is ended, not left waiting");

    // Assert: ended at about the deadline, coded, and nothing of it kept.
    assert_eq!(error_code(&body), "QUERY_TIMEOUT", "{body}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    tests::eventually("the ended request's transaction is gone", async || {
        app.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'").await == 0
    })
    .await;
    assert_eq!(app.count("SELECT count(*) FROM preference WHERE category = 'before-the-lock'").await, 0);
}
