//! The logical capture (migration 000014, `realtime::sequencer`): writers
//! only append to the log, one server's sequencer stamps the commit order
//! from a logical replication slot. What it must keep: every event once, in
//! one order on every server, across a sequencer's death and a lost slot.
//!
//! The rest of the realtime tests run in either mode: CI runs
//! `TEST_CAPTURE_MODE=logical cargo test -p tests --test api realtime` after
//! the whole suite (trigger mode, the harness's default).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use api::config::CaptureMode;
use api::realtime::Live;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;
use tests::{Cluster, TestApp, eventually};
use tokio::sync::broadcast;

/// The sequencer's session advisory lock (`realtime::sequencer`), as
/// pg_locks shows a bigint key: high and low 32 bits.
const LOCK_KEY: i64 = 7_262_018_544;

fn logical(config: &mut api::Config, on: &Cluster, database: &str) {
    config.capture_mode = CaptureMode::Logical;
    config.database_sequencer_url = Some(on.url(migration::SEQUENCER_ROLE, database).into());
}

async fn spawn_logical_on(on: &Cluster, database: &str) -> TestApp {
    let mut config = tests::test_config_on(on, database);
    logical(&mut config, on, database);
    TestApp::spawn_on(on, config).await
}

/// A server in the logical mode on a database of its own.
async fn spawn_logical() -> TestApp {
    let database = tests::create_database(true).await;
    let app = spawn_logical_on(tests::shared_cluster(), &database).await;
    leading(&app).await;
    app
}

/// Waits until `app`'s sequencer leads (its slot exists, the database is in
/// the logical mode).
/// Creating the slot waits for every transaction running in the cluster
/// (other tests' too) to end, hence the long wait.
async fn leading(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !app.realtime.capture().is_sequencer() {
        assert!(tokio::time::Instant::now() < deadline, "the server's sequencer does not lead after 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn execute(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn readyz(app: &TestApp) -> Value {
    app.http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Inserts places `prefix-0..n`, each its own transaction.
async fn write_places(db: &DatabaseConnection, prefix: &str, n: usize) {
    for i in 0..n {
        execute(
            db,
            &format!("INSERT INTO place (id, name, lat, lng, category) VALUES ('{prefix}-{i}', 'p', 1, 1, 'c')"),
        )
        .await;
    }
}

/// Receives change events until every place key of `expected` has come,
/// and returns the place keys in the order they came (duplicates included).
async fn receive_places(events: &mut broadcast::Receiver<Arc<Live>>, expected: &HashSet<String>) -> Vec<String> {
    let mut seen = Vec::new();
    let mut missing = expected.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !missing.is_empty() {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "not delivered within 30 s: {} of {}, e.g. {:?}",
                    missing.len(),
                    expected.len(),
                    missing.iter().next()
                )
            })
            .unwrap_or_else(|e| panic!("the feed: {e}"))
            .event
            .clone();
        if event.table == "place" && expected.contains(&event.key) {
            missing.remove(&event.key);
            seen.push(event.key.clone());
        }
    }
    // Anything more (a duplicate) would come right behind.
    while let Ok(Ok(live)) = tokio::time::timeout(Duration::from_millis(300), events.recv()).await {
        let event = &live.event;
        if event.table == "place" && expected.contains(&event.key) {
            seen.push(event.key.clone());
        }
    }
    seen
}

fn keys(prefix: &str, n: usize) -> HashSet<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The backend pid holding the sequencer's lock in `app`'s database.
async fn sequencer_pid(app: &TestApp) -> Option<i64> {
    let sql = format!(
        "SELECT coalesce(max(l.pid), 0)::bigint FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted
           AND l.classid = {} AND l.objid = {}",
        LOCK_KEY >> 32,
        LOCK_KEY & 0xffff_ffff
    );
    Some(app.count(&sql).await).filter(|&pid| pid != 0)
}

