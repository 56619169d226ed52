//! The media types of GraphQL over HTTP: which one a client asked for
//! (`Accept`, with q-values) and how a GraphQL response is answered in it.
//!
//! - `application/graphql-response+json` (the GraphQL-over-HTTP spec's own
//!   type): a request error (a document that does not parse or validate,
//!   variables that do not coerce, an unknown persisted query: nothing was
//!   executed) is a 4xx with no `data` entry, so a client, a proxy or a
//!   monitor can tell it from a result by the status alone.
//! - `application/json` (what every client understood before the spec):
//!   every GraphQL response is a 200 with its errors in the body, as before.
//!   It is the answer to a missing `Accept` and to `*/*`, as the spec asks
//!   of servers during its migration ("watershed") period, so no existing
//!   client sees a change.
//!
//! Errors before a request is a GraphQL request at all (a body that is not
//! JSON, no `query`) keep their 4xx in both.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The spec's media type, answered with its charset.
pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
/// The legacy media type, answered with its charset (the spec asks for it).
pub const APPLICATION_JSON: &str = "application/json; charset=utf-8";

/// The media type of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// `application/graphql-response+json`.
    GraphqlResponse,
    /// `application/json`.
    Json,
}

impl Media {
    pub fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GraphqlResponse => GRAPHQL_RESPONSE_JSON,
            Self::Json => APPLICATION_JSON,
        })
    }
}

/// The media type to answer in, from the request's `Accept`; `None` when it
/// accepts neither (answer 406). A missing or empty `Accept` means
/// `application/json`.
pub fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let mut accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).peekable();
    if accept.peek().is_none_or(|v| v.trim().is_empty()) {
        return Some(Media::Json);
    }
    // The q of each type by its most specific matching range (RFC 9110
    // 12.5.1): an exact type beats `application/*`, which beats `*/*`.
    let (mut spec, mut json) = (Match::NONE, Match::NONE);
    for range in accept.flat_map(|v| v.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, value)| value.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q)));
        // A malformed q drops its range, as if it were not sent.
        let Some(q) = q else { continue };
        match media.as_str() {
            "application/graphql-response+json" => spec.offer(3, q),
            "application/json" => json.offer(3, q),
            "application/*" => {
                spec.offer(2, q);
                json.offer(2, q);
            }
            "*/*" => {
                spec.offer(1, q);
                json.offer(1, q);
            }
            _ => {}
        }
    }
    // Equal weights: an explicit `application/graphql-response+json` wins
    // (a client that names it knows it); a wildcard alone gets JSON.
    let spec_named = spec.specificity == 3;
    match (spec.q(), json.q()) {
        (s, j) if s <= 0.0 && j <= 0.0 => None,
        (s, j) if s > j || (s == j && spec_named) => Some(Media::GraphqlResponse),
        _ => Some(Media::Json),
    }
}

/// The q of one media type, from its most specific matching range.
#[derive(Clone, Copy)]
struct Match {
    specificity: u8,
    q: f32,
}

impl Match {
    const NONE: Self = Self { specificity: 0, q: 0.0 };

    fn offer(&mut self, specificity: u8, q: f32) {
        // The most specific range decides; among equals, the higher q.
        if specificity > self.specificity || (specificity == self.specificity && q > self.q) {
            *self = Self { specificity, q };
        }
    }

    fn q(self) -> f32 {
        self.q
    }
}

/// 406 for an `Accept` that allows neither media type (in JSON, which the
/// client may still read).
pub fn not_acceptable() -> Response {
    super::graphql::http_error(
        StatusCode::NOT_ACCEPTABLE,
        "NOT_ACCEPTABLE",
        "accept application/graphql-response+json or application/json",
    )
}

