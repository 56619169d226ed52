//! Row-level security, through the API and in PostgreSQL itself.

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::json;
use tests::{TestApp, TestUser, error_code};

async fn review_by(app: &TestApp, user: &TestUser, place: &str) -> String {
    let data = app
        .data(
            Some(&user.token),
            "mutation($p: ID!) { createReview(input: {placeId: $p, rating: 4, comment: \"mine\"}) { review { rowId } } }",
            json!({ "p": place }),
        )
        .await;
    data["createReview"]["review"]["rowId"].as_str().unwrap_or_default().to_owned()
}

async fn two_users_and_a_review(app: &TestApp) -> (TestUser, TestUser, String) {
    app.insert_place("p1", "cafe", 38.7, -9.1, Some(4.0), Some(10)).await;
    app.insert_place("p2", "cafe", 38.7, -9.1, Some(4.0), Some(10)).await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let review = review_by(app, &ada, "p1").await;
    (ada, bob, review)
}

#[tokio::test]
async fn user_b_cannot_read_update_or_delete_user_a_reviews_through_the_api() {
    let app = TestApp::spawn().await;
    let (ada, bob, review) = two_users_and_a_review(&app).await;

    let bobs = app.data(Some(&bob.token), "{ myReviews { totalCount } }", json!({})).await;
    assert_eq!(bobs["myReviews"]["totalCount"], 0);
    let adas = app.data(Some(&ada.token), "{ myReviews { totalCount edges { node { rowId } } } }", json!({})).await;
    assert_eq!(adas["myReviews"]["edges"][0]["node"]["rowId"], review.as_str());

    // Guessing ids: every id up to well past Ada's is NOT_FOUND for Bob.
    let last: i64 = review.parse().unwrap_or(1);
    for id in 1..=last + 3 {
        let update = app
            .graphql(
                Some(&bob.token),
                "mutation($id: ID!) { updateReview(input: {id: $id, rating: 0}) { review { id } } }",
                json!({ "id": id.to_string() }),
            )
            .await;
        assert_eq!(error_code(&update), "NOT_FOUND", "update {id}: {update}");
        let delete = app
            .graphql(
                Some(&bob.token),
                "mutation($id: ID!) { deleteReview(input: {id: $id}) { review { id } } }",
                json!({ "id": id.to_string() }),
            )
            .await;
        assert_eq!(error_code(&delete), "NOT_FOUND", "delete {id}: {delete}");
    }
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM review WHERE id = {review} AND rating = 4")).await,
        1,
        "Ada's review is untouched"
    );
}

#[tokio::test]
async fn user_b_cannot_see_or_change_user_a_preferences() {
    let app = TestApp::spawn().await;
    let (ada, bob, _) = two_users_and_a_review(&app).await;
    app.data(
        Some(&ada.token),
        "mutation { setPreference(input: {category: \"cafe\", rating: 5}) { preference { id } } }",
        json!({}),
    )
    .await;

    assert_eq!(
        app.data(Some(&bob.token), "{ myPreferences { category } }", json!({})).await["myPreferences"],
        json!([])
    );
    let delete = app
        .graphql(
            Some(&bob.token),
            "mutation { deletePreference(input: {category: \"cafe\"}) { preference { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&delete), "NOT_FOUND");
    // Bob's own "cafe" preference is his, not a takeover of Ada's row.
    app.data(
        Some(&bob.token),
        "mutation { setPreference(input: {category: \"cafe\", rating: 0}) { preference { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM preference WHERE user_id = '{}' AND rating = 5", ada.id)).await,
        1
    );
}

