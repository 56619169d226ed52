//! PostGraphile 4.14.1 beside the server, for `bench queries --postgraphile`
//! (issue 11's "≥ 3× PostGraphile" target, measured in the same run).
//!
//! It is installed once with npm into `DATA_DIR/postgraphile` and started as
//! a small Node script in library mode against the same database and data.
//! Viewer: the same as the server's, as far as PostGraphile allows. Its
//! `pgSettings` verifies the bench user's bearer token (our HS256 JWT, with
//! `jsonwebtoken`, which PostGraphile ships) and runs each request as role
//! `app_user` with `app.user_id` = the token's `sub`, transaction-local (no
//! token: `app_anon`, as the server; the start-up probe has none): the
//! same RLS policies as the server's requests (PostGraphile's own JWT
//! support would put the claims under `jwt.claims.*`, which our policies do
//! not read). It connects as the cluster's superuser (the only login the
//! bench knows the password of) and switches role per transaction, so RLS
//! applies exactly as for `app_user`. Its pool is node-postgres' default (10).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The version the issue measured.
const VERSION: &str = "4.14.1";

/// The library-mode server: URL, secret on the command line; prints the
/// port it listens on (loopback, port chosen by the OS).
const SCRIPT: &str = r#"// Written by `bench queries --postgraphile`; see bench/src/postgraphile.rs.
const http = require('http');
const jwt = require('jsonwebtoken');
const { postgraphile } = require('postgraphile');
const [url, secret] = process.argv.slice(2);
const middleware = postgraphile(url, 'public', {
  pgSettings: (req) => {
    const header = req.headers.authorization;
    if (!header) return { role: 'app_anon' };
    const claims = jwt.verify(header.replace(/^Bearer /, ''), secret, { algorithms: ['HS256'] });
    return { role: 'app_user', 'app.user_id': claims.sub };
  },
  disableQueryLog: true,
  retryOnInitFail: false,
});
const server = http.createServer(middleware);
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => console.log(`listening on ${server.address().port}`));
"#;

/// A running PostGraphile.
pub struct PostGraphile {
    child: tokio::process::Child,
    pub url: String,
}

impl PostGraphile {
    /// Installs PostGraphile under `data_dir/postgraphile` unless there, and
    /// starts it against `database_url`; waits until it serves.
    pub async fn start(data_dir: &Path, database_url: &str, jwt_secret: &str) -> Self {
        let dir = data_dir.join("postgraphile");
        install(&dir).await;
        let script = dir.join("bench-postgraphile.js");
        std::fs::write(&script, SCRIPT).unwrap_or_else(|e| panic!("cannot write {}: {e}", script.display()));
        let log_path = dir.join("postgraphile.log");
        let log =
            std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("cannot write {}: {e}", log_path.display()));
        let mut child = tokio::process::Command::new("node")
            .arg(&script)
            .arg(database_url)
            .arg(jwt_secret)
            .current_dir(&dir)
            .env("NODE_ENV", "production")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}")))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node (is Node.js installed?): {e}"));
        let started = Instant::now();
        let port = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(rest) = text.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap_or_default().to_owned();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("PostGraphile exited ({status}): see {}", log_path.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "PostGraphile did not start: see {}",
                log_path.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let this = Self { child, url: format!("http://127.0.0.1:{port}/graphql") };
        this.wait_for_schema().await;
        this
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// PostGraphile introspects the database on its first request.
    async fn wait_for_schema(&self) {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let answered = http
                .post(&self.url)
                .json(&serde_json::json!({ "query": "{ __typename }" }))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if answered {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "PostGraphile does not answer at {}", self.url);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `npm install postgraphile@VERSION` into `dir` (once).
async fn install(dir: &Path) {
    let installed: PathBuf = dir.join("node_modules/postgraphile/package.json");
    if std::fs::read_to_string(&installed).is_ok_and(|text| text.contains(&format!("\"version\": \"{VERSION}\""))) {
        return;
    }
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    println!("installing postgraphile@{VERSION} into {} (once) ...", dir.display());
    let status = tokio::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
        .arg(dir)
        .arg(format!("postgraphile@{VERSION}"))
        .stdin(Stdio::null())
        .status()
        .await
        .unwrap_or_else(|e| panic!("cannot run npm (is Node.js installed?): {e}"));
    assert!(status.success(), "npm install postgraphile@{VERSION} failed");
}
