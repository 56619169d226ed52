//! Typed access to what the HTTP and websocket handlers put into a request
//! (`http::graphql::execute_in_session`, `http::ws`): a missing item is an
//! INTERNAL_SERVER_ERROR, never a panic. Not every item is in every
//! request: a subscription has no request transaction, and only a
//! subscription has a [`Session`]. DataLoaders and the auth guard are
//! looked up where they are used, with `data_opt` as here.

use async_graphql::Context;

use crate::auth::{AccessSession, JwtKeys, Viewer};
use crate::db::{LoaderDb, RequestDb, TxGuard};
use crate::error::{ApiError, ApiResult};
use crate::realtime::{Realtime, Session, shared, stream};

pub trait ContextExt {
    /// The viewer of this request.
    fn viewer(&self) -> ApiResult<Viewer>;
    /// The request transaction, shared with DataLoaders.
    fn request_db(&self) -> ApiResult<&RequestDb>;
    /// Where a field reads: the request transaction, or, resolving a
    /// subscription's event (which has none), a short one of its own.
    fn reader(&self) -> ApiResult<LoaderDb>;
    /// Exclusive use of the request transaction for a few statements.
    fn tx(&self) -> impl Future<Output = ApiResult<TxGuard>> + Send;
    fn jwt(&self) -> ApiResult<&JwtKeys>;
    /// The change feed, for subscriptions.
    fn realtime(&self) -> ApiResult<Realtime>;
    /// The session of the request's access token (none when anonymous, or
    /// for a token issued without one).
    fn access_session(&self) -> AccessSession;
    /// What a subscription over the change feed asks for: the viewer, the
    /// session's expiry and check point, and `after` verified for the viewer.
    fn change_request(&self, tables: &'static [&'static str], after: Option<&str>) -> ApiResult<stream::Request>;
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

    fn reader(&self) -> ApiResult<LoaderDb> {
        match self.data_opt::<RequestDb>() {
            Some(db) => Ok(LoaderDb::Request(db.clone())),
            None => Ok(LoaderDb::Pool(self.realtime()?.pool().clone(), self.access_session())),
        }
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

    fn access_session(&self) -> AccessSession {
        self.data_opt::<AccessSession>().copied().unwrap_or_default()
    }

    fn change_request(&self, tables: &'static [&'static str], after: Option<&str>) -> ApiResult<stream::Request> {
        let session = self.data_opt::<Session>().copied();
        let viewer = self.viewer()?;
        let realtime = self.realtime()?;
        Ok(stream::Request {
            tables,
            after: after.map(|cursor| realtime.cursors().verify("after", &viewer, cursor)).transpose()?,
            viewer,
            session: self.access_session(),
            expires_at: session.and_then(|s| s.expires_at),
            checked_at: session.map_or_else(|| realtime.head(), |s| s.checked_at),
            share: self.data_opt::<shared::Sharing>().cloned(),
        })
    }
}