#[tokio::test]
async fn the_database_denies_user_b_even_when_the_resolver_is_bypassed() {
    let app = TestApp::spawn().await;
    let (ada, bob, review) = two_users_and_a_review(&app).await;
    app.data(
        Some(&ada.token),
        "mutation { setPreference(input: {category: \"cafe\", rating: 5}) { preference { id } } }",
        json!({}),
    )
    .await;

    let tx = app.as_request_role("app_user", &bob.id).await;
    let count = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_owned());
    let visible = tx
        .query_one_raw(count("SELECT count(*) FROM review"))
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get_by_index::<i64>(0).ok());
    assert_eq!(visible, Some(0), "Bob sees none of Ada's reviews");
    let prefs = tx
        .query_one_raw(count("SELECT count(*) FROM preference"))
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get_by_index::<i64>(0).ok());
    assert_eq!(prefs, Some(0));
    let users = tx
        .query_one_raw(count("SELECT count(*) FROM users"))
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get_by_index::<i64>(0).ok());
    assert_eq!(users, Some(1), "Bob sees only his own account");
    let updated = tx
        .execute_unprepared(&format!("UPDATE review SET rating = 0 WHERE id = {review}"))
        .await
        .map(|r| r.rows_affected());
    assert_eq!(updated.ok(), Some(0));
    let deleted =
        tx.execute_unprepared(&format!("DELETE FROM review WHERE id = {review}")).await.map(|r| r.rows_affected());
    assert_eq!(deleted.ok(), Some(0));
    let deleted_prefs = tx.execute_unprepared("DELETE FROM preference").await.map(|r| r.rows_affected());
    assert_eq!(deleted_prefs.ok(), Some(0));
    // Writing a row in Ada's name is refused outright.
    let forged = tx
        .execute_unprepared(&format!("INSERT INTO review (user_id, place_id, rating) VALUES ('{}', 'p2', 1)", ada.id))
        .await;
    let message = forged.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("row-level security"), "{message}");
    drop(tx);

    assert_eq!(app.count(&format!("SELECT count(*) FROM review WHERE id = {review} AND rating = 4")).await, 1);
    assert_eq!(app.count("SELECT count(*) FROM preference").await, 1);
}

#[tokio::test]
async fn an_unset_user_id_on_a_pooled_connection_means_nobody() {
    let app = TestApp::spawn().await;
    two_users_and_a_review(&app).await;
    let tx = app.db.begin().await.expect("beginning a transaction");
    tx.execute_unprepared("SET LOCAL ROLE app_user").await.expect("running SET LOCAL ROLE");
    for sql in ["SELECT count(*) FROM review", "SELECT count(*) FROM users", "SELECT count(*) FROM preference"] {
        let row = tx.query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned())).await;
        let count = row
            .unwrap_or_else(|e| panic!("{sql} failed instead of matching nobody: {e}"))
            .and_then(|r| r.try_get_by_index::<i64>(0).ok());
        assert_eq!(count, Some(0), "{sql}");
    }
}

#[tokio::test]
async fn the_anonymous_role_reads_places_and_nothing_private() {
    let app = TestApp::spawn().await;
    two_users_and_a_review(&app).await;
    let tx = app.as_request_role("app_anon", "").await;
    let places =
        tx.query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT count(*) FROM place".to_owned())).await;
    assert_eq!(places.ok().flatten().and_then(|r| r.try_get_by_index::<i64>(0).ok()), Some(2));
    drop(tx);
    for table in ["review", "preference", "users"] {
        let tx = app.as_request_role("app_anon", "").await;
        let read = tx
            .query_one_raw(Statement::from_string(DbBackend::Postgres, format!("SELECT count(*) FROM {table}")))
            .await;
        assert!(read.is_err(), "anonymous may not read {table}");
    }
}

