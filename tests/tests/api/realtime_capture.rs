//! The capture side of realtime: what the change listener costs the
//! database, and what the capture triggers write.

use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use tests::TestApp;

/// The listener's log read, in pg_stat_statements: calls, rows and shared
/// buffers touched, in the test's database since the last reset.
const LOG_READS: &str = "SELECT coalesce(sum(calls), 0)::bigint AS calls, coalesce(sum(rows), 0)::bigint AS rows,
        coalesce(sum(shared_blks_hit + shared_blks_read), 0)::bigint AS blocks
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
    WHERE d.datname = current_database() AND s.query LIKE '%committed_ms_ago%' AND s.query NOT LIKE '%pg_stat_statements%'";

/// Logged transactions with no commit stamp yet.
const UNSTAMPED: &str =
    "SELECT count(*) FROM change_log l WHERE NOT EXISTS (SELECT 1 FROM change_commit c WHERE c.txid = l.txid)";

async fn log_reads(app: &TestApp) -> (i64, i64, i64) {
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, LOG_READS))
        .await
        .expect("pg_stat_statements is readable")
        .expect("one row");
    let get = |column| row.try_get::<i64>("", column).expect("a bigint");
    (get("calls"), get("rows"), get("blocks"))
}

/// Waits until the listener has broadcast everything in the log.
async fn until_delivered(app: &TestApp) {
    let newest = app.count("SELECT max(id) FROM change_log").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while app.realtime.head().id < newest {
        assert!(
            Instant::now() < deadline,
            "the listener never delivered the transaction (head {})",
            app.realtime.head()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_idle_listener_reads_nothing_after_a_large_transaction_is_delivered() {
    let app = TestApp::spawn().await;
    app.db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.expect("extension");
    // One transaction, 100,000 events: the cursor ends inside it.
    app.db
        .execute_unprepared(
            "INSERT INTO place (id, name, lat, lng, category)
             SELECT 'bulk-' || n, 'Bulk ' || n, 38.7, -9.1, 'bulk' FROM generate_series(1, 100000) n",
        )
        .await
        .expect("bulk insert");
    until_delivered(&app).await;

    app.db
        .execute_unprepared(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
        )
        .await
        .expect("reset");
    // Several of the listener's 500 ms polls, with nothing new to read.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (calls, rows, blocks) = log_reads(&app).await;

    assert!(calls >= 3, "the listener polled {calls} times in 2.6 s");
    assert_eq!(rows, 0, "idle polls returned events");
    assert!(
        blocks <= calls * 16,
        "idle polls touched {blocks} buffers in {calls} calls: they re-read the delivered transaction"
    );
}

#[tokio::test]
async fn every_capture_trigger_runs_a_generated_function_without_dynamic_sql() {
    let app = TestApp::spawn().await;

    let generic =
        app.count("SELECT count(*) FROM pg_trigger WHERE tgfoid = 'app_capture_changes()'::regprocedure").await;
    let generated = app
        .count(
            "SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
             WHERE t.tgname LIKE '%\\_capture\\_%' AND p.proname LIKE 'app\\_capture\\_%' AND p.prosrc NOT LIKE '%EXECUTE%'",
        )
        .await;

    assert_eq!(generic, 0, "triggers still build their SQL on every write");
    assert!(generated >= 30, "{generated} capture triggers run a generated function");
}

/// The same writes, captured: published rows without their timestamps
/// (`updated_at` is set by a trigger at write time), in log order.
async fn capture_of_the_same_writes(app: &TestApp, user_id: &str) -> String {
    let before = app.count("SELECT coalesce(max(id), 0) FROM change_log").await;
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO place (id, name, lat, lng, category) VALUES ('eq-1', 'One', 1, 2, 'x'), ('eq-2', 'Two', 3, 4, NULL);
             UPDATE place SET name = name || '!' WHERE id LIKE 'eq-%';
             UPDATE place SET name = name WHERE id = 'eq-1';
             DELETE FROM place WHERE id LIKE 'eq-%';
             UPDATE users SET last_login = now() WHERE id = '{user_id}';
             UPDATE users SET role = 'admin' WHERE id = '{user_id}';
             UPDATE users SET role = 'user' WHERE id = '{user_id}';"
        ))
        .await
        .expect("the writes");
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT coalesce(json_agg(json_build_array(table_name, op, row_key, owner_id,
                        new_row - 'updated_at' - 'created_at', old_row - 'updated_at' - 'created_at') ORDER BY id), '[]')::text AS log
                 FROM change_log WHERE id > {before}"
            ),
        ))
        .await
        .expect("the log")
        .expect("one row");
    row.try_get::<String>("", "log").expect("text")
}

#[tokio::test]
async fn generated_capture_functions_log_exactly_what_the_generic_one_logged() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;

    let generated = capture_of_the_same_writes(&app, &ada.id).await;
    // The down migration puts every trigger back on app_capture_changes.
    app.db
        .execute_unprepared(include_str!("../../../migration/src/sql/000012_compiled_capture.down.sql"))
        .await
        .expect("the down migration");
    let generic = capture_of_the_same_writes(&app, &ada.id).await;

    assert_eq!(generated, generic);
    assert!(generated.contains("\"eq-2\"") && generated.contains("\"admin\""), "{generated}");
    // Insert 2, update 2 (the no-op update is no event), delete 2, role 2 (last_login is not published).
    assert_eq!(generated.matches("\"place\"").count() + generated.matches("\"users\"").count(), 8, "{generated}");
}

#[tokio::test]
async fn a_write_that_publishes_nothing_takes_no_place_in_the_commit_order() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let commits = "SELECT count(*) FROM change_commit";
    // In the logical mode the sequencer stamps after the commit: count once
    // every logged transaction has its stamp.
    let settled = || tests::eventually("every logged transaction stamped", async || app.count(UNSTAMPED).await == 0);
    settled().await;
    let before = app.count(commits).await;

    // Signing in sets users.last_login, which is not published.
    app.db
        .execute_unprepared(&format!("UPDATE users SET last_login = now() WHERE id = '{}'", ada.id))
        .await
        .expect("the update");
    app.db.execute_unprepared("UPDATE place SET name = name").await.expect("a no-op update");
    settled().await;
    let after_silent = app.count(commits).await;
    app.db
        .execute_unprepared(&format!("UPDATE users SET role = 'reader' WHERE id = '{}'", ada.id))
        .await
        .expect("a published update");
    settled().await;

    assert_eq!(after_silent, before, "a write with no event was stamped into the commit order");
    assert_eq!(app.count(commits).await, before + 1);
}
