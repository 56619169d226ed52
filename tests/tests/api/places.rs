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
async fn a_page_read_without_edge_cursors_still_continues_by_page_info_and_an_aliased_cursor_in_a_fragment_is_read() {
    let app = TestApp::spawn().await;
    five_places(&app).await;

    // No edge's cursor selected: the page makes only pageInfo's.
    let lean = "query($after: String) {
      places(first: 2, after: $after) { edges { node { rowId } } pageInfo { startCursor endCursor } }
    }";
    let first = app.data(None, lean, json!({})).await;
    assert_eq!(ids(&first), ["b", "e"]);
    let info = &first["places"]["pageInfo"];
    assert!(info["startCursor"].is_string() && info["endCursor"].is_string(), "{info}");
    let second = app.data(None, lean, json!({ "after": info["endCursor"] })).await;
    assert_eq!(ids(&second), ["a", "d"]);

    // An edge's cursor asked under an alias, inside a fragment: every edge
    // has the cursor the plain selection gets, the last one `endCursor`.
    let full = app.data(None, PLACES, json!({ "first": 2 })).await;
    let aliased = "{ places(first: 2) { edges { ...E } } } fragment E on PlaceEdge { c: cursor node { rowId } }";
    let aliased = app.data(None, aliased, json!({})).await;
    for i in 0..2 {
        let cursor = &full["places"]["edges"][i]["cursor"];
        assert!(cursor.is_string(), "{full}");
        assert_eq!(&aliased["places"]["edges"][i]["c"], cursor, "edge {i}");
    }
    assert_eq!(full["places"]["edges"][1]["cursor"], full["places"]["pageInfo"]["endCursor"]);
    assert_eq!(
        first["places"]["pageInfo"]["endCursor"], full["places"]["pageInfo"]["endCursor"],
        "the same cursor either way"
    );
}

#[tokio::test]
async fn places_filter_by_category_and_search_and_order_by_name() {
    let app = TestApp::spawn().await;
    five_places(&app).await;
    app.db
        .execute_unprepared("UPDATE place SET name = 'Zebra 100% Cafe' WHERE id = 'a'")
        .await
        .expect("running UPDATE place");

    let cafes = app.data(None, PLACES, json!({ "category": "cafe", "orderBy": "NAME_ASC" })).await;
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
    let newest = app.data(None, PLACES, json!({ "first": 1, "orderBy": "CREATED_AT_DESC" })).await;
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

const CREATE_PLACE: &str =
    "mutation($input: CreatePlaceInput!) { createPlace(input: $input) { place { id name types updatedAt } } }";

#[tokio::test]
async fn admins_and_services_write_places_users_may_not() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let service = app.sign_up_as("importer", "service").await;
    let user = app.sign_up("ada").await;
    let input = |id: &str| json!({ "input": { "id": id, "name": "Café", "lat": 38.7, "lng": -9.1, "types": ["cafe", "food"], "category": "cafe" } });

    let created = app.data(Some(&admin.token), CREATE_PLACE, input("p1")).await;
    assert_eq!(created["createPlace"]["place"]["types"], json!(["cafe", "food"]));
    app.data(Some(&service.token), CREATE_PLACE, input("p2")).await;
    assert_eq!(error_code(&app.graphql(Some(&user.token), CREATE_PLACE, input("p3")).await), "FORBIDDEN");
    assert_eq!(error_code(&app.graphql(None, CREATE_PLACE, input("p3")).await), "UNAUTHENTICATED");
    assert_eq!(error_code(&app.graphql(Some(&admin.token), CREATE_PLACE, input("p1")).await), "CONFLICT");

    let update = "mutation { updatePlace(input: {id: \"p1\", name: \"Café Novo\", rating: 4.5, category: null}) { place { name rating category updatedAt } } }";
    assert_eq!(error_code(&app.graphql(Some(&user.token), update, json!({})).await), "FORBIDDEN");
    let updated = app.data(Some(&service.token), update, json!({})).await;
    assert_eq!(updated["updatePlace"]["place"]["name"], "Café Novo");
    assert_eq!(updated["updatePlace"]["place"]["category"], Value::Null);
    assert_ne!(
        updated["updatePlace"]["place"]["updatedAt"], created["createPlace"]["place"]["updatedAt"],
        "updated_at kept by the database"
    );

    let delete = "mutation { deletePlace(input: {id: \"p2\"}) { place { rowId } } }";
    assert_eq!(error_code(&app.graphql(Some(&user.token), delete, json!({})).await), "FORBIDDEN");
    assert_eq!(app.data(Some(&admin.token), delete, json!({})).await["deletePlace"]["place"]["rowId"], "p2");
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
    let import = "mutation($places: [PlaceInput!]!) { importPlaces(input: {places: $places}) { created updated } }";
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
  createReview(input: {placeId: $placeId, rating: $rating, comment: $comment}) { review { id rating comment place { rowId name } } }
}";