#[tokio::test]
async fn a_reader_reads_every_review_but_cannot_write() {
    let app = TestApp::spawn().await;
    let (_, _, review) = two_users_and_a_review(&app).await;
    let reader = app.sign_up_as("auditor", "reader").await;

    let tx = app.as_request_role("app_read", &reader.id).await;
    let seen =
        tx.query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT count(*) FROM review".to_owned())).await;
    assert_eq!(seen.ok().flatten().and_then(|r| r.try_get_by_index::<i64>(0).ok()), Some(1));
    drop(tx);

    let update = app
        .graphql(
            Some(&reader.token),
            "mutation($id: ID!) { updateReview(input: {id: $id, rating: 0}) { review { id } } }",
            json!({ "id": review }),
        )
        .await;
    assert_eq!(error_code(&update), "FORBIDDEN");
    let create = app
        .graphql(
            Some(&reader.token),
            "mutation { createReview(input: {placeId: \"p2\", rating: 3}) { review { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&create), "FORBIDDEN");
}

#[tokio::test]
async fn a_role_that_may_not_write_a_table_is_refused_its_deletes_before_any_row_is_looked_up() {
    let app = TestApp::spawn().await;
    let (_, _, review) = two_users_and_a_review(&app).await;
    let reader = app.sign_up_as("auditor", "reader").await;
    let delete = "mutation($id: ID!) { deleteReview(input: {id: $id}) { review { id } } }";

    // As update does: the role decides, whether or not the row exists.
    let existing = app.graphql(Some(&reader.token), delete, json!({ "id": review })).await;
    assert_eq!(error_code(&existing), "FORBIDDEN");
    let missing = app.graphql(Some(&reader.token), delete, json!({ "id": "987654321" })).await;
    assert_eq!(error_code(&missing), "FORBIDDEN", "not NOT_FOUND: the role check comes before the lookup");
    let anonymous = app.graphql(None, delete, json!({ "id": review })).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    assert_eq!(app.count("SELECT count(*) FROM review").await, 1, "the review is still there");
}

#[tokio::test]
async fn every_table_has_row_security_enabled_and_forced() {
    let app = TestApp::spawn().await;
    let unprotected = app
        .count("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT (c.relrowsecurity AND c.relforcerowsecurity)")
        .await;
    let tables = app.count("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'").await;
    assert!(tables >= 5, "users, place, review, preference, seaql_migrations");
    assert_eq!(unprotected, 0);
}

#[tokio::test]
async fn requests_log_in_as_a_role_that_is_not_superuser_and_owns_nothing() {
    let app = TestApp::spawn().await;
    let superuser =
        app.count("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'app\\_%' AND (rolsuper OR rolbypassrls)").await;
    assert_eq!(superuser, 0);
    let owned = app.count("SELECT count(*) FROM pg_tables WHERE tableowner LIKE 'app\\_%'").await;
    assert_eq!(owned, 0);
    // And the server really is connected as it.
    let logins = app
        .count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND usename = 'app_authenticator'",
            app.database
        ))
        .await;
    assert!(logins >= 1, "the server's pool logs in as app_authenticator");
}

#[tokio::test]
async fn one_failing_field_rolls_back_the_whole_request() {
    let app = TestApp::spawn().await;
    let (_, bob, first_review) = two_users_and_a_review(&app).await;
    let both = "mutation { a: createReview(input: {placeId: \"p1\", rating: 3}) { review { id } } b: createReview(input: {placeId: \"p2\", rating: 9}) { review { id } } }";

    let body = app.graphql(Some(&bob.token), both, json!({})).await;

    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM review WHERE user_id = '{}'", bob.id)).await,
        0,
        "nothing kept"
    );
    // The first field did insert (it used up an id) before the rollback.
    let next = review_by(&app, &bob, "p1").await;
    assert_eq!(next.parse::<i64>().ok(), first_review.parse::<i64>().ok().map(|id| id + 2));
}

#[tokio::test]
async fn no_request_role_can_read_a_password_hash_not_even_an_admin() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let ada = app.sign_up("ada").await;
    for (role, user) in [("app_user", &ada), ("app_read", &admin), ("app_service", &admin), ("app_admin", &admin)] {
        let tx = app.as_request_role(role, &user.id).await;
        let hash =
            tx.query_all_raw(Statement::from_string(DbBackend::Postgres, "SELECT password_hash FROM users".to_owned()));
        let message = hash.await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("permission denied"), "{role}: {message}");
        drop(tx);
        // Every other column stays readable, as row-level security allows.
        let tx = app.as_request_role(role, &user.id).await;
        let rows = tx
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT id, email, username, full_name, role, is_active, created_at, last_login FROM users".to_owned(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        assert_eq!(rows.len(), if role == "app_user" { 1 } else { 2 }, "{role}");
    }
    // Signing in, which needs the hash, still works.
    let data = app
        .data(
            None,
            "mutation($l: String!) { signIn(input: {login: $l, password: \"password-ada\"}) { user { rowId } } }",
            json!({ "l": "ada" }),
        )
        .await;
    assert_eq!(data["signIn"]["user"]["rowId"], ada.id.as_str());
}

