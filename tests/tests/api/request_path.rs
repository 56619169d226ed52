//! The request path (issue 11): what every request costs before and after
//! its resolvers, counted by PostgreSQL itself (pg_stat_statements), and the
//! access mode of its transaction.

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use tests::{TestApp, create_database, error_code, superuser_url, test_config};

const CREATE_REVIEW: &str = "mutation($placeId: ID!, $rating: Float!) {
  createReview(input: {placeId: $placeId, rating: $rating}) { review { id } }
}";

/// Case a of issue 11.
const MY_REVIEWS: &str = "{ myReviews(first: 20) { edges { node { rating place { name } } } } }";

/// Case b of issue 11.
const PLACES_BY_RATING: &str =
    "query($c: String) { places(first: 20, category: $c, orderBy: RATING_DESC) { edges { node { name } } } }";

/// A server whose change feed reads over a superuser connection, so that
/// every statement of the request login (`app_authenticator`) and of the
/// viewer roles counted here is a request's: the feed's own BEGIN would
/// otherwise be counted with the requests' (pg_stat_statements keys by
/// user, database and statement).
pub(crate) async fn app_with_a_separate_feed_login() -> TestApp {
    let database = create_database(true).await;
    let mut config = test_config(&database);
    config.database_listen_url = Some(superuser_url(&database).into());
    let app = TestApp::spawn_with(config).await;
    app.db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.expect("pg_stat_statements");
    // The listener prunes expired sessions as it starts, in a transaction of
    // the request pool: done before a test counts its requests' statements
    // (its BEGIN is the request login's; under load it ran after the reset).
    let pruned = "SELECT count(*) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                  WHERE d.datname = current_database() AND s.query LIKE '%auth_prune_sessions%'";
    tests::eventually("the start-up session prune has run", async || app.count(pruned).await > 0).await;
    app
}

/// 25 places of category `cafe`, and 20 reviews of them by a new account.
async fn places_and_reviews(app: &TestApp) -> tests::TestUser {
    for n in 0..25 {
        app.insert_place(&format!("p{n}"), "cafe", 48.0, 2.0, Some(f64::from(n % 5)), Some(n)).await;
    }
    let ada = app.sign_up("ada").await;
    for n in 0..20 {
        app.data(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": format!("p{n}"), "rating": 4 })).await;
    }
    ada
}

/// Forgets what this database's statements cost so far.
pub(crate) async fn reset_statements(app: &TestApp) {
    // An earlier read's ROLLBACK, still owed, would be counted after it.
    until_no_request_transaction(app).await;
    app.db
        .execute_unprepared(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
        )
        .await
        .expect("reset pg_stat_statements");
}

/// The statements requests ran on this database since the reset, with how
/// often each ran: those of the request login and the viewer roles (the
/// test's own superuser statements and the feed's are left out).
pub(crate) async fn request_statements(app: &TestApp) -> Vec<(String, i64)> {
    // A read's ROLLBACK goes out with its connection's next use, or on its
    // own within db::warm::SETTLE (db::tx): counted once it has.
    until_no_request_transaction(app).await;
    let rows = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT s.query, s.calls FROM pg_stat_statements s
             JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid
             WHERE d.datname = current_database()
               AND r.rolname IN ('app_authenticator', 'app_anon', 'app_user', 'app_read', 'app_service', 'app_admin')
             ORDER BY s.query",
        ))
        .await
        .expect("read pg_stat_statements");
    rows.iter().map(|row| (row.try_get_by_index(0).expect("query"), row.try_get_by_index(1).expect("calls"))).collect()
}

/// The server's connections idle inside a transaction.
const IDLE_IN_TRANSACTION: &str = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'api' AND state LIKE 'idle in transaction%'";

/// Waits until none of the server's connections is inside a transaction.
async fn until_no_request_transaction(app: &TestApp) {
    tests::eventually("every request's transaction has ended", async || app.count(IDLE_IN_TRANSACTION).await == 0)
        .await;
}

/// How often statements containing `pattern` (any case) ran.
pub(crate) fn calls_matching(statements: &[(String, i64)], pattern: &str) -> i64 {
    let pattern = pattern.to_lowercase();
    statements.iter().filter(|(query, _)| query.to_lowercase().contains(&pattern)).map(|(_, calls)| calls).sum()
}

