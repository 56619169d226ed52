//! Backup and restore with the machine's pg_dump and pg_restore.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::json;
use tests::TestApp;

/// A fingerprint of every row of every table.
async fn fingerprint(db: &sea_orm::DatabaseConnection) -> Vec<(String, String)> {
    let tables = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1".to_owned(),
        ))
        .await
        .expect("listing the tables");
    let mut out = Vec::new();
    for row in tables {
        let table: String = row.try_get_by_index(0).unwrap_or_default();
        let digest = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"),
            ))
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"))
            .and_then(|r| r.try_get_by_index::<String>(0).ok())
            .unwrap_or_default();
        out.push((table, digest));
    }
    out
}

#[tokio::test]
async fn a_backup_wipe_and_restore_gives_identical_rows_and_a_working_server() {
    let app = TestApp::spawn().await;
    app.insert_place("p1", "cafe", 38.7, -9.1, Some(4.5), Some(10)).await;
    let ada = app.sign_up("ada").await;
    app.data(
        Some(&ada.token),
        "mutation { createReview(input: {placeId: \"p1\", rating: 4}) { review { id } } }",
        json!({}),
    )
    .await;
    app.data(
        Some(&ada.token),
        "mutation { createPost(input: {title: \"t\", published: true}) { post { id } } }",
        json!({}),
    )
    .await;
    let url = tests::superuser_url(&app.database);
    let before = fingerprint(&app.db).await;

    let tools = api::ops::backup::Tools::find(None).expect("finding pg_dump and pg_restore");
    let dir = std::env::temp_dir().join(format!("apibackup-{}", std::process::id()));
    let source = Database::connect(url.as_str()).await.expect("connecting to the database");
    let (file, bytes, manifest) = api::ops::backup::take(&tools, &source, &url, &dir).await.expect("taking a backup");
    assert!(bytes > 0 && tools.list(&file).await.unwrap_or(0) > 50);
    // The manifest counted the rows the archive holds.
    for (table, digest) in &before {
        let rows = digest.split(':').next().and_then(|n| n.parse::<i64>().ok());
        assert_eq!(manifest.rows.get(table).copied(), rows, "{table}");
    }
    assert_eq!(api::ops::backup::Manifest::read(&file).ok().flatten(), Some(manifest));

    // Wipe: every table dropped and recreated empty.
    let admin = Database::connect(url.as_str()).await.expect("connecting to the database");
    Migrator::fresh(&admin).await.expect("migrating fresh");
    assert_eq!(app.count("SELECT count(*) FROM place").await, 0);

    tools.restore(&file, &url).await.expect("restoring the backup");
    assert_eq!(fingerprint(&admin).await, before, "every row of every table is back");
    // Roles, grants and policies came back too: the server serves Ada as before.
    let mine = app
        .data(
            Some(&ada.token),
            "{ myReviews { totalCount } recommendations(lat: 38.7, lng: -9.1) { place { rowId } } }",
            json!({}),
        )
        .await;
    assert_eq!(mine["myReviews"]["totalCount"], 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_backup_taken_while_rows_are_written_holds_exactly_what_its_manifest_says() {
    let database = tests::create_database(true).await;
    let url = tests::superuser_url(&database);
    let source = Database::connect(url.as_str()).await.expect("connecting to the database");
    // A writer adding places all through the backup.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (stop, url) = (stop.clone(), url.clone());
        async move {
            let db = Database::connect(url.as_str()).await.expect("connecting to the database");
            let mut written = 0_i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sql = format!("INSERT INTO place (id, name, lat, lng) VALUES ('w{written}', 'w', 0, 0)");
                db.execute_unprepared(&sql).await.expect("running the SQL");
                written += 1;
            }
            written
        }
    });
    tests::eventually("the writer has begun", async || {
        let rows = source
            .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT count(*) FROM place".to_owned()))
            .await;
        rows.ok().flatten().and_then(|r| r.try_get_by_index::<i64>(0).ok()).unwrap_or(0) > 0
    })
    .await;

    let tools = api::ops::backup::Tools::find(None).expect("finding pg_dump and pg_restore");
    let dir = std::env::temp_dir().join(format!("apibackup-busy-{}", std::process::id()));
    let (file, _, manifest) = api::ops::backup::take(&tools, &source, &url, &dir).await.expect("taking a backup");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.expect("joining the task");

    // Restored elsewhere, the archive holds exactly the manifest's rows,
    // though writes went on after the backup's snapshot.
    let copy = tests::create_database(false).await;
    tools.restore(&file, &tests::superuser_url(&copy)).await.expect("restoring the backup");
    let restored = Database::connect(tests::superuser_url(&copy)).await.expect("connecting to the database");
    assert_eq!(api::ops::backup::row_counts(&restored).await.ok(), Some(manifest.rows.clone()));
    assert!(
        manifest.rows["place"] < written,
        "{} of {written} places: the writes overlapped the backup",
        manifest.rows["place"]
    );
    let _ = std::fs::remove_dir_all(dir);
}
