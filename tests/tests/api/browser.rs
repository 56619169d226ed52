//! Real browsers: GraphiQL and `examples/live-places` in headless Chromium
//! (Debian's `chromium`, driven by npm `playwright-core` from
//! tests/browser/drive.mjs). The script makes the other client's changes
//! over HTTP and reports how long each took to show; this test sets up the
//! server and data and holds the timings to the "within a second".

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tests::TestApp;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Installs the pinned playwright-core (package-lock.json) on first use.
fn ensure_node_modules() {
    if browser_dir().join("node_modules/playwright-core").exists() {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(browser_dir())
        .status()
        .expect("npm is needed for this test (apt-get install nodejs npm)");
    assert!(status.success(), "npm ci failed in {}", browser_dir().display());
}

#[tokio::test]
async fn graphiql_and_the_live_places_page_show_changes_from_other_clients_within_a_second_even_after_a_reconnect() {
    ensure_node_modules();
    let app = TestApp::spawn().await;
    // Seven places within 5 km of (0, 0), and one far away that sorts last
    // by name: the page's first page holds five, "Load more" the other two.
    for i in 1..=7 {
        app.insert_place(&format!("p{i}"), "cafe", 0.001 * f64::from(i), 0.0, Some(4.0), Some(10)).await;
    }
    app.insert_place("zfar", "cafe", 10.0, 10.0, Some(4.0), Some(10)).await;
    let ada = app.sign_up("ada").await;
    let admin = app.sign_up_as("root", "admin").await;

    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots");
    let config = json!({
        "base": app.address,
        "login": "ada",
        "password": "password-ada",
        "token": ada.token,
        "adminToken": admin.token,
        "screenshots": screenshots,
    });
    let run = tokio::process::Command::new("node")
        .arg(browser_dir().join("drive.mjs"))
        .arg(config.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the browser run took over two minutes")
        .expect("node is needed for this test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser run failed:\n{stdout}\n{stderr}");

    let timings: Value = stdout
        .lines()
        .find_map(|line| line.strip_prefix("OK "))
        .map(|json| serde_json::from_str(json).expect("timings are JSON"))
        .unwrap_or_else(|| panic!("no OK line:\n{stdout}"));
    println!("browser timings (ms): {timings}");
    for step in ["graphiqlEventMs", "placeLiveMs", "reviewLiveMs", "resumeMs", "afterResumeMs"] {
        let ms = timings[step].as_u64().unwrap_or_else(|| panic!("no {step} in {timings}"));
        assert!(ms < 1000, "{step} took {ms} ms (at most a second): {stdout}");
    }
}

#[tokio::test]
async fn the_example_page_is_served_in_development_and_nowhere_else() {
    let app = TestApp::spawn().await;
    let get = |path: &str| app.http.get(format!("{}{path}", app.address)).send();
    let page = get("/examples/live-places/").await.expect("GET the page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("page text").contains("vendor/graphql-ws.min.js"));
    let script = get("/examples/live-places/vendor/graphql-ws.min.js").await.expect("GET graphql-ws");
    assert_eq!(script.status(), 200);
    assert!(script.text().await.expect("script text").contains("createClient"));
    for path in ["/examples/live-places/README.md", "/examples/live-places/../../Cargo.toml"] {
        assert_eq!(get(path).await.expect("GET").status(), 404, "{path}");
    }

    let mut config = tests::test_config(&tests::create_database(true).await);
    config.app_env = api::config::AppEnv::Staging;
    let staging = TestApp::spawn_with(config).await;
    let page = staging.http.get(format!("{}/examples/live-places/", staging.address)).send().await.expect("GET");
    assert_eq!(page.status(), 404, "staging serves no examples");
}
