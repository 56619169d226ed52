//! Typed access to what the request handler puts into every request, so
//! resolvers never do unchecked `ctx.data::<T>()` lookups.

use async_graphql::Context;

use crate::auth::{JwtKeys, Viewer};
use crate::db::{RequestDb, TxGuard};
use crate::error::{ApiError, ApiResult};
use crate::realtime::{Realtime, SessionExpiry};

pub trait ContextExt {
    /// The viewer of this request.
    fn viewer(&self) -> ApiResult<Viewer>;
    /// The request transaction, shared with DataLoaders.
    fn request_db(&self) -> ApiResult<&RequestDb>;
    /// Exclusive use of the request transaction for a few statements.
    fn tx(&self) -> impl Future<Output = ApiResult<TxGuard>> + Send;
    fn jwt(&self) -> ApiResult<&JwtKeys>;
    /// The change feed, for subscriptions.
    fn realtime(&self) -> ApiResult<Realtime>;
    /// When the websocket session's token expires (unix seconds).
    fn session_expiry(&self) -> Option<i64>;
}

fn missing(what: &str) -> ApiError {
    ApiError::internal(format!("{what} missing from the request context"))
}

impl ContextExt for Context<'_> {
    fn viewer(&self) -> ApiResult<Viewer> {
        self.data_opt::<Viewer>().copied().ok_or_else(|| missing("viewer"))
    }

    fn request_db(&self) -> ApiResult<&RequestDb> {
        self.data_opt::<RequestDb>().ok_or_else(|| missing("request transaction"))
    }

    async fn tx(&self) -> ApiResult<TxGuard> {
        self.request_db()?.lock().await
    }

    fn jwt(&self) -> ApiResult<&JwtKeys> {
        self.data_opt::<JwtKeys>().ok_or_else(|| missing("JWT keys"))
    }

    fn realtime(&self) -> ApiResult<Realtime> {
        self.data_opt::<Realtime>().cloned().ok_or_else(|| missing("realtime handle"))
    }

    fn session_expiry(&self) -> Option<i64> {
        self.data_opt::<SessionExpiry>().and_then(|expiry| expiry.0)
    }
}
