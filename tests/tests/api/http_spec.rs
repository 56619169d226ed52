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
