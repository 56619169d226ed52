use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;
use tests::{TestApp, error_code};

const RECOMMEND: &str = "query($lat: Float!, $lng: Float!, $radiusKm: Float, $limit: Int) {
  recommendations(lat: $lat, lng: $lng, radiusKm: $radiusKm, limit: $limit) { place { rowId } distanceKm preferenceRating score }
}";

/// earthdistance's earth radius, in km (`SELECT earth()` / 1000).
const EARTH_RADIUS_KM: f64 = 6378.168;

/// Places due north of (0, 0): the great-circle distance is exactly
/// R × Δlat in radians, so every score below can be checked by hand.
fn km_north(lat: f64) -> f64 {
    EARTH_RADIUS_KM * lat.to_radians()
}

#[tokio::test]
async fn recommendations_follow_the_seed_score_worked_out_by_hand() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let set =
        "mutation($c: String!, $r: Float!) { setPreference(input: {category: $c, rating: $r}) { preference { id } } }";
    app.data(Some(&ada.token), set, json!({ "c": "cafe", "r": 5 })).await;
    app.data(Some(&ada.token), set, json!({ "c": "museum", "r": 3 })).await;
    app.insert_place("near-cafe", "cafe", 0.01, 0.0, Some(4.0), Some(99)).await;
    app.insert_place("far-cafe", "cafe", 0.03, 0.0, Some(5.0), Some(9)).await;
    app.insert_place("museum", "museum", 0.005, 0.0, Some(5.0), Some(999)).await;
    app.insert_place("out-of-radius", "cafe", 0.06, 0.0, Some(5.0), Some(999)).await;
    app.insert_place("unliked", "gallery", 0.001, 0.0, Some(5.0), Some(999)).await;
    // Another user's preferences must not count for Ada.
    let bob = app.sign_up("bob").await;
    app.data(Some(&bob.token), set, json!({ "c": "gallery", "r": 5 })).await;

    let data = app.data(Some(&ada.token), RECOMMEND, json!({ "lat": 0.0, "lng": 0.0 })).await;
    let got = data["recommendations"].as_array().cloned().unwrap_or_default();

    // score = 0.6·pref/5 + 0.2·rating/5 + 0.1·min(1, log10(total+1)/10) + 0.1·(1 − d/5)
    let d1 = km_north(0.01); // 1.113 km
    let d2 = km_north(0.03); // 3.340 km
    let d3 = km_north(0.005); // 0.557 km
    let expected = [
        ("near-cafe", d1, 0.6 + 0.16 + 0.1 * 0.2 + 0.1 * (1.0 - d1 / 5.0)), // ≈ 0.8577
        ("far-cafe", d2, 0.6 + 0.2 + 0.1 * 0.1 + 0.1 * (1.0 - d2 / 5.0)),   // ≈ 0.8432
        ("museum", d3, 0.36 + 0.2 + 0.1 * 0.3 + 0.1 * (1.0 - d3 / 5.0)),    // ≈ 0.6789
    ];
    assert_eq!(got.len(), expected.len(), "{data}");
    for (row, (id, distance, score)) in got.iter().zip(expected) {
        assert_eq!(row["place"]["rowId"], id);
        let (got_distance, got_score) =
            (row["distanceKm"].as_f64().unwrap_or(f64::NAN), row["score"].as_f64().unwrap_or(f64::NAN));
        assert!((got_distance - distance).abs() < 1e-6, "{id}: distance {got_distance} vs {distance}");
        assert!((got_score - score).abs() < 1e-9, "{id}: score {got_score} vs {score}");
    }

    let limited = app.data(Some(&ada.token), RECOMMEND, json!({ "lat": 0.0, "lng": 0.0, "limit": 1 })).await;
    assert_eq!(limited["recommendations"][0]["place"]["rowId"], "near-cafe");
    let wider = app.data(Some(&ada.token), RECOMMEND, json!({ "lat": 0.0, "lng": 0.0, "radiusKm": 10.0 })).await;
    assert_eq!(wider["recommendations"].as_array().map(Vec::len), Some(4));
}

#[tokio::test]
async fn recommendations_validate_their_arguments_and_need_a_user() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let cases = [
        (json!({ "lat": 91.0, "lng": 0.0 }), "lat"),
        (json!({ "lat": 0.0, "lng": 181.0 }), "lng"),
        (json!({ "lat": 0.0, "lng": 0.0, "radiusKm": 0.0 }), "radiusKm"),
        (json!({ "lat": 0.0, "lng": 0.0, "limit": 0 }), "limit"),
    ];
    for (vars, field) in cases {
        let body = app.graphql(Some(&ada.token), RECOMMEND, vars).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    assert_eq!(error_code(&app.graphql(None, RECOMMEND, json!({ "lat": 0.0, "lng": 0.0 })).await), "UNAUTHENTICATED");
}

#[tokio::test]
async fn the_radius_filter_is_answered_by_the_gist_index() {
    let app = TestApp::spawn().await;
    // With sequential scans priced out, the plan shows whether the index can answer the filter at all.
    let tx = app.db.begin().await.expect("beginning a transaction");
    tx.execute_unprepared("SET LOCAL enable_seqscan = off").await.expect("running SET LOCAL enable_seqscan");
    let rows = tx
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "EXPLAIN SELECT id FROM place WHERE earth_box(app_earth_point(0, 0), 5000) @> app_earth_point(lat, lng)"
                .to_owned(),
        ))
        .await
        .expect("explaining the query");
    let plan: String = rows.iter().filter_map(|r| r.try_get_by_index::<String>(0).ok()).collect::<Vec<_>>().join("\n");
    assert!(plan.contains("idx_place_location"), "{plan}");
}
