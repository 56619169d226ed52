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
    configure(Command::new(API), data_dir)
}

/// The environment every run of the binary gets (`cmd` runs it, perhaps
/// through a shell).
fn configure(mut cmd: Command, data_dir: &Path) -> Command {
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
    let (child, address, _logs) = serve_with(data_dir, &[]);
    (child, address)
}

/// Starts `api serve` with extra environment; returns its address and its
/// log lines (stderr) as they come.
fn serve_with(data_dir: &Path, env: &[(&str, &str)]) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut cmd = api(data_dir);
    cmd.envs(env.iter().copied());
    start(cmd)
}

/// Starts `cmd` (a server) on a free port; returns its address and its log
/// lines (stderr) as they come.
fn start(mut cmd: Command) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .env("PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start api: {e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    // Reads to the end even when nobody listens, so the server never
    // blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving on ").nth(1) {
                let _ = address_tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
            let _ = log_tx.send(line);
        }
    });
    let address = address_rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("the server did not start within 120 s")
    });
    (child, address, log_rx)
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

    // Its backends run as SCHED_BATCH (3), so a woken one does not preempt
    // the server's worker that woke it: the postmaster, and the backends
    // it forked for the server's logins (readyz answered, so they exist).
    let pid_file = std::fs::read_to_string(data.0.join("pg/postmaster.pid")).expect("postmaster.pid");
    let postmaster = pid_file.lines().next().unwrap_or_default().trim().to_owned();
    assert_eq!(policy_and_parent(&postmaster).map(|(policy, _)| policy), Some(3), "the postmaster");
    let backends: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| policy_and_parent(entry.ok()?.file_name().to_str()?))
        .filter(|(_, parent)| *parent == postmaster)
        .map(|(policy, _)| policy)
        .collect();
    assert!(backends.contains(&3), "a backend forked after the start is SCHED_BATCH: {backends:?}");

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

/// Process `pid`'s scheduling policy (0 normal, 3 batch) and its parent's
/// pid, from `/proc/<pid>/stat` (fields 41 and 4; the command name before
/// them may hold spaces, so they are counted from its closing parenthesis).
fn policy_and_parent(pid: &str) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    Some((fields.get(41 - 3)?.parse().ok()?, (*fields.get(4 - 3)?).to_owned()))
}