/// One rule for every table: a row you may see but not change answers
/// FORBIDDEN (you can act on it: ask someone who may); a row you may not
/// see answers NOT_FOUND, exactly like one that does not exist.
#[tokio::test]
async fn a_row_you_see_but_may_not_change_is_forbidden_and_one_you_cannot_see_is_not_found() {
    let app = TestApp::spawn().await;
    let (ada, bob, review) = two_users_and_a_review(&app).await;
    let reader = app.sign_up_as("rita", "reader").await;
    let service = app.sign_up_as("bot", "service").await;
    let update_review = "mutation($id: ID!) { updateReview(input: {id: $id, rating: 1}) { review { id } } }";
    let delete_review = "mutation($id: ID!) { deleteReview(input: {id: $id}) { review { id } } }";
    for query in [update_review, delete_review] {
        let seen = app.graphql(Some(&reader.token), query, json!({ "id": review })).await;
        assert_eq!(error_code(&seen), "FORBIDDEN", "a reader sees every review: {seen}");
        let unseen = app.graphql(Some(&bob.token), query, json!({ "id": review })).await;
        assert_eq!(error_code(&unseen), "NOT_FOUND", "bob does not see ada's review: {unseen}");
    }

    let routine = app
        .data(
            Some(&ada.token),
            "mutation { createRoutine(input: {name: \"r\", steps: [{action: \"swap\"}], tokensPerRun: 1}) { routine { id } } }",
            json!({}),
        )
        .await["createRoutine"]["routine"]["id"]
        .clone();
    let rename = "mutation($id: ID!) { updateRoutine(input: {id: $id, name: \"x\"}) { routine { id } } }";
    let by_service = app.graphql(Some(&service.token), rename, json!({ "id": routine })).await;
    assert_eq!(error_code(&by_service), "FORBIDDEN", "services read routines but do not edit them: {by_service}");
    let by_bob = app.graphql(Some(&bob.token), rename, json!({ "id": routine })).await;
    assert_eq!(error_code(&by_bob), "NOT_FOUND", "{by_bob}");

    let create_post =
        "mutation($p: Boolean) { createPost(input: {title: \"t\", body: \"b\", published: $p}) { post { id } } }";
    let published =
        app.data(Some(&ada.token), create_post, json!({ "p": true })).await["createPost"]["post"]["id"].clone();
    let draft =
        app.data(Some(&ada.token), create_post, json!({ "p": false })).await["createPost"]["post"]["id"].clone();
    let delete_post = "mutation($id: ID!) { deletePost(input: {id: $id}) { post { id } } }";
    let seen = app.graphql(Some(&bob.token), delete_post, json!({ "id": published })).await;
    assert_eq!(error_code(&seen), "FORBIDDEN", "{seen}");
    let unseen = app.graphql(Some(&bob.token), delete_post, json!({ "id": draft })).await;
    assert_eq!(error_code(&unseen), "NOT_FOUND", "{unseen}");

    assert_eq!(app.count("SELECT count(*) FROM review").await, 1, "nothing was changed");
    assert_eq!(app.count("SELECT count(*) FROM post").await, 2);
}

#[tokio::test]
async fn an_admin_s_own_lists_show_only_their_own_rows_though_they_read_everyone_s() {
    let app = TestApp::spawn().await;
    let (ada, _bob, _adas_review) = two_users_and_a_review(&app).await;
    let root = app.sign_up_as("root", "admin").await;
    let roots_review = review_by(&app, &root, "p2").await;
    for user in [&ada, &root] {
        let prefer = "mutation { setPreference(input: {category: \"cafe\", rating: 5}) { preference { id } } }";
        app.data(Some(&user.token), prefer, json!({})).await;
        let post = "mutation { createPost(input: {title: \"t\", published: true}) { post { id } } }";
        app.data(Some(&user.token), post, json!({})).await;
    }

    let data = app
        .data(
            Some(&root.token),
            "{ myReviews { nodes { rowId } } withPlaces: myReviews { nodes { rowId place { name } } }
               myPreferences { userId } myPosts { totalCount } posts { totalCount } users { totalCount } }",
            json!({}),
        )
        .await;

    assert_eq!(data["myReviews"]["nodes"], json!([{ "rowId": roots_review }]));
    assert_eq!(data["withPlaces"]["nodes"], json!([{ "rowId": roots_review, "place": { "name": "Place p2" } }]));
    assert_eq!(data["myPreferences"], json!([{ "userId": root.id }]));
    assert_eq!(data["myPosts"]["totalCount"], 1);
    assert_eq!(data["posts"]["totalCount"], 2, "an admin reads every post");
    assert_eq!(data["users"]["totalCount"], 3, "and every account");
}
