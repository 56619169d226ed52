//! Parsing of `ID` arguments: a malformed id is BAD_USER_INPUT naming the
//! argument, never a database error.

use async_graphql::ID;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

pub fn parse_uuid(field: &'static str, id: &ID) -> ApiResult<Uuid> {
    Uuid::parse_str(id.as_str()).map_err(|_| ApiError::bad_input(field, format!("{field} is not a valid id")))
}

pub fn parse_int_id(field: &'static str, id: &ID) -> ApiResult<i64> {
    id.as_str()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_input(field, format!("{field} is not a valid id")))
}
