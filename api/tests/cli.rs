//! The `api` binary as an operator uses it: the embedded database's life
//! cycle, the CLI commands, and configuration errors.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const API: &str = env!("CARGO_BIN_EXE_api");

/// A DATA_DIR of its own under /tmp (the postgres user must reach it when
/// the tests run as root), removed at the end.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(format!("/tmp/apicli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn postmaster_running(&self) -> bool {
        self.0.join("pg/postmaster.pid").exists()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        // A server left running by a failed assertion: stop its PostgreSQL first.
        if self.postmaster_running() {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill -INT $(head -1 {}/pg/postmaster.pid)", self.0.display()))
                .status();
            std::thread::sleep(Duration::from_secs(2));
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn api(data_dir: &Path) -> Command {
    let mut cmd = Command::new(API);
    cmd.env_remove("DATABASE_URL")
        .env_remove("JWT_SECRET")
        .env("DATA_DIR", data_dir)
        .env("APP_ENV", "development")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run api: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts `api serve` and waits for it to report its address.
fn serve(data_dir: &Path) -> (Child, String) {
    let mut child = api(data_dir)
        .env("PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start api: {e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let address = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("the server did not start within 120 s")
    });
    (child, address)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name}");
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not exit within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn get(address: &str, path: &str) -> reqwest::StatusCode {
    reqwest::get(format!("{address}{path}")).await.map(|r| r.status()).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[tokio::test]
async fn the_server_runs_on_its_embedded_database_and_survives_sigterm_and_sigkill() {
    let data = DataDir::new("serve");

    // First run: initdb, migrate, serve GraphiQL.
    let (mut server, address) = serve(&data.0);
    assert_eq!(get(&address, "/graphiql").await, reqwest::StatusCode::OK);
    assert_eq!(get(&address, "/readyz").await, reqwest::StatusCode::OK);
    assert!(data.postmaster_running());

    // SIGTERM: the server exits cleanly and stops its PostgreSQL.
    signal(&server, "TERM");
    assert!(wait_exit(&mut server).success());
    assert!(!data.postmaster_running(), "PostgreSQL stopped with the server");

    // Second run reuses the cluster; then SIGKILL leaves PostgreSQL orphaned...
    let (mut server, address) = serve(&data.0);
    assert_eq!(get(&address, "/readyz").await, reqwest::StatusCode::OK);
    signal(&server, "KILL");
    wait_exit(&mut server);

    // ...which does not stop the next start.
    let (mut server, address) = serve(&data.0);
    assert_eq!(get(&address, "/readyz").await, reqwest::StatusCode::OK);
    signal(&server, "TERM");
    assert!(wait_exit(&mut server).success());
    assert!(!data.postmaster_running());
}

#[test]
fn cli_commands_migrate_create_users_and_seed_the_embedded_database() {
    let data = DataDir::new("cli");

    let status = run(api(&data.0).args(["migrate", "status"]));
    assert_eq!(status.status.code(), Some(1), "pending migrations exit 1: {}", text(&status.stdout));
    assert!(text(&status.stdout).contains("m20261122_000001_accounts"));

    assert!(run(api(&data.0).args(["migrate", "up"])).status.success());
    let status = run(api(&data.0).args(["migrate", "status"]));
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stdout));

    let mut create = api(&data.0)
        .args(["user", "create", "--email", "root@example.com", "--username", "root", "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    create.stdin.take().map(|mut stdin| stdin.write_all(b"a-long-password\n"));
    let created = create.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(text(&created.stdout).contains("created root"), "{}", text(&created.stdout));

    let duplicate = run(api(&data.0)
        .args(["user", "create", "--email", "ROOT@example.com", "--username", "root2"])
        .stdin(Stdio::piped()));
    assert!(!duplicate.status.success());

    let seeded = run(api(&data.0).args(["seed", "--demo"]));
    assert!(seeded.status.success(), "{}", text(&seeded.stderr));
    assert!(text(&seeded.stdout).contains("300 places"), "{}", text(&seeded.stdout));
    // Seeding again skips what exists.
    assert!(run(api(&data.0).args(["seed", "--demo"])).status.success());

    assert!(run(api(&data.0).args(["migrate", "down", "-n", "2"])).status.success());
    assert_eq!(run(api(&data.0).args(["migrate", "status"])).status.code(), Some(1));
    assert!(run(api(&data.0).args(["migrate", "fresh"])).status.success());
    assert_eq!(run(api(&data.0).args(["migrate", "status"])).status.code(), Some(0));
    assert!(!data.postmaster_running(), "every command stopped the PostgreSQL it started");
}

#[test]
fn bad_configuration_exits_non_zero_with_one_clear_line() {
    let data = DataDir::new("config");
    let unreachable = ("DATABASE_URL", "postgres://x@localhost:1/x");
    /// Arguments, environment, and what stderr must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 6] = [
        (&[], &[("PORT", "eighty")], "invalid value 'eighty'"),
        (&[], &[("APP_ENV", "production"), unreachable], "JWT_SECRET is required"),
        (&[], &[("JWT_SECRET", "short")], "JWT_SECRET must be at least 32 characters"),
        (&[], &[("PG_BIN", "/nonexistent")], "PG_BIN=/nonexistent has no initdb"),
        (
            &[],
            &[("DATABASE_TRANSACTION_POOLER", "true"), unreachable],
            "needs DATABASE_URL (the pooler) and DATABASE_LISTEN_URL",
        ),
        (&["backup"], &[("PG_BIN", "/nonexistent"), unreachable], "PG_BIN=/nonexistent has no pg_dump, pg_restore"),
    ];
    for (args, env, expected) in cases {
        let mut cmd = api(&data.0);
        cmd.args(args).envs(env.iter().copied());
        let out = run(&mut cmd);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} should fail");
        assert!(stderr.contains(expected), "{args:?} {env:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn the_schema_command_prints_the_committed_schema() {
    let out = run(Command::new(API).arg("schema"));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql")).unwrap_or_default();
    assert!(
        text(&out.stdout) == committed,
        "schema.graphql differs from `api schema`; regenerate it: cargo run -q -p api -- schema > schema.graphql"
    );
}

#[test]
fn staging_refuses_to_serve_with_pending_migrations_unless_told_to_migrate() {
    let data = DataDir::new("staging");
    let refused = run(api(&data.0).env("APP_ENV", "staging").env("JWT_SECRET", "x".repeat(32)).env("PORT", "0"));
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("pending migration(s): m20261122_000001_accounts"), "{stderr}");

    // --migrate applies them; `migrate status` then gates green.
    let mut server = api(&data.0)
        .args(["serve", "--migrate"])
        .env("APP_ENV", "staging")
        .env("JWT_SECRET", "x".repeat(32))
        .env("PORT", "0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = server.stderr.take().unwrap_or_else(|| panic!("stderr"));
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep reading to the end, so the server never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("serving on") {
                let _ = tx.send(());
            }
        }
    });
    assert!(rx.recv_timeout(Duration::from_secs(120)).is_ok(), "the server started with --migrate");
    signal(&server, "TERM");
    assert!(wait_exit(&mut server).success());
    assert_eq!(run(api(&data.0).args(["migrate", "status"])).status.code(), Some(0));
}

