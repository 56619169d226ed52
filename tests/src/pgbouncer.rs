//! PgBouncer in front of the shared cluster, for the tests of running behind
//! a transaction pooler as the seeds deploy it.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::cluster::{cluster, free_port};

/// PgBouncer in transaction pooling mode in front of the shared cluster, as
/// the seeds deploy it: Debian's `pgbouncer`, run as the cluster's user,
/// listening on a free loopback port. Stopped when dropped, or by a watchdog
/// once the test process is gone.
pub struct PgBouncer {
    port: u16,
    dir: PathBuf,
    child: std::process::Child,
}

impl PgBouncer {
    /// Starts one whose pools hold at most `server_connections` server
    /// connections per database and user, so clients must share them.
    pub fn start(server_connections: u32) -> Self {
        let cluster = cluster();
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .expect("pgbouncer is not installed: apt-get install pgbouncer (.ci/run does)");
        let dir = PathBuf::from(format!(
            "/tmp/apitest-bouncer-{}-{}",
            std::process::id(),
            api::db::embedded::random_hex(3).expect("the OS random generator works")
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let port = free_port();
        // Trust on loopback, as the cluster trusts its private socket; sqlx
        // sends extra_float_digits at startup, which PgBouncer must ignore.
        let ini = format!(
            "[databases]\n* = host={socket} port={pg_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\n\
             pool_mode = transaction\ndefault_pool_size = {server_connections}\nmax_client_conn = 200\n\
             ignore_startup_parameters = extra_float_digits\nlogfile = {dir}/pgbouncer.log\n",
            socket = cluster.socket_dir.display(),
            pg_port = cluster.port,
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("writing pgbouncer.ini");
        std::fs::write(dir.join("users.txt"), "\"app_authenticator\" \"\"\n\"postgres\" \"\"\n")
            .expect("writing the pgbouncer users file");
        let mut cmd = Command::new(binary);
        cmd.arg(dir.join("pgbouncer.ini")).current_dir("/").stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(Stdio::null()).process_group(0);
        // PgBouncer refuses to run as root.
        if let Some((uid, gid)) = cluster.run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("giving the folder to the postgres user");
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().expect("cannot start pgbouncer");
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; kill {child} 2>/dev/null; rm -rf \"$0\"",
            pid = std::process::id(),
            child = child.id()
        );
        #[allow(clippy::zombie_processes)]
        Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg(&dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the pgbouncer watchdog");
        let bouncer = Self { port, dir, child };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "pgbouncer did not listen: {}", bouncer.log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        bouncer
    }

    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// PgBouncer's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