/// Runs `query` once as `token` and returns the statements it cost.
async fn statements_of(app: &TestApp, token: &str, query: &str, variables: Value) -> Vec<(String, i64)> {
    reset_statements(app).await;
    app.data(Some(token), query, variables).await;
    request_statements(app).await
}

/// What every read pays around its resolvers: BEGIN READ ONLY, the start,
/// and the ROLLBACK that ends it (the same as a COMMIT for a transaction
/// that can change nothing, and not waited for: db::tx).
fn assert_started_in_one_statement(statements: &[(String, i64)]) {
    assert_eq!(calls_matching(statements, "BEGIN READ ONLY"), 1, "one BEGIN READ ONLY: {statements:#?}");
    assert_eq!(calls_matching(statements, "BEGIN"), 1, "one BEGIN: {statements:#?}");
    assert_eq!(calls_matching(statements, "app_start_request"), 1, "the start is one statement: {statements:#?}");
    assert_eq!(calls_matching(statements, "set_config"), 0, "no set_config of its own: {statements:#?}");
    assert_eq!(calls_matching(statements, "FROM users"), 0, "the account is checked by the start: {statements:#?}");
    assert_eq!(calls_matching(statements, "ROLLBACK"), 1, "one ROLLBACK: {statements:#?}");
    assert_eq!(calls_matching(statements, "COMMIT"), 0, "no COMMIT: {statements:#?}");
}

#[tokio::test]
async fn a_signed_in_page_of_reviews_starts_in_one_statement() {
    let app = app_with_a_separate_feed_login().await;
    let ada = places_and_reviews(&app).await;

    let statements = statements_of(&app, &ada.token, MY_REVIEWS, json!({})).await;

    assert_started_in_one_statement(&statements);
    // Issue 11's budget: BEGIN, the start, the page with its places (one
    // statement), ROLLBACK. No COUNT (totalCount is not selected).
    let total: i64 = statements.iter().map(|(_, calls)| calls).sum();
    assert_eq!(calls_matching(&statements, "count("), 0, "{statements:#?}");
    assert!(total <= 4, "at most 4 statements: {statements:#?}");
}

#[tokio::test]
async fn a_signed_in_page_of_places_starts_in_one_statement() {
    let app = app_with_a_separate_feed_login().await;
    let ada = places_and_reviews(&app).await;

    let statements = statements_of(&app, &ada.token, PLACES_BY_RATING, json!({ "c": "cafe" })).await;

    assert_started_in_one_statement(&statements);
    let total: i64 = statements.iter().map(|(_, calls)| calls).sum();
    assert_eq!(calls_matching(&statements, "count("), 0, "{statements:#?}");
    assert!(total <= 4, "at most 4 statements: {statements:#?}");
}

/// PostgreSQL plans a prepared statement anew on every execution while a
/// plan made for its parameters' values looks cheaper than its generic
/// plan. With the LIMIT a parameter, the generic plan is priced for 10 % of
/// the rows expected: for a category of 400 places, twice the page, so
/// every page of places was planned again (graphql::pagination's
/// `page_statement` writes the LIMIT out). The requests follow one another,
/// so they take the same connection (db::warm) and its prepared statement;
/// the bound leaves room for a second connection's plans.
#[tokio::test]
async fn a_page_of_a_large_category_is_planned_a_few_times_then_its_plan_is_reused() {
    let app = app_with_a_separate_feed_login().await;
    a_large_category(&app).await;
    let ada = app.sign_up("ada").await;
    reset_statements(&app).await;

    for _ in 0..20 {
        let data = app.data(Some(&ada.token), PLACES_BY_RATING, json!({ "c": "cafe" })).await;
        assert_eq!(data["places"]["edges"].as_array().map(Vec::len), Some(20), "{data}");
    }

    let (calls, plans) = page_calls_and_plans(&app).await;
    assert_eq!(calls, 20, "one page statement a request");
    // Five custom plans, then the generic one, made once and kept.
    assert!(plans <= 12, "{plans} plans for {calls} pages: planned again on every execution");
}

