//! Which rows a viewer may see now, asked of PostgreSQL under row-level
//! security as that viewer.
//!
//! A replay from a cursor delivers history: the events passed the row
//! policies as the rows were *then*. A post published and then unpublished,
//! or a row since deleted, no query shows any more; its history must not
//! reach a viewer who may not see it now. So a replay asks, per batch, which
//! of the rows it is about to show are visible to the viewer now.

use std::collections::{HashMap, HashSet};

use sea_orm::{DbBackend, FromQueryResult, Statement};

use crate::auth::{AccessSession, Viewer};
use crate::db::{Access, Pool, begin_session_request};
use crate::error::{ApiError, ApiResult};

#[derive(FromQueryResult)]
struct Key {
    k: String,
}

/// What [`visible`] found: the rows the viewer may see now, and the viewer
/// as the database knows it now (a role may have changed).
pub struct Visible {
    pub rows: HashSet<(String, String)>,
    pub viewer: Viewer,
}

/// Of `rows` (table, key), those `viewer` may see now, in one transaction
/// as that viewer in `session`. Fails as a request would for a deactivated
/// account or an ended session.
pub async fn visible(pool: &Pool, viewer: Viewer, session: AccessSession, rows: &[(&str, &str)]) -> ApiResult<Visible> {
    let mut by_table: HashMap<&str, Vec<String>> = HashMap::new();
    for (table, key) in rows {
        by_table.entry(*table).or_default().push((*key).to_owned());
    }
    let (tx, viewer) = begin_session_request(pool, viewer, session.0, Access::ReadOnly).await?;
    let mut visible = HashSet::new();
    for (table, keys) in by_table {
        let key = crate::domain::replay_key(table)
            .ok_or_else(|| ApiError::internal(format!("no key known for change events of {table}")))?;
        let (name, column, ty) = (key.table, key.column, key.sql_type);
        let found = Key::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("SELECT {column}::text AS k FROM {name} WHERE {column} = ANY($1::text[]::{ty}[])"),
            [keys.into()],
        ))
        .all(&tx)
        .await?;
        visible.extend(found.into_iter().map(|row| (table.to_owned(), row.k)));
    }
    pool.commit(tx).await?;
    Ok(Visible { rows: visible, viewer })
}
