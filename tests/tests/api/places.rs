use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tests::{TestApp, error_code};

const PLACES: &str = "query($first: Int, $after: String, $category: String, $search: String, $orderBy: PlaceOrder) {
  places(first: $first, after: $after, category: $category, search: $search, orderBy: $orderBy) {
    totalCount
    edges { cursor node { rowId name rating } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}";

fn ids(data: &Value) -> Vec<String> {
    data["places"]["edges"]
        .as_array()
        .map(|edges| edges.iter().map(|e| e["node"]["rowId"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

async fn five_places(app: &TestApp) {
    app.insert_place("a", "cafe", 38.70, -9.14, Some(4.0), Some(10)).await;
    app.insert_place("b", "cafe", 38.71, -9.14, Some(5.0), Some(10)).await;
    app.insert_place("c", "museum", 38.72, -9.14, None, None).await;
    app.insert_place("d", "cafe", 38.73, -9.14, Some(3.0), Some(10)).await;
    app.insert_place("e", "bar", 38.74, -9.14, Some(4.5), Some(10)).await;
}

#[tokio::test]
async fn places_page_with_cursors_and_a_total_count() {
    let app = TestApp::spawn().await;
    five_places(&app).await;

    let first = app.data(None, PLACES, json!({ "first": 2 })).await;
    assert_eq!(first["places"]["totalCount"], 5);
    assert_eq!(ids(&first), ["b", "e"], "best rated first");
    assert_eq!(first["places"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["places"]["pageInfo"]["hasPreviousPage"], false);

    let after = first["places"]["pageInfo"]["endCursor"].clone();
    let second = app.data(None, PLACES, json!({ "first": 2, "after": after })).await;
    assert_eq!(ids(&second), ["a", "d"]);
    let third = app.data(None, PLACES, json!({ "first": 2, "after": second["places"]["pageInfo"]["endCursor"] })).await;
    assert_eq!(ids(&third), ["c"], "unrated places come last");
    assert_eq!(third["places"]["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn places_filter_by_category_and_search_and_order_by_name() {
    let app = TestApp::spawn().await;
    five_places(&app).await;
    app.db
        .execute_unprepared("UPDATE place SET name = 'Zebra 100% Cafe' WHERE id = 'a'")
        .await
        .expect("running UPDATE place");

    let cafes = app.data(None, PLACES, json!({ "category": "cafe", "orderBy": "NAME" })).await;
    assert_eq!(cafes["places"]["totalCount"], 3);
    assert_eq!(ids(&cafes), ["b", "d", "a"]);

    let search = app.data(None, PLACES, json!({ "search": "100%" })).await;
    assert_eq!(ids(&search), ["a"], "search is literal, % is not a wildcard");
    let none = app.data(None, PLACES, json!({ "search": "nothing like this" })).await;
    assert_eq!(none["places"]["totalCount"], 0);
}

#[tokio::test]
async fn newest_places_come_first() {
    let app = TestApp::spawn().await;
    five_places(&app).await;
    app.db
        .execute_unprepared("UPDATE place SET created_at = now() + interval '1 hour' WHERE id = 'c'")
        .await
        .expect("running UPDATE place");
    let newest = app.data(None, PLACES, json!({ "first": 1, "orderBy": "NEWEST" })).await;
    assert_eq!(ids(&newest), ["c"]);
}

#[tokio::test]
async fn a_page_over_the_cap_and_a_foreign_cursor_are_bad_input() {
    let app = TestApp::spawn().await;
    let too_big = app.graphql(None, PLACES, json!({ "first": 101 })).await;
    assert_eq!(error_code(&too_big), "BAD_USER_INPUT");
    assert_eq!(too_big["errors"][0]["extensions"]["field"], "first");
    let bad_cursor = app.graphql(None, PLACES, json!({ "after": "not-a-cursor" })).await;
    assert_eq!(error_code(&bad_cursor), "BAD_USER_INPUT");
    assert_eq!(bad_cursor["errors"][0]["extensions"]["field"], "after");
}

#[tokio::test]
async fn a_place_is_found_by_id_and_an_unknown_id_is_null() {
    let app = TestApp::spawn().await;
    five_places(&app).await;
    let found = app.data(None, "{ place(id: \"b\") { name category rating types } }", json!({})).await;
    assert_eq!(found["place"]["name"], "Place b");
    let missing = app.data(None, "{ place(id: \"zzz\") { name } }", json!({})).await;
    assert_eq!(missing["place"], Value::Null);
}

#[tokio::test]
async fn one_missing_lookup_is_null_and_the_other_lookups_of_the_query_keep_their_data() {
    let app = TestApp::spawn().await;
    five_places(&app).await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let query = "query($me: ID!, $other: ID!) { found: place(id: \"b\") { name } missing: place(id: \"zzz\") { name } \
                 me: user(id: $me) { username } other: user(id: $other) { username } }";
    let body = app.graphql(Some(&ada.token), query, json!({ "me": ada.id, "other": bob.id })).await;
    assert!(body.get("errors").is_none(), "not found is not an error: {body}");
    assert_eq!(
        body["data"],
        json!({ "found": { "name": "Place b" }, "missing": null, "me": { "username": "ada" }, "other": null })
    );
}

const CREATE_PLACE: &str = "mutation($input: PlaceInput!) { createPlace(input: $input) { id name types updatedAt } }";

#[tokio::test]
async fn admins_and_services_write_places_users_may_not() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let service = app.sign_up_as("importer", "service").await;
    let user = app.sign_up("ada").await;
    let input = |id: &str| json!({ "input": { "id": id, "name": "Café", "lat": 38.7, "lng": -9.1, "types": ["cafe", "food"], "category": "cafe" } });

    let created = app.data(Some(&admin.token), CREATE_PLACE, input("p1")).await;
    assert_eq!(created["createPlace"]["types"], json!(["cafe", "food"]));
    app.data(Some(&service.token), CREATE_PLACE, input("p2")).await;
    assert_eq!(error_code(&app.graphql(Some(&user.token), CREATE_PLACE, input("p3")).await), "FORBIDDEN");
    assert_eq!(error_code(&app.graphql(None, CREATE_PLACE, input("p3")).await), "UNAUTHENTICATED");
    assert_eq!(error_code(&app.graphql(Some(&admin.token), CREATE_PLACE, input("p1")).await), "CONFLICT");

    let update = "mutation { updatePlace(id: \"p1\", input: {name: \"Café Novo\", rating: 4.5, category: null}) { name rating category updatedAt } }";
    assert_eq!(error_code(&app.graphql(Some(&user.token), update, json!({})).await), "FORBIDDEN");
    let updated = app.data(Some(&service.token), update, json!({})).await;
    assert_eq!(updated["updatePlace"]["name"], "Café Novo");
    assert_eq!(updated["updatePlace"]["category"], Value::Null);
    assert_ne!(
        updated["updatePlace"]["updatedAt"], created["createPlace"]["updatedAt"],
        "updated_at kept by the database"
    );

    let delete = "mutation { deletePlace(id: \"p2\") { rowId } }";
    assert_eq!(error_code(&app.graphql(Some(&user.token), delete, json!({})).await), "FORBIDDEN");
    assert_eq!(app.data(Some(&admin.token), delete, json!({})).await["deletePlace"]["rowId"], "p2");
    assert_eq!(error_code(&app.graphql(Some(&admin.token), delete, json!({})).await), "NOT_FOUND");
}

#[tokio::test]
async fn invalid_places_are_rejected_naming_the_field_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let cases = [
        (json!({ "id": "x", "name": "  ", "lat": 1.0, "lng": 1.0 }), "name"),
        (json!({ "id": "x", "name": "A", "lat": 91.0, "lng": 1.0 }), "lat"),
        (json!({ "id": "x", "name": "A", "lat": 1.0, "lng": -181.0 }), "lng"),
        (json!({ "id": "x", "name": "A", "lat": 1.0, "lng": 1.0, "rating": 5.5 }), "rating"),
        (json!({ "id": "", "name": "A", "lat": 1.0, "lng": 1.0 }), "id"),
    ];
    for (input, field) in cases {
        let body = app.graphql(Some(&admin.token), CREATE_PLACE, json!({ "input": input })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    assert_eq!(app.count("SELECT count(*) FROM place").await, 0);
}

#[tokio::test]
async fn importing_places_twice_is_idempotent() {
    let app = TestApp::spawn().await;
    let service = app.sign_up_as("importer", "service").await;
    let import = "mutation($places: [PlaceInput!]!) { importPlaces(places: $places) { created updated } }";
    let places: Vec<Value> = (0..50).map(|i| json!({ "id": format!("g{i}"), "name": format!("Place {i}"), "lat": 38.7, "lng": -9.1, "category": "cafe" })).collect();

    let first = app.data(Some(&service.token), import, json!({ "places": places })).await;
    assert_eq!(first["importPlaces"], json!({ "created": 50, "updated": 0 }));
    let again = app.data(Some(&service.token), import, json!({ "places": places })).await;
    assert_eq!(again["importPlaces"], json!({ "created": 0, "updated": 50 }));
    assert_eq!(app.count("SELECT count(*) FROM place").await, 50);

    let user = app.sign_up("ada").await;
    assert_eq!(error_code(&app.graphql(Some(&user.token), import, json!({ "places": places })).await), "FORBIDDEN");
}

const CREATE_REVIEW: &str = "mutation($placeId: ID!, $rating: Float!, $comment: String) {
  createReview(input: {placeId: $placeId, rating: $rating, comment: $comment}) { id rating comment place { rowId name } }
}";

#[tokio::test]
async fn a_review_is_created_listed_with_its_place_updated_and_deleted() {
    let app = TestApp::spawn().await;
    five_places(&app).await;
    let ada = app.sign_up("ada").await;

    let created =
        app.data(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": "a", "rating": 4, "comment": "good" })).await;
    let id = created["createReview"]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(created["createReview"]["place"]["name"], "Place a");
    app.data(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": "b", "rating": 5 })).await;

    let mine = app
        .data(
            Some(&ada.token),
            "{ myReviews(first: 10) { totalCount edges { node { id place { rowId } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(mine["myReviews"]["totalCount"], 2);
    assert_eq!(mine["myReviews"]["edges"][0]["node"]["place"]["rowId"], "b", "newest first");

    let update = "mutation($id: ID!) { updateReview(id: $id, input: {rating: 2.5, comment: null}) { rating comment } }";
    let updated = app.data(Some(&ada.token), update, json!({ "id": id })).await;
    assert_eq!(updated["updateReview"], json!({ "rating": 2.5, "comment": null }));

    let delete = "mutation($id: ID!) { deleteReview(id: $id) { id } }";
    assert_eq!(app.data(Some(&ada.token), delete, json!({ "id": id })).await["deleteReview"]["id"], id.as_str());
    assert_eq!(error_code(&app.graphql(Some(&ada.token), delete, json!({ "id": id })).await), "NOT_FOUND");
}

#[tokio::test]
async fn review_errors_have_precise_codes() {
    let app = TestApp::spawn().await;
    five_places(&app).await;
    let ada = app.sign_up("ada").await;
    app.data(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": "a", "rating": 4 })).await;

    let duplicate = app.graphql(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": "a", "rating": 3 })).await;
    assert_eq!(error_code(&duplicate), "CONFLICT");
    assert_eq!(duplicate["errors"][0]["extensions"]["field"], "placeId");
    let out_of_range = app.graphql(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": "b", "rating": 7 })).await;
    assert_eq!(error_code(&out_of_range), "BAD_USER_INPUT");
    assert_eq!(out_of_range["errors"][0]["extensions"]["field"], "rating");
    let unknown_place =
        app.graphql(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": "nowhere", "rating": 3 })).await;
    assert_eq!(error_code(&unknown_place), "NOT_FOUND");
    let anonymous = app.graphql(None, CREATE_REVIEW, json!({ "placeId": "b", "rating": 3 })).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    let malformed = app.graphql(Some(&ada.token), "mutation { deleteReview(id: \"abc\") { id } }", json!({})).await;
    assert_eq!(error_code(&malformed), "BAD_USER_INPUT");
    assert_eq!(malformed["errors"][0]["extensions"]["field"], "id");
    let anonymous_list = app.graphql(None, "{ myReviews { totalCount } }", json!({})).await;
    assert_eq!(error_code(&anonymous_list), "UNAUTHENTICATED");
    assert_eq!(app.count("SELECT count(*) FROM review").await, 1, "no failed write left a row");
}

#[tokio::test]
async fn review_places_are_read_in_one_statement() {
    let app = TestApp::spawn().await;
    five_places(&app).await;
    let ada = app.sign_up("ada").await;
    for id in ["a", "b", "c", "d", "e"] {
        app.data(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": id, "rating": 3 })).await;
    }
    // pg_stat_statements counts each statement as it finishes.
    app.db
        .execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .expect("creating pg_stat_statements");
    let place_reads = "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
                       WHERE d.datname = current_database() AND s.query LIKE '%\"place\"%'";
    let before = app.count(place_reads).await;

    let mine = app.data(Some(&ada.token), "{ myReviews { edges { node { place { name } } } } }", json!({})).await;
    assert_eq!(mine["myReviews"]["edges"].as_array().map(Vec::len), Some(5));

    let after = app.count(place_reads).await;
    assert_eq!(after - before, 1, "one statement reads the places of five reviews");
}

#[tokio::test]
async fn preferences_are_upserted_listed_and_deleted() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let set = "mutation($category: String!, $rating: Float!) { setPreference(input: {category: $category, rating: $rating}) { id category rating } }";

    let first = app.data(Some(&ada.token), set, json!({ "category": "cafe", "rating": 3 })).await;
    let again = app.data(Some(&ada.token), set, json!({ "category": "cafe", "rating": 5 })).await;
    assert_eq!(first["setPreference"]["id"], again["setPreference"]["id"], "same row replaced");
    app.data(Some(&ada.token), set, json!({ "category": "bar", "rating": 1 })).await;

    let mine = app.data(Some(&ada.token), "{ myPreferences { category rating } }", json!({})).await;
    assert_eq!(
        mine["myPreferences"],
        json!([{ "category": "bar", "rating": 1.0 }, { "category": "cafe", "rating": 5.0 }])
    );

    let bad = app.graphql(Some(&ada.token), set, json!({ "category": "cafe", "rating": -1 })).await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
    let delete = "mutation($c: String!) { deletePreference(category: $c) { category } }";
    assert_eq!(app.data(Some(&ada.token), delete, json!({ "c": "bar" })).await["deletePreference"]["category"], "bar");
    assert_eq!(error_code(&app.graphql(Some(&ada.token), delete, json!({ "c": "bar" })).await), "NOT_FOUND");
}