async fn slot_name(app: &TestApp) -> String {
    let oid = app.count("SELECT oid::bigint FROM pg_database WHERE datname = current_database()").await;
    api::realtime::sequencer::slot_name(oid)
}

/// Ends the sequencer's session and holds its lock on a connection of the
/// test's, so no server sequences until it is closed.
async fn hold_the_sequencer_lock(app: &TestApp, url: &str) -> DatabaseConnection {
    let holder = Database::connect(url).await.unwrap_or_else(|e| panic!("{e}"));
    eventually("the test holds the sequencer lock", async || {
        if let Some(pid) = sequencer_pid(app).await {
            let _ = app.db.execute_unprepared(&format!("SELECT pg_terminate_backend({pid})")).await;
        }
        let row = holder
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT pg_try_advisory_lock({LOCK_KEY}) AS locked"),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no row"));
        row.try_get::<bool>("", "locked").unwrap_or(false)
    })
    .await;
    holder
}

#[tokio::test]
async fn in_the_logical_mode_writers_only_append_and_the_sequencer_delivers_in_commit_order() {
    let app = spawn_logical().await;
    let ready = readyz(&app).await;
    assert_eq!(ready["capture"], "logical", "{ready}");
    eventually("this server leads the sequencing", async || readyz(&app).await["sequencer"] == true).await;

    // The generated capture has no stamp, no lock and no NOTIFY any more.
    let with_stamp = app
        .count("SELECT count(*) FROM pg_proc WHERE proname ~ '^app_capture_.+_(insert|update|delete)$' AND prosrc LIKE '%pg_notify%' AND prosrc LIKE '%INSERT INTO change_log%'")
        .await;
    assert_eq!(with_stamp, 0, "a capture function still stamps and notifies");

    let mut events = app.realtime.subscribe();
    write_places(&app.db, "lg", 30).await;
    let seen = receive_places(&mut events, &keys("lg", 30)).await;
    let written: Vec<String> = (0..30).map(|i| format!("lg-{i}")).collect();
    assert_eq!(seen, written, "one event per write, in commit order");
    // Every logged transaction has its stamp, and only once.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM change_log l WHERE NOT EXISTS (SELECT 1 FROM change_commit c WHERE c.txid = l.txid)"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_server_started_in_the_trigger_mode_takes_the_database_back_to_stamping_writers() {
    let app = spawn_logical().await;
    eventually("the logical mode is in force", async || {
        app.count("SELECT count(*) FROM change_capture WHERE mode = 'logical'").await == 1
    })
    .await;
    let mut config = tests::test_config(&app.database);
    config.capture_mode = CaptureMode::Trigger;
    config.database_sequencer_url = None;
    let trigger = TestApp::spawn_with(config).await;
    assert_eq!(readyz(&trigger).await["capture"], "trigger");
    assert_eq!(app.count("SELECT count(*) FROM change_capture WHERE mode = 'trigger'").await, 1);
    let mut events = trigger.realtime.subscribe();
    write_places(&trigger.db, "tg", 5).await;
    assert_eq!(receive_places(&mut events, &keys("tg", 5)).await.len(), 5);
}

