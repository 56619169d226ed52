//! Keyset pagination: cursors that carry the sort key, pages that stay put
//! under concurrent writes, `last`/`before`, and a `totalCount` that costs
//! nothing unless it is selected.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use tests::{TestApp, error_code};

const PLACES: &str = "query($first: Int, $after: String, $last: Int, $before: String, $orderBy: PlaceOrder) {
  places(first: $first, after: $after, last: $last, before: $before, orderBy: $orderBy) {
    edges { cursor node { rowId } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}";

fn ids(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .map(|edges| edges.iter().map(|e| e["node"]["rowId"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

/// Places `p00`..: ratings with ties and NULLs, so every ordering has ties
/// to break and RATING_DESC has an unrated tail.
async fn places_with_ties_and_nulls(app: &TestApp, how_many: usize) {
    let rows: Vec<String> = (0..how_many)
        .map(|i| {
            let rating = match i % 4 {
                0 => "NULL".to_owned(),
                1 => "4.5".to_owned(),
                _ => format!("{}.0", i % 5),
            };
            format!(
                "('p{i:02}', 'Place {}', 38.7, -9.1, 'cafe', {rating}, now() - interval '{} minutes')",
                i % 3,
                i % 2
            )
        })
        .collect();
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO place (id, name, lat, lng, category, rating, created_at) VALUES {}",
            rows.join(", ")
        ))
        .await
        .expect("insert places");
}

/// The ids in the order PostgreSQL gives for `order_by` (as the superuser).
async fn expected(app: &TestApp, order_by: &str) -> Vec<String> {
    app.db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT id FROM place ORDER BY {order_by}"),
        ))
        .await
        .expect("ordered ids")
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("an id"))
        .collect()
}

/// Every page forward with `first: size`, the ids in order.
async fn walk_forward(app: &TestApp, order: &str, size: i32) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app.data(None, PLACES, json!({ "first": size, "after": after, "orderBy": order })).await;
        seen.extend(ids(&page["places"]));
        assert_eq!(page["places"]["pageInfo"]["hasPreviousPage"], !after.is_null(), "{order}");
        if page["places"]["pageInfo"]["hasNextPage"] != true {
            return seen;
        }
        after = page["places"]["pageInfo"]["endCursor"].clone();
    }
}

/// Every page backward from the end with `last: size`, the ids in order.
async fn walk_backward(app: &TestApp, order: &str, size: i32) -> Vec<String> {
    let mut pages = Vec::new();
    let mut before = Value::Null;
    loop {
        let page = app.data(None, PLACES, json!({ "last": size, "before": before, "orderBy": order })).await;
        assert_eq!(page["places"]["pageInfo"]["hasNextPage"], !before.is_null(), "{order}");
        pages.push(ids(&page["places"]));
        if page["places"]["pageInfo"]["hasPreviousPage"] != true {
            break;
        }
        before = page["places"]["pageInfo"]["startCursor"].clone();
    }
    pages.into_iter().rev().flatten().collect()
}

async fn count_query_calls(app: &TestApp) -> i64 {
    // Not this query itself: pg_stat_statements keeps a statement's text
    // unnormalised (its pattern literal included) when its entry was
    // evicted between parsing and execution, which many tests at once do.
    app.count(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname = current_database() AND s.query ILIKE '%count(*) as num_items%' \
           AND s.query NOT ILIKE '%pg_stat_statements%'",
    )
    .await
}

