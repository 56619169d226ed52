//! Issue 12's dependencies that earn their place: /metrics through
//! prometheus-client, secrets that `Debug` never prints, and start-up and
//! CLI errors that keep their cause.

use std::collections::BTreeSet;
use std::error::Error as _;

use api::app::StartError;
use api::commands::CliError;
use serde_json::json;
use tests::TestApp;

/// The families declared by `# TYPE` lines, and every sample line as
/// (series name, labels, value), checked line by line against the text
/// format (version 0.0.4) on the way; panics at the first bad line.
fn parse_exposition(text: &str) -> (BTreeSet<String>, Vec<(String, String, f64)>) {
    let (mut typed, mut helped, mut samples) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(helped.insert(name.to_owned()), "a second HELP for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("TYPE without a kind: {line}"));
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(typed.insert(name.to_owned()), "a second TYPE for {name}");
        } else {
            assert!(!line.starts_with('#'), "a comment the text format does not have: {line}");
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                value => value.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    for label in labels.split(',') {
                        let (key, quoted) = label.split_once('=').unwrap_or_else(|| panic!("bad label: {line}"));
                        assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                        assert!(quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
                    }
                    (name, labels)
                }
                None => (series, ""),
            };
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad name: {line}");
            // A histogram's series carry a suffix; a counter's family is
            // named with its `_total`, as Prometheus 0.0.4 text has it.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|family| typed.contains(*family)))
                .unwrap_or(name);
            assert!(typed.contains(family), "a sample before its TYPE: {line}");
            samples.push((name.to_owned(), labels.to_owned(), value));
        }
    }
    (typed, samples)
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_one_help_and_one_type_before_every_family() {
    // Arrange: a request, so the labelled histogram family has a series.
    let app = TestApp::spawn().await;
    app.graphql(None, "query Probe { __typename }", json!({})).await;

    // Act
    let response = app.http.get(format!("{}/metrics", app.address)).send().await.expect("GET /metrics");
    let content_type = response.headers()["content-type"].to_str().unwrap_or_default().to_owned();
    let text = response.text().await.expect("a body");

    // Assert
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let (families, samples) = parse_exposition(&text);
    for family in [
        "api_db_pool_connections_in_use",
        "api_db_pool_waiting",
        "api_db_pool_acquire_seconds",
        "api_db_pool_timeouts_total",
        "api_db_slow_queries_total",
        "api_graphql_slow_requests_total",
        "api_graphql_request_duration_seconds",
        "api_ws_connections",
        "api_subscriptions",
        "api_events_delivered_total",
        "api_listener_connected",
        "api_listener_lag_seconds",
    ] {
        assert!(families.contains(family), "{family} missing from:\n{text}");
    }
    assert!(text.contains("# TYPE api_db_pool_timeouts_total counter\n"), "{text}");
    assert!(text.contains("# TYPE api_graphql_request_duration_seconds histogram\n"), "{text}");
    // A histogram's buckets count up to its +Inf bucket, which is its count.
    let probe = |name: &str, le: &str| {
        samples
            .iter()
            .find(|(n, labels, _)| {
                n == name && labels.starts_with(r#"operation="Probe",outcome="ok""#) && labels.ends_with(le)
            })
            .map(|(_, _, value)| *value)
    };
    assert_eq!(probe("api_graphql_request_duration_seconds_bucket", r#"le="+Inf""#), Some(1.0), "{text}");
    assert_eq!(probe("api_graphql_request_duration_seconds_count", r#"outcome="ok""#), Some(1.0), "{text}");
}

#[tokio::test]
async fn two_servers_in_one_process_count_only_their_own_requests() {
    // Arrange
    let (busy, idle) = (TestApp::spawn().await, TestApp::spawn().await);

    // Act
    busy.graphql(None, "query OnlyOnBusy { __typename }", json!({})).await;

    // Assert: a registry per server, not one per process.
    let series = "api_graphql_request_duration_seconds_count{operation=\"OnlyOnBusy\",outcome=\"ok\"}";
    assert_eq!(busy.metrics().await.value(series), 1.0);
    assert!(!idle.metrics().await.0.contains("OnlyOnBusy"), "the other server's request counted here");
}

#[tokio::test]
async fn the_configuration_of_a_server_prints_no_secret_in_debug_output() {
    let config = tests::test_config("any_database");
    let url = config.database_url.as_ref().map(secrecy::ExposeSecret::expose_secret).unwrap_or_default().to_owned();

    let shown = format!("{config:?}");

    assert!(!shown.contains(tests::JWT_SECRET), "{shown}");
    assert!(!url.is_empty() && !shown.contains(&url), "{shown}");
    assert!(shown.contains("[REDACTED]"), "{shown}");
}

#[tokio::test]
async fn a_server_that_cannot_connect_to_its_database_says_so_and_keeps_the_cause() {
    // Arrange: a URL the driver refuses before any connection attempt (a
    // closed port would be retried until the pool timeout).
    let mut config = tests::test_config("unreachable");
    config.database_url = Some("postgres://app:a-password@127.0.0.1:1/app?sslmode=bogus".to_owned().into());

    // Act
    let error = api::Application::build(config.clone()).await.err().expect("the server cannot start");

    // Assert: typed, with its cause, and a message that says what failed
    // but not the URL's password.
    assert!(matches!(error, StartError::Connect { what: "the database", .. }), "{error:?}");
    assert!(error.source().is_some(), "the database error is kept as the cause");
    let message = error.to_string();
    assert!(message.starts_with("cannot connect to the database: "), "{message}");
    assert!(!message.contains("a-password"), "{message}");

    // The CLI's commands fail the same way, through the same type.
    let cli = api::commands::migrate(&config, api::cli::MigrateAction::Status).await.expect_err("no database");
    assert!(matches!(cli, CliError::Start(StartError::Connect { .. })), "{cli:?}");
    assert!(!format!("{cli:?}").contains("a-password"), "{cli:?}");
}

#[tokio::test]
async fn an_invalid_setting_is_a_configuration_error_naming_it() {
    let mut config = tests::test_config("never_connected");
    config.database_pool_size = 0;

    let error = api::Application::build(config).await.err().expect("refused");

    assert!(matches!(error, StartError::Config(_)), "{error:?}");
    assert_eq!(error.to_string(), "DATABASE_POOL_SIZE must be at least 1");
}