#[tokio::test]
async fn when_the_sequencer_dies_another_server_takes_over_and_nothing_is_lost_or_repeated() {
    let database = tests::create_database(true).await;
    let on = tests::shared_cluster();
    let first = spawn_logical_on(on, &database).await;
    leading(&first).await;
    let second = spawn_logical_on(on, &database).await;
    let mut on_first = first.realtime.subscribe();
    let mut on_second = second.realtime.subscribe();

    let writer = {
        let db = Database::connect(on.url("postgres", &database)).await.unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            for i in 0..200 {
                execute(
                    &db,
                    &format!("INSERT INTO place (id, name, lat, lng, category) VALUES ('to-{i}', 'p', 1, 1, 'c')"),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Kill whichever leads, twice, while the writes go on.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let pid = sequencer_pid(&first).await.unwrap_or_else(|| panic!("no sequencer"));
        execute(&first.db, &format!("SELECT pg_terminate_backend({pid})")).await;
        eventually("another session leads", async || sequencer_pid(&first).await.is_some_and(|now| now != pid)).await;
    }
    writer.await.unwrap_or_else(|e| panic!("{e}"));
    let expected = keys("to", 200);
    let seen_first = receive_places(&mut on_first, &expected).await;
    let seen_second = receive_places(&mut on_second, &expected).await;
    assert_eq!(seen_first.len(), 200, "each write delivered once");
    assert_eq!(seen_first, seen_second, "both servers deliver the same order");
    let written: Vec<String> = (0..200).map(|i| format!("to-{i}")).collect();
    assert_eq!(seen_first, written, "commit order");
}

#[tokio::test]
async fn a_dropped_slot_is_recreated_and_the_writes_made_without_it_are_delivered_once() {
    let app = spawn_logical().await;
    let mut events = app.realtime.subscribe();
    write_places(&app.db, "before", 3).await;
    receive_places(&mut events, &keys("before", 3)).await;

    let holder = hold_the_sequencer_lock(&app, &tests::superuser_url(&app.database)).await;
    let slot = slot_name(&app).await;
    // The ended session may hold the slot a moment longer.
    eventually("the slot is dropped", async || {
        app.db.execute_unprepared(&format!("SELECT pg_drop_replication_slot('{slot}')")).await.is_ok()
    })
    .await;
    write_places(&app.db, "gap", 10).await;
    // Committed with no slot and no sequencer: not stamped yet.
    assert_eq!(
        app.count("SELECT count(*) FROM change_commit c JOIN change_log l USING (txid) WHERE l.row_key LIKE 'gap-%'")
            .await,
        0
    );
    holder.close().await.unwrap_or_else(|e| panic!("{e}"));

    let gap = receive_places(&mut events, &keys("gap", 10)).await;
    assert_eq!(gap.len(), 10, "each write of the gap once: {gap:?}");
    write_places(&app.db, "after", 5).await;
    let after = receive_places(&mut events, &keys("after", 5)).await;
    assert_eq!(
        after,
        (0..5).map(|i| format!("after-{i}")).collect::<Vec<_>>(),
        "the new slot sequences in commit order"
    );
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'", slot_name(&app).await))
            .await,
        1
    );
}

#[tokio::test]
async fn a_slot_that_fell_behind_past_its_wal_limit_is_replaced_and_nothing_is_lost() {
    // A cluster of its own that keeps at most 1 MB of WAL for a slot.
    let on = Cluster::start_with(&["max_slot_wal_keep_size=1", "max_wal_size=32MB", "min_wal_size=32MB"], "");
    let database = on.migrated_database("behind").await;
    let app = spawn_logical_on(&on, &database).await;
    leading(&app).await;
    let mut events = app.realtime.subscribe();
    write_places(&app.db, "before", 3).await;
    receive_places(&mut events, &keys("before", 3)).await;

    let holder = hold_the_sequencer_lock(&app, &on.url("postgres", &database)).await;
    write_places(&app.db, "behind", 10).await;
    // Far more WAL than the slot may keep, then a checkpoint, which
    // invalidates it.
    let slot = slot_name(&app).await;
    execute(&app.db, "CREATE TABLE ballast (b text)").await;
    eventually("the slot is invalidated", async || {
        execute(&app.db, "INSERT INTO ballast SELECT md5(random()::text) FROM generate_series(1, 200000); SELECT pg_switch_wal(); CHECKPOINT").await;
        app.count(&format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND wal_status = 'lost'")).await == 1
    })
    .await;
    holder.close().await.unwrap_or_else(|e| panic!("{e}"));

    let behind = receive_places(&mut events, &keys("behind", 10)).await;
    assert_eq!(behind.len(), 10, "each write once: {behind:?}");
    write_places(&app.db, "after", 3).await;
    receive_places(&mut events, &keys("after", 3)).await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND wal_status <> 'lost'"
        ))
        .await,
        1,
        "a new slot replaced it"
    );
}
