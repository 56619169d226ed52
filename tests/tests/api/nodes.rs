//! Global object identification: `id` is a global id of every refetchable
//! type, `node`/`nodes` refetch by it under the same visibility as each
//! type's own lookup, and id arguments take the global id or the raw key.
//! Rows are written with SQL (as the database owner) so these tests depend
//! on no mutation's shape.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tests::{TestApp, TestUser, error_code};

/// The global id the server should give the row `raw` of `type_name`.
fn global(type_name: &str, raw: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{type_name}:{raw}"))
}

/// One row of every refetchable type, all of `user`'s (the project is
/// public, the place too): `(GraphQL type, raw key)`.
async fn one_of_each(app: &TestApp, user: &TestUser, place: &str) -> Vec<(&'static str, String)> {
    let u = &user.id;
    app.insert_place(place, "cafe", 38.7, -9.1, Some(4.0), Some(10)).await;
    let review = app
        .text(&format!(
            "INSERT INTO review (user_id, place_id, rating) VALUES ('{u}', '{place}', 4) RETURNING id::text"
        ))
        .await;
    let preference = app
        .text(&format!(
            "INSERT INTO preference (user_id, category, rating) VALUES ('{u}', 'cafe-{place}', 3) RETURNING id::text"
        ))
        .await;
    let routine = app.text(&format!("INSERT INTO routine (user_id, name, steps, tokens_per_run) VALUES ('{u}', 'farm', '[]', 5) RETURNING id::text"))
    .await;
    let run = app
        .text(&format!("INSERT INTO routine_run (routine_id, user_id) VALUES ('{routine}', '{u}') RETURNING id::text"))
        .await;
    let project = app
        .text(
            "INSERT INTO airdrop_project (name, start_date, end_date, total_token_allocation) \
         VALUES ('drop', '2026-01-01', '2026-12-31', 1000) RETURNING id::text",
        )
        .await;
    let participation = app.text(&format!("INSERT INTO user_airdrop_participation (user_id, project_id) VALUES ('{u}', '{project}') RETURNING id::text"))
    .await;
    let post = app.text(&format!("INSERT INTO post (author_id, title, body, published) VALUES ('{u}', 'draft', 'b', false) RETURNING id::text"))
    .await;
    let comment = app
        .text(&format!(
            "INSERT INTO comment (post_id, author_id, body) VALUES ('{post}', '{u}', 'c') RETURNING id::text"
        ))
        .await;
    vec![
        ("User", user.id.clone()),
        ("Place", place.to_owned()),
        ("Review", review),
        ("Preference", preference),
        ("Routine", routine),
        ("RoutineRun", run),
        ("AirdropProject", project),
        ("Participation", participation),
        ("Post", post),
        ("Comment", comment),
    ]
}

const NODE: &str = "query($id: ID!) { node(id: $id) { __typename id ...Keys } }
fragment Keys on Node {
  ... on User { rowId } ... on Place { rowId } ... on Review { rowId } ... on Preference { rowId }
  ... on Routine { rowId } ... on RoutineRun { rowId } ... on AirdropProject { rowId stats { participants } }
  ... on Participation { rowId } ... on Post { rowId } ... on Comment { rowId }
}";

const NODES: &str = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id ...Keys } }
fragment Keys on Node {
  ... on Review { rowId } ... on Post { rowId } ... on Place { rowId } ... on Preference { rowId }
}";

#[tokio::test]
async fn a_node_of_each_of_the_ten_types_refetches_by_the_id_it_was_served_with() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let rows = one_of_each(&app, &ada, "p1").await;
    assert_eq!(rows.len(), 10);

    for (type_name, raw) in &rows {
        let id = global(type_name, raw);
        let data = app.data(Some(&ada.token), NODE, json!({ "id": id })).await;
        let node = &data["node"];
        assert_eq!(node["__typename"], *type_name, "{data}");
        assert_eq!(node["id"], id.as_str(), "the id it was served with: {data}");
        assert_eq!(node["rowId"], raw.as_str(), "{data}");
    }
    let project = app.data(Some(&ada.token), NODE, json!({ "id": global("AirdropProject", &rows[6].1) })).await;
    assert_eq!(project["node"]["stats"]["participants"], 1, "a project refetches with its totals");

    // The id a type's own fields serve is the same global id.
    let me = app.data(Some(&ada.token), "{ me { id rowId } }", json!({})).await;
    assert_eq!(me["me"], json!({ "id": global("User", &ada.id), "rowId": ada.id }));
}

