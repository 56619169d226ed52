//! The release server under test, started next to the bench on an embedded
//! database of its own (a DATA_DIR in /tmp), and what the bench reads about
//! it from /proc: CPU time and memory of the server and of its PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The secret the bench's servers sign tokens with (loopback only).
pub const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret-00";

/// The `api` binary: `--api` if given, else the one next to this binary.
pub fn api_binary(explicit: Option<&Path>) -> PathBuf {
    let api = explicit.map_or_else(
        || std::env::current_exe().expect("locating this executable").with_file_name("api"),
        Path::to_path_buf,
    );
    assert!(api.exists(), "no server at {}: cargo build --release -p api", api.display());
    api
}

/// Runs an `api` subcommand on `data_dir` (migrate, seed, user create) and
/// waits for it; its output goes to `data_dir/api-cli.log`.
pub async fn api_command(api: &Path, data_dir: &Path, args: &[&str], stdin: Option<&str>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("api-cli.log"))
        .unwrap_or_else(|e| panic!("cannot write to {}: {e}", data_dir.display()));
    let mut child = tokio::process::Command::new(api)
        .args(args)
        .env("DATA_DIR", data_dir)
        .env("JWT_SECRET", JWT_SECRET)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("cloning the log file handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", api.display()));
    if let Some(mut pipe) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = pipe.write_all(stdin.unwrap_or_default().as_bytes()).await;
    }
    let ok = child.wait().await.is_ok_and(|s| s.success());
    assert!(ok, "api {} failed: see {}", args.join(" "), data_dir.join("api-cli.log").display());
}

/// The release server on an embedded database in `data_dir`.
pub struct Server {
    child: tokio::process::Child,
    pub address: String,
    pub data_dir: PathBuf,
    /// Delete `data_dir` when stopped (a temporary one); kept when the user named it.
    remove_data_dir: bool,
}

impl Server {
    /// Starts `api` with the bench's settings plus `env`, and waits until it serves.
    /// Its log goes to `data_dir/api.log`, so reading it costs the client nothing.
    pub async fn start(api: &Path, data_dir: PathBuf, remove_data_dir: bool, env: &[(String, String)]) -> Self {
        std::fs::create_dir_all(&data_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", data_dir.display()));
        let log_path = data_dir.join("api.log");
        let log =
            std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("cannot write {}: {e}", log_path.display()));
        let mut command = tokio::process::Command::new(api);
        command
            .env("DATA_DIR", &data_dir)
            .env("PORT", "0")
            .env("JWT_SECRET", JWT_SECRET)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", api.display()));
        let started = Instant::now();
        let address = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(rest) = text.split("serving on ").nth(1) {
                break rest.split_whitespace().next().unwrap_or_default().trim_matches('"').to_owned();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the server exited ({status}): see {}", log_path.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the server did not start: see {}",
                log_path.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Self { child, address, data_dir, remove_data_dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.address)
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        if self.remove_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The fields of /proc/<pid>/stat after the command name (which is in
/// parentheses and may hold spaces): index 0 is the state, 1 the parent pid,
/// 11 utime, 12 stime (in clock ticks).
fn stat_fields(pid: &str) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
}

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: &str) -> f64 {
    let fields = stat_fields(pid);
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / TICKS_PER_SECOND
}

/// CPU seconds used so far by a PostgreSQL cluster: the postmaster and all
/// its children (backends, autovacuum, WAL writer...), live ones from their
/// own stat, exited ones from the postmaster's cutime + cstime (the kernel
/// adds a child's time there when the postmaster reaps it).
pub fn cluster_cpu_seconds(postmaster: u32) -> f64 {
    let postmaster = postmaster.to_string();
    let own = stat_fields(&postmaster);
    let mut total: f64 = (11..=14).filter_map(|i| own.get(i)?.parse::<f64>().ok()).sum::<f64>() / TICKS_PER_SECOND;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let fields = stat_fields(pid);
        if fields.get(1).is_some_and(|ppid| *ppid == postmaster) {
            total += fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0) / TICKS_PER_SECOND
                + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) / TICKS_PER_SECOND;
        }
    }
    total
}
