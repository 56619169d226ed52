//! GraphQL over HTTP as clients and the spec expect it: the
//! `application/graphql-response+json` media type, persisted queries,
//! response key order, rolled-back writes, and GraphiQL.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tests::TestApp;

fn audits_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js-audits")
}

/// Installs the pinned packages (package-lock.json) on first use.
fn ensure_audit_modules() {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        if audits_dir().join("node_modules/graphql-http").exists() {
            return;
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(audits_dir())
            .status()
            .unwrap_or_else(|e| panic!("npm is needed for this test (apt-get install nodejs npm): {e}"));
        assert!(status.success(), "npm ci failed in {}", audits_dir().display());
    });
}

#[tokio::test]
async fn the_graphql_http_server_audits_pass_with_no_failure_and_no_warning() {
    ensure_audit_modules();
    let app = TestApp::spawn().await;
    let output = tokio::process::Command::new("node")
        .arg(audits_dir().join("audit.mjs"))
        .arg(format!("{}/graphql", app.address))
        .output()
        .await
        .unwrap_or_else(|e| panic!("node is needed for this test: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    assert_eq!(summary["summary"]["error"], 0, "{stdout}");
    assert_eq!(summary["summary"]["warn"], 0, "{stdout}");
    assert!(summary["summary"]["ok"].as_u64().unwrap_or(0) > 40, "{stdout}");
}

/// Sends `body` to POST /graphql with `accept` (none when `None`) and
/// returns the status, the Content-Type and the JSON body.
async fn post_with(app: &TestApp, accept: Option<&str>, body: Value) -> (u16, String, Value) {
    let mut request = app.http.post(format!("{}/graphql", app.address)).json(&body);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    answer(request.send().await.unwrap_or_else(|e| panic!("request failed: {e}"))).await
}

async fn get_with(app: &TestApp, accept: Option<&str>, params: &[(&str, &str)]) -> (u16, String, Value) {
    let mut request = app.http.get(format!("{}/graphql", app.address)).query(params);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    answer(request.send().await.unwrap_or_else(|e| panic!("request failed: {e}"))).await
}

async fn answer(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = response.json().await.unwrap_or_else(|e| panic!("body is not JSON: {e}"));
    (status, content_type, body)
}

const SPEC: &str = "application/graphql-response+json";

#[tokio::test]
async fn request_errors_in_the_spec_media_type_are_400s_without_a_data_entry() {
    let app = TestApp::spawn().await;
    let cases = [
        ("does not parse", json!({ "query": "{" })),
        ("does not validate", json!({ "query": "{ noSuchField }" })),
        ("variables do not coerce", json!({ "query": "query($n: Int!) { __typename }", "variables": { "n": "x" } })),
        ("names no operation", json!({ "query": "query A { __typename }", "operationName": "B" })),
    ];
    for (what, body) in cases {
        let (status, content_type, body) = post_with(&app, Some(SPEC), body).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(content_type.starts_with(SPEC), "{what}: {content_type}");
        assert!(body.get("data").is_none(), "{what}: no data entry: {body}");
        assert!(body["errors"][0]["extensions"]["code"].is_string(), "{what}: {body}");
    }
}

#[tokio::test]
async fn the_same_request_errors_in_application_json_stay_200s_with_their_errors() {
    let app = TestApp::spawn().await;
    for accept in [None, Some("application/json"), Some("*/*"), Some("text/html, application/*;q=0.5")] {
        let (status, content_type, body) = post_with(&app, accept, json!({ "query": "{ noSuchField }" })).await;
        assert_eq!(status, 200, "{accept:?}: {body}");
        assert!(content_type.starts_with("application/json"), "{accept:?}: {content_type}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED", "{accept:?}");
    }
}

#[tokio::test]
async fn accept_q_values_choose_the_answer_and_an_unacceptable_accept_gets_406() {
    let app = TestApp::spawn().await;
    let query = json!({ "query": "{ __typename }" });
    let cases = [
        ("application/graphql-response+json, application/json;q=0.9", SPEC),
        ("application/graphql-response+json;q=0.5, application/json", "application/json"),
        ("application/json;q=0.2, */*", SPEC),
    ];
    for (accept, expected) in cases {
        let (status, content_type, body) = post_with(&app, Some(accept), query.clone()).await;
        assert_eq!(status, 200, "{accept}: {body}");
        assert!(content_type.starts_with(expected), "{accept}: {content_type}");
        assert_eq!(body["data"]["__typename"], "Query", "{accept}");
    }
    let (status, _, body) = post_with(&app, Some("text/html"), query).await;
    assert_eq!(status, 406, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_ACCEPTABLE");
}

#[tokio::test]
async fn a_field_error_in_the_spec_media_type_is_a_200_with_data() {
    let app = TestApp::spawn().await;
    app.insert_place("p1", "cafe", 0.0, 0.0, None, None).await;
    let ada = app.sign_up("ada").await;
    let create = json!({ "query": "mutation { createReview(input: {placeId: \"p1\", rating: 9}) { review { id } } }" });
    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&ada.token)
        .header("accept", SPEC)
        .json(&create)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, content_type, body) = answer(response).await;
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with(SPEC), "{content_type}");
    assert!(body.get("data").is_some(), "execution started, so data is there: {body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_body_without_a_query_is_a_400_in_either_media_type() {
    let app = TestApp::spawn().await;
    for accept in [None, Some(SPEC)] {
        let (status, _, body) = post_with(&app, accept, json!({ "qeury": "{ __typename }" })).await;
        assert_eq!(status, 400, "{accept:?}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    }
}

#[tokio::test]
async fn a_mutation_over_get_is_405_with_allow_post_and_get_honours_operation_name() {
    let app = TestApp::spawn().await;
    let document = "query A { a: __typename } mutation B { signIn(input: {login: \"x\", password: \"y\"}) { token } }";
    let response = app
        .http
        .get(format!("{}/graphql", app.address))
        .query(&[("query", document), ("operationName", "B")])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    let (status, _, body) = get_with(&app, None, &[("query", document), ("operationName", "A")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["a"], "Query", "operationName picks A: {body}");
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

#[tokio::test]
async fn an_unknown_persisted_query_is_not_found_until_its_document_is_sent_once() {
    let app = TestApp::spawn().await;
    app.insert_place("p1", "cafe", 0.0, 0.0, Some(4.0), Some(1)).await;
    let query = "query Names { places(first: 5) { edges { node { rowId } } } }";
    let hash = sha256_hex(query);

    let (_, _, unknown) = post_with(&app, None, json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(unknown["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND", "{unknown}");
    assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound");
    let (status, _, _) = post_with(&app, Some(SPEC), json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(status, 400, "a request error in the spec media type");

    let (_, _, full) = post_with(&app, None, json!({ "query": query, "extensions": persisted(&hash) })).await;
    assert_eq!(full["data"]["places"]["edges"][0]["node"]["rowId"], "p1", "{full}");
    let (_, _, by_hash) = post_with(&app, None, json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(by_hash, full, "POST by hash");
    let extensions = persisted(&hash).to_string();
    let (status, _, by_get) = get_with(&app, None, &[("extensions", &extensions)]).await;
    assert_eq!((status, by_get), (200, full), "GET by hash");
}

#[tokio::test]
async fn a_persisted_query_whose_hash_does_not_match_its_document_is_refused() {
    let app = TestApp::spawn().await;
    let body = json!({ "query": "{ __typename }", "extensions": persisted(&sha256_hex("{ other }")) });
    let (_, _, refused) = post_with(&app, None, body).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap_or_default().contains("sha256Hash"), "{refused}");
    let (_, _, stored) = post_with(&app, None, json!({ "extensions": persisted(&sha256_hex("{ other }")) })).await;
    assert_eq!(stored["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND", "nothing was kept");
}

#[tokio::test]
async fn a_persisted_document_meets_the_same_guard_and_get_rules_as_a_sent_one() {
    let app = TestApp::spawn().await;
    // Deeper than MAX_QUERY_DEPTH (15 in tests).
    let deep = format!("{{ {}__typename{} }}", "places { edges { node { ".repeat(6), " } } }".repeat(6));
    let hash = sha256_hex(&deep);
    let (_, _, sent) = post_with(&app, None, json!({ "query": deep, "extensions": persisted(&hash) })).await;
    let code = sent["errors"][0]["extensions"]["code"].clone();
    assert!(code == "QUERY_TOO_COMPLEX" || code == "GRAPHQL_VALIDATION_FAILED", "{sent}");
    let (_, _, by_hash) = post_with(&app, None, json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(by_hash["errors"][0]["extensions"]["code"], code, "{by_hash}");

    let mutation = "mutation { signIn(input: {login: \"nobody\", password: \"wrong\"}) { token } }";
    let hash = sha256_hex(mutation);
    let (_, _, ran) = post_with(&app, None, json!({ "query": mutation, "extensions": persisted(&hash) })).await;
    assert_eq!(ran["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "a POSTed mutation runs: {ran}");
    let extensions = persisted(&hash).to_string();
    let response = app
        .http
        .get(format!("{}/graphql", app.address))
        .query(&[("extensions", extensions.as_str())])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 405, "a persisted mutation over GET");
}

#[tokio::test]
async fn response_keys_follow_the_selection_order_when_a_field_waits_on_a_dataloader() {
    let app = TestApp::spawn().await;
    app.insert_place("p1", "cafe", 38.7075, -9.1364, Some(4.5), Some(10)).await;
    let ada = app.sign_up("ada").await;
    app.data(
        Some(&ada.token),
        "mutation { createReview(input: {placeId: \"p1\", rating: 4}) { review { id } } }",
        json!({}),
    )
    .await;
    let query = "{
      myReviews(first: 10) { totalCount edges { node { rating place { name category } } } }
      recommendations(lat: 38.7075, lng: -9.1364, radiusKm: 5, limit: 5) { place { name } score }
      cafes: places(first: 5, category: \"cafe\") { totalCount edges { node { name id } } }
      again: myReviews(first: 1) { edges { node { place { category name } rating } } }
      __typename
    }";
    let body = app.http.post(format!("{}/graphql", app.address)).bearer_auth(&ada.token);
    // The raw text: serde_json's map would not keep the order.
    let text = body
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let at = |key: &str| text.find(key).unwrap_or_else(|| panic!("{key} missing: {text}"));
    let roots = ["\"myReviews\"", "\"recommendations\"", "\"cafes\"", "\"again\"", "\"__typename\""];
    let positions: Vec<usize> = roots.iter().map(|key| at(key)).collect();
    assert!(positions.is_sorted(), "root keys in document order: {text}");
    assert!(
        text.contains(r#""node":{"rating":4.0,"place":{"name""#)
            || text.contains(r#""node":{"rating":4,"place":{"name""#),
        "{text}"
    );
    assert!(text.contains(r#""node":{"place":{"category":"cafe","name""#), "alias keeps its own order: {text}");
}

#[tokio::test]
async fn a_rolled_back_mutation_shows_no_result_of_the_writes_it_undid() {
    let app = TestApp::spawn().await;
    app.insert_place("p1", "cafe", 0.0, 0.0, None, None).await;
    let ada = app.sign_up("ada").await;
    let review = "mutation { createReview(input: {placeId: \"p1\", rating: 4}) { review { id } } }";
    app.data(Some(&ada.token), review, json!({})).await;
    // README's block, second time: the review exists, so createReview fails.
    let both = "mutation {
      setPreference(input: {category: \"cafe\", rating: 5}) { preference { category rating } }
      createReview(input: {placeId: \"p1\", rating: 4.5}) { review { id } }
    }";
    let body = app.graphql(Some(&ada.token), both, json!({})).await;
    assert!(body["data"].is_null(), "no undone result is shown: {body}");
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    let code_at = |path: &str| {
        errors.iter().find(|e| e["path"][0] == path).map(|e| e["extensions"]["code"].clone()).unwrap_or_default()
    };
    assert_eq!(code_at("createReview"), "CONFLICT", "{body}");
    assert_eq!(code_at("setPreference"), "ROLLED_BACK", "{body}");
    assert_eq!(app.count("SELECT count(*) FROM preference").await, 0, "the preference was never saved");
}

#[tokio::test]
async fn graphiql_assets_are_gzipped_only_for_clients_that_accept_gzip() {
    let app = TestApp::spawn().await;
    let fetch = async |accept_encoding: Option<&str>| {
        let mut request = app.http.get(format!("{}/graphiql/graphiql.min.js", app.address));
        if let Some(value) = accept_encoding {
            request = request.header("accept-encoding", value);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers().get("vary").and_then(|v| v.to_str().ok()), Some("accept-encoding"));
        let encoding = response.headers().get("content-encoding").map(|v| v.to_str().unwrap_or_default().to_owned());
        (encoding, response.bytes().await.unwrap_or_default())
    };
    let (encoding, gzipped) = fetch(Some("gzip, deflate, br")).await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut inflated)
        .unwrap_or_else(|e| panic!("not gzip: {e}"));
    for plain in [None, Some("identity"), Some("br, gzip;q=0")] {
        let (encoding, body) = fetch(plain).await;
        assert_eq!(encoding, None, "{plain:?}");
        assert_eq!(body, inflated, "{plain:?}: the same script, plain");
    }
}

#[tokio::test]
async fn graphiql_keeps_headers_opens_query_links_and_wraps_long_lines() {
    let app = TestApp::spawn().await;
    let page = app.http.get(format!("{}/graphiql?query=%7B%20__typename%20%7D", app.address)).send().await;
    let html = page.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    for needle in [
        "shouldPersistHeaders: true",
        "params.get('query')",
        "params.get('variables')",
        "onEditQuery",
        "setOption('lineWrapping', true)",
    ] {
        assert!(html.contains(needle), "{needle} missing from the page");
    }
    let welcome = html.split("const defaultQuery = `").nth(1).and_then(|rest| rest.split("`;").next());
    let longest = welcome.unwrap_or_else(|| panic!("no welcome document")).lines().map(str::len).max();
    assert!(longest.unwrap_or(0) <= 72, "the welcome document fits a narrow editor");
}

/// An operation of a README block: its keyword and its name (`None` for
/// an anonymous one).
type Operation = (String, Option<String>);

/// The README's GraphQL blocks, and the operations each holds.
fn readme_blocks() -> Vec<(String, Vec<Operation>)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .unwrap_or_else(|e| panic!("README: {e}"));
    let mut blocks = Vec::new();
    for chunk in readme.split("```graphql\n").skip(1) {
        let block = chunk.split("```").next().unwrap_or_default().to_owned();
        let operations = block
            .lines()
            .filter(|line| !line.starts_with([' ', '\t', '}', '#']) && !line.is_empty())
            .map(|line| {
                let mut words =
                    line.split(|c: char| c.is_whitespace() || c == '{' || c == '(').filter(|w| !w.is_empty());
                let keyword = words.next().unwrap_or("query").to_owned();
                (keyword, words.next().map(str::to_owned))
            })
            .collect();
        blocks.push((block, operations));
    }
    blocks
}

#[tokio::test]
async fn every_readme_example_pastes_into_graphiql_and_validates_against_the_schema() {
    let app = TestApp::spawn().await;
    let blocks = readme_blocks();
    // A user of their own for each operation: the README signs out,
    // changes the password and deletes the account.
    let mut users = 0;
    assert!(blocks.len() >= 3, "README blocks found: {}", blocks.len());
    for (block, operations) in blocks {
        assert!(!operations.is_empty(), "no operation in {block}");
        // GraphiQL (and the spec) refuse a document of several operations
        // with an anonymous one.
        assert!(operations.len() == 1 || operations.iter().all(|(_, name)| name.is_some()), "unnamed: {block}");
        for (keyword, name) in operations {
            users += 1;
            let ada = app.sign_up(&format!("ada{users}")).await;
            if keyword == "subscription" {
                let mut ws = app.subscriber(Some(&ada.token)).await;
                ws.send(
                    json!({ "id": "1", "type": "subscribe", "payload": { "query": block, "operationName": name } }),
                )
                .await;
                // A document that does not validate is refused at once with
                // an error message; a valid one stays open.
                let refused = tokio::time::timeout(std::time::Duration::from_millis(500), ws.message()).await;
                if let Ok(message) = refused {
                    assert_ne!(message["type"], "error", "{name:?}: {message}");
                }
                continue;
            }
            let body = app
                .http
                .post(format!("{}/graphql", app.address))
                .bearer_auth(&ada.token)
                .json(&json!({ "query": block, "operationName": name }))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .json::<Value>()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            for error in body["errors"].as_array().into_iter().flatten() {
                // Running it may fail (no demo place here, Ada exists); it
                // must not fail as a document.
                assert!(error["path"].is_array(), "{name:?} does not run as a document: {body}");
            }
        }
    }
}