#[tokio::test]
async fn another_users_private_row_is_null_through_node_and_nodes() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let adas = one_of_each(&app, &ada, "p1").await;
    let bobs_review = app
        .text(&format!(
            "INSERT INTO review (user_id, place_id, rating) VALUES ('{}', 'p1', 2) RETURNING id::text",
            bob.id
        ))
        .await;

    for (type_name, raw) in &adas {
        let data = app.data(Some(&bob.token), NODE, json!({ "id": global(type_name, raw) })).await;
        let public = matches!(*type_name, "Place" | "AirdropProject");
        assert_eq!(data["node"].is_null(), !public, "{type_name} as Bob sees it: {data}");
    }
    let ids = [global("Review", &adas[2].1), global("Review", &bobs_review), global("Post", &adas[8].1)];
    let data = app.data(Some(&bob.token), NODES, json!({ "ids": ids })).await;
    assert_eq!(data["nodes"][0], Value::Null, "Ada's review: {data}");
    assert_eq!(data["nodes"][1]["rowId"], bobs_review.as_str(), "Bob's own: {data}");
    assert_eq!(data["nodes"][2], Value::Null, "Ada's draft: {data}");
    let anonymous = app.data(None, NODE, json!({ "id": global("User", &ada.id) })).await;
    assert_eq!(anonymous["node"], Value::Null);
}

#[tokio::test]
async fn ids_of_two_types_with_the_same_raw_key_differ() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let rows = one_of_each(&app, &ada, "p1").await;
    let (review, preference) = (&rows[2].1, &rows[3].1);
    assert_eq!(review, preference, "a fresh database numbers both from 1");

    let ids = [global("Review", review), global("Preference", preference)];
    assert_ne!(ids[0], ids[1]);
    let data = app.data(Some(&ada.token), NODES, json!({ "ids": ids })).await;
    assert_eq!(data["nodes"][0]["__typename"], "Review", "{data}");
    assert_eq!(data["nodes"][1]["__typename"], "Preference", "{data}");
    assert_eq!(data["nodes"][0]["rowId"], data["nodes"][1]["rowId"]);
}

#[tokio::test]
async fn nodes_keeps_the_order_asked_with_null_where_nothing_is_found() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let rows = one_of_each(&app, &ada, "p1").await;
    app.insert_place("p2", "bar", 38.7, -9.1, None, None).await;
    let ids = [
        global("Post", &rows[8].1),
        global("Place", "p2"),
        global("Review", "999999"),
        global("Review", &rows[2].1),
        global("Place", "p1"),
        global("Post", &rows[8].1),
    ];
    let data = app.data(Some(&ada.token), NODES, json!({ "ids": ids })).await;
    let got: Vec<Value> = data["nodes"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| if n.is_null() { Value::Null } else { json!([n["__typename"], n["rowId"]]) })
        .collect();
    assert_eq!(
        got,
        [
            json!(["Post", rows[8].1]),
            json!(["Place", "p2"]),
            Value::Null,
            json!(["Review", rows[2].1]),
            json!(["Place", "p1"]),
            json!(["Post", rows[8].1]),
        ]
    );
    let empty = app.data(Some(&ada.token), NODES, json!({ "ids": [] })).await;
    assert_eq!(empty["nodes"], json!([]));
}