/// PostgreSQL makes a statement's plan under row-level security for one
/// role, and makes it again whenever the statement runs as another. Two
/// connections left by an anonymous and a signed-in request: the requests
/// that follow, alternating, each take the one their role ran on last
/// (db::warm), so neither connection's plan changes role. Taking the most
/// recent connection instead ran them all on one, planned every time.
#[tokio::test]
async fn anonymous_and_signed_in_requests_in_turn_keep_to_their_own_connections_plans() {
    let app = app_with_a_separate_feed_login().await;
    a_large_category(&app).await;
    let ada = app.sign_up("ada").await;
    let places = async |token: Option<&str>| app.data(token, PLACES_BY_RATING, json!({ "c": "cafe" })).await;
    let token = ada.token.as_str();

    // One connection each: both requests wait on the table's lock at once.
    let lock = app.db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE place IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    // The server's request connections only (the change feed's may wait on
    // locks of their own).
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND application_name = 'api' AND wait_event_type = 'Lock'";
    let release = async {
        tests::eventually("both requests wait for the lock", async || app.count(waiting).await >= 2).await;
        lock.commit().await.expect("unlock");
    };
    tokio::join!(places(None), places(Some(token)), release);
    reset_statements(&app).await;

    for _ in 0..10 {
        assert_eq!(places(None).await["places"]["edges"].as_array().map(Vec::len), Some(20));
        assert_eq!(places(Some(token)).await["places"]["edges"].as_array().map(Vec::len), Some(20));
    }

    let (calls, plans) = page_calls_and_plans(&app).await;
    assert_eq!(calls, 20, "one page statement a request");
    // At most six plans on each connection, as for one role alone.
    assert!(plans <= 12, "{plans} plans for {calls} pages: the plans changed role");
}

/// 400 places of category `cafe` among 1600, analysed.
async fn a_large_category(app: &TestApp) {
    app.db
        .execute_unprepared(
            "INSERT INTO place (id, name, lat, lng, category, rating, user_ratings_total)
             SELECT 'p' || n, 'Place ' || n, 48.0, 2.0, CASE WHEN n % 4 = 0 THEN 'cafe' ELSE 'bar' END, n % 50 / 10.0, n
               FROM generate_series(1, 1600) AS n",
        )
        .await
        .expect("inserting places");
    // After the insert has committed, so autovacuum finds nothing left to do
    // (its ANALYZE would invalidate the plans while a test counts them).
    app.db.execute_unprepared("VACUUM ANALYZE place").await.expect("analyzing places");
}

/// How often the page of places ran since the reset, and was planned.
async fn page_calls_and_plans(app: &TestApp) -> (i64, i64) {
    until_no_request_transaction(app).await;
    let of_the_page = |what: &str| {
        format!(
            r#"SELECT coalesce(sum(s.{what}), 0)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
               WHERE d.datname = current_database() AND s.query LIKE 'SELECT %FROM "place" WHERE%ORDER BY%'"#
        )
    };
    (app.count(&of_the_page("calls")).await, app.count(&of_the_page("plans")).await)
}

#[tokio::test]
async fn an_anonymous_query_starts_in_one_statement_too() {
    let app = app_with_a_separate_feed_login().await;
    app.insert_place("a", "cafe", 48.0, 2.0, Some(4.0), Some(10)).await;
    reset_statements(&app).await;

    let data = app.data(None, PLACES_BY_RATING, json!({ "c": "cafe" })).await;

    assert_eq!(data["places"]["edges"][0]["node"]["name"], "Place a");
    assert_started_in_one_statement(&request_statements(&app).await);
}

/// Makes every read of `place` try to write a row of `read_only_probe`
/// (through a SECURITY DEFINER function, as a resolver bug or a careless
/// trigger would), so whether the request's transaction could write shows.
async fn reading_places_tries_to_write(app: &TestApp) {
    app.db
        .execute_unprepared(
            "CREATE TABLE read_only_probe (read_only text);
             CREATE FUNCTION probe_write() RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER AS $$
             BEGIN
                 INSERT INTO read_only_probe VALUES (current_setting('transaction_read_only'));
                 RETURN true;
             END $$;
             GRANT EXECUTE ON FUNCTION probe_write() TO PUBLIC;
             CREATE POLICY probe_write ON place AS RESTRICTIVE FOR SELECT USING (probe_write());",
        )
        .await
        .expect("install the probe");
}