#[test]
fn backup_prune_keeps_exactly_what_the_retention_policy_says() {
    let dir = DataDir::new("prune");
    std::fs::create_dir_all(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    let now = chrono::Utc::now();
    // Two a day for 800 days, plus a file that is not a backup.
    let mut names = Vec::new();
    for days in 0..800 {
        for hours in [2, 14] {
            let at = now - chrono::Duration::days(days) - chrono::Duration::hours(hours);
            let name = format!("backup_{}.dump", at.format("%Y%m%dT%H%M%SZ"));
            std::fs::write(dir.0.join(&name), b"x").unwrap_or_else(|e| panic!("{e}"));
            names.push(name);
        }
    }
    std::fs::write(dir.0.join("notes.txt"), b"keep me").unwrap_or_else(|e| panic!("{e}"));
    let (keep, delete) = api::ops::backup::plan_prune(&names, now);

    let dry = run(api(&dir.0).args(["backup", "prune", "--dir"]).arg(&dir.0));
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(text(&dry.stdout).contains(&format!("pass --apply to delete {} file(s)", delete.len())));
    assert_eq!(
        std::fs::read_dir(&dir.0).map(Iterator::count).unwrap_or(0),
        names.len() + 1,
        "a dry run deletes nothing"
    );

    let applied = run(api(&dir.0).args(["backup", "prune", "--apply", "--dir"]).arg(&dir.0));
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let mut left: Vec<String> = std::fs::read_dir(&dir.0)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    left.sort();
    let mut expected = keep.clone();
    expected.push("notes.txt".to_owned());
    expected.sort();
    assert_eq!(left, expected);
    assert!(keep.len() < 30 + 26 + 24 && keep.len() > 40, "{} kept", keep.len());
}

#[test]
fn restore_over_data_needs_a_yes_and_then_brings_the_backup_back() {
    let data = DataDir::new("restore");
    assert!(run(api(&data.0).args(["migrate", "up"])).status.success());
    assert!(run(api(&data.0).args(["seed", "--demo"])).status.success());
    let dir = data.0.join("backups");
    let backup = run(api(&data.0).args(["backup", "--dir"]).arg(&dir));
    assert!(backup.status.success(), "{}", text(&backup.stderr));
    let file = std::fs::read_dir(&dir).into_iter().flatten().filter_map(Result::ok).map(|e| e.path()).next();
    let file = file.unwrap_or_else(|| panic!("no backup file in {}", dir.display()));

    let refused = run(api(&data.0).arg("restore").arg(&file));
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("pass --yes"), "{}", text(&refused.stderr));

    let restored = run(api(&data.0).arg("restore").arg(&file).arg("--yes"));
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    let verify = run(api(&data.0).args(["backup", "verify"]).arg(&file));
    assert!(verify.status.success(), "{}{}", text(&verify.stdout), text(&verify.stderr));
}
