use async_graphql::{Context, Object};

use crate::error::ApiResult;
use crate::graphql::ContextExt;

#[derive(Default)]
pub struct RealtimeQuery;

#[Object]
impl RealtimeQuery {
    /// The change feed's current position. Take it before fetching data,
    /// then subscribe with `after` set to it: every change made since is
    /// delivered, including those made before the subscription started.
    ///
    /// The cursor is signed for you: it works only on this database, and
    /// only for the account (or the anonymous viewer) that asked for it, so
    /// ask with the token you subscribe with.
    async fn change_cursor(&self, ctx: &Context<'_>) -> ApiResult<String> {
        let realtime = ctx.realtime()?;
        Ok(realtime.cursors().sign(&ctx.viewer()?, realtime.head()))
    }
}
