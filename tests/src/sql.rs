//! SQL straight to the test database as the superuser or as a request's
//! role: arranging fixtures, and proving what PostgreSQL itself allows with
//! no resolver in between.

use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};

use crate::app::TestApp;

impl TestApp {
    /// Runs a `SELECT count(*) ..` as the superuser.
    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: no row"));
        row.try_get_by_index::<i64>(0).unwrap_or_else(|e| panic!("{sql}: {e}"))
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