#[tokio::test]
async fn a_query_cannot_write_even_if_something_it_reads_tries_to() {
    let app = TestApp::spawn().await;
    app.insert_place("a", "cafe", 48.0, 2.0, Some(4.0), Some(10)).await;
    let ada = app.sign_up("ada").await;
    reading_places_tries_to_write(&app).await;

    let over_http = app.graphql(Some(&ada.token), PLACES_BY_RATING, json!({ "c": "cafe" })).await;
    let anonymous = app.graphql(None, PLACES_BY_RATING, json!({ "c": "cafe" })).await;
    let mut socket = app.subscriber(Some(&ada.token)).await;
    socket.subscribe("1", PLACES_BY_RATING, json!({ "c": "cafe" })).await;
    let over_the_socket = socket.message().await;

    assert_eq!(error_code(&over_http), "INTERNAL_SERVER_ERROR", "{over_http}");
    assert_eq!(error_code(&anonymous), "INTERNAL_SERVER_ERROR", "{anonymous}");
    assert_eq!(over_the_socket["type"], "next", "{over_the_socket}");
    assert_eq!(error_code(&over_the_socket["payload"]), "INTERNAL_SERVER_ERROR", "{over_the_socket}");
    assert_eq!(app.count("SELECT count(*) FROM read_only_probe").await, 0, "no query wrote");
}

#[tokio::test]
async fn a_mutation_still_writes() {
    let app = TestApp::spawn().await;
    app.insert_place("a", "cafe", 48.0, 2.0, Some(4.0), Some(10)).await;
    let ada = app.sign_up("ada").await;
    reading_places_tries_to_write(&app).await;

    let created = app
        .graphql(
            Some(&ada.token),
            "mutation { createReview(input: {placeId: \"a\", rating: 5}) { review { id place { name } } } }",
            json!({}),
        )
        .await;

    assert_eq!(created["errors"], Value::Null, "{created}");
    assert_eq!(created["data"]["createReview"]["review"]["place"]["name"], "Place a");
    assert_eq!(app.count("SELECT count(*) FROM review").await, 1);
    assert!(
        app.count("SELECT count(*) FROM read_only_probe WHERE read_only = 'off'").await >= 1,
        "the mutation's read of place ran read-write"
    );
}

/// The backends of the server's request pool on this database.
async fn pool_backends(app: &TestApp) -> std::collections::BTreeSet<i32> {
    let rows = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'api'",
        ))
        .await
        .expect("read pg_stat_activity");
    rows.iter().map(|row| row.try_get_by_index::<i32>(0).expect("pid")).collect()
}

/// Issue 11: right after clients closed their connections mid-request, the
/// default pool waited seconds for a connection. A pool that closes a
/// connection whenever a request is cancelled at the wrong moment (sqlx
/// drops one whose acquire, ping included, is cancelled) must open new ones,
/// and under load PostgreSQL may refuse them for a while ("too many
/// clients"), which sqlx retries with a backoff of up to a fifth of the
/// pool timeout. Here no hang-up costs the pool a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_mid_request_cost_the_pool_no_connection() {
    use tokio::io::AsyncWriteExt;
    // Arrange: a pool of 3, all open.
    let database = create_database(true).await;
    let mut config = test_config(&database);
    config.database_pool_size = 3;
    config.database_max_overflow = 0;
    let app = TestApp::spawn_with(config).await;
    let ada = places_and_reviews(&app).await;
    let busy = (0..9).map(|_| app.data(Some(&ada.token), MY_REVIEWS, json!({})));
    futures_util::future::join_all(busy).await;
    let before = pool_backends(&app).await;
    assert!(!before.is_empty(), "the pool is open");

    // Act: requests whose clients hang up at moments from before the
    // request is read to after its response is written.
    let address = app.address.trim_start_matches("http://").to_owned();
    let body = json!({ "query": MY_REVIEWS }).to_string();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        ada.token,
        body.len()
    );
    for n in 0..40u64 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.expect("connect");
        socket.write_all(request.as_bytes()).await.expect("sending the request");
        tokio::time::sleep(std::time::Duration::from_micros(n * n * 10)).await;
        drop(socket);
    }
    let after_hang_ups = app.data(Some(&ada.token), MY_REVIEWS, json!({})).await;

    // Assert
    assert_eq!(after_hang_ups["myReviews"]["edges"].as_array().map(Vec::len), Some(20));
    tests::eventually("no pooled connection is left inside a transaction", async || {
        app.count(IDLE_IN_TRANSACTION).await == 0
    })
    .await;
    let after = pool_backends(&app).await;
    assert!(before.is_subset(&after), "no connection was closed: {before:?} then {after:?}");
}

