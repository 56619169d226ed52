//! The HTTP surface: GraphiQL, health, transport errors and limits.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tests::{TestApp, error_code};

#[tokio::test]
async fn graphiql_is_served_with_local_assets_and_the_root_leads_there() {
    let app = TestApp::spawn().await;
    let page = app.http.get(format!("{}/graphiql", app.address)).send().await.expect("sending the request");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("/graphiql/graphiql.min.js") && !html.contains("https://"), "no CDN: {html}");
    for asset in ["graphiql.min.js", "graphiql.min.css", "react.production.min.js", "react-dom.production.min.js"] {
        let response = app
            .http
            .get(format!("{}/graphiql/{asset}", app.address))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .expect("sending the request");
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert_eq!(response.headers()["content-encoding"], "gzip");
        assert!(response.bytes().await.map(|b| b.len()).unwrap_or(0) > 1000);
    }
    let no_redirects =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap_or_default();
    let root = no_redirects.get(format!("{}/", app.address)).send().await.expect("sending the request");
    assert_eq!(root.headers()["location"], "/graphiql");
}

#[tokio::test]
async fn health_and_readiness_report_ok_on_a_migrated_database() {
    let app = TestApp::spawn().await;
    for path in ["healthz", "readyz"] {
        let response = app.http.get(format!("{}/{path}", app.address)).send().await.expect("sending the request");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn readiness_fails_while_a_migration_is_pending() {
    let app = TestApp::spawn().await;
    app.db
        .execute_unprepared("DELETE FROM seaql_migrations WHERE version = 'm20261122_000002_places'")
        .await
        .expect("running DELETE FROM seaql_migrations");
    let response = app.http.get(format!("{}/readyz", app.address)).send().await.expect("sending the request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(body["pending"], json!(["m20261122_000002_places"]));
}

#[tokio::test]
async fn a_get_runs_queries_but_never_mutations() {
    let app = TestApp::spawn().await;
    let url = format!("{}/graphql", app.address);
    let query =
        app.http.get(&url).query(&[("query", "{ places { totalCount } }")]).send().await.expect("sending the request");
    assert_eq!(query.json::<Value>().await.unwrap_or_default()["data"]["places"]["totalCount"], 0);
    let mutation = app
        .http
        .get(&url)
        .query(&[("query", "mutation { signUp(input: {email: \"a@b.io\", username: \"abc\", password: \"password1\", fullName: \"A\"}) { token } }")])
        .send()
        .await
        .expect("sending the request");
    assert_eq!(mutation.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(app.count("SELECT count(*) FROM users").await, 0);
}

#[tokio::test]
async fn transport_errors_get_http_statuses_and_codes() {
    let app = TestApp::spawn().await;
    let url = format!("{}/graphql", app.address);
    let text = app
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .body("{ places { totalCount } }")
        .send()
        .await
        .expect("sending the request");
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(&text.json().await.unwrap_or_default()), "UNSUPPORTED_MEDIA_TYPE");
    let broken = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sending the request");
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&broken.json().await.unwrap_or_default()), "BAD_REQUEST");
    let huge = "x".repeat(2 * 1024 * 1024);
    let too_big = app.http.post(&url).json(&json!({ "query": huge })).send().await.expect("sending the request");
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bad_token = app
        .http
        .post(&url)
        .bearer_auth("nope")
        .json(&json!({ "query": "{ places { totalCount } }" }))
        .send()
        .await
        .expect("sending the request");
    assert_eq!(bad_token.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn graphql_errors_always_carry_a_code() {
    let app = TestApp::spawn().await;
    let syntax = app.graphql(None, "{ places {", json!({})).await;
    assert_eq!(error_code(&syntax), "GRAPHQL_VALIDATION_FAILED", "{syntax}");
    let unknown = app.graphql(None, "{ nope }", json!({})).await;
    assert_eq!(error_code(&unknown), "GRAPHQL_VALIDATION_FAILED");
    let wrong_type =
        app.graphql(None, "query($n: Int) { places(first: $n) { totalCount } }", json!({ "n": "ten" })).await;
    assert_eq!(error_code(&wrong_type), "BAD_USER_INPUT", "{wrong_type}");
    // A null for an input field that has a default but is not nullable.
    let null_in_input = app
        .graphql(
            None,
            "mutation($p: Boolean) { createPost(input: {title: \"t\", published: $p}) { post { id } } }",
            json!({ "p": null }),
        )
        .await;
    assert_eq!(error_code(&null_in_input), "BAD_USER_INPUT", "{null_in_input}");
}

#[tokio::test]
async fn too_deep_or_too_complex_queries_are_refused_before_any_work() {
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.max_query_depth = 3;
    config.max_query_complexity = 20;
    let app = TestApp::spawn_with(config).await;
    let deep = app.graphql(None, "{ places { edges { node { id } } pageInfo { hasNextPage } } }", json!({})).await;
    assert_eq!(error_code(&deep), "QUERY_TOO_COMPLEX", "{deep}");
    let wide = app.graphql(None, "{ a: places { totalCount } b: places { totalCount } c: places { totalCount } d: places { totalCount } e: places { totalCount } f: places { totalCount } g: places { totalCount } h: places { totalCount } i: places { totalCount } j: places { totalCount } k: places { totalCount } }", json!({})).await;
    assert_eq!(error_code(&wide), "QUERY_TOO_EXPENSIVE", "{wide}");
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_after_the_timeout_instead_of_hanging() {
    // One connection and DATABASE_POOL_TIMEOUT = 1 s.
    let app = TestApp::spawn_with_one_connection().await;
    let (blocker, first) = app.hold_the_only_connection().await;

    let started = std::time::Instant::now();
    let second = app
        .http
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": "query Second { places { totalCount } }" }))
        .send()
        .await
        .expect("sending the request");
    let waited = started.elapsed();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: serde_json::Value = second.json().await.unwrap_or_default();
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE", "{body}");
    assert_eq!(body["errors"][0]["message"], "the database is busy; retry shortly");
    assert!(waited >= std::time::Duration::from_millis(950), "it waited for the timeout: {waited:?}");
    assert!(waited < std::time::Duration::from_secs(5), "and not much longer: {waited:?}");

    let metrics = app.metrics().await;
    // At least this request's; the database statistics task may have timed
    // out too, had its interval come round while the connection was held.
    assert!(metrics.value("api_db_pool_timeouts_total") >= 1.0);
    assert_eq!(metrics.value("api_db_pool_connections_in_use"), 1.0, "the blocked request holds it");
    assert_eq!(
        metrics.value("api_graphql_request_duration_seconds_count{operation=\"Second\",outcome=\"unavailable\"}"),
        1.0
    );

    blocker.rollback().await.expect("rolling back");
    assert_eq!(first.await.ok().flatten(), Some(200), "the first request completes once the lock is gone");
    tests::eventually("no wait is left counted", async || app.metrics().await.value("api_db_pool_waiting") == 0.0)
        .await;
}

#[tokio::test]
async fn metrics_expose_every_family_with_live_values_after_traffic() {
    // Every statement counts as slow, so the slow-query families move.
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.database_slow_query_ms = 0;
    config.database_stats_interval = 15;
    let app = TestApp::spawn_with(config).await;
    app.insert_place("p1", "cafe", 0.0, 0.0, Some(4.0), Some(10)).await;
    let ada = app.sign_up("ada").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe(
        "1",
        "subscription($a: String) { placeChanged(after: $a) { cursor } }",
        json!({ "a": app.change_cursor_for(&ada).await }),
    )
    .await;
    app.insert_place("p2", "cafe", 0.0, 0.0, None, None).await;
    ws.next_data("1").await;
    app.graphql(Some(&ada.token), "query Nearby { recommendations(lat: 0, lng: 0) { score } }", json!({})).await;
    app.graphql(None, "query Mine { myReviews { totalCount } }", json!({})).await;

    let metrics = app.metrics().await;
    let value = |series: &str| metrics.value(series);
    let text = &metrics.0;
    // Pool: usage, waits and their duration, timeouts.
    assert_eq!(value("api_db_pool_connections_max"), 6.0, "pool size 4 + overflow 2");
    assert!(value("api_db_pool_connections_in_use") + value("api_db_pool_connections_idle") >= 1.0);
    assert!(value("api_db_pool_waiting") >= 0.0);
    assert!(value("api_db_pool_acquire_seconds_count") >= 3.0, "sign-up and two queries each got a connection");
    assert_eq!(value("api_db_pool_acquire_seconds_bucket{le=\"+Inf\"}"), value("api_db_pool_acquire_seconds_count"));
    assert_eq!(value("api_db_pool_timeouts_total"), 0.0);
    // Requests by operation and outcome; slow statements and requests.
    assert_eq!(value("api_graphql_request_duration_seconds_count{operation=\"Nearby\",outcome=\"ok\"}"), 1.0);
    assert_eq!(value("api_graphql_request_duration_seconds_count{operation=\"Mine\",outcome=\"error\"}"), 1.0);
    assert!(value("api_db_slow_queries_total") >= 3.0);
    assert!(value("api_graphql_slow_requests_total") >= 2.0);
    // Websockets and the change feed.
    assert_eq!(value("api_ws_connections"), 1.0);
    assert_eq!(value("api_subscriptions"), 1.0);
    assert!(value("api_events_delivered_total") >= 1.0);
    assert_eq!(value("api_listener_connected"), 1.0);
    assert!(value("api_listener_lag_seconds") >= 0.0);
    // Database statistics, from the pg_stat views.
    assert!(value("api_db_size_bytes") > 0.0);
    assert!((0.0..=1.0).contains(&value("api_db_cache_hit_ratio")));
    assert!((0.0..=1.0).contains(&value("api_db_notification_queue_usage")));
    assert!(value("api_db_table_size_bytes{table=\"place\"}") > 0.0);
    assert!(value("api_db_table_rows_estimate{table=\"review\"}") >= 0.0);
    // Never-used indexes are listed too, with 0 scans.
    assert!(value("api_db_index_scans_total{table=\"place\",index=\"idx_place_location\"}") >= 0.0);
    assert!(text.contains("# TYPE api_db_pool_acquire_seconds histogram"), "{text}");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let fresh = app.http.get(format!("{}/healthz", app.address)).send().await.expect("sending the request");
    let id = fresh.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(id.len(), 36, "a new uuid: {id}");
    let given = app
        .http
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .expect("sending the request");
    assert_eq!(given.headers()["x-request-id"], "trace-42");
}

#[tokio::test]
async fn a_slow_query_over_http_is_logged_in_the_one_span_of_its_request_with_its_id_and_operation_name() {
    // The test's runtime is this thread, and the server runs on it.
    let logs = tests::logs::CapturedLogs::default();
    let _capture = logs.capture();
    let (app, ada) = tests::logs::app_logging_every_statement().await;

    // Twice: a document's first run is checked by the guard, the next not.
    for _ in 0..2 {
        let data = app.data(Some(&ada.token), "query Nearby { places { totalCount } }", json!({})).await;
        assert_eq!(data["places"]["totalCount"], 1);
    }

    // A write, whose COMMIT runs in a task of its own.
    let rate = "mutation Rate { createReview(input: {placeId: \"p1\", rating: 4}) { review { id } } }";
    app.data(Some(&ada.token), rate, json!({})).await;

    let commits = logs.slow_queries_of("Rate");
    assert!(commits.iter().any(|line| line["fields"]["sql"] == "COMMIT"), "{:#?}", logs.lines());
    let mut requests = std::collections::HashSet::new();
    for line in logs.slow_queries_of("Nearby") {
        let spans = tests::logs::spans(&line);
        assert_eq!(spans.len(), 1, "the request's span only: {line}");
        assert_eq!(spans[0]["name"], "request", "{line}");
        assert_eq!(spans[0]["path"], "/graphql", "{line}");
        assert_eq!(spans[0]["id"].as_str().map(str::len), Some(36), "the request id: {line}");
        requests.insert(spans[0]["id"].to_string());
    }
    assert_eq!(requests.len(), 2, "slow queries of both requests: {:#?}", logs.lines());
    // Sign-up's requests too: no GraphQL request's line lacks its operation.
    for line in logs.lines().into_iter().filter(|line| line["fields"]["message"] == "slow query") {
        for span in tests::logs::spans(&line).into_iter().filter(|span| span["path"] == "/graphql") {
            assert!(span["operation"].is_string(), "no operation: {line}");
        }
    }
}

#[tokio::test]
async fn a_request_span_turned_off_by_the_filter_leaves_the_operation_a_span_of_its_own() {
    // RUST_LOG turns the request spans (target api::http) off and keeps
    // the GraphQL spans below them (api::http::graphql).
    let logs = tests::logs::CapturedLogs::default();
    let _capture = logs.capture_filtered("info,api::http=off,api::http::graphql=info");
    let (app, ada) = tests::logs::app_logging_every_statement().await;

    let data = app.data(Some(&ada.token), "query Nearby { places { totalCount } }", json!({})).await;
    assert_eq!(data["places"]["totalCount"], 1);

    let slow = logs.slow_queries_of("Nearby");
    assert!(!slow.is_empty(), "the operation's name is not lost: {:#?}", logs.lines());
    for line in slow {
        let spans = tests::logs::spans(&line);
        assert_eq!(spans.len(), 1, "{line}");
        assert_eq!(spans[0]["name"], "graphql", "{line}");
    }
}