/// How `login`'s connections reach the embedded cluster, read as its
/// superuser: (through a Unix socket, over TCP). Waits up to 10 s for the
/// first (the sequencer connects in the background).
async fn transports(data_dir: &Path, login: &str) -> (i64, i64) {
    use sea_orm::{ConnectionTrait, Database, Statement, Value};
    let read = |file: &str| std::fs::read_to_string(data_dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let port = read("pg/postmaster.pid").lines().nth(3).unwrap_or_default().trim().to_owned();
    let url = format!("postgres://postgres:{}@127.0.0.1:{port}/app", read("pg.password").trim());
    let db = Database::connect(url).await.unwrap_or_else(|e| panic!("connecting as the superuser: {e}"));
    let count = Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT count(*) FILTER (WHERE client_addr IS NULL), count(*) FILTER (WHERE client_addr IS NOT NULL) \
         FROM pg_stat_activity WHERE usename = $1",
        [Value::from(login)],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = db
            .query_one_raw(count.clone())
            .await
            .unwrap_or_else(|e| panic!("reading pg_stat_activity: {e}"))
            .unwrap_or_else(|| panic!("no row"));
        let counts: (i64, i64) = (row.try_get_by_index(0).unwrap_or(-1), row.try_get_by_index(1).unwrap_or(-1));
        if counts != (0, 0) || Instant::now() > deadline {
            let _ = db.close().await;
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_servers_logins_reach_the_embedded_database_through_its_unix_socket_or_over_tcp_when_the_path_is_too_long()
{
    let short = DataDir::new("socket");
    let (mut server, address, logs) = serve_with(&short.0, &[]);
    assert_eq!(get(&address, "/readyz").await, reqwest::StatusCode::OK);
    // The request pool and the listener (app_authenticator), and the
    // logical capture's sequencer (app_sequencer).
    for login in ["app_authenticator", "app_sequencer"] {
        let (socket, tcp) = transports(&short.0, login).await;
        assert!(socket > 0 && tcp == 0, "{login} uses the socket: {socket} socket, {tcp} TCP");
    }
    assert!(logs.try_iter().any(|line| line.contains("and a Unix socket")), "the start-up log names the socket");
    signal(&server, "TERM");
    assert!(wait_exit(&mut server).success());

    // /tmp/apicli-<name>-<pid>/pg/.s.PGSQL.<port> beyond the kernel's 107
    // bytes: PostgreSQL would refuse to start with a socket there.
    let long = DataDir::new(&"x".repeat(90));
    let (mut server, address, logs) = serve_with(&long.0, &[]);
    assert_eq!(get(&address, "/readyz").await, reqwest::StatusCode::OK);
    for login in ["app_authenticator", "app_sequencer"] {
        let (socket, tcp) = transports(&long.0, login).await;
        assert!(socket == 0 && tcp > 0, "{login} on TCP alone: {socket} socket, {tcp} TCP");
    }
    assert!(!logs.try_iter().any(|line| line.contains("Unix socket")));
    signal(&server, "TERM");
    assert!(wait_exit(&mut server).success());
}

#[test]
fn seeding_a_fresh_data_dir_in_development_applies_the_migrations_first() {
    let data = DataDir::new("seedfresh");

    let seeded = run(api(&data.0).args(["seed", "--demo"]));

    assert!(seeded.status.success(), "{}", text(&seeded.stderr));
    assert!(text(&seeded.stdout).contains("300 places"), "{}", text(&seeded.stdout));
    let status = run(api(&data.0).args(["migrate", "status"]));
    assert_eq!(status.status.code(), Some(0), "no migration left pending: {}", text(&status.stdout));
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

    // `migrate fresh` drops tables and types but not functions: with 000009
    // applied, its sign-in functions (no table dependency) survive and must
    // not collide with 000001's re-run (000001 drops auth_sign_up first).
    assert!(run(api(&data.0).args(["migrate", "down", "-n", "1"])).status.success());
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
    let cases: [Case; 9] = [
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
        (&[], &[("JWT_PREVIOUS_SECRET", "an-old-key-an-old-key-an-old-key-1")], "JWT_PREVIOUS_SECRET needs JWT_SECRET"),
        (&[], &[("MAX_CONNECTIONS", "0")], "MAX_CONNECTIONS must be between 1 and"),
        (&[], &[("HTTP_IDLE_TIMEOUT", "0")], "HTTP_IDLE_TIMEOUT must be between 1 and 86400 seconds"),
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
fn outside_development_a_remote_database_without_verified_tls_is_warned_about() {
    let data = DataDir::new("tls-warning");
    let out = run(api(&data.0)
        .env("APP_ENV", "staging")
        .env("JWT_SECRET", "x".repeat(32))
        .env("DATABASE_URL", "postgres://app@db.invalid:1/app?sslmode=require"));
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "db.invalid cannot be reached: {stderr}");
    assert!(
        stderr.contains("DATABASE_URL: db.invalid is reached with sslmode=require") && stderr.contains("verify-full"),
        "{stderr}"
    );
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
fn backup_prune_deletes_what_the_retention_policy_drops_with_their_manifests_and_nothing_else() {
    let dir = DataDir::new("prune");
    std::fs::create_dir_all(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    let now = chrono::Utc::now();
    // Two a day for 800 days, each with its manifest, plus a file that is
    // not a backup. (The exact choice at each boundary is unit-tested in
    // ops::backup; this drives the command over real files.)
    let mut names = Vec::new();
    for days in 0..800 {
        for hours in [2, 14] {
            let at = now - chrono::Duration::days(days) - chrono::Duration::hours(hours);
            let name = api::ops::backup::file_name(at);
            std::fs::write(dir.0.join(&name), b"x").unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(dir.0.join(format!("{name}.json")), b"{}").unwrap_or_else(|e| panic!("{e}"));
            names.push(name);
        }
    }
    std::fs::write(dir.0.join("notes.txt"), b"keep me").unwrap_or_else(|e| panic!("{e}"));
    let files = || -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(&dir.0)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        left.sort();
        left
    };
    let before = files();

    let dry = run(api(&dir.0).args(["backup", "prune", "--dir"]).arg(&dir.0));
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert_eq!(files(), before, "a dry run deletes nothing");
    let would: Vec<String> =
        text(&dry.stdout).lines().filter_map(|l| l.strip_prefix("would delete ")).map(str::to_owned).collect();

    let applied = run(api(&dir.0).args(["backup", "prune", "--apply", "--dir"]).arg(&dir.0));
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let left = files();
    let kept: Vec<&String> = names.iter().filter(|n| left.contains(n)).collect();
    // What the dry run announced is what went, archive and manifest.
    assert_eq!(names.len() - kept.len(), would.len());
    for gone in &would {
        assert!(!left.contains(gone) && !left.contains(&format!("{gone}.json")), "{gone}");
    }
    for name in &kept {
        assert!(left.contains(&format!("{name}.json")), "the manifest of kept {name} stays");
    }
    assert!(left.contains(&"notes.txt".to_owned()));
    // Roughly 30 dailies + 26 weeklies + 24 monthlies, overlapping.
    assert!((45..=80).contains(&kept.len()), "{} kept", kept.len());
    // The newest of each of the last 30 days is among them.
    for days in 0..30 {
        let day = (now - chrono::Duration::days(days)).date_naive();
        let newest =
            names.iter().filter(|n| api::ops::backup::taken_at(n).is_some_and(|t| t.date_naive() == day)).max();
        assert!(newest.is_none_or(|n| kept.contains(&n)), "{day}: {newest:?}");
    }
}

/// The backup archive `api backup` wrote into `dir`.
fn archive_in(dir: &Path) -> PathBuf {
    let archive = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "dump"));
    archive.unwrap_or_else(|| panic!("no backup archive in {}", dir.display()))
}

/// An embedded database with the demo set, backed up with `api backup`:
/// its DATA_DIR and the archive.
fn demo_backup(name: &str) -> (DataDir, PathBuf) {
    let data = DataDir::new(name);
    assert!(run(api(&data.0).args(["migrate", "up"])).status.success());
    assert!(run(api(&data.0).args(["seed", "--demo"])).status.success());
    let dir = data.0.join("backups");
    let backup = run(api(&data.0).args(["backup", "--dir"]).arg(&dir));
    assert!(backup.status.success(), "{}", text(&backup.stderr));
    assert!(text(&backup.stdout).contains("manifest "), "{}", text(&backup.stdout));
    let archive = archive_in(&dir);
    (data, archive)
}

#[test]
fn restore_over_data_needs_a_yes_and_then_brings_the_backup_back() {
    let (data, file) = demo_backup("restore");

    let refused = run(api(&data.0).arg("restore").arg(&file));
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("pass --yes"), "{}", text(&refused.stderr));

    let restored = run(api(&data.0).arg("restore").arg(&file).arg("--yes"));
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    assert!(
        text(&restored.stdout).contains("every table of the backup holds the rows it recorded"),
        "{}",
        text(&restored.stdout)
    );
    let verify = run(api(&data.0).args(["backup", "verify"]).arg(&file));
    assert!(verify.status.success(), "{}{}", text(&verify.stdout), text(&verify.stderr));
    assert!(text(&verify.stdout).contains("manifest recorded"), "{}", text(&verify.stdout));
}

#[test]
fn verify_compares_a_restore_with_the_source_as_the_backup_saw_it() {
    let (data, file) = demo_backup("verify");
    let manifest_path = api::ops::backup::Manifest::path(&file);
    let manifest = api::ops::backup::Manifest::read(&file).ok().flatten();
    let manifest = manifest.unwrap_or_else(|| panic!("no manifest at {}", manifest_path.display()));
    assert_eq!(manifest.rows.get("place"), Some(&300), "{manifest:?}");
    assert_eq!(manifest.migrations.len(), <migration::Migrator as migration::MigratorTrait>::migrations().len());

    // The source moves on after the backup: the backup is still sound.
    let mut create = api(&data.0)
        .args(["user", "create", "--email", "late@example.com", "--username", "late"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    create.stdin.take().map(|mut stdin| stdin.write_all(b"a-long-password\n"));
    assert!(create.wait().is_ok_and(|s| s.success()));
    let verify = run(api(&data.0).args(["backup", "verify"]).arg(&file));
    assert!(verify.status.success(), "{}{}", text(&verify.stdout), text(&verify.stderr));

    // A manifest that disagrees with the archive fails the check, loudly.
    let mut tampered = manifest.clone();
    tampered.rows.insert("users".into(), manifest.rows["users"] + 1);
    tampered.write(&file).unwrap_or_else(|e| panic!("{e}"));
    let verify = run(api(&data.0).args(["backup", "verify"]).arg(&file));
    assert!(!verify.status.success());
    assert!(text(&verify.stdout).contains("DIFFERS"), "{}", text(&verify.stdout));
    assert!(text(&verify.stderr).contains("1 table(s)"), "{}", text(&verify.stderr));

    // Without a manifest the live source is all there is to compare with,
    // and it has one more user now.
    std::fs::remove_file(&manifest_path).unwrap_or_else(|e| panic!("{e}"));
    let verify = run(api(&data.0).args(["backup", "verify"]).arg(&file));
    assert!(text(&verify.stdout).contains("no manifest"), "{}", text(&verify.stdout));
    assert!(!verify.status.success(), "users differ from the live source");

    // A backup of a newer build: restored, with a warning naming what
    // this build does not know.
    let mut newer = manifest.clone();
    newer.migrations.push("m29991231_000099_from_the_future".into());
    newer.write(&file).unwrap_or_else(|e| panic!("{e}"));
    let restored = run(api(&data.0).arg("restore").arg(&file).arg("--yes"));
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    assert!(
        text(&restored.stderr).contains("migrations this build does not know (m29991231_000099_from_the_future)"),
        "{}",
        text(&restored.stderr)
    );
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_slow_queries_name_their_operation() {
    let data = DataDir::new("logs");
    // Every statement is slow, so the request is sure to log some.
    let (mut server, address, logs) = serve_with(&data.0, &[("LOG_FORMAT", "json"), ("DATABASE_SLOW_QUERY_MS", "0")]);
    let response = reqwest::Client::new()
        .post(format!("{address}/graphql"))
        .header("x-request-id", "trace-7")
        .json(&serde_json::json!({ "query": "query Nearby { places(first: 1) { totalCount } }" }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    signal(&server, "TERM");
    assert!(wait_exit(&mut server).success());

    // Every line, up to the end of the server's stderr.
    let mut lines = Vec::new();
    while let Ok(line) = logs.recv_timeout(Duration::from_secs(10)) {
        let json: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        lines.push(json);
    }
    // The spans of a line, flattened: request id, path, operation name.
    let context = |line: &serde_json::Value, key: &str| -> Option<String> {
        line["spans"].as_array()?.iter().find_map(|span| span[key].as_str().map(str::to_owned))
    };
    let of_request = |message: &str| {
        lines
            .iter()
            .find(|line| line["fields"]["message"] == message && context(line, "id").as_deref() == Some("trace-7"))
    };
    let slow_query = of_request("slow query").unwrap_or_else(|| panic!("no slow query of trace-7 in {lines:#?}"));
    assert_eq!(context(slow_query, "operation").as_deref(), Some("Nearby"), "{slow_query}");
    assert!(slow_query["fields"]["sql"].as_str().is_some_and(|sql| !sql.is_empty()), "{slow_query}");
    assert!(slow_query["fields"]["elapsed_ms"].is_u64(), "{slow_query}");
    let slow_request = of_request("slow request").unwrap_or_else(|| panic!("no slow request in {lines:#?}"));
    assert_eq!(slow_request["fields"]["operation"], "Nearby", "{slow_request}");
}

/// The resident and peak memory of a process, in KiB (/proc/<pid>/status).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Issue 10 §4: argon2 takes 19 MiB per hash. On tokio's blocking pool 32
/// concurrent sign-ins grew the process by 541 MiB for good; hashing now
/// runs on a few threads that each reuse one buffer.
#[tokio::test]
async fn sixty_four_concurrent_sign_ins_keep_the_servers_memory_growth_under_128_mib() {
    let data = DataDir::new("hashmem");
    // The rate limits would answer most of these without hashing: lift
    // them, and let every sign-in wait for a hashing thread, so all 64 hash.
    let (mut server, address, _logs) = serve_with(
        &data.0,
        &[
            ("SIGN_IN_PER_IP_PER_MINUTE", "1000000"),
            ("SIGN_IN_PER_LOGIN_PER_MINUTE", "1000000"),
            ("PASSWORD_HASH_WAIT_MS", "60000"),
        ],
    );
    let http = reqwest::Client::new();
    let graphql = |query: String| {
        let (http, url) = (http.clone(), format!("{address}/graphql"));
        async move {
            let response = http.post(url).json(&serde_json::json!({ "query": query })).send().await;
            let body: serde_json::Value = response.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
            body
        }
    };
    let sign_in = |login: String| {
        graphql(format!(
            "mutation {{ signIn(input: {{login: \"{login}\", password: \"not-the-password\"}}) {{ token }} }}"
        ))
    };
    let signed_up = graphql(
        "mutation { signUp(input: {email: \"ada@test.io\", username: \"ada\", password: \"password-ada\", fullName: \"Ada\"}) { token } }"
            .into(),
    )
    .await;
    assert!(signed_up["data"]["signUp"]["token"].is_string(), "{signed_up}");
    // Warm: a hashing thread's buffer, the pool's connections.
    futures_util::future::join_all((0..4).map(|n| sign_in(format!("warm{n}")))).await;
    let (before, _) = memory_kib(server.id());

    // Half unknown logins, half wrong passwords of a real one.
    let attempts = (0..64).map(|n| sign_in(if n % 2 == 0 { format!("nobody{n}") } else { "ada".into() }));
    let bodies = futures_util::future::join_all(attempts).await;
    let (_, peak) = memory_kib(server.id());
    signal(&server, "TERM");
    assert!(wait_exit(&mut server).success());

    for body in &bodies {
        let code = body["errors"][0]["extensions"]["code"].as_str().unwrap_or_default();
        assert_eq!(code, "UNAUTHENTICATED", "{body}");
    }
    let growth_mib = peak.saturating_sub(before) / 1024;
    assert!(growth_mib < 128, "64 concurrent sign-ins grew the server's peak memory by {growth_mib} MiB");
}

#[tokio::test]
async fn with_few_open_files_the_server_raises_the_limit_fits_its_connection_cap_and_idle_connections_cannot_lock_clients_out()
 {
    let data = DataDir::new("nofile");
    // A soft limit of 200 open files under a hard one of 400: unraised, 350
    // idle connections would exhaust it and no client could connect.
    let mut shell = Command::new("sh");
    shell.arg("-c").arg("ulimit -S -n 200 && ulimit -H -n 400 && exec \"$0\"").arg(API);
    let mut cmd = configure(shell, &data.0);
    cmd.env("HTTP_HEADER_READ_TIMEOUT", "2").env("LOG_FORMAT", "json");
    let (mut server, address, logs) = start(cmd);

    // The soft limit is raised to the hard one, and the cap fits under it
    // with the pool (20 + 10) and a reserve of 64 left.
    let limits = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(10)).ok())
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
        .find(|line| line["fields"]["message"] == "connection limits")
        .unwrap_or_else(|| panic!("no `connection limits` line"));
    assert_eq!(limits["fields"]["open_files"], 400, "{limits}");
    assert_eq!(limits["fields"]["max_connections"], 306, "{limits}");

    // 350 idle connections, more than the cap and than the old soft limit.
    let host = address.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..350 {
        idle.push(tokio::net::TcpStream::connect(&host).await.unwrap_or_else(|e| panic!("locked out: {e}")));
    }
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
    let ready = client.get(format!("{address}/readyz")).send().await.unwrap_or_else(|e| panic!("locked out: {e}"));
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(15), "served only after {:?}", started.elapsed());

    drop(idle);
    signal(&server, "TERM");
    assert!(wait_exit(&mut server).success());
}