/// A pool of `size` connections of its own on a fresh database, opened
/// (sqlx opens `min_connections` in the background).
async fn pool_of(size: u32) -> api::db::Pool {
    let database = create_database(true).await;
    let mut config = test_config(&database);
    config.database_pool_size = size;
    config.database_max_overflow = 0;
    config.database_pool_timeout = 30;
    let url = config.database_url.clone().expect("url");
    let pool = api::db::connect_pool(&url, &config).await.expect("pool");
    tests::eventually("the pool has opened its connections", async || pool.connections().0 == size).await;
    pool
}

async fn backend_pid(tx: &api::db::Tx) -> i32 {
    let row = tx
        .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, "SELECT pg_backend_pid()"))
        .await
        .expect("pg_backend_pid()")
        .expect("a row");
    row.try_get_by_index::<i32>(0).expect("pid")
}

/// sqlx pings every connection it gets back (a round trip per request);
/// a transaction that ended cleanly leaves its connection for the next one
/// instead (`db::warm`), so back-to-back transactions run on one backend,
/// where sqlx's idle queue (first in, first out) would rotate through all.
#[tokio::test]
async fn back_to_back_transactions_reuse_the_connection_the_last_one_ended() {
    // Arrange
    let pool = pool_of(3).await;

    // Act
    let mut pids = Vec::new();
    for _ in 0..6 {
        let tx = pool.begin().await.expect("begin");
        pids.push(backend_pid(&tx).await);
        pool.commit(tx).await.expect("commit");
    }

    // Assert
    assert!(pids.iter().all(|pid| *pid == pids[0]), "one backend served them all: {pids:?}");
}

/// The other side of keeping connections warm: one must never wait there
/// while a transaction waits for a connection. With the pool's only
/// connection taken, a second transaction waits; when the first ends, the
/// second starts at once: not after the pool timeout (30 s here), and not
/// after the second or so a warm connection may stay unused either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_waiting_for_the_only_connection_starts_when_its_holder_ends() {
    // Arrange
    let pool = pool_of(1).await;

    let mut waits = Vec::new();
    for round in 0..3 {
        // Act: the holder ends, by commit or rollback, while the waiter waits.
        let holder = pool.begin().await.expect("the holder begins");
        let holder_pid = backend_pid(&holder).await;
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move {
                let tx = pool.begin().await.expect("the waiter begins");
                let started = std::time::Instant::now();
                let pid = backend_pid(&tx).await;
                pool.commit(tx).await.expect("the waiter commits");
                (pid, started)
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "round {round}: the waiter waits while the only connection is taken");
        let ended = std::time::Instant::now();
        if round % 2 == 0 {
            pool.commit(holder).await.expect("the holder commits");
        } else {
            holder.rollback().await.expect("the holder rolls back");
        }

        // Assert
        let waited = tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await;
        let (pid, started) = waited.expect("the waiter got the connection before the pool timeout").expect("task");
        assert_eq!(pid, holder_pid, "round {round}: the same (only) connection");
        waits.push(started.saturating_duration_since(ended));
    }
    // The median, so that one stall of a busy machine does not decide.
    waits.sort();
    assert!(waits[1] < std::time::Duration::from_millis(700), "the waiter started as the holder ended: {waits:?}");
}

