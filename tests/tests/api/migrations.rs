use migration::{Migrator, MigratorTrait};
use sea_orm::Database;

/// What the migrations own in the public schema, counted from the catalogs.
async fn footprint(db: &sea_orm::DatabaseConnection) -> (i64, i64, i64) {
    let one = |sql: &str| {
        let sql = sql.to_owned();
        async move {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.clone()))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            row.and_then(|r| r.try_get_by_index::<i64>(0).ok()).unwrap_or(-1)
        }
    };
    (
        one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'seaql_migrations'").await,
        one("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'")
            .await,
        one("SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'").await,
    )
}

use sea_orm::ConnectionTrait;

#[tokio::test]
async fn every_migration_goes_up_down_to_an_empty_schema_and_up_again() {
    let name = tests::create_database(false).await;
    let db = Database::connect(tests::superuser_url(&name)).await.expect("connecting to the database");

    Migrator::up(&db, None).await.expect("migrating up");
    let (tables, functions, extensions) = footprint(&db).await;
    assert_eq!(
        tables, 18,
        "users, place, review, preference, change_log(_horizon), change_commit, change_feed_epoch, change_capture, routine, routine_run, user_stats, airdrop_project, user_airdrop_participation, post, comment, sessions, refresh_tokens"
    );
    assert!(functions > 0 && extensions == 3);

    Migrator::down(&db, None).await.expect("migrating down");
    assert_eq!(footprint(&db).await, (0, 0, 0), "down leaves an empty schema");
    assert_eq!(Migrator::get_pending_migrations(&db).await.map(|p| p.len()).unwrap_or(0), Migrator::migrations().len());

    Migrator::up(&db, None).await.expect("migrating up again");
    assert_eq!(footprint(&db).await, (tables, functions, extensions));
}

/// Every row of every public table: a digest per table of its rows, as
/// JSON without the columns a migration may add (so a table that only
/// gained or lost such a column still compares equal).
async fn rows(db: &sea_orm::DatabaseConnection) -> std::collections::BTreeMap<String, String> {
    let tables = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'seaql_migrations'",
        ))
        .await
        .expect("listing the tables");
    let mut out = std::collections::BTreeMap::new();
    for row in tables {
        let table: String = row.try_get_by_index(0).unwrap_or_default();
        let sql = format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '')
             FROM (SELECT to_jsonb(t) - 'committed_at' AS r FROM {table} t) s"
        );
        let digest = db
            .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql))
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"))
            .and_then(|r| r.try_get_by_index::<String>(0).ok())
            .unwrap_or_default();
        out.insert(table, digest);
    }
    out
}

#[tokio::test]
async fn every_migration_goes_down_and_up_again_over_the_demo_data_and_the_earlier_tables_keep_their_rows() {
    let name = tests::create_database(true).await;
    let db = Database::connect(tests::superuser_url(&name)).await.expect("connecting to the database");
    api::seed::demo(&db).await.unwrap_or_else(|e| panic!("{}", e.message()));
    let seeded = rows(&db).await;
    for domain in ["users", "place", "review", "routine_run", "user_stats", "user_airdrop_participation", "comment"] {
        assert!(!seeded[domain].starts_with("0:"), "the demo set fills {domain}");
    }

    // From the newest migration to the oldest: roll it back, apply it again
    // over the data of the ones below it, roll it back again, go on.
    let migrations = Migrator::migrations();
    for migration in migrations.iter().rev() {
        let name = migration.name().to_owned();
        let with_it = rows(&db).await;
        Migrator::down(&db, Some(1)).await.unwrap_or_else(|e| panic!("down {name}: {e}"));
        let without_it = rows(&db).await;
        for (table, digest) in &without_it {
            assert_eq!(Some(digest), with_it.get(table), "rolling back {name} changed the rows of {table}");
        }

        Migrator::up(&db, Some(1)).await.unwrap_or_else(|e| panic!("up again {name}: {e}"));
        let again = rows(&db).await;
        for (table, digest) in &without_it {
            assert_eq!(Some(digest), again.get(table), "reapplying {name} changed the rows of {table}");
        }
        assert_eq!(
            again.keys().collect::<Vec<_>>(),
            with_it.keys().collect::<Vec<_>>(),
            "reapplying {name} brings back its tables"
        );
        Migrator::down(&db, Some(1)).await.unwrap_or_else(|e| panic!("down again {name}: {e}"));
    }
    assert!(rows(&db).await.is_empty(), "all the way down leaves no table");

    // The migrations that only change privileges and functions keep every
    // row of the full demo set, hashes included: sign-in still works.
    let db = Database::connect(tests::superuser_url(&tests::create_database(true).await))
        .await
        .expect("connecting to the database");
    api::seed::demo(&db).await.unwrap_or_else(|e| panic!("{}", e.message()));
    // The change feed's epoch is new each time its migration applies, by
    // design (cursors of the old one are refused).
    let without_epoch = async || {
        let mut rows = rows(&db).await;
        rows.remove("change_feed_epoch");
        rows
    };
    let before = without_epoch().await;
    Migrator::down(&db, Some(2)).await.expect("migrating down two steps");
    Migrator::up(&db, None).await.expect("migrating up again");
    assert_eq!(without_epoch().await, before, "the newest migrations keep every row");
    let signed_in = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) FROM users WHERE username = 'alice' AND password_hash LIKE '$argon2id$%'",
        ))
        .await
        .expect("counting alice's password hash")
        .and_then(|r| r.try_get_by_index::<i64>(0).ok());
    assert_eq!(signed_in, Some(1), "alice's password hash survived");
}
