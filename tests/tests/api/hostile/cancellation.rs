//! A request whose client goes away, or whose future is dropped at any
//! await point, leaves nothing behind: its writes are rolled back, and the
//! pooled connection it used serves the next request outside any
//! transaction (PostgreSQL never sees a `BEGIN` inside one).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::json;
use tests::{Cluster, TestApp, test_config_on};
use tokio::io::AsyncWriteExt;

/// What PostgreSQL logs when a connection that is still inside a
/// transaction is handed a `BEGIN`.
const LEAKED_TRANSACTION: &str = "there is already a transaction in progress";

/// Polls a future until it has been pending `limit` times, then drops it
/// where it stands: a cancellation at exactly one of its await points.
struct DropAfter<F> {
    inner: Option<Pin<Box<F>>>,
    pending_left: u32,
}

impl<F: Future> Future for DropAfter<F> {
    /// `None`: dropped before it finished.
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        match inner.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending if self.pending_left == 0 => {
                self.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                self.pending_left -= 1;
                Poll::Pending
            }
        }
    }
}

fn drop_after<F: Future>(limit: u32, future: F) -> DropAfter<F> {
    DropAfter { inner: Some(Box::pin(future)), pending_left: limit }
}

/// Waits until no connection to `app`'s database sits inside a transaction
/// (a cancelled request's ROLLBACK may still be on its way).
async fn until_no_open_transaction(app: &TestApp) {
    tests::eventually("every pooled connection is out of its transaction", async || {
        app.count(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
        )
        .await
            == 0
    })
    .await;
}

async fn preferences(app: &TestApp, like: &str) -> Vec<String> {
    let rows = app
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT category FROM preference WHERE category LIKE $1 ORDER BY category",
            [like.into()],
        ))
        .await
        .expect("read preferences");
    rows.iter().map(|row| row.try_get::<String>("", "category").expect("category")).collect()
}

// One thread: the server, the BEGIN and COMMIT tasks and this test take
// turns, so "dropped after the n-th pending poll" names one await point.
#[tokio::test]
async fn a_request_dropped_at_any_await_point_writes_nothing_and_leaks_no_transaction() {
    // Arrange: a private cluster (its log is this test's alone) and a pool of
    // one connection, so every attempt reuses what the last one left.
    let cluster = Cluster::start();
    let database = cluster.migrated_database("cancel_points").await;
    let mut config = test_config_on(&cluster, &database);
    config.database_pool_size = 1;
    config.database_max_overflow = 0;
    let app = TestApp::spawn_on(&cluster, config.clone()).await;
    let user = app.sign_up("dropper").await;
    let id: uuid::Uuid = user.id.parse().expect("user id");
    let viewer = api::auth::Viewer::User { id, role: api::auth::Role::User };
    let url = config.database_url.clone().expect("url");
    let pool = api::db::connect_pool(&url, &config).await.expect("pool");

    // Act and assert, per sweep: the same two-write request, dropped after
    // 0, 1, 2, ... pending polls, until it runs to the end without being
    // dropped. The start (BEGIN and app_start_request, one round trip since
    // db::Tx), each insert and COMMIT are four waits, but a statement whose
    // answer is already in the socket's buffer when it is read skips one
    // (the test's thread preempted between its write and its read, on a
    // busy machine). A sweep counts once it dropped the request at three or
    // more points: before, between and after its writes.
    let mut points = Vec::new();
    for sweep in 0..5u32 {
        let dropped = sweep_drop_points(&app, &pool, viewer, id, &format!("drop{sweep}")).await;
        if dropped.len() > points.len() {
            points = dropped;
        }
        if points.len() >= 3 {
            break;
        }
    }
    assert!(points.len() >= 3, "the request has several await points: {points:?}");
    let log = cluster.server_log();
    assert!(!log.contains(LEAKED_TRANSACTION), "a connection went back to the pool inside a transaction:\n{log}");
}

