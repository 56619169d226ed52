//! Batches the public totals of the projects a response's participations
//! name (`Participation.project`), on the shared [`RowLoader`]: one call of
//! `airdrop_project_totals` per response, beside the one read of the
//! project rows.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use super::store;
use crate::domain::RowLoader;
use crate::error::ApiError;

/// The public totals (participants, tokens distributed) of one project.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Totals(pub Uuid);

impl Loader<Totals> for RowLoader {
    type Value = (i64, i64);
    type Error = ApiError;

    async fn load(&self, keys: &[Totals]) -> Result<HashMap<Totals, (i64, i64)>, ApiError> {
        let (db, viewer) = self.parts();
        let ids = keys.iter().map(|key| key.0).collect();
        let totals = db.run(viewer, async |tx| store::totals(tx, ids).await).await?;
        Ok(totals.into_iter().map(|(id, totals)| (Totals(id), totals)).collect())
    }
}
