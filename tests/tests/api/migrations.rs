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
    let db = Database::connect(tests::superuser_url(&name)).await.unwrap_or_else(|e| panic!("{e}"));

    Migrator::up(&db, None).await.unwrap_or_else(|e| panic!("up: {e}"));
    let (tables, functions, extensions) = footprint(&db).await;
    assert_eq!(
        tables, 14,
        "users, place, review, preference, change_log(_horizon), change_commit, routine, routine_run, user_stats, airdrop_project, user_airdrop_participation, post, comment"
    );
    assert!(functions > 0 && extensions == 3);

    Migrator::down(&db, None).await.unwrap_or_else(|e| panic!("down: {e}"));
    assert_eq!(footprint(&db).await, (0, 0, 0), "down leaves an empty schema");
    assert_eq!(Migrator::get_pending_migrations(&db).await.map(|p| p.len()).unwrap_or(0), Migrator::migrations().len());

    Migrator::up(&db, None).await.unwrap_or_else(|e| panic!("up again: {e}"));
    assert_eq!(footprint(&db).await, (tables, functions, extensions));
}

#[tokio::test]
async fn rolling_back_and_reapplying_later_migrations_keeps_the_data_of_earlier_ones() {
    let name = tests::create_database(true).await;
    let db = Database::connect(tests::superuser_url(&name)).await.unwrap_or_else(|e| panic!("{e}"));
    api::seed::demo(&db).await.unwrap_or_else(|e| panic!("{}", e.message()));
    let counts = async |db: &sea_orm::DatabaseConnection| {
        let mut out = Vec::new();
        for table in ["users", "place", "review", "preference"] {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    format!("SELECT count(*) FROM {table}"),
                ))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            out.push(row.and_then(|r| r.try_get_by_index::<i64>(0).ok()).unwrap_or(-1));
        }
        out
    };
    let before = counts(&db).await;
    assert!(before.iter().all(|n| *n > 0), "{before:?}");

    // Everything after the places migration goes down and comes back.
    Migrator::down(&db, Some(4)).await.unwrap_or_else(|e| panic!("down: {e}"));
    Migrator::up(&db, None).await.unwrap_or_else(|e| panic!("up: {e}"));

    assert_eq!(counts(&db).await, before, "accounts and places data survive");
}