#[tokio::test]
async fn a_review_is_created_listed_with_its_place_updated_and_deleted() {
    let app = TestApp::spawn().await;
    five_places(&app).await;
    let ada = app.sign_up("ada").await;

    let created =
        app.data(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": "a", "rating": 4, "comment": "good" })).await;
    let id = created["createReview"]["review"]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(created["createReview"]["review"]["place"]["name"], "Place a");
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

    let update = "mutation($id: ID!) { updateReview(input: {id: $id, rating: 2.5, comment: null}) { review { rating comment } } }";
    let updated = app.data(Some(&ada.token), update, json!({ "id": id })).await;
    assert_eq!(updated["updateReview"]["review"], json!({ "rating": 2.5, "comment": null }));

    let delete = "mutation($id: ID!) { deleteReview(input: {id: $id}) { review { id } } }";
    assert_eq!(
        app.data(Some(&ada.token), delete, json!({ "id": id })).await["deleteReview"]["review"]["id"],
        id.as_str()
    );
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
    let malformed = app
        .graphql(Some(&ada.token), "mutation { deleteReview(input: {id: \"abc\"}) { review { id } } }", json!({}))
        .await;
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
    let place_reads = "%\"place\"%";
    let before = app.statement_calls(place_reads).await;

    let mine = app.data(Some(&ada.token), "{ myReviews { edges { node { place { name } } } } }", json!({})).await;
    assert_eq!(mine["myReviews"]["edges"].as_array().map(Vec::len), Some(5));

    let after = app.statement_calls(place_reads).await;
    assert_eq!(after - before, 1, "one statement reads the places of five reviews");
}

#[tokio::test]
async fn preferences_are_upserted_listed_and_deleted() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let set = "mutation($category: String!, $rating: Float!) { setPreference(input: {category: $category, rating: $rating}) { preference { id category rating } } }";

    let first = app.data(Some(&ada.token), set, json!({ "category": "cafe", "rating": 3 })).await;
    let again = app.data(Some(&ada.token), set, json!({ "category": "cafe", "rating": 5 })).await;
    assert_eq!(
        first["setPreference"]["preference"]["id"], again["setPreference"]["preference"]["id"],
        "same row replaced"
    );
    app.data(Some(&ada.token), set, json!({ "category": "bar", "rating": 1 })).await;

    let mine = app.data(Some(&ada.token), "{ myPreferences { category rating } }", json!({})).await;
    assert_eq!(
        mine["myPreferences"],
        json!([{ "category": "bar", "rating": 1.0 }, { "category": "cafe", "rating": 5.0 }])
    );

    let bad = app.graphql(Some(&ada.token), set, json!({ "category": "cafe", "rating": -1 })).await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
    let delete = "mutation($c: String!) { deletePreference(input: {category: $c}) { preference { category } } }";
    assert_eq!(
        app.data(Some(&ada.token), delete, json!({ "c": "bar" })).await["deletePreference"]["preference"]["category"],
        "bar"
    );
    assert_eq!(error_code(&app.graphql(Some(&ada.token), delete, json!({ "c": "bar" })).await), "NOT_FOUND");
}

const UPDATE_PLACE: &str = "mutation($input: UpdatePlaceInput!) {
  updatePlace(input: $input) {
    place { name lat lng types category rating userRatingsTotal description }
    clientMutationId
  }
}";

