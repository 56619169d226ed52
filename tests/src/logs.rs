//! The server's log lines, captured as JSON by a test.

use tracing_subscriber::util::SubscriberInitExt;

use crate::{TestApp, TestUser};

/// A server that logs every statement as a slow query (so each line shows
/// the spans it was logged in), with a place `p1` and a signed-up user
/// `ada`. Call it after [`CapturedLogs::capture`].
pub async fn app_logging_every_statement() -> (TestApp, TestUser) {
    let mut config = crate::test_config(&crate::create_database(true).await);
    config.database_slow_query_ms = 0;
    let app = TestApp::spawn_with(config).await;
    app.insert_place("p1", "cafe", 0.0, 0.0, None, None).await;
    let ada = app.sign_up("ada").await;
    (app, ada)
}

/// Log lines written while its [`CapturedLogs::capture`] guard is alive.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Captures every line written on this thread (a `#[tokio::test]`'s
    /// runtime, where the test's server runs) until the guard drops, in
    /// LOG_FORMAT=json's shape.
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        self.capture_filtered("info")
    }

    /// [`Self::capture`] with a `RUST_LOG`-style filter.
    pub fn capture_filtered(&self, filter: &str) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let filter = tracing_subscriber::EnvFilter::new(filter);
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .finish()
            .set_default()
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        String::from_utf8_lossy(&bytes).lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    /// The "slow query" lines logged inside the span of `operation`.
    pub fn slow_queries_of(&self, operation: &str) -> Vec<serde_json::Value> {
        self.lines()
            .into_iter()
            .filter(|line| line["fields"]["message"] == "slow query")
            .filter(|line| spans(line).iter().any(|span| span["operation"] == operation))
            .collect()
    }
}

/// The spans a JSON line was logged in, outermost first.
pub fn spans(line: &serde_json::Value) -> Vec<serde_json::Value> {
    line["spans"].as_array().cloned().unwrap_or_default()
}
