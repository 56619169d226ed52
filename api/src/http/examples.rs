//! The example client pages of `examples/` (today `live-places`), served
//! in development (APP_ENV=development) so they run against this server
//! with no other web server and no cross-origin setup. They are compiled in
//! from the repository's files, like GraphiQL's assets; staging and
//! production leave the routes out.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// `/examples/live-places` without the slash: the page's relative links
/// (app.js, vendor/…) need the directory form.
pub async fn live_places_redirect() -> Redirect {
    Redirect::permanent("/examples/live-places/")
}

pub async fn live_places_index() -> Response {
    file("index.html")
}

pub async fn live_places_file(Path(path): Path<String>) -> Response {
    file(&path)
}

fn file(path: &str) -> Response {
    let (body, content_type): (&'static str, &str) = match path {
        "index.html" => (include_str!("../../../examples/live-places/index.html"), "text/html; charset=utf-8"),
        "app.js" => (include_str!("../../../examples/live-places/app.js"), "text/javascript; charset=utf-8"),
        "vendor/graphql-ws.min.js" => {
            (include_str!("../../../examples/live-places/vendor/graphql-ws.min.js"), "text/javascript; charset=utf-8")
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    // no-cache: an edited example shows on the next reload after a rebuild.
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