/// A place with every nullable column set, as `updatePlace` returns it.
async fn full_place(app: &TestApp, token: &str) -> Value {
    let input = json!({ "input": {
        "id": "p1", "name": "Café", "lat": 38.7, "lng": -9.1, "types": ["cafe", "food"],
        "category": "cafe", "rating": 4.5, "userRatingsTotal": 12, "description": "By the river",
    } });
    app.data(Some(token), CREATE_PLACE, input).await;
    let unchanged = app.data(Some(token), UPDATE_PLACE, json!({ "input": { "id": "p1" } })).await;
    unchanged["updatePlace"]["place"].clone()
}

#[tokio::test]
async fn update_place_clears_each_nullable_field_given_null_and_leaves_omitted_fields_as_they_are() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let cleared = [
        ("types", json!([])),
        ("category", Value::Null),
        ("rating", Value::Null),
        ("userRatingsTotal", Value::Null),
        ("description", Value::Null),
    ];
    for (field, empty) in cleared {
        app.db.execute_unprepared("DELETE FROM place").await.expect("emptying place");
        let before = full_place(&app, &admin.token).await;
        assert_ne!(before[field], empty, "{field} starts set: {before}");
        let input = json!({ "input": { "id": "p1", field: null, "clientMutationId": field } });
        let after = app.data(Some(&admin.token), UPDATE_PLACE, input).await;
        assert_eq!(after["updatePlace"]["clientMutationId"], field);
        let mut expected = before.clone();
        expected[field] = empty;
        assert_eq!(after["updatePlace"]["place"], expected, "only {field} is cleared");
    }
    let column_is_null = "SELECT count(*) FROM place WHERE id = 'p1' AND description IS NULL AND types IS NULL";
    assert_eq!(app.count(column_is_null).await, 0, "the last update cleared description only");

    let renamed =
        app.data(Some(&admin.token), UPDATE_PLACE, json!({ "input": { "id": "p1", "name": "Café Novo" } })).await;
    assert_eq!(renamed["updatePlace"]["place"]["name"], "Café Novo");
    assert_eq!(renamed["updatePlace"]["place"]["category"], "cafe", "an omitted field stays");
    assert_eq!(renamed["updatePlace"]["clientMutationId"], Value::Null);
}

#[tokio::test]
async fn null_on_a_field_that_cannot_be_empty_is_bad_user_input_naming_it_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let before = full_place(&app, &admin.token).await;
    for field in ["name", "lat", "lng"] {
        let input = json!({ "input": { "id": "p1", "category": "museum", field: null } });
        let body = app.graphql(Some(&admin.token), UPDATE_PLACE, input).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
    }
    let after = app.data(Some(&admin.token), UPDATE_PLACE, json!({ "input": { "id": "p1" } })).await;
    assert_eq!(after["updatePlace"]["place"], before, "no partial write");

    app.insert_place("a", "cafe", 38.70, -9.14, Some(4.0), Some(10)).await;
    let ada = app.sign_up("ada").await;
    let created =
        app.data(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": "a", "rating": 4, "comment": "good" })).await;
    let id = created["createReview"]["review"]["id"].clone();
    let update = "mutation($input: UpdateReviewInput!) { updateReview(input: $input) { review { rating comment } } }";
    let body =
        app.graphql(Some(&ada.token), update, json!({ "input": { "id": id, "rating": null, "comment": "x" } })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "rating", "{body}");
    assert_eq!(app.count("SELECT count(*) FROM review WHERE rating = 4 AND comment = 'good'").await, 1);
}

