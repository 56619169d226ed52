//! One database per test, so tests are isolated and run in parallel: cloned
//! from a template migrated once per process (`CREATE DATABASE .. TEMPLATE`
//! is far faster than migrating), and dropped when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database};

use crate::cluster::{Cluster, superuser_url};

const TEMPLATE: &str = "app_template";
static TEMPLATE_READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// A new database on this cluster with every migration applied.
    pub async fn migrated_database(&self, name: &str) -> String {
        let admin = Database::connect(self.url("postgres", "postgres")).await.expect("connecting to the database");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("creating the database");
        let db = Database::connect(self.url("postgres", name)).await.expect("connecting to the database");
        Migrator::up(&db, None).await.expect("migrating failed");
        db.execute_unprepared("ALTER ROLE app_authenticator LOGIN")
            .await
            .expect("running ALTER ROLE app_authenticator");
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
            Migrator::up(&template, None).await.expect("migrating the template failed");
            // The request login may log in here (trust auth on a private socket).
            template
                .execute_unprepared("ALTER ROLE app_authenticator LOGIN")
                .await
                .expect("running ALTER ROLE app_authenticator");
            template.close().await.expect("closing the connection");
            admin.close().await.expect("closing the connection");
        })
        .await;
}

/// A fresh database for one test. `migrated`: cloned from the migrated
/// template; otherwise empty.
pub async fn create_database(migrated: bool) -> String {
    // Even for an empty database: the roles the migrations create are
    // cluster-wide, and two tests migrating at once would both create them.
    ensure_template().await;
    let name = format!("t_{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
    let admin = Database::connect(superuser_url("postgres")).await.expect("connecting to the database");
    let template = if migrated { format!(" TEMPLATE {TEMPLATE}") } else { String::new() };
    admin.execute_unprepared(&format!("CREATE DATABASE {name}{template}")).await.expect("creating the database");
    admin.close().await.expect("closing the connection");
    name
}
