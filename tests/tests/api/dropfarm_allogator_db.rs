//! The routines, airdrops and posts tables, probed directly in PostgreSQL as
//! the request roles: derived data under concurrency, and row security.

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use tests::{TestApp, TestUser};

async fn routine_of(app: &TestApp, user: &TestUser) -> String {
    app.text(&format!(
        "INSERT INTO routine (user_id, name, steps, tokens_per_run) VALUES ('{}', 'farm', '[]', 5) RETURNING id::text",
        user.id
    ))
    .await
}

#[tokio::test]
async fn user_stats_equal_a_recount_after_concurrent_runs_of_one_user() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let routine = routine_of(&app, &ada).await;

    // Eight transactions at once, as Ada's request role: start runs, finish
    // some with tokens, change a status, delete a few.
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (app_db, ada_id, routine) = (app.db.clone(), ada.id.clone(), routine.clone());
        tasks.push(tokio::spawn(async move {
            let tx = app_db.begin().await.expect("beginning a transaction");
            tx.execute_unprepared(&format!("SET LOCAL ROLE app_user; SELECT set_config('app.user_id', '{ada_id}', true)"))
                .await
                .expect("switching to the request role");
            for i in 0..20 {
                tx.execute_unprepared(&format!(
                    "INSERT INTO routine_run (routine_id, start_time) VALUES ('{routine}', now() - interval '{} minutes')",
                    worker * 20 + i
                ))
                .await
                .expect("running INSERT INTO routine_run");
            }
            tx.execute_unprepared(&format!(
                "UPDATE routine_run SET status = 'success', end_time = now(), tokens_earned = {} WHERE id IN \
                 (SELECT id FROM routine_run WHERE status = 'running' ORDER BY start_time LIMIT 10)",
                worker + 1
            ))
            .await
            .expect("running UPDATE routine_run");
            tx.execute_unprepared("UPDATE routine_run SET status = 'partial' WHERE id IN (SELECT id FROM routine_run WHERE status = 'success' LIMIT 2)")
                .await
                .expect("running UPDATE routine_run");
            tx.execute_unprepared("DELETE FROM routine_run WHERE id IN (SELECT id FROM routine_run WHERE status = 'running' LIMIT 3)")
                .await
                .expect("running DELETE FROM routine_run");
            tx.commit().await.expect("committing");
        }));
    }
    for task in tasks {
        task.await.expect("joining the task");
    }

    let recount = format!(
        "SELECT count(*) FROM (SELECT count(*) AS runs, coalesce(sum(tokens_earned), 0) AS tokens, max(start_time) AS last \
         FROM routine_run WHERE user_id = '{0}') r, user_stats s \
         WHERE s.user_id = '{0}' AND s.total_routine_runs = r.runs AND s.total_tokens_earned = r.tokens AND s.last_run_date = r.last",
        ada.id
    );
    assert_eq!(app.count(&recount).await, 1, "stats equal a recount");
    assert!(
        app.count(&format!("SELECT total_routine_runs::bigint FROM user_stats WHERE user_id = '{}'", ada.id)).await
            > 100
    );

    // Deleting the routine deletes its runs, and the stats follow.
    app.db
        .execute_unprepared(&format!("DELETE FROM routine WHERE id = '{routine}'"))
        .await
        .expect("running DELETE FROM routine");
    let emptied = format!(
        "SELECT count(*) FROM user_stats WHERE user_id = '{}' AND total_routine_runs = 0 AND total_tokens_earned = 0 AND last_run_date IS NULL",
        ada.id
    );
    assert_eq!(app.count(&emptied).await, 1);
}