#[tokio::test]
async fn update_review_keeps_an_omitted_comment_and_clears_it_given_null() {
    let app = TestApp::spawn().await;
    app.insert_place("a", "cafe", 38.70, -9.14, Some(4.0), Some(10)).await;
    let ada = app.sign_up("ada").await;
    let created =
        app.data(Some(&ada.token), CREATE_REVIEW, json!({ "placeId": "a", "rating": 4, "comment": "good" })).await;
    let id = created["createReview"]["review"]["id"].clone();
    let update = "mutation($input: UpdateReviewInput!) { updateReview(input: $input) { review { rating comment } } }";

    let rated = app.data(Some(&ada.token), update, json!({ "input": { "id": id, "rating": 2 } })).await;
    assert_eq!(rated["updateReview"]["review"], json!({ "rating": 2.0, "comment": "good" }));
    let cleared = app.data(Some(&ada.token), update, json!({ "input": { "id": id, "comment": null } })).await;
    assert_eq!(cleared["updateReview"]["review"], json!({ "rating": 2.0, "comment": null }));
    assert_eq!(app.count("SELECT count(*) FROM review WHERE comment IS NULL").await, 1);
}

#[tokio::test]
async fn a_preference_is_deleted_by_its_id_or_its_category_but_not_by_both_or_neither() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let set = "mutation($c: String!) { setPreference(input: {category: $c, rating: 4}) { preference { id } } }";
    let cafe =
        app.data(Some(&ada.token), set, json!({ "c": "cafe" })).await["setPreference"]["preference"]["id"].clone();
    app.data(Some(&ada.token), set, json!({ "c": "bar" })).await;
    let delete =
        "mutation($input: DeletePreferenceInput!) { deletePreference(input: $input) { preference { category } } }";

    for input in [json!({ "id": cafe, "category": "bar" }), json!({})] {
        let body = app.graphql(Some(&ada.token), delete, json!({ "input": input })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM preference").await, 2, "nothing deleted");

    let by_id = app.data(Some(&ada.token), delete, json!({ "input": { "id": cafe } })).await;
    assert_eq!(by_id["deletePreference"]["preference"]["category"], "cafe");
    let by_category = app.data(Some(&ada.token), delete, json!({ "input": { "category": "bar" } })).await;
    assert_eq!(by_category["deletePreference"]["preference"]["category"], "bar");
    assert_eq!(app.count("SELECT count(*) FROM preference").await, 0);
}

#[tokio::test]
async fn every_places_mutation_echoes_its_client_mutation_id() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let ada = app.sign_up("ada").await;
    let place = r#"{id: "p1", name: "Café", lat: 1, lng: 2, clientMutationId: "cp"}"#;
    let calls = [
        (&admin, format!("createPlace(input: {place}) {{ place {{ id }} clientMutationId }}"), "cp"),
        (&admin, r#"updatePlace(input: {id: "p1", name: "Café Novo", clientMutationId: "up"}) { place { id } clientMutationId }"#.into(), "up"),
        (&admin, r#"importPlaces(input: {places: [{id: "p2", name: "B", lat: 1, lng: 2}], clientMutationId: "ip"}) { created clientMutationId }"#.into(), "ip"),
        (&ada, r#"createReview(input: {placeId: "p1", rating: 4, clientMutationId: "cr"}) { review { id } clientMutationId }"#.into(), "cr"),
        (&ada, r#"setPreference(input: {category: "cafe", rating: 4, clientMutationId: "sp"}) { preference { id } clientMutationId }"#.into(), "sp"),
        (&ada, r#"deletePreference(input: {category: "cafe", clientMutationId: "dp"}) { preference { id } clientMutationId }"#.into(), "dp"),
    ];
    for (user, field, echoed) in calls {
        let data = app.data(Some(&user.token), &format!("mutation {{ m: {field} }}"), json!({})).await;
        assert_eq!(data["m"]["clientMutationId"], echoed, "{field}");
    }
    let review = app.data(Some(&ada.token), "{ myReviews { nodes { id } } }", json!({})).await["myReviews"]["nodes"][0]
        ["id"]
        .clone();
    let update = "mutation($id: ID!) { updateReview(input: {id: $id, rating: 1, clientMutationId: \"ur\"}) { clientMutationId } }";
    assert_eq!(
        app.data(Some(&ada.token), update, json!({ "id": review })).await["updateReview"]["clientMutationId"],
        "ur"
    );
    let delete = "mutation($id: ID!) { deleteReview(input: {id: $id, clientMutationId: \"dr\"}) { review { rating } clientMutationId } }";
    let deleted = app.data(Some(&ada.token), delete, json!({ "id": review })).await;
    assert_eq!(deleted["deleteReview"], json!({ "review": { "rating": 1.0 }, "clientMutationId": "dr" }), "as it was");
    let delete_place =
        "mutation { deletePlace(input: {id: \"p1\", clientMutationId: \"dl\"}) { place { name } clientMutationId } }";
    let gone = app.data(Some(&admin.token), delete_place, json!({})).await;
    assert_eq!(gone["deletePlace"], json!({ "place": { "name": "Café Novo" }, "clientMutationId": "dl" }));
}

#[tokio::test]
async fn a_new_place_may_not_take_a_key_that_reads_as_another_places_global_id() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    app.insert_place("x", "cafe", 1.0, 1.0, None, None).await;
    // "UGxhY2U6eA" is the global id of place "x": as a raw key it would be
    // unreachable, and `deletePlace` with it would delete "x".
    let create =
        "mutation { createPlace(input: {id: \"UGxhY2U6eA\", name: \"Trap\", lat: 1, lng: 2}) { place { rowId } } }";
    let body = app.graphql(Some(&admin.token), create, json!({})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "id", "{body}");
    let import = "mutation { importPlaces(input: {places: [{id: \"UGxhY2U6eA\", name: \"Trap\", lat: 1, lng: 2}]}) { created } }";
    assert_eq!(error_code(&app.graphql(Some(&admin.token), import, json!({})).await), "BAD_USER_INPUT");
    assert_eq!(app.count("SELECT count(*) FROM place").await, 1, "nothing written");
}

/// `Columns` reads a statement's cells without checking each one's type:
/// each column's type is checked once per Rust type it is read as, by the
/// statement's column. A statement whose column does not fit its field is
/// an error, never a misread value or a panic.
#[tokio::test]
async fn a_column_of_the_wrong_type_is_refused_and_rows_of_the_right_types_read_back() {
    use api::domain::columns::Columns;
    use entity::place;
    use sea_orm::{DatabaseBackend, Statement};

    let app = TestApp::spawn().await;
    let rows = |sql: &str| app.db.query_all_raw(Statement::from_string(DatabaseBackend::Postgres, sql.to_owned()));
    let name_and_rating = || Columns::<place::Entity>::selected(&[place::Column::Id], |f| f == "name" || f == "rating");

    let good = rows("SELECT * FROM (VALUES ('p1'::varchar, 'Café'::text, 4.5::float8), ('p2', 'Bar', NULL)) AS t")
        .await
        .expect("the statement runs");
    let columns = name_and_rating();
    let read: Vec<(String, String, Option<f64>)> = good
        .iter()
        .map(|row| columns.read(row).map(|p| (p.id, p.name, p.rating)))
        .collect::<Result<_, _>>()
        .expect("rows of the right types read");
    assert_eq!(read, [("p1".into(), "Café".into(), Some(4.5)), ("p2".into(), "Bar".into(), None)]);
    // Checked as text, the name is still checked when read as anything else.
    let as_number = columns.get::<i64>(&good[1], place::Column::Name as usize).err().map(|e| e.to_string());
    assert!(as_number.unwrap_or_default().contains("column column2 is TEXT"), "a text column read as i64");

    let wrong =
        rows("SELECT 'p1'::varchar AS id, 7::int4 AS name, 4.5::float8 AS rating").await.expect("the statement runs");
    let error = name_and_rating().read(&wrong[0]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("column name is INT4"), "{error}");

    // A float4 read as the f64 it is not would be 4 bytes decoded as 8.
    let narrow = rows("SELECT 'p1'::varchar AS id, 'x'::text AS name, 4.5::float4 AS rating").await.expect("runs");
    let error = name_and_rating().read(&narrow[0]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("column rating is FLOAT4"), "{error}");

    // NULL in a column its field cannot hold is an error too.
    let null = rows("SELECT 'p1'::varchar AS id, NULL::text AS name, NULL::float8 AS rating").await.expect("runs");
    assert!(name_and_rating().read(&null[0]).is_err(), "a NULL name");
}