/// A GraphQL response in `media`: see the module doc for the status codes.
pub fn respond(media: Media, response: &async_graphql::Response) -> Response {
    let (status, body) = match media {
        Media::Json => (StatusCode::OK, response_body(response)),
        Media::GraphqlResponse => match request_error_status(response) {
            // No `data` entry: nothing was executed.
            Some(status) => (status, to_vec(&serde_json::json!({ "errors": response.errors }))),
            None => (StatusCode::OK, response_body(response)),
        },
    };
    match body {
        Ok(body) => (status, [(header::CONTENT_TYPE, media.content_type())], body).into_response(),
        Err(err) => {
            tracing::error!(%err, "response did not serialise");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The body's first allocation. serde_json starts at 128 bytes and doubles,
/// copying the body each time: a page of 20 rows (a few KiB) took five
/// reallocations.
const BODY_CAPACITY: usize = 4096;

fn to_vec(value: &impl serde::Serialize) -> serde_json::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(BODY_CAPACITY);
    serde_json::to_writer(&mut body, value)?;
    Ok(body)
}

/// The whole response (`data`, `extensions`, `errors`), written by
/// [`crate::graphql::json`].
fn response_body(response: &async_graphql::Response) -> serde_json::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(BODY_CAPACITY);
    crate::graphql::json::write_response(&mut body, response)?;
    Ok(body)
}

/// The status of a response that executed nothing (its `data` is null and
/// no error names a field: a failing field always has a path), by the code
/// of its first error; `None` for a response that ran.
fn request_error_status(response: &async_graphql::Response) -> Option<StatusCode> {
    if !matches!(response.data, async_graphql::Value::Null)
        || response.errors.is_empty()
        || response.errors.iter().any(|e| !e.path.is_empty())
    {
        return None;
    }
    let code = response.errors.iter().find_map(|error| match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code.clone()),
        _ => None,
    });
    Some(match code.as_deref() {
        Some("UNAUTHENTICATED") => StatusCode::UNAUTHORIZED,
        Some("FORBIDDEN") => StatusCode::FORBIDDEN,
        Some("RATE_LIMITED") => StatusCode::TOO_MANY_REQUESTS,
        Some("SERVICE_UNAVAILABLE" | "TOO_MANY_CONNECTIONS") => StatusCode::SERVICE_UNAVAILABLE,
        Some("QUERY_TIMEOUT") => StatusCode::GATEWAY_TIMEOUT,
        Some("INTERNAL_SERVER_ERROR") => StatusCode::INTERNAL_SERVER_ERROR,
        // Parse, validation, coercion, operation choice, the document
        // guard's limits, persisted queries: the client's request.
        _ => StatusCode::BAD_REQUEST,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(accept: &str) -> Option<Media> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap_or_else(|e| panic!("{e}")));
        negotiate(&headers)
    }

    #[test]
    fn accept_picks_the_media_type_by_q_value_and_specificity() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Media::Json), "no Accept: legacy JSON");
        let cases = [
            ("application/json", Some(Media::Json)),
            ("application/graphql-response+json", Some(Media::GraphqlResponse)),
            ("application/graphql-response+json, application/json", Some(Media::GraphqlResponse)),
            ("application/json, application/graphql-response+json", Some(Media::GraphqlResponse)),
            ("application/graphql-response+json;q=0.5, application/json", Some(Media::Json)),
            ("application/graphql-response+json, application/json;q=0.9", Some(Media::GraphqlResponse)),
            ("*/*", Some(Media::Json)),
            ("application/*", Some(Media::Json)),
            ("text/html, */*;q=0.8", Some(Media::Json)),
            ("application/graphql-response+json;q=0.1, */*", Some(Media::Json)),
            ("*/*, application/json;q=0", Some(Media::GraphqlResponse)),
            ("application/json; charset=utf-8", Some(Media::Json)),
            ("Application/GraphQL-Response+JSON", Some(Media::GraphqlResponse)),
            ("text/html", None),
            ("application/json;q=0", None),
            ("application/json;q=banana", None),
        ];
        for (accept, expected) in cases {
            assert_eq!(with(accept), expected, "{accept}");
        }
    }
}