/// The server keeps parsed documents by their text (parsing was a steady
/// share of a request's CPU), and async-graphql strips `@skip`/`@include`
/// selections from the document it runs: every request must run its own
/// copy, with its own variables deciding, over HTTP and over the socket.
#[tokio::test]
async fn a_document_sent_again_honours_each_requests_skip_and_include() {
    let app = TestApp::spawn().await;
    app.insert_place("a", "cafe", 48.0, 2.0, Some(4.0), Some(10)).await;
    let query = "query($c: String, $rating: Boolean!) {
      places(first: 5, category: $c) { edges { node { name rating @include(if: $rating) id @skip(if: $rating) } } }
    }";
    let node = |data: &Value| data["places"]["edges"][0]["node"].clone();

    for rating in [true, false, true, false] {
        let data = app.data(None, query, json!({ "c": "cafe", "rating": rating })).await;
        let node = node(&data);
        assert_eq!(node["name"], "Place a", "{data}");
        assert_eq!(node.get("rating").is_some(), rating, "rating only when asked: {data}");
        assert_eq!(node.get("id").is_some(), !rating, "id only when not skipped: {data}");
    }
    let mut socket = app.subscriber(None).await;
    for (n, rating) in [false, true].into_iter().enumerate() {
        socket.subscribe(&n.to_string(), query, json!({ "c": "cafe", "rating": rating })).await;
        let id = n.to_string();
        let message = loop {
            let message = socket.message().await;
            if message["type"] == "next" && message["id"] == id.as_str() {
                break message;
            }
        };
        let node = node(&message["payload"]["data"]);
        assert_eq!(node.get("rating").is_some(), rating, "over the socket: {message}");
    }
}

/// Posts with their authors, comments and the comments' authors.
const POSTS_WITH_COMMENTS: &str = "query($n: Int) { posts(first: $n) { nodes { title author { username } \
    comments(first: 5) { nodes { body author { username } } } } } }";

#[tokio::test]
async fn a_page_of_posts_with_their_comments_costs_the_same_statements_for_two_posts_as_for_eight() {
    let app = app_with_a_separate_feed_login().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    for n in 0..8 {
        let created = app
            .data(
                Some(&ada.token),
                "mutation($t: String!) { createPost(input: {title: $t, published: true}) { post { id } } }",
                json!({ "t": format!("p{n}") }),
            )
            .await;
        for k in 0..2 {
            app.data(
                Some(&bob.token),
                "mutation($p: ID!, $b: String!) { addComment(input: {postId: $p, body: $b}) { comment { id } } }",
                json!({ "p": created["createPost"]["post"]["id"], "b": format!("c{k}") }),
            )
            .await;
        }
    }

    let two = statements_of(&app, &bob.token, POSTS_WITH_COMMENTS, json!({ "n": 2 })).await;
    let eight = statements_of(&app, &bob.token, POSTS_WITH_COMMENTS, json!({ "n": 8 })).await;

    let total = |statements: &[(String, i64)]| statements.iter().map(|(_, calls)| calls).sum::<i64>();
    assert_eq!(calls_matching(&eight, "FROM \"comment\""), 1, "one read of comments for all posts: {eight:#?}");
    assert_eq!(total(&two), total(&eight), "as many statements for 8 posts as for 2: {two:#?} {eight:#?}");
    // BEGIN, the start, the posts, their comments, the profiles of the
    // posts' and of the comments' authors, ROLLBACK.
    assert!(total(&eight) <= 7, "at most 7 statements: {eight:#?}");
}