#[tokio::test]
async fn the_count_query_runs_only_when_total_count_is_selected() {
    let app = TestApp::spawn().await;
    places_with_ties_and_nulls(&app, 5).await;
    app.db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.expect("extension");
    // Deltas, not a reset: pg_stat_statements is shared with tests running
    // at the same time in other databases.
    let start = count_query_calls(&app).await;

    let page =
        app.data(None, "{ places(first: 2) { edges { node { rowId } } pageInfo { hasNextPage } } }", json!({})).await;
    assert_eq!(ids(&page["places"]).len(), 2);
    assert_eq!(page["places"]["pageInfo"]["hasNextPage"], true, "exact without a count");
    assert_eq!(count_query_calls(&app).await, start, "no count without totalCount");

    let counted = app.data(None, "{ places(first: 2) { totalCount } }", json!({})).await;
    assert_eq!(counted["places"]["totalCount"], 5);
    assert_eq!(count_query_calls(&app).await, start + 1, "one count when selected");

    let in_fragment = app
        .data(None, "{ places(first: 1) { ...Total } } fragment Total on PlaceConnection { totalCount }", json!({}))
        .await;
    assert_eq!(in_fragment["places"]["totalCount"], 5);
    assert_eq!(count_query_calls(&app).await, start + 2, "selected through a fragment counts too");
}

