//! One database per test, so tests are isolated and run in parallel: cloned
//! from a template migrated once per process (`CREATE DATABASE .. TEMPLATE`
//! is far faster than migrating), and dropped when the test ends.
//!
//! "When the test ends" is when its thread does: libtest runs each test on
//! a thread of its own, so every database created is recorded in a
//! thread-local whose destructor drops them. That runs whether the test
//! passed or panicked, after its runtime (and with it the server and its
//! connections) is gone, so the blocking `dropdb` stalls nothing; `--force`
//! ends any connection still open. Databases a test keeps by other means
//! (a leaked runtime, a test run on the main thread) go with the cluster
//! when the process exits, as before.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database};

use crate::cluster::{Cluster, cluster, superuser_url};

const TEMPLATE: &str = "app_template";
static TEMPLATE_READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A database to drop, and how to reach its cluster without a runtime.
struct Doomed {
    dropdb: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    name: String,
}

/// The databases created on this thread, dropped when it ends.
struct CreatedHere(Vec<Doomed>);

impl Drop for CreatedHere {
    fn drop(&mut self) {
        for db in self.0.drain(..) {
            // Best effort: a cluster the test stopped takes its databases
            // with it when the process exits.
            let _ = Command::new(&db.dropdb)
                .args(["--force", "--if-exists", "--no-password", "-U", "postgres", "-h"])
                .arg(&db.socket_dir)
                .args(["-p", &db.port.to_string(), &db.name])
                .env("PGCONNECT_TIMEOUT", "5")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

thread_local! {
    static CREATED_HERE: RefCell<CreatedHere> = const { RefCell::new(CreatedHere(Vec::new())) };
}

/// Drops database `name` of `cluster` when the current thread (the test's)
/// ends.
fn drop_when_the_test_ends(cluster: &Cluster, name: &str) {
    let doomed = Doomed {
        dropdb: cluster.bin.join("dropdb"),
        socket_dir: cluster.socket_dir.clone(),
        port: cluster.port,
        name: name.to_owned(),
    };
    // Fails only while the thread is already being torn down; the database
    // then goes with the cluster.
    let _ = CREATED_HERE.try_with(|created| created.borrow_mut().0.push(doomed));
}

impl Cluster {
    /// A new database on this cluster with every migration applied, dropped
    /// when the test ends.
    pub async fn migrated_database(&self, name: &str) -> String {
        let admin = Database::connect(self.url("postgres", "postgres")).await.expect("connecting to the database");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("creating the database");
        drop_when_the_test_ends(self, name);
        let db = Database::connect(self.url("postgres", name)).await.expect("connecting to the database");
        Migrator::up(&db, None).await.expect("migrating");
        db.execute_unprepared("ALTER ROLE app_authenticator LOGIN")
            .await
            .expect("running ALTER ROLE app_authenticator");
        db.execute_unprepared("ALTER ROLE app_sequencer LOGIN").await.expect("running ALTER ROLE app_sequencer");
        db.close().await.expect("closing the connection");
        admin.close().await.expect("closing the connection");
        name.to_owned()
    }
}

async fn ensure_template() {
    TEMPLATE_READY
        .get_or_init(|| async {
            let admin = Database::connect(superuser_url("postgres")).await.expect("connecting to the database");
            admin.execute_unprepared(&format!("CREATE DATABASE {TEMPLATE}")).await.expect("creating the database");
            let template = Database::connect(superuser_url(TEMPLATE)).await.expect("connecting to the database");
            Migrator::up(&template, None).await.expect("migrating the template");
            // The request login may log in here (trust auth on a private socket).
            template
                .execute_unprepared("ALTER ROLE app_authenticator LOGIN")
                .await
                .expect("running ALTER ROLE app_authenticator");
            template
                .execute_unprepared("ALTER ROLE app_sequencer LOGIN")
                .await
                .expect("running ALTER ROLE app_sequencer");
            template.close().await.expect("closing the connection");
            admin.close().await.expect("closing the connection");
        })
        .await;
}

/// A fresh database for one test, dropped when the test ends. `migrated`:
/// cloned from the migrated template; otherwise empty.
pub async fn create_database(migrated: bool) -> String {
    // Even for an empty database: the roles the migrations create are
    // cluster-wide, and two tests migrating at once would both create them.
    ensure_template().await;
    let name = format!("t_{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
    let admin = Database::connect(superuser_url("postgres")).await.expect("connecting to the database");
    let template = if migrated { format!(" TEMPLATE {TEMPLATE}") } else { String::new() };
    admin.execute_unprepared(&format!("CREATE DATABASE {name}{template}")).await.expect("creating the database");
    drop_when_the_test_ends(cluster(), &name);
    admin.close().await.expect("closing the connection");
    name
}