/// The request's start is one round trip (`BEGIN; SELECT
/// app_start_request(...)`, db::Tx), so when the account check refuses,
/// PostgreSQL leaves that connection inside an aborted transaction. The
/// server must roll it back before the connection serves anyone else:
/// here the pool has one connection, and every request after a refused
/// one (a deactivated account, an ended session) must still run, and a
/// write must still commit.
#[tokio::test]
async fn a_refused_start_leaves_the_only_connection_clean_for_the_next_request() {
    // Arrange
    let app = TestApp::spawn_with_one_connection().await;
    let admin = app.sign_up_as("root", "admin").await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let set = "mutation($id: ID!) { setUserActive(input: {userId: $id, isActive: false}) { user { isActive } } }";
    app.data(Some(&admin.token), set, json!({ "id": bob.id })).await;
    for n in 0..3 {
        app.insert_place(&format!("p{n}"), "cafe", 48.0, 2.0, None, None).await;
    }

    for n in 0..3 {
        // Act: a refused start, then a read and a write on the same connection.
        let refused = app.graphql(Some(&bob.token), MY_REVIEWS, json!({})).await;
        let read = app.graphql(Some(&ada.token), MY_REVIEWS, json!({})).await;
        let write =
            app.graphql(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": format!("p{n}"), "rating": 4 })).await;

        // Assert
        assert_eq!(error_code(&refused), "UNAUTHENTICATED", "{refused}");
        assert!(read.get("errors").is_none(), "the read after a refused start: {read}");
        assert!(write.get("errors").is_none(), "the write after a refused start: {write}");
    }
    assert_eq!(app.count("SELECT count(*) FROM review").await, 3, "every write committed");
    assert_eq!(app.count(IDLE_IN_TRANSACTION).await, 0, "no connection is left inside a transaction");
}

/// A read's end is not waited for (db::tx): its connection stays inside
/// the read's transaction until its next use, or for one to two
/// db::warm::SETTLE (20 ms) when none comes. No longer, alone (sqlx's own return of an idle
/// connection would end it only after a second): that transaction holds
/// ACCESS SHARE locks on the tables it read, which DDL (a migration, a
/// restore) waits for.
#[tokio::test]
async fn a_read_holds_no_lock_once_its_connection_has_waited_a_moment() {
    // Arrange
    let app = TestApp::spawn_with_one_connection().await;
    let ada = app.sign_up("ada").await;
    app.insert_place("p0", "cafe", 48.0, 2.0, None, None).await;
    app.data(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": "p0", "rating": 4 })).await;

    // Act: a read of reviews and places, then no request for a while.
    let read = app.data(Some(&ada.token), MY_REVIEWS, json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // Assert: a lock that waits for every reader of both tables is granted
    // at once, and no connection is inside a transaction.
    assert_eq!(read["myReviews"]["edges"].as_array().map(Vec::len), Some(1), "{read}");
    let lock = app.db.begin().await.expect("begin");
    lock.execute_unprepared("SET LOCAL lock_timeout = '100ms'; LOCK TABLE review, place IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("no reader holds the tables");
    lock.rollback().await.expect("unlock");
    assert_eq!(app.count(IDLE_IN_TRANSACTION).await, 0);
}

/// A request error that executed nothing: no field of `data` ran, and no
/// error has a path (a failing field always has one).
fn refused_before_running(body: &Value) -> bool {
    body["data"].is_null()
        && body["errors"].as_array().is_some_and(|errors| {
            !errors.is_empty()
                && errors.iter().all(|e| e.get("path").is_none_or(|p| p.as_array().is_none_or(Vec::is_empty)))
        })
}

/// The schema keeps each document's validation result, so a document sent
/// again is not validated again; what validation reads from a request's
/// variables (a page size in a variable prices the document) still counts
/// per request, whichever came first, and a refused document stays refused.
#[tokio::test]
async fn a_validated_document_is_still_priced_by_each_requests_variables() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let query = "query($n: Int) { posts(first: $n) { nodes { comments(first: $n) { nodes { body } } } } }";

    for round in 0..2 {
        let costly = app.graphql(Some(&ada.token), query, json!({ "n": 100 })).await;
        let cheap = app.graphql(Some(&ada.token), query, json!({ "n": 5 })).await;

        assert_eq!(error_code(&costly), "QUERY_TOO_EXPENSIVE", "round {round}: {costly}");
        assert!(cheap.get("errors").is_none(), "round {round}: {cheap}");
    }
}

/// Validation checks the values a request's variables give arguments: a
/// value of the wrong type is refused before anything runs, also for a
/// document validated before with good values.
#[tokio::test]
async fn a_validated_document_still_refuses_a_variable_of_the_wrong_type() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let query = "query($n: Int) { posts(first: $n) { nodes { title } } }";

    for round in 0..2 {
        let good = app.graphql(Some(&ada.token), query, json!({ "n": 5 })).await;
        let bad = app.graphql(Some(&ada.token), query, json!({ "n": "five" })).await;

        assert!(good.get("errors").is_none(), "round {round}: {good}");
        assert_eq!(error_code(&bad), "BAD_USER_INPUT", "round {round}: {bad}");
        assert!(refused_before_running(&bad), "round {round}: refused by validation, not by a resolver: {bad}");
    }
}

/// A document of two operations, validated once, runs the one each
/// request names, in either order, and still refuses a name it lacks.
#[tokio::test]
async fn a_validated_document_of_two_operations_runs_the_one_each_request_names() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let query = "query Posts($n: Int) { posts(first: $n) { nodes { title } } }
                 query Name { __typename }";
    let run = async |name: &str| -> Value {
        let body = json!({ "query": query, "variables": { "n": 5 }, "operationName": name });
        let request = app.http.post(format!("{}/graphql", app.address)).bearer_auth(&ada.token).json(&body);
        request.send().await.expect("request failed").json().await.expect("body is not JSON")
    };

    for round in 0..2 {
        let posts = run("Posts").await;
        let name = run("Name").await;
        let neither = run("Neither").await;

        assert!(posts["data"]["posts"].is_object(), "round {round}: {posts}");
        assert_eq!(name["data"], json!({ "__typename": "Query" }), "round {round}: {name}");
        assert!(refused_before_running(&neither), "round {round}: {neither}");
    }
}

/// A pool on a runtime of its own (`pool_size` connections opened at start,
/// as DATABASE_POOL_SIZE; one more at most), whose one transaction left its
/// connection warm (`db::warm`); then that runtime ends and the pool outlives
/// it. Returns the pool and the backend pid of its connection.
fn a_warm_pool_outliving_its_runtime(database: String, pool_size: u32) -> (api::db::Pool, i32) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let kept = runtime.block_on(async {
            let mut config = test_config(&database);
            config.database_pool_size = pool_size;
            config.database_max_overflow = 1 - pool_size.min(1);
            let url = config.database_url.clone().expect("url");
            let pool = api::db::connect_pool(&url, &config).await.expect("pool");
            let tx = pool.begin().await.expect("begin");
            let pid = backend_pid(&tx).await;
            pool.commit(tx).await.expect("commit");
            // The one connection, checked out of sqlx and kept warm (sqlx's
            // idle queue is empty). A current-thread runtime runs no task
            // outside block_on, so it stays there until the pool is dropped.
            assert_eq!(pool.connections(), (1, 1), "the connection is kept warm");
            (pool, pid)
        });
        drop(runtime);
        kept
    })
    .join()
    .expect("the pool's runtime thread")
}

