//! The PostgreSQL clusters the tests run on: the one every test of this
//! process shares (started on first use), and private ones for tests that
//! must stop, restart or reconfigure their server without disturbing the
//! others. Each lives in a temp folder on a free port and a private unix
//! socket; a watchdog process stops it and deletes the folder once the test
//! process is gone, however it ends.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A PostgreSQL cluster in a temp folder, on a free port and a private unix
/// socket, stopped and deleted by a watchdog once the test process exits.
pub struct Cluster {
    pub(crate) port: u16,
    pub(crate) socket_dir: PathBuf,
    data: PathBuf,
    pub(crate) bin: PathBuf,
    pub(crate) run_as: Option<(u32, u32)>,
    /// `-c` options of [`Cluster::start_with`], after the defaults.
    settings: String,
}

impl Cluster {
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@localhost:{}/{database}?host={}", self.port, self.socket_dir.display())
    }

    /// A URL over TCP to `localhost` on the cluster's port, for a cluster
    /// started to listen on 127.0.0.1 (see [`Cluster::start_with`]); append
    /// the query string (`?sslmode=..`).
    pub fn tcp_url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@localhost:{}/{database}", self.port)
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.current_dir("/").stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Stops the server (fast shutdown), as an outage would.
    pub fn stop(&self) {
        run(self.pg_ctl().args(["stop", "-w", "-m", "fast", "-D"]).arg(&self.data), "pg_ctl stop");
    }

    /// What the server has logged so far (its warnings and errors).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.socket_dir.join("postgres.log")).unwrap_or_default()
    }

    /// Starts it again on the same port.
    pub fn start_again(&self) {
        run(
            self.pg_ctl()
                .args(["start", "-w", "-s", "-D"])
                .arg(&self.data)
                .arg("-l")
                .arg(self.socket_dir.join("postgres.log"))
                .args(["-o", &self.options()])
                .process_group(0),
            "pg_ctl start",
        );
    }

    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on -c wal_level=logical -c max_replication_slots=100 -c max_slot_wal_keep_size=1024{}",
            self.port,
            self.socket_dir.display(),
            self.settings
        )
    }

    /// Creates, starts and guards a new cluster, listening on its unix
    /// socket only.
    pub fn start() -> Self {
        Self::start_with(&[], "")
    }

    /// Like [`Cluster::start`], plus server `settings` (`name=value`, each
    /// passed as `-c` after the defaults, so `listen_addresses=127.0.0.1`
    /// overrides the default of no TCP; through pg_ctl's shell, so no
    /// spaces) and `hba_first`: lines put at the top of pg_hba.conf, where
    /// they win over initdb's `trust` lines.
    pub fn start_with(settings: &[&str], hba_first: &str) -> Self {
        let bin = api::db::embedded::find_pg_bin(None).expect("finding the PostgreSQL binaries");
        let run_as = api::db::embedded::postgres_user_if_root().expect("looking up the postgres user");
        // Short path: unix socket paths are limited to ~107 bytes.
        let dir = PathBuf::from(format!(
            "/tmp/apitest-{}-{}",
            std::process::id(),
            api::db::embedded::random_hex(3).expect("the OS random generator works")
        ));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        if let Some((uid, gid)) = run_as {
            for path in [&dir, &data] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("giving the folder to the postgres user");
            }
        }
        let as_postgres = |program: &Path| {
            let mut cmd = Command::new(program);
            cmd.current_dir("/").stdin(Stdio::null());
            if let Some((uid, gid)) = run_as {
                cmd.uid(uid).gid(gid);
            }
            cmd
        };
        run(
            as_postgres(&bin.join("initdb"))
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
                .arg(&data),
            "initdb",
        );
        if !hba_first.is_empty() {
            let hba = data.join("pg_hba.conf");
            let initdb_lines = std::fs::read_to_string(&hba).unwrap_or_else(|e| panic!("{}: {e}", hba.display()));
            std::fs::write(&hba, format!("{hba_first}\n{initdb_lines}"))
                .unwrap_or_else(|e| panic!("{}: {e}", hba.display()));
        }
        let settings = settings.iter().map(|s| format!(" -c {s}")).collect();
        let port = free_port();
        let cluster = Self { port, socket_dir: dir.clone(), data: data.clone(), bin: bin.clone(), run_as, settings };
        cluster.start_again();
        // Stops the cluster and removes its folder once this process is gone.
        // Never waited for: it must outlive us (it is reparented to init).
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \"$0\" stop -m immediate -D \"$1\" >/dev/null 2>&1; rm -rf \"$2\"",
            pid = std::process::id()
        );
        #[allow(clippy::zombie_processes)]
        as_postgres(Path::new("/bin/sh"))
            .arg("-c")
            .arg(script)
            .arg(bin.join("pg_ctl"))
            .arg(&data)
            .arg(&dir)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the cluster watchdog");
        cluster
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

pub(crate) fn run(cmd: &mut Command, what: &str) {
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(output.status.success(), "{what} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// The cluster shared by the tests of this process.
pub(crate) fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

/// The cluster shared by the tests of this process, for tests that need
/// URLs of other logins on it.
pub fn shared_cluster() -> &'static Cluster {
    cluster()
}

/// The superuser URL of a database on the test cluster.
pub fn superuser_url(database: &str) -> String {
    cluster().url("postgres", database)
}
