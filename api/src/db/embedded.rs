//! The embedded default database: a PostgreSQL cluster of our own in
//! DATA_DIR, started from the machine's binaries when DATABASE_URL is unset.
//!
//! - First run: `initdb` with a generated superuser password (scram), kept in
//!   DATA_DIR; later runs reuse the cluster.
//! - It listens on loopback on a free port only, never on a public address,
//!   and on a Unix socket in the cluster folder, which the server's own
//!   logins use (see [`EmbeddedPostgres::login_url`]).
//! - As root, PostgreSQL (which refuses to run as root) runs as the `postgres`
//!   system user, which then owns the cluster folder.
//! - It stops on Ctrl-C/SIGTERM and when the server exits (`Drop`). If the
//!   server is killed with SIGKILL, a tiny watchdog process stops PostgreSQL
//!   when it notices, and the next start also stops any orphan it finds, so a
//!   killed server never blocks the next start.
//! - A second process on the same DATA_DIR (`api seed` while the server
//!   runs) attaches to the running cluster instead, and leaves it running.
//! - Its backends run as `SCHED_BATCH`, so that one woken by a statement
//!   does not preempt the server's worker that sent it (see
//!   `EmbeddedPostgres::schedule_as_batch`).

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};

/// The database the embedded cluster serves.
pub const DATABASE: &str = "app";

/// Why the embedded database could not start, with what to do about it
/// where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// A file, folder or program of the cluster could not be used.
    #[error("{doing}: {source}")]
    Io { doing: String, source: std::io::Error },
    /// The binaries are not installed, or not where PG_BIN says.
    #[error("{0}")]
    NoBinaries(String),
    #[error(
        "running as root needs a `postgres` system user to run the embedded PostgreSQL (install Debian's `postgresql`, or run as another user)"
    )]
    NoPostgresUser,
    #[error("initdb failed: {0}")]
    Initdb(String),
    #[error("embedded PostgreSQL did not start: {stderr} (see {})", log.display())]
    DidNotStart { stderr: String, log: PathBuf },
    /// The operating system's random generator failed (a password or a
    /// secret could not be generated).
    #[error("the OS random generator failed: {0}")]
    Random(#[from] getrandom::Error),
}

/// The `map_err` of a failed file or process operation: what was being done.
fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let doing = doing.into();
    move |source| EmbeddedError::Io { doing, source }
}

pub struct EmbeddedPostgres {
    bin: PathBuf,
    cluster: PathBuf,
    run_as: Option<(u32, u32)>,
    port: u16,
    superuser_password: SecretString,
    /// We started it, so we stop it; false when attached to another process's cluster.
    owned: bool,
}

impl EmbeddedPostgres {
    /// Initialises (first run) and starts the cluster in `data_dir/pg`.
    /// Blocking: call from `spawn_blocking`.
    pub fn start(data_dir: &Path, pg_bin: Option<&Path>) -> Result<Self, EmbeddedError> {
        let bin = find_pg_bin(pg_bin)?;
        fs::create_dir_all(data_dir).map_err(io(format!("cannot create DATA_DIR {}", data_dir.display())))?;
        let data_dir =
            data_dir.canonicalize().map_err(io(format!("cannot resolve DATA_DIR {}", data_dir.display())))?;
        let run_as = postgres_user_if_root()?;
        let cluster = data_dir.join("pg");
        let password_file = data_dir.join("pg.password");

        let superuser_password = if cluster.join("PG_VERSION").exists() {
            let read = fs::read_to_string(&password_file).map_err(io(format!(
                "cannot read {} (delete {} to start over)",
                password_file.display(),
                cluster.display()
            )))?;
            read.trim().into()
        } else {
            init_cluster(&bin, &data_dir, &cluster, &password_file, run_as)?
        };

        let owner_file = data_dir.join("pg.owner");
        let mut pg = Self { bin, cluster, run_as, port: 0, superuser_password, owned: false };
        if let Some(port) = pg.running_port() {
            if owner_alive(&owner_file) {
                tracing::info!(port, "attaching to the embedded PostgreSQL of a running server");
                pg.port = port;
                return Ok(pg);
            }
            pg.stop_orphan();
        }
        pg.port = free_port()?;
        match pg.pg_ctl_start(true) {
            // PostgreSQL stops when it can create none of its sockets: a
            // file system or a sandbox that refuses Unix sockets (some
            // container bind mounts, AppArmor, a unit without AF_UNIX)
            // must not keep the server from starting on TCP.
            Err(err) if pg.socket_dir().is_some() => {
                tracing::warn!(error = %err, "the embedded PostgreSQL did not start with a Unix socket; starting it on TCP alone");
                pg.pg_ctl_start(false)?;
            }
            started => started?,
        }
        pg.owned = true;
        fs::write(&owner_file, std::process::id().to_string())
            .map_err(io(format!("cannot write {}", owner_file.display())))?;
        pg.spawn_watchdog();
        pg.schedule_as_batch();
        Ok(pg)
    }