/// Drops `pool` on a thread without a runtime; asserts that this does not
/// panic and that the backend `pid` (checked alive first) then ends.
async fn dropping_it_without_a_runtime_ends_its_backend(database: &str, pool: api::db::Pool, pid: i32) {
    let admin = sea_orm::Database::connect(superuser_url(database)).await.expect("superuser connection");
    let count = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}");
    let backends = async || -> i64 {
        let row = admin
            .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, count.clone()))
            .await
            .expect("pg_stat_activity")
            .expect("a row");
        row.try_get_by_index(0).expect("count")
    };
    assert_eq!(backends().await, 1, "the warm connection outlived its runtime");

    // Act: the last clone dropped on a thread without a runtime.
    let dropped = std::thread::spawn(move || drop(pool)).join();

    // Assert
    assert!(dropped.is_ok(), "dropping the pool without a runtime does not panic");
    tests::eventually("the warm connection's backend has ended", async || backends().await == 0).await;
    admin.close().await.expect("closing the superuser connection");
}

/// The last clone of a pool may outlive its runtime (a server's state
/// dropped after `main`'s runtime, a test's pool moved out of its runtime).
/// sqlx gives a dropped connection back with a task of its own, which needs
/// a runtime; so the connection a clean transaction left warm is closed by
/// the stash itself then: no panic, and its backend ends. Here the pool
/// opens no connection at start (sqlx's `min_connections` 0).
#[tokio::test]
async fn a_pool_dropped_after_its_runtime_closes_the_connection_it_kept_warm() {
    // Arrange
    let database = create_database(true).await;
    let (pool, pid) = a_warm_pool_outliving_its_runtime(database.clone(), 0);

    dropping_it_without_a_runtime_ends_its_backend(&database, pool, pid).await;
}

/// The same with the pool as the server opens it (DATABASE_POOL_SIZE is at
/// least 1, so sqlx's `min_connections` is too): there sqlx's `detach`
/// spawns a task to open a replacement, which needs a runtime as well.
#[tokio::test]
async fn a_pool_of_the_servers_settings_dropped_after_its_runtime_closes_the_connection_it_kept_warm() {
    // Arrange
    let database = create_database(true).await;
    let (pool, pid) = a_warm_pool_outliving_its_runtime(database.clone(), 1);

    dropping_it_without_a_runtime_ends_its_backend(&database, pool, pid).await;
}