/// One sweep of [`a_request_dropped_at_any_await_point_writes_nothing_and_leaks_no_transaction`]
/// with categories named `prefix-…`: checks that each attempt wrote both
/// its rows or neither, that finished ones wrote and one dropped while it
/// starts did not, and returns the points the request was dropped at.
async fn sweep_drop_points(
    app: &TestApp,
    pool: &api::db::Pool,
    viewer: api::auth::Viewer,
    id: uuid::Uuid,
    prefix: &str,
) -> Vec<u32> {
    let mut dropped = Vec::new();
    let mut finished = Vec::new();
    for limit in 0..200u32 {
        let (a, b) = (format!("{prefix}-{limit:03}-a"), format!("{prefix}-{limit:03}-b"));
        let request = async {
            let (tx, _) = api::db::begin_request(pool, viewer).await?;
            for category in [&a, &b] {
                tx.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO preference (user_id, category, rating) VALUES ($1, $2, 1)",
                    [id.into(), category.as_str().into()],
                ))
                .await?;
            }
            pool.commit(tx).await.map_err(api::error::ApiError::from)
        };
        match drop_after(limit, request).await {
            None => dropped.push(limit),
            Some(result) => {
                result.unwrap_or_else(|e| panic!("the request failed: {}", e.message()));
                finished.push(limit);
                if finished.len() == 3 {
                    break;
                }
            }
        }
    }
    until_no_open_transaction(app).await;

    // A request dropped once its COMMIT is on the wire is committed all
    // the same (as one whose client hangs up just after the commit), and
    // on a busy machine that point is not the same one in every attempt.
    // What must hold for each: both its rows or neither, never one.
    let written = preferences(app, &format!("{prefix}-%")).await;
    for limit in dropped.iter().chain(&finished) {
        let (a, b) = (format!("{prefix}-{limit:03}-a"), format!("{prefix}-{limit:03}-b"));
        assert_eq!(written.contains(&a), written.contains(&b), "a request wrote one row of two: {written:?}");
    }
    for limit in &finished {
        assert!(written.contains(&format!("{prefix}-{limit:03}-a")), "a finished request lost its rows: {written:?}");
    }
    assert!(!written.contains(&format!("{prefix}-000-a")), "a request dropped while it starts wrote: {written:?}");
    dropped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_mutation_leaves_none_of_its_writes_while_others_keep_theirs() {
    // Arrange
    let cluster = Cluster::start();
    let database = cluster.migrated_database("cancel_http").await;
    let mut config = test_config_on(&cluster, &database);
    config.database_pool_size = 3;
    config.database_max_overflow = 0;
    let app = TestApp::spawn_on(&cluster, config).await;
    let user = app.sign_up("hangs-up").await;
    let writer = app.sign_up("keeps-writing").await;
    let set = "mutation($c: String!, $r: Float!) { setPreference(input: { category: $c, rating: $r }) { preference { category } } }";
    app.data(Some(&user.token), set, json!({ "c": "blocker", "r": 1.0 })).await;
    // The second field of every hung-up mutation waits on this row lock,
    // after its first field has written.
    let lock = app.db.begin().await.expect("begin");
    lock.execute_unprepared("SELECT 1 FROM preference WHERE category = 'blocker' FOR UPDATE").await.expect("lock");

    // Act: mutations whose clients hang up at random moments, from before
    // the request is read to while it waits on the lock; meanwhile another
    // client's writes go on.
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut hung_up = Vec::new();
    for n in 0..24u64 {
        let query = format!(
            "mutation {{ a: setPreference(input: {{ category: \"gone-{n:02}\", rating: 2 }}) {{ preference {{ category }} }} b: setPreference(input: {{ category: \"blocker\", rating: 3 }}) {{ preference {{ category }} }} }}"
        );
        let body = json!({ "query": query }).to_string();
        let request = format!(
            "POST /graphql HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            user.token,
            body.len()
        );
        let mut socket = tokio::net::TcpStream::connect(&address).await.expect("connect");
        socket.write_all(request.as_bytes()).await.expect("sending the request");
        // From 0 to ~40 ms: the later ones are blocked on the lock.
        tokio::time::sleep(Duration::from_micros(n * n * 70)).await;
        drop(socket);
        hung_up.push(n);
        let acknowledged = app.data(Some(&writer.token), set, json!({ "c": format!("kept-{n:02}"), "r": 4.0 })).await;
        assert_eq!(acknowledged["setPreference"]["preference"]["category"], format!("kept-{n:02}"));
    }
    // Give the server time to see every hang-up, then let the lock go: a
    // request still running would now finish and commit its first write.
    tokio::time::sleep(Duration::from_secs(1)).await;
    lock.rollback().await.expect("release the lock");
    tokio::time::sleep(Duration::from_millis(300)).await;
    until_no_open_transaction(&app).await;

    // Assert
    assert_eq!(preferences(&app, "gone-%").await, Vec::<String>::new(), "no hung-up mutation wrote anything");
    assert_eq!(preferences(&app, "kept-%").await.len(), hung_up.len(), "every acknowledged write is there");
    let after = app.data(Some(&user.token), set, json!({ "c": "after", "r": 5.0 })).await;
    assert_eq!(after["setPreference"]["preference"]["category"], "after", "the pool still serves");
    let log = cluster.server_log();
    assert!(!log.contains(LEAKED_TRANSACTION), "a connection went back to the pool inside a transaction:\n{log}");
}