#[tokio::test]
async fn a_global_id_of_the_wrong_type_or_a_malformed_one_is_bad_user_input() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let rows = one_of_each(&app, &ada, "p1").await;
    let routine = global("Routine", &rows[4].1);

    let body =
        app.graphql(Some(&ada.token), "query($id: ID!) { post(id: $id) { id } }", json!({ "id": routine })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "id");
    assert_eq!(body["errors"][0]["message"], "id is the id of a Routine, not a Post");

    let runs = "query($r: ID!) { runs(routineId: $r) { totalCount } }";
    let body = app.graphql(Some(&ada.token), runs, json!({ "r": global("Post", &rows[8].1) })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "a foreign-key argument checks the type too: {body}");
    let body = app.graphql(Some(&ada.token), runs, json!({ "r": routine })).await;
    assert_eq!(body["data"]["runs"]["totalCount"], 1, "{body}");

    for bad in ["not-an-id", "", &rows[4].1, &global("Review", "x")] {
        let body = app.graphql(Some(&ada.token), NODE, json!({ "id": bad })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{bad:?}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "id", "{body}");
    }
    let body = app.graphql(Some(&ada.token), NODES, json!({ "ids": [routine, "nope"] })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "ids");

    let too_many: Vec<String> = (1..=101).map(|i| global("Review", &i.to_string())).collect();
    let body = app.graphql(Some(&ada.token), NODES, json!({ "ids": too_many })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(body["errors"][0]["message"], "ids takes at most 100 ids, not 101");
}

#[tokio::test]
async fn a_raw_key_and_a_global_id_both_work_in_a_lookup_and_an_update() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let rows = one_of_each(&app, &ada, "p1").await;
    let raw = &rows[4].1;
    let lookup = "query($id: ID!) { routine(id: $id) { id rowId name } }";
    let update =
        "mutation($id: ID!, $n: String!) { updateRoutine(input: {id: $id, name: $n}) { routine { id name } } }";

    for (id, name) in [(raw.clone(), "by key"), (global("Routine", raw), "by global id")] {
        let found = app.data(Some(&ada.token), lookup, json!({ "id": id })).await;
        assert_eq!(found["routine"]["rowId"], raw.as_str(), "{found}");
        assert_eq!(found["routine"]["id"], global("Routine", raw), "{found}");
        let updated = app.data(Some(&ada.token), update, json!({ "id": id, "n": name })).await;
        assert_eq!(updated["updateRoutine"]["routine"]["name"], name, "{updated}");
    }
    let place =
        app.data(None, "query($id: ID!) { place(id: $id) { rowId } }", json!({ "id": global("Place", "p1") })).await;
    assert_eq!(place["place"]["rowId"], "p1", "a text key inside a global id");
}

#[tokio::test]
async fn nodes_with_twenty_ids_of_two_types_runs_one_select_per_type() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        // One review per place and user: ten places.
        app.insert_place(&format!("p{i}"), "cafe", 38.7, -9.1, None, None).await;
        let review = app
            .text(&format!(
                "INSERT INTO review (user_id, place_id, rating) VALUES ('{}', 'p{i}', 3) RETURNING id::text",
                ada.id
            ))
            .await;
        let post = app
            .text(&format!(
                "INSERT INTO post (author_id, title, body) VALUES ('{}', 't{i}', 'b') RETURNING id::text",
                ada.id
            ))
            .await;
        ids.push(global("Review", &review));
        ids.push(global("Post", &post));
    }
    app.db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.expect("extension");
    // Deltas, not a reset: pg_stat_statements is shared with tests running
    // at the same time in other databases.
    let (reviews, posts) = (r#"SELECT %FROM "review"%"#, r#"SELECT %FROM "post"%"#);
    let before = (app.statement_calls(reviews).await, app.statement_calls(posts).await);

    let data = app.data(Some(&ada.token), NODES, json!({ "ids": ids })).await;
    let found = data["nodes"].as_array().expect("a list");
    assert_eq!(found.len(), 20, "{data}");
    assert!(found.iter().all(|n| !n["rowId"].is_null()), "all twenty found: {data}");

    let after = (app.statement_calls(reviews).await, app.statement_calls(posts).await);
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1), "one select per type, not one per id");
}
