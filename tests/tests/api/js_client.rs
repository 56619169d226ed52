//! A client that is not ours: the `graphql-ws` package from npm, under Node.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tests::TestApp;
use tokio::io::{AsyncBufReadExt, BufReader};

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Installs the pinned packages (package-lock.json) on first use.
fn ensure_node_modules() {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        if js_dir().join("node_modules/graphql-ws").exists() {
            return;
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(js_dir())
            .status()
            .expect("npm is needed for this test (apt-get install nodejs npm)");
        assert!(status.success(), "npm ci failed in {}", js_dir().display());
    });
}

#[tokio::test]
async fn the_npm_graphql_ws_client_receives_its_own_new_review_and_nothing_of_another_users() {
    ensure_node_modules();
    let app = TestApp::spawn().await;
    app.insert_place("p1", "cafe", 0.0, 0.0, None, None).await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let after = app.change_cursor_for(&ada).await;
    let query =
        "subscription($after: String) { myReviewChanged(after: $after) { operation review { id userId rating } } }";
    let mut node = tokio::process::Command::new("node")
        .arg(js_dir().join("subscribe.mjs"))
        .arg(format!("{}/graphql/ws", app.address.replacen("http", "ws", 1)))
        .arg(&ada.token)
        .arg(query)
        .arg(json!({ "after": after }).to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is needed for this test");
    let mut lines = BufReader::new(node.stdout.take().expect("no stdout")).lines();

    let create = "mutation($r: Float!) { createReview(input: {placeId: \"p1\", rating: $r}) { review { id } } }";
    let bobs = app.data(Some(&bob.token), create, json!({ "r": 1 })).await["createReview"]["review"]["id"].clone();
    let adas = app.data(Some(&ada.token), create, json!({ "r": 5 })).await["createReview"]["review"]["id"].clone();

    let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .expect("no event within 20 s")
        .ok()
        .flatten()
        .unwrap_or_default();
    let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let review = &event["data"]["myReviewChanged"]["review"];
    assert_eq!(event["data"]["myReviewChanged"]["operation"], "INSERTED");
    assert_eq!(review["id"], adas);
    assert_eq!(review["userId"], ada.id.as_str());
    assert_ne!(review["id"], bobs, "Bob's review, written first, never arrives");
    assert!(!line.contains(&bob.id), "nothing of Bob's: {line}");
}
