//! What a client sees of a request that was rolled back.
//!
//! A request is all or nothing (see [`crate::db::request`]): when any field
//! fails, the writes of the fields that succeeded are undone too. Their
//! results must not be shown as if they had happened (a client would cache
//! a preference that was never saved), so the `data` of such a mutation is
//! withheld (null: every mutation field is non-null, so a field cannot be
//! nulled on its own) and each field whose result was undone gets an error
//! with code `ROLLED_BACK` at its path, beside the error that caused it.

use async_graphql::{ErrorExtensionValues, PathSegment, ServerError, Value};

/// The code of a field whose writes were undone by another field's failure.
pub const ROLLED_BACK: &str = "ROLLED_BACK";

/// Withholds the results of a read-write request that failed and was rolled
/// back (call it only then).
pub fn withhold_undone(response: &mut async_graphql::Response) {
    let Value::Object(fields) = &response.data else {
        return;
    };
    // Results are objects (or lists of them); a `__typename` is no write.
    let undone: Vec<String> = fields
        .iter()
        .filter(|(_, value)| matches!(value, Value::Object(_) | Value::List(_)))
        .map(|(key, _)| key.to_string())
        .collect();
    if undone.is_empty() {
        return;
    }
    response.data = Value::Null;
    for key in undone {
        let mut error = ServerError::new(
            format!(
                "`{key}` ran, but another field of this request failed, so the request was rolled back and none of \
                 its writes were saved: fix the failing field and send the request again (send writes that may \
                 succeed on their own as separate requests)"
            ),
            None,
        );
        error.path = vec![PathSegment::Field(key)];
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", ROLLED_BACK);
        error.extensions = Some(extensions);
        response.errors.push(error);
    }
}
