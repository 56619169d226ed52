//! SQL straight to the test database as the superuser or as a request's
//! role: arranging fixtures, and proving what PostgreSQL itself allows with
//! no resolver in between.

use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};

use crate::app::TestApp;

impl TestApp {
    /// Runs a `SELECT count(*) ..` as the superuser.
    pub async fn count(&self, sql: &str) -> i64 {
        self.value(sql).await
    }

    /// Runs a query of one text value (first row, first column; an
    /// `INSERT .. RETURNING id::text` too) as the superuser.
    pub async fn text(&self, sql: &str) -> String {
        self.value(sql).await
    }

    /// The first column of the first row of `sql`, run as the superuser.
    async fn value<T: sea_orm::TryGetable>(&self, sql: &str) -> T {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: no row"));
        row.try_get_by_index::<T>(0).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// How often this database ran statements whose text is `LIKE like`,
    /// from pg_stat_statements (which the test must have created). Not
    /// this query itself: pg_stat_statements keeps a statement's text
    /// unnormalised (its pattern literal included) when its entry was
    /// evicted between parsing and execution, which many tests at once do.
    pub async fn statement_calls(&self, like: &str) -> i64 {
        self.count(&format!(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = current_database() AND s.query LIKE '{like}' AND s.query NOT LIKE '%pg_stat_statements%'"
        ))
        .await
    }

    /// Inserts a place directly (as the superuser).
    pub async fn insert_place(
        &self,
        id: &str,
        category: &str,
        lat: f64,
        lng: f64,
        rating: Option<f64>,
        ratings_total: Option<i32>,
    ) {
        let rating = rating.map_or("NULL".to_owned(), |r| r.to_string());
        let total = ratings_total.map_or("NULL".to_owned(), |t| t.to_string());
        self.db
            .execute_unprepared(&format!(
                "INSERT INTO place (id, name, lat, lng, category, rating, user_ratings_total) VALUES ('{id}', 'Place {id}', {lat}, {lng}, '{category}', {rating}, {total})"
            ))
            .await
            .expect("running INSERT INTO place");
    }

    /// A transaction on the test database running exactly as a request of
    /// `user` would: the viewer role and `app.user_id` set locally. For
    /// proving what row-level security allows with no resolver in between.
    pub async fn as_request_role(&self, role: &str, user_id: &str) -> DatabaseTransaction {
        let tx = self.db.begin().await.expect("beginning a transaction");
        tx.execute_unprepared(&format!("SET LOCAL ROLE {role}; SELECT set_config('app.user_id', '{user_id}', true)"))
            .await
            .expect("switching to the request role");
        tx
    }
}