#[tokio::test]
async fn concurrent_credits_never_exceed_a_projects_allocation() {
    let app = TestApp::spawn().await;
    app.db
        .execute_unprepared("INSERT INTO airdrop_project (id, name, start_date, end_date, total_token_allocation) VALUES ('00000000-0000-0000-0000-0000000000aa', 'drop', '2026-01-01', '2026-12-31', 1000)")
        .await
        .expect("running INSERT INTO airdrop_project");
    let mut users = Vec::new();
    for i in 0..20 {
        let user = app.sign_up(&format!("farmer{i}")).await;
        app.db
            .execute_unprepared(&format!("INSERT INTO user_airdrop_participation (user_id, project_id) VALUES ('{}', '00000000-0000-0000-0000-0000000000aa')", user.id))
            .await
            .expect("running INSERT INTO user_airdrop_participation");
        users.push(user);
    }

    // Twenty services credit 100 tokens each at the same time; 1000 fit.
    let mut tasks = Vec::new();
    for user in &users {
        let (db, id) = (app.db.clone(), user.id.clone());
        tasks.push(tokio::spawn(async move {
            let tx = db.begin().await.expect("beginning a transaction");
            tx.execute_unprepared("SET LOCAL ROLE app_service").await.expect("running SET LOCAL ROLE");
            let credited = tx
                .execute_unprepared(&format!(
                    "UPDATE user_airdrop_participation SET tokens_earned = tokens_earned + 100 WHERE user_id = '{id}'"
                ))
                .await;
            match credited {
                Ok(_) => tx.commit().await.map(|()| true).unwrap_or(false),
                Err(err) => {
                    assert!(err.to_string().contains("tokens left"), "{err}");
                    false
                }
            }
        }));
    }
    let mut succeeded = 0;
    for task in tasks {
        if task.await.unwrap_or(false) {
            succeeded += 1;
        }
    }
    assert_eq!(succeeded, 10);
    assert_eq!(app.count("SELECT sum(tokens_earned)::bigint FROM user_airdrop_participation").await, 1000);
}

#[tokio::test]
async fn drafts_are_their_authors_and_comments_follow_their_post() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO post (id, author_id, title, published) VALUES \
             ('00000000-0000-0000-0000-00000000d4af', '{0}', 'draft', false), \
             ('00000000-0000-0000-0000-0000000000b1', '{0}', 'live', true); \
             INSERT INTO comment (post_id, author_id, body) VALUES \
             ('00000000-0000-0000-0000-00000000d4af', '{0}', 'note to self'), \
             ('00000000-0000-0000-0000-0000000000b1', '{1}', 'nice');",
            ada.id, bob.id
        ))
        .await
        .expect("inserting the comments");

    let as_bob = app.as_request_role("app_user", &bob.id).await;
    let posts =
        as_bob.query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT count(*) FROM post".to_owned())).await;
    assert_eq!(
        posts.ok().flatten().and_then(|r| r.try_get_by_index::<i64>(0).ok()),
        Some(1),
        "Bob sees the published post only"
    );
    let comments = as_bob
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT count(*) FROM comment".to_owned()))
        .await;
    assert_eq!(
        comments.ok().flatten().and_then(|r| r.try_get_by_index::<i64>(0).ok()),
        Some(1),
        "and only its comment"
    );
    let on_draft = as_bob
        .execute_unprepared(&format!("INSERT INTO comment (post_id, author_id, body) VALUES ('00000000-0000-0000-0000-00000000d4af', '{}', 'hi')", bob.id))
        .await;
    assert!(on_draft.is_err(), "no comments on a draft he cannot see");
    drop(as_bob);

    // Carol may not delete Bob's comment; Ada, the post's author, may.
    let as_carol = app.as_request_role("app_user", &carol.id).await;
    let deleted =
        as_carol.execute_unprepared("DELETE FROM comment WHERE body = 'nice'").await.map(|r| r.rows_affected());
    assert_eq!(deleted.ok(), Some(0));
    drop(as_carol);
    let as_ada = app.as_request_role("app_user", &ada.id).await;
    let deleted = as_ada.execute_unprepared("DELETE FROM comment WHERE body = 'nice'").await.map(|r| r.rows_affected());
    assert_eq!(deleted.ok(), Some(1));
    drop(as_ada);

    let anon = app.as_request_role("app_anon", "").await;
    assert!(
        anon.query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT count(*) FROM post".to_owned()))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_user_cannot_run_someone_elses_routine_or_forge_stats() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let routine = routine_of(&app, &ada).await;
    let as_bob = app.as_request_role("app_user", &bob.id).await;
    let run = as_bob.execute_unprepared(&format!("INSERT INTO routine_run (routine_id) VALUES ('{routine}')")).await;
    assert!(run.err().map(|e| e.to_string()).unwrap_or_default().contains("row-level security"));
    drop(as_bob);
    let as_bob = app.as_request_role("app_user", &bob.id).await;
    let forged = as_bob
        .execute_unprepared(&format!(
            "INSERT INTO user_stats (user_id, total_tokens_earned) VALUES ('{}', 1000000)",
            bob.id
        ))
        .await;
    assert!(forged.is_err(), "stats are written by the database only");
}