#[tokio::test]
async fn keyset_pages_are_stable_under_concurrent_inserts() {
    let app = TestApp::spawn().await;
    places_with_ties_and_nulls(&app, 40).await;
    let original = expected(&app, "rating DESC NULLS LAST, id DESC").await;

    // Rows that sort before, between and after the original ones, inserted
    // while the client walks: from another task all along, and once between
    // every two pages so at least one lands before each cursor.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (app.db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let rating = ["5.0", "4.5", "2.0", "NULL"][n % 4];
                db.execute_unprepared(&format!(
                    "INSERT INTO place (id, name, lat, lng, rating) VALUES ('w{n:04}', 'New', 0, 0, {rating})"
                ))
                .await
                .expect("concurrent insert");
                n += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut after = Value::Null;
    for page_number in 0.. {
        let page = app.data(None, PLACES, json!({ "first": 3, "after": after })).await;
        seen.extend(ids(&page["places"]));
        if page["places"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["places"]["pageInfo"]["endCursor"].clone();
        app.db
            .execute_unprepared(&format!(
                "INSERT INTO place (id, name, lat, lng, rating) VALUES ('x{page_number:03}', 'Ahead', 0, 0, 5.0), ('z{page_number:03}', 'Between', 0, 0, 4.5)"
            ))
            .await
            .expect("insert between pages");
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");

    let originals: Vec<&String> = seen.iter().filter(|id| id.starts_with('p')).collect();
    assert_eq!(originals, original.iter().collect::<Vec<_>>(), "every original row once, in order");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no row repeated: {seen:?}");
}

#[tokio::test]
async fn last_and_before_walk_backwards_through_the_same_rows_as_forward() {
    let app = TestApp::spawn().await;
    places_with_ties_and_nulls(&app, 23).await;
    for (order, sql) in [
        ("RATING_DESC", "rating DESC NULLS LAST, id DESC"),
        ("NAME_ASC", "name, id"),
        ("CREATED_AT_DESC", "created_at DESC, id DESC"),
    ] {
        let all = expected(&app, sql).await;
        for size in [1, 4, 7] {
            assert_eq!(walk_forward(&app, order, size).await, all, "{order} forward by {size}");
            assert_eq!(walk_backward(&app, order, size).await, all, "{order} backward by {size}");
        }
    }
}

#[tokio::test]
async fn a_page_before_a_cursor_ends_just_before_it() {
    let app = TestApp::spawn().await;
    places_with_ties_and_nulls(&app, 12).await;
    let all = expected(&app, "rating DESC NULLS LAST, id DESC").await;
    let page = app.data(None, PLACES, json!({ "first": 6 })).await;
    let sixth = page["places"]["edges"][5]["cursor"].clone();

    let before = app.data(None, PLACES, json!({ "last": 2, "before": sixth })).await;
    assert_eq!(ids(&before["places"]), all[3..5]);
    assert_eq!(before["places"]["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(before["places"]["pageInfo"]["hasNextPage"], true);

    let last = app.data(None, PLACES, json!({ "last": 3 })).await;
    assert_eq!(ids(&last["places"]), all[9..], "last alone is the end of the list");
    assert_eq!(last["places"]["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn places_with_null_ratings_paginate_exactly() {
    let app = TestApp::spawn().await;
    for i in 0..9 {
        let rating = if i % 3 == 0 { Some(4.0) } else { None };
        app.insert_place(&format!("n{i}"), "cafe", 38.7, -9.1, rating, None).await;
    }
    let all = expected(&app, "rating DESC NULLS LAST, id DESC").await;
    assert_eq!(all[..3], ["n6", "n3", "n0"], "rated first");
    for size in [1, 2, 3, 4, 9, 10] {
        assert_eq!(walk_forward(&app, "RATING_DESC", size).await, all, "forward by {size}");
        assert_eq!(walk_backward(&app, "RATING_DESC", size).await, all, "backward by {size}");
    }
}

#[tokio::test]
async fn a_forged_or_foreign_cursor_is_bad_user_input_naming_its_argument() {
    let app = TestApp::spawn().await;
    places_with_ties_and_nulls(&app, 4).await;
    let by_name = app.data(None, PLACES, json!({ "first": 1, "orderBy": "NAME_ASC" })).await;
    let name_cursor = by_name["places"]["pageInfo"]["endCursor"].clone();
    let forge = |json: Value| URL_SAFE_NO_PAD.encode(json.to_string());
    let forged = [
        json!("not-a-cursor"),
        json!(URL_SAFE_NO_PAD.encode("o:5")),
        json!(forge(json!({ "v": 1, "o": "place.rating", "k": ["4.5", "p01"] }))),
        json!(forge(json!({ "v": 1, "o": "place.rating", "k": [4.5] }))),
        json!(forge(json!({ "v": 1, "o": "place.rating", "k": [4.5, 7] }))),
        json!(forge(json!({ "v": 1, "o": "place.newest", "k": ["yesterday", "p01"] }))),
        json!(forge(json!({ "v": 2, "o": "place.rating", "k": [4.5, "p01"] }))),
        json!("A".repeat(100_000)),
        name_cursor,
    ];
    for cursor in forged {
        for (field, args) in [("after", json!({ "after": cursor })), ("before", json!({ "before": cursor }))] {
            let body = app.graphql(None, PLACES, args).await;
            assert_eq!(error_code(&body), "BAD_USER_INPUT", "{cursor}: {body}");
            assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
        }
    }
    // A well-formed cursor with odd values is just a position: bound, never
    // spliced into SQL.
    let odd = forge(json!({ "v": 1, "o": "place.rating", "k": [1e308, "'; DROP TABLE place; --"] }));
    let body = app.graphql(None, PLACES, json!({ "after": odd })).await;
    assert_eq!(ids(&body["data"]["places"]).len(), 4, "everything rated sorts after 1e308: {body}");
    assert_eq!(app.count("SELECT count(*) FROM place").await, 4);
}

#[tokio::test]
async fn first_and_last_do_not_mix() {
    let app = TestApp::spawn().await;
    let both = app.graphql(None, PLACES, json!({ "first": 1, "last": 1 })).await;
    assert_eq!(error_code(&both), "BAD_USER_INPUT");
    assert_eq!(both["errors"][0]["extensions"]["field"], "last");
    let too_many = app.graphql(None, PLACES, json!({ "last": 101 })).await;
    assert_eq!(error_code(&too_many), "BAD_USER_INPUT");
    assert_eq!(too_many["errors"][0]["extensions"]["field"], "last");
}

#[tokio::test]
async fn every_connection_pages_forward_and_backward_by_its_cursors() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    for i in 0..5 {
        app.data(
            Some(&ada.token),
            "mutation($t: String!) { createPost(input: { title: $t, published: true }) { post { id } } }",
            json!({ "t": format!("post {i}") }),
        )
        .await;
    }
    // Same created_at for all: the tie-breaker alone orders them.
    app.db.execute_unprepared("UPDATE post SET created_at = '2026-01-01T00:00:00Z'").await.expect("tie");
    let query = "query($first: Int, $after: String, $last: Int, $before: String) {
      posts(first: $first, after: $after, last: $last, before: $before) {
        nodes { title } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    let titles = |v: &Value| -> Vec<String> {
        v["posts"]["nodes"].as_array().expect("nodes").iter().map(|n| n["title"].to_string()).collect()
    };
    let all = titles(&app.data(Some(&ada.token), query, json!({ "first": 10 })).await);
    assert_eq!(all.len(), 5);

    let first = app.data(Some(&ada.token), query, json!({ "first": 2 })).await;
    let second = app
        .data(Some(&ada.token), query, json!({ "first": 2, "after": first["posts"]["pageInfo"]["endCursor"] }))
        .await;
    assert_eq!([titles(&first), titles(&second)].concat(), all[..4]);
    let back = app
        .data(Some(&ada.token), query, json!({ "last": 3, "before": second["posts"]["pageInfo"]["endCursor"] }))
        .await;
    assert_eq!(titles(&back), all[..3]);
    assert_eq!(back["posts"]["pageInfo"]["hasPreviousPage"], false);

    let foreign =
        app.graphql(Some(&ada.token), query, json!({ "after": first["posts"]["pageInfo"]["endCursor"] })).await;
    assert!(foreign["errors"].is_null(), "its own cursor is fine: {foreign}");
    let users = app
        .graphql(
            Some(&ada.token),
            "query($a: String) { users(after: $a) { nodes { username } } }",
            json!({ "a": first["posts"]["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(error_code(&users), "BAD_USER_INPUT", "a post cursor is no user cursor");
    assert_eq!(users["errors"][0]["extensions"]["field"], "after");
}

#[tokio::test]
async fn my_reviews_with_their_places_is_one_statement_without_a_place_query() {
    let app = TestApp::spawn().await;
    places_with_ties_and_nulls(&app, 6).await;
    let ada = app.sign_up("ada").await;
    let review = "mutation($p: ID!) { createReview(input: { placeId: $p, rating: 3 }) { review { id } } }";
    for i in 0..6 {
        app.data(Some(&ada.token), review, json!({ "p": format!("p{i:02}") })).await;
    }
    app.db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.expect("extension");
    let place_alone = r#"%FROM "place"%"#;
    let joined = r#"%FROM "review" LEFT JOIN "place"%"#;
    let (places_before, joined_before) = (app.statement_calls(place_alone).await, app.statement_calls(joined).await);

    let page = app
        .data(
            Some(&ada.token),
            "{ myReviews(first: 4) { edges { cursor node { place { rowId name } } } nodes { place { name } } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    let places: Vec<&Value> =
        page["myReviews"]["edges"].as_array().expect("edges").iter().map(|e| &e["node"]["place"]["rowId"]).collect();
    assert_eq!(places, ["p05", "p04", "p03", "p02"], "newest review first, each with its place");
    assert_eq!(page["myReviews"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(app.statement_calls(place_alone).await, places_before, "no separate place query");
    assert_eq!(app.statement_calls(joined).await, joined_before + 1, "the page and its places in one statement");

    let next = app
        .data(
            Some(&ada.token),
            "query($a: String) { myReviews(first: 4, after: $a) { nodes { place { rowId } } } }",
            json!({ "a": page["myReviews"]["edges"][3]["cursor"] }),
        )
        .await;
    assert_eq!(next["myReviews"]["nodes"], json!([{ "place": { "rowId": "p01" } }, { "place": { "rowId": "p00" } }]));
}

const REVIEW_FIELDS: &str = "id rowId userId placeId rating comment createdAt updatedAt";
const PLACE_FIELDS: &str =
    "id rowId name lat lng types category rating userRatingsTotal description createdAt updatedAt";

/// [`places_with_ties_and_nulls`] with p01's nullable details set too, so
/// every column holds a value other than its type's default in some row
/// (a column read as its default would go unnoticed otherwise).
async fn places_with_every_column_set(app: &TestApp, how_many: usize) {
    places_with_ties_and_nulls(app, how_many).await;
    app.db
        .execute_unprepared(
            "UPDATE place SET types = 'cafe, food', user_ratings_total = 12, description = 'By the river' WHERE id = 'p01'",
        )
        .await
        .expect("place details");
}

#[tokio::test]
async fn a_page_of_reviews_with_their_places_reads_only_the_columns_asked_for_and_answers_as_the_row_loader_does() {
    let app = TestApp::spawn().await;
    places_with_every_column_set(&app, 3).await;
    let ada = app.sign_up("ada").await;
    let review = "mutation($p: ID!, $c: String) { createReview(input: { placeId: $p, rating: 3, comment: $c }) { review { id } } }";
    for (place, comment) in [("p00", Value::Null), ("p01", json!("Good coffee")), ("p02", json!("Loud"))] {
        app.data(Some(&ada.token), review, json!({ "p": place, "c": comment })).await;
    }
    app.db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.expect("extension");

    // Every field, joined, against the reviews without their places (whole
    // rows) and each place on its own (the row loader).
    let joined = app
        .data(
            Some(&ada.token),
            &format!("{{ myReviews(first: 3) {{ nodes {{ {REVIEW_FIELDS} place {{ {PLACE_FIELDS} }} }} }} }}"),
            json!({}),
        )
        .await;
    let alone = app
        .data(Some(&ada.token), &format!("{{ myReviews(first: 3) {{ nodes {{ {REVIEW_FIELDS} }} }} }}"), json!({}))
        .await;
    let joined = joined["myReviews"]["nodes"].as_array().expect("nodes").clone();
    assert_eq!(joined.len(), 3);
    for (with_place, without) in joined.iter().zip(alone["myReviews"]["nodes"].as_array().expect("nodes")) {
        let mut review = with_place.clone();
        let place = review.as_object_mut().and_then(|r| r.remove("place")).expect("a place");
        assert_eq!(&review, without, "the review's own fields");
        let loaded = app
            .data(
                None,
                &format!("query($id: ID!) {{ place(id: $id) {{ {PLACE_FIELDS} }} }}"),
                json!({ "id": place["id"] }),
            )
            .await;
        assert_eq!(place, loaded["place"], "the place as the row loader reads it");
    }
    assert_eq!(joined[1]["place"]["types"], json!(["cafe", "food"]));
    assert_eq!(joined[1]["place"]["description"], "By the river");

    // Fields asked for through aliases and fragments are read too, by the
    // joined statement (not the row loader).
    let joined_statement = r#"%FROM "review" LEFT JOIN "place"%"#;
    let before = app.statement_calls(joined_statement).await;
    let shaped = app
        .data(
            Some(&ada.token),
            "{ myReviews(first: 3) { edges { node { ...R } } } } \
             fragment R on Review { said: comment place { ... on Place { about: description n: userRatingsTotal } } }",
            json!({}),
        )
        .await;
    let second = &shaped["myReviews"]["edges"][1]["node"];
    assert_eq!(second["said"], joined[1]["comment"]);
    assert_eq!(second["place"]["about"], "By the river");
    assert_eq!(second["place"]["n"], 12);
    assert_eq!(app.statement_calls(joined_statement).await, before + 1, "the fragment's place came with the page");

    // A narrow selection reads the keys and its own columns, nothing else.
    let narrow = r#"SELECT "review"."id", "review"."user_id", "review"."place_id", "review"."comment", "place"."id", "place"."name" FROM "review" LEFT JOIN "place"%"#;
    let before = app.statement_calls(narrow).await;
    let page =
        app.data(Some(&ada.token), "{ myReviews(first: 3) { nodes { comment place { name } } } }", json!({})).await;
    assert_eq!(page["myReviews"]["nodes"][2]["place"]["name"], "Place 0");
    assert_eq!(app.statement_calls(narrow).await, before + 1, "the statement lists only those columns");
}

#[tokio::test]
async fn a_page_of_places_reads_only_the_columns_asked_for_and_answers_as_the_row_loader_does() {
    let app = TestApp::spawn().await;
    places_with_every_column_set(&app, 6).await;
    app.db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.expect("extension");

    // In every ordering: every field against the row loader's place, and
    // the cursors (the ordering's columns) whatever the selection asks.
    let page = |fields: &str| {
        format!(
            "query($o: PlaceOrder) {{ places(first: 6, orderBy: $o) {{ edges {{ cursor node {{ {fields} }} }} }} }}"
        )
    };
    for order in ["RATING_DESC", "NAME_ASC", "CREATED_AT_DESC"] {
        let whole = app.data(None, &page(PLACE_FIELDS), json!({ "o": order })).await;
        let narrow = app.data(None, &page("rowId"), json!({ "o": order })).await;
        let (whole, narrow) = (&whole["places"]["edges"], &narrow["places"]["edges"]);
        assert_eq!(whole.as_array().map(Vec::len), Some(6), "{order}");
        assert_eq!(narrow.as_array().map(Vec::len), Some(6), "{order}");
        for (edge, narrow_edge) in whole.as_array().expect("edges").iter().zip(narrow.as_array().expect("edges")) {
            let loaded = app
                .data(
                    None,
                    &format!("query($id: ID!) {{ place(id: $id) {{ {PLACE_FIELDS} }} }}"),
                    json!({ "id": edge["node"]["id"] }),
                )
                .await;
            assert_eq!(edge["node"], loaded["place"], "{order}: the place as the row loader reads it");
            assert_eq!(edge["node"]["rowId"], narrow_edge["node"]["rowId"], "{order}: the same order");
            assert_eq!(edge["cursor"], narrow_edge["cursor"], "{order}: the same cursor for a narrow selection");
        }
    }

    // Fields asked for through aliases and fragments are read too.
    let shaped = app
        .data(
            None,
            "{ places(first: 6, orderBy: NAME_ASC) { nodes { ...P } } } \
             fragment P on Place { rowId ... on Place { about: description n: userRatingsTotal t: types } }",
            json!({}),
        )
        .await;
    let p01 = shaped["places"]["nodes"].as_array().expect("nodes").iter().find(|p| p["rowId"] == "p01").cloned();
    let p01 = p01.expect("p01 on the page");
    assert_eq!((&p01["about"], &p01["n"], &p01["t"]), (&json!("By the river"), &json!(12), &json!(["cafe", "food"])));

    // Fields split between `nodes` and `edges { node }`, on a page backward
    // from a cursor: both sets are read.
    let first = app.data(None, &page("rowId"), json!({ "o": "NAME_ASC" })).await;
    let split = app
        .data(
            None,
            "query($b: String) { places(last: 4, before: $b, orderBy: NAME_ASC) { nodes { rowId name } edges { node { lat } } } }",
            json!({ "b": first["places"]["edges"][5]["cursor"] }),
        )
        .await;
    let nodes = split["places"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4);
    let expected_ids: Vec<&Value> =
        first["places"]["edges"].as_array().expect("edges")[1..5].iter().map(|e| &e["node"]["rowId"]).collect();
    assert_eq!(nodes.iter().map(|n| &n["rowId"]).collect::<Vec<_>>(), expected_ids, "the four before the cursor");
    assert!(nodes.iter().all(|n| n["name"].as_str().is_some_and(|name| name.starts_with("Place "))), "{nodes:?}");
    assert!(split["places"]["edges"].as_array().expect("edges").iter().all(|e| e["node"]["lat"] == 38.7), "{split}");

    // A narrow selection reads the key, the ordering's columns and its own
    // columns, nothing else.
    let narrow = r#"SELECT "place"."id", "place"."name", "place"."rating" FROM "place"%"#;
    let before = app.statement_calls(narrow).await;
    let names = app.data(None, "{ places(first: 3, orderBy: RATING_DESC) { nodes { name } } }", json!({})).await;
    // p01 and p05 tie at 4.5, the higher id first.
    assert_eq!(names["places"]["nodes"][0]["name"], "Place 2");
    assert_eq!(app.statement_calls(narrow).await, before + 1, "the statement lists only those columns");
}

#[tokio::test]
async fn a_deep_page_starts_at_its_cursor_in_the_index_instead_of_scanning_the_pages_before_it() {
    let app = TestApp::spawn().await;
    app.db
        .execute_unprepared(
            "INSERT INTO place (id, name, lat, lng, rating) \
             SELECT 'q' || lpad(i::text, 5, '0'), 'Place ' || i, 0, 0, CASE WHEN i % 7 = 0 THEN NULL ELSE (i % 50) / 10.0 END \
             FROM generate_series(1, 5000) i; ANALYZE place",
        )
        .await
        .expect("places");
    app.db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.expect("extension");
    let deep = app.data(None, PLACES, json!({ "first": 100 })).await;
    let mut after = deep["places"]["pageInfo"]["endCursor"].clone();
    for _ in 0..20 {
        let page = app.data(None, PLACES, json!({ "first": 100, "after": after })).await;
        after = page["places"]["pageInfo"]["endCursor"].clone();
    }

    // The statement the server ran for those pages, as PostgreSQL saw it.
    let statement = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT s.query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = current_database() AND s.query LIKE 'SELECT%FROM \"place\" WHERE%(\"place\".\"rating\", \"place\".\"id\") <%' AND s.query NOT LIKE '%pg_stat_statements%' \
             ORDER BY s.calls DESC LIMIT 1"
                .to_owned(),
        ))
        .await
        .expect("statement")
        .map(|row| row.try_get_by_index::<String>(0).expect("text"))
        .expect("the keyset page statement was recorded");
    // One connection for PREPARE and EXPLAIN (app.db is a pool).
    let tx = app.db.begin().await.expect("begin");
    tx.execute_unprepared(&format!("PREPARE deep_page AS {statement}")).await.expect("prepare");
    let plan: Vec<String> = tx
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "EXPLAIN EXECUTE deep_page(2.0, 'q02000', 101)".to_owned(),
        ))
        .await
        .expect("explain")
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("plan line"))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("idx_place_rating_keyset"), "{statement}\n{plan}");
    // The cursor's row comparison is the index condition (the statement
    // reads the ordering's columns and `rowId`'s, no others, so no cast of
    // the key appears).
    assert!(
        plan.contains(
            "Index Cond: ((rating IS NOT NULL) AND (ROW(rating, id) < ROW('2'::double precision, 'q02000'::text)))"
        ),
        "{plan}"
    );
    assert!(!plan.contains("Sort"), "no sort of the rows before the cursor: {plan}");
}

#[tokio::test]
async fn every_connection_field_refuses_a_page_too_large_naming_the_argument() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    // A post to hang the nested `comments` connection on (inserted as the
    // owner: what is checked is the page, not how posts are written).
    app.db
        .execute_unprepared(
            "INSERT INTO post (author_id, title, published) SELECT id, 't', true FROM users WHERE username = 'ada'",
        )
        .await
        .expect("a post");
    let fields = [
        "places(last: 101)",
        "myReviews(last: 101)",
        "posts(last: 101)",
        "myPosts(last: 101)",
        "myRoutines(last: 101)",
        "runs(routineId: \"00000000-0000-4000-8000-000000000000\", last: 101)",
        "airdropProjects(last: 101)",
        "users(last: 101)",
    ];
    let mut documents: Vec<(String, &str)> = fields
        .iter()
        .map(|f| (format!("{{ {f} {{ nodes {{ __typename }} }} }}"), f.split('(').next().unwrap_or(f)))
        .collect();
    documents
        .push(("{ posts(first: 1) { nodes { comments(last: 101) { nodes { __typename } } } } }".into(), "comments"));
    for (document, field) in &documents {
        let body = app.graphql(Some(&ada.token), document, json!({})).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{document}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "last", "{document}: {body}");
        let path = body["errors"][0]["path"].as_array().cloned().unwrap_or_default();
        assert_eq!(path.iter().rev().find(|p| p.is_string()), Some(&json!(field)), "{document}: {body}");
    }
}