    /// Puts the postmaster under `SCHED_BATCH`, which every backend it
    /// forks from now on inherits: a woken backend then does not preempt
    /// the task that woke it (Linux: batch tasks are preempted by the tick,
    /// not on wake-up), and runs on an idle core at once, or once the
    /// running task's slice ends (a tick or two, 1–4 ms) when both are
    /// busy.
    ///
    /// The cluster shares its host with the server that started it. Each
    /// statement the server sends wakes a backend, which under the default
    /// policy took the CPU from the server's worker at once, in the middle
    /// of its send: two context switches a statement, and the worker's
    /// other requests waited meanwhile. `perf` of case b of `bench
    /// queries` put 18 % of the server's CPU there (the switch itself and
    /// the wake-up under the run-queue lock). Under `SCHED_BATCH`, server
    /// CPU per request fell 16–22 % and PostgreSQL's 9–11 % (BENCHMARKS,
    /// queries stage 20). The price, when the server's workers are
    /// saturated: a statement's backend (the change feed's too) may wait
    /// that tick before it runs. The processes the postmaster forked
    /// before this (checkpointer, background and WAL writers, launchers)
    /// keep the default policy.
    ///
    /// Done with util-linux's `chrt` (no unsafe code, and no crate offers
    /// `sched_setscheduler` for another process safely), run as
    /// PostgreSQL's own user: a process may lower its own policy to batch
    /// without privileges, where root acting on another user's process
    /// needs `CAP_SYS_NICE`, which containers often withhold. Without
    /// `chrt`, or where the policy is refused, the cluster runs as it did,
    /// and the start-up log says why.
    fn schedule_as_batch(&self) {
        // The pid file is the cluster's (writable by its user): only a
        // number is passed on.
        let Some(postmaster) = self.postmaster_pid_line(0).and_then(|line| line.parse::<u32>().ok()) else { return };
        let set = self
            .command(Path::new("chrt"))
            .args(["--batch", "--pid", "0"])
            .arg(postmaster.to_string())
            .stdin(Stdio::null())
            .output();
        match set {
            Ok(output) if output.status.success() => {
                tracing::info!(postmaster, "embedded PostgreSQL scheduled as SCHED_BATCH");
            }
            Ok(output) => tracing::warn!(
                status = %output.status,
                stderr = %String::from_utf8_lossy(&output.stderr).trim(),
                "embedded PostgreSQL left at the default scheduling policy: chrt refused"
            ),
            Err(err) => tracing::warn!(
                %err,
                "embedded PostgreSQL left at the default scheduling policy: chrt (util-linux) did not run"
            ),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A superuser URL, for migrations and administration only: requests never run as it.
    /// Over TCP: it is also handed to pg_dump and pg_restore, and carries
    /// no traffic worth a socket.
    pub fn superuser_url(&self, database: &str) -> SecretString {
        format!("postgres://postgres:{}@127.0.0.1:{}/{database}", self.superuser_password.expose_secret(), self.port)
            .into()
    }

    /// The URL `login` connects with: over the cluster's Unix socket when it
    /// has one, else over TCP on loopback. Every statement of a request is
    /// a round trip, and loopback TCP costs the kernel (on both sides) more
    /// than a Unix socket does: pgbench of case a's four statements ran
    /// 15–22 % faster through the socket, the server 3–17 % (issue 11).
    pub fn login_url(&self, login: &str, password: &SecretString, database: &str) -> String {
        let password = password.expose_secret();
        let Some(dir) = self.socket_dir_in_use() else {
            return format!("postgres://{login}:{password}@127.0.0.1:{}/{database}", self.port);
        };
        // sqlx reads a `host` starting with `/` as the socket's folder, and
        // the port as its name's suffix (`.s.PGSQL.<port>`).
        let dir = utf8_percent_encode(&dir.to_string_lossy(), NON_ALPHANUMERIC).to_string();
        format!("postgres://{login}:{password}@localhost:{}/{database}?host={dir}", self.port)
    }

    /// The cluster's Unix socket, if it listens on one: not when its path
    /// did not suit ([`Self::socket_dir`]), when PostgreSQL could not create
    /// it, or when an older server started the cluster this one attached to.
    pub fn socket(&self) -> Option<PathBuf> {
        self.socket_dir_in_use().map(|dir| socket_path(&dir, self.port))
    }

    /// The socket folder the running postmaster reports (line 5 of
    /// postmaster.pid, empty when it has none).
    fn socket_dir_in_use(&self) -> Option<PathBuf> {
        let dir = self.postmaster_pid_line(4)?;
        dir.starts_with('/').then(|| PathBuf::from(dir))
    }

    /// Line `index` (from 0) of the running postmaster's `postmaster.pid`,
    /// trimmed: 0 its PID, 3 its port, 4 its socket folder (PostgreSQL's
    /// `LOCK_FILE_LINE_*`). `None` without the file or the line.
    fn postmaster_pid_line(&self, index: usize) -> Option<String> {
        let pid_file = fs::read_to_string(self.cluster.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(index).map(|line| line.trim().to_owned())
    }

    /// The folder of the cluster's Unix socket: the cluster folder, which
    /// only PostgreSQL's user (and root) may enter. `None`, and the cluster
    /// listens on TCP alone, when the socket's path would exceed what the
    /// kernel takes (PostgreSQL would refuse to start), or holds a character
    /// that pg_ctl's shell or PostgreSQL's list syntax would read (a space,
    /// a quote, a comma): a folder like that is rare enough not to escape.
    fn socket_dir(&self) -> Option<&Path> {
        let plain = self.cluster.to_str().is_some_and(|dir| {
            dir.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
        });
        let fits = socket_path(&self.cluster, self.port).as_os_str().len() <= MAX_SOCKET_PATH;
        (plain && fits).then_some(self.cluster.as_path())
    }

    /// Stops the cluster (fast shutdown: connections are closed, data is safe).
    pub fn stop(&mut self) {
        if !self.owned {
            return;
        }
        self.owned = false;
        match self.pg_ctl_stop() {
            Ok(s) if s.success() => tracing::info!("embedded PostgreSQL stopped"),
            other => tracing::warn!(?other, "stopping embedded PostgreSQL failed"),
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir("/");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// The port of the cluster if a postmaster is running on it.
    fn running_port(&self) -> Option<u16> {
        let port = self.postmaster_pid_line(3)?;
        let running = self
            .command(&self.bin.join("pg_ctl"))
            .args(["status", "-D"])
            .arg(&self.cluster)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        running.then(|| port.parse().ok()).flatten()
    }

    /// A previous server killed with SIGKILL may have left its PostgreSQL
    /// running (until the watchdog notices); stop it so we start clean.
    fn stop_orphan(&self) {
        tracing::warn!("stopping a PostgreSQL left running by a server that is gone");
        let _ = self.pg_ctl_stop();
    }

    /// `pg_ctl stop` in fast mode: connections are closed, data is safe.
    fn pg_ctl_stop(&self) -> std::io::Result<std::process::ExitStatus> {
        self.command(&self.bin.join("pg_ctl"))
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.cluster)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    }

    fn pg_ctl_start(&self, with_socket: bool) -> Result<(), EmbeddedError> {
        let socket_dirs = self.socket_dir().filter(|_| with_socket).map(Path::to_string_lossy).unwrap_or_default();
        let options = format!(
            // wal_level=logical: the logical capture (a restart applies it);
            // its slot keeps at most 1 GiB of WAL for a sequencer that is
            // gone, then PostgreSQL invalidates it and the next sequencer
            // recovers (api/src/realtime/sequencer.rs).
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{socket_dirs}' -c max_connections=200 -c wal_level=logical -c max_slot_wal_keep_size=1024",
            self.port
        );
        let output = self
            .command(&self.bin.join("pg_ctl"))
            .args(["start", "-w", "-t", "60", "-s", "-D"])
            .arg(&self.cluster)
            .arg("-l")
            .arg(self.cluster.join("postgres.log"))
            .args(["-o", &options])
            // Its own process group: a Ctrl-C in the terminal reaches the
            // server, which then stops PostgreSQL in order.
            .process_group(0)
            .stdin(Stdio::null())
            .output()
            .map_err(io("cannot run pg_ctl"))?;
        if !output.status.success() {
            return Err(EmbeddedError::DidNotStart {
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                log: self.cluster.join("postgres.log"),
            });
        }
        Ok(())
    }

    /// Stops the postmaster we started once this process is gone, whatever
    /// killed it. It signals only that postmaster (by PID, SIGINT = fast
    /// shutdown), never a cluster a later process started in the same folder.
    fn spawn_watchdog(&self) {
        let Some(postmaster) = self.postmaster_pid_line(0) else {
            tracing::warn!("no postmaster.pid: the embedded PostgreSQL has no watchdog");
            return;
        };
        let script = format!(
            "while [ -d /proc/{owner} ]; do sleep 1; done; \
             [ \"$(head -n 1 \"$0/postmaster.pid\" 2>/dev/null)\" = {postmaster} ] && kill -INT {postmaster}",
            owner = std::process::id()
        );
        let spawned = self
            .command(Path::new("/bin/sh"))
            .arg("-c")
            .arg(script)
            .arg(&self.cluster)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(err) = spawned {
            tracing::warn!(%err, "no watchdog for the embedded PostgreSQL");
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn init_cluster(
    bin: &Path,
    data_dir: &Path,
    cluster: &Path,
    password_file: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<SecretString, EmbeddedError> {
    let password = random_hex(24)?;
    fs::create_dir_all(cluster).map_err(io(format!("cannot create {}", cluster.display())))?;
    let pwfile = data_dir.join(".initdb-password");
    write_secret(&pwfile, &password)?;
    if let Some((uid, gid)) = run_as {
        for path in [cluster, pwfile.as_path()] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(io(format!("cannot give {} to the postgres user", path.display())))?;
        }
    }
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.current_dir("/")
        .args(["-U", "postgres", "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "-D"])
        .arg(cluster)
        .arg(format!("--pwfile={}", pwfile.display()))
        .stdin(Stdio::null());
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    tracing::info!(cluster = %cluster.display(), "initialising the embedded PostgreSQL (first run)");
    let output = cmd.output().map_err(io("cannot run initdb"));
    let _ = fs::remove_file(&pwfile);
    let output = output?;
    if !output.status.success() {
        let _ = fs::remove_dir_all(cluster);
        return Err(EmbeddedError::Initdb(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    write_secret(password_file, &password)?;
    Ok(password.into())
}

/// Writes a secret readable by its owner only.
pub fn write_secret(path: &Path, secret: &str) -> Result<(), EmbeddedError> {
    let cannot_write = || io(format!("cannot write {}", path.display()));
    let mut file =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(cannot_write())?;
    // `mode` applies only to a file it creates: an existing one is narrowed.
    file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(cannot_write())?;
    file.write_all(secret.as_bytes()).map_err(cannot_write())
}

/// Random bytes as lowercase hex, from the operating system's generator.
/// It fails only where the OS has no usable generator; the caller says
/// what could then not be generated.
pub fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The server's binaries (initdb, pg_ctl, postgres); see [`find_bin_with`].
pub fn find_pg_bin(configured: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    find_bin_with(configured, &["initdb", "pg_ctl", "postgres"]).map_err(|e| {
        EmbeddedError::NoBinaries(e.unwrap_or_else(|| {
            "PostgreSQL binaries not found: install Debian's `postgresql` package (apt-get install postgresql), set PG_BIN, or set DATABASE_URL".to_owned()
        }))
    })
}

/// The folder holding every one of `tools`: PG_BIN, else the folder of the
/// first tool on PATH, else the newest /usr/lib/postgresql/*/bin. The error
/// is `Some` when PG_BIN lacks them, `None` when nothing was found.
pub fn find_bin_with(configured: Option<&Path>, tools: &[&str]) -> Result<PathBuf, Option<String>> {
    let has_tools = |dir: &Path| tools.iter().all(|t| dir.join(t).is_file());
    if let Some(dir) = configured {
        return if has_tools(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(Some(format!("PG_BIN={} has no {}", dir.display(), tools.join(", "))))
        };
    }
    // Through links, so a tool linked onto PATH is used with its siblings.
    // (Debian's /usr/bin/pg_dump is a version-picking wrapper, which has no
    // siblings: the versioned folders below are used instead.)
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .filter_map(|dir| dir.join(tools[0]).canonicalize().ok())
        .filter_map(|tool| tool.parent().map(Path::to_path_buf))
        .find(|dir| has_tools(dir));
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or(None)
}

/// The postgres user's uid and gid when we run as root (initdb and postgres
/// refuse to run as root), otherwise `None`.
pub fn postgres_user_if_root() -> Result<Option<(u32, u32)>, EmbeddedError> {
    // Our effective uid, without unsafe code: /proc/self belongs to it.
    let euid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    if euid != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(io("cannot read /etc/passwd"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"postgres") && fields.len() > 3)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
        .map(Some)
        .ok_or(EmbeddedError::NoPostgresUser)
}

/// Whether the process that started the cluster still runs.
fn owner_alive(owner_file: &Path) -> bool {
    fs::read_to_string(owner_file)
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists())
}

/// The longest socket path the kernel takes (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where PostgreSQL puts its socket for `port` in `dir`.
fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

fn free_port() -> Result<u16, EmbeddedError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("no free port on 127.0.0.1"))
}
