//! Ids as clients see them, and the parsing of `ID` arguments: a malformed
//! id is BAD_USER_INPUT naming the argument, never a database error.
//!
//! Every refetchable type ([`super::node::Node`]) answers `id` with a global
//! id: base64url without padding of `"TypeName:rawKey"`, so that a review
//! and a preference with the same integer key have different ids and a
//! client cache (Relay, Apollo) can key every object by `id` alone. The raw
//! key stays readable as `rowId` and in foreign keys (`userId`).
//!
//! An `ID` argument that names a row takes either form: the global id of the
//! expected type, or the raw key (what `rowId`/`userId` hold). A global id of
//! another type is BAD_USER_INPUT ("id is the id of a Post, not a Review").
//! A raw key is never mistaken for a global id in practice: a global id
//! must decode to UTF-8 starting with a known type name and a colon, which
//! no UUID, integer or Google place id does.

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, ID, OutputType, Positioned, ServerResult, Value};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::node::TYPES;
use crate::error::{ApiError, ApiResult};

/// A row's key as its column holds it. Objects keep their ids as keys
/// ([`GlobalId`], [`RawId`]) and write them out only where a client
/// selects them: a page of 20 reviews with their places formatted (and
/// base64-encoded) some 100 ids that most documents never ask for, 8 % of
/// such a request's instructions (issue 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Int(i64),
    Uuid(Uuid),
    Text(String),
}

impl Key {
    /// The key as text: what `rowId` and foreign keys show.
    fn text(&self) -> String {
        let mut text = String::new();
        self.write(&mut text);
        text
    }

    /// [`Key::text`], appended to `out`.
    fn write(&self, out: &mut String) {
        match self {
            Key::Int(n) => out.push_str(itoa::Buffer::new().format(*n)),
            Key::Uuid(uuid) => out.push_str(uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer())),
            Key::Text(text) => out.push_str(text),
        }
    }
}

impl From<i64> for Key {
    fn from(key: i64) -> Self {
        Key::Int(key)
    }
}

impl From<Uuid> for Key {
    fn from(key: Uuid) -> Self {
        Key::Uuid(key)
    }
}

impl From<String> for Key {
    fn from(key: String) -> Self {
        Key::Text(key)
    }
}

/// An object's global `id` (see the module's doc), kept as its type and
/// key and encoded only when selected; an `ID` in the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalId {
    type_name: &'static str,
    key: Key,
}

impl GlobalId {
    pub fn new(type_name: &'static str, key: impl Into<Key>) -> Self {
        Self { type_name, key: key.into() }
    }

    /// The id as clients see it: base64url without padding of
    /// `"TypeName:rawKey"`.
    pub fn encode(&self) -> String {
        let mut raw = String::with_capacity(self.type_name.len() + 1 + 36);
        raw.push_str(self.type_name);
        raw.push(':');
        self.key.write(&mut raw);
        URL_SAFE_NO_PAD.encode(raw)
    }
}

/// A raw key (`rowId`, a foreign key such as `userId`), kept as the
/// column's value and written out only when selected; an `ID` in the
/// schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawId(pub Key);

impl<K: Into<Key>> From<K> for RawId {
    fn from(key: K) -> Self {
        Self(key.into())
    }
}

/// A key column's type, read back from a [`Key`].
pub trait FromKey: Sized {
    fn from_key(key: &Key) -> Option<Self>;
}

impl FromKey for Uuid {
    fn from_key(key: &Key) -> Option<Self> {
        match key {
            Key::Uuid(uuid) => Some(*uuid),
            _ => None,
        }
    }
}

impl FromKey for i64 {
    fn from_key(key: &Key) -> Option<Self> {
        match key {
            Key::Int(n) => Some(*n),
            _ => None,
        }
    }
}

impl FromKey for String {
    fn from_key(key: &Key) -> Option<Self> {
        match key {
            Key::Text(text) => Some(text.clone()),
            _ => None,
        }
    }
}

/// `ID` to the schema; the id's text only when resolved.
macro_rules! output_as_id {
    ($ty:ty, |$this:ident| $text:expr) => {
        impl OutputType for $ty {
            fn type_name() -> Cow<'static, str> {
                <ID as OutputType>::type_name()
            }

            fn create_type_info(registry: &mut Registry) -> String {
                <ID as OutputType>::create_type_info(registry)
            }

            async fn resolve(&self, _: &ContextSelectionSet<'_>, _: &Positioned<Field>) -> ServerResult<Value> {
                let $this = self;
                Ok(Value::String($text))
            }
        }
    };
}

output_as_id!(GlobalId, |id| id.encode());
output_as_id!(RawId, |id| id.0.text());

/// The type and raw key inside `id`, if it is the global id of a type of
/// [`TYPES`].
pub fn decode(id: &str) -> Option<(&'static str, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(id).ok()?).ok()?;
    let (type_name, raw) = text.split_once(':')?;
    let type_name = TYPES.iter().copied().find(|t| *t == type_name)?;
    Some((type_name, raw.to_owned()))
}

/// The raw key an `ID` argument names: the key inside a global id (of
/// `expected`, when given), or the argument as it is.
pub fn raw_key(field: &'static str, id: &str, expected: Option<&str>) -> ApiResult<String> {
    match decode(id) {
        Some((found, raw)) if expected.is_none_or(|e| e == found) => Ok(raw),
        Some((found, _)) => Err(ApiError::bad_input(
            field,
            format!("{field} is the id of {}, not {}", with_article(found), with_article(expected.unwrap_or_default())),
        )),
        None => Ok(id.to_owned()),
    }
}

fn with_article(type_name: &str) -> String {
    let vowel = type_name.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {type_name}", if vowel { "an" } else { "a" })
}

/// The type a foreign-key argument names by its name (`postId` a Post), so
/// the untyped [`parse_uuid`]/[`parse_int_id`] refuse a global id of
/// another type there too. A plain `id` says nothing: callers that know the
/// type use [`crate::domain::resolve::key`].
fn expected_by_name(field: &str) -> Option<&'static str> {
    Some(match field.rsplit('.').next().unwrap_or(field) {
        "userId" | "authorId" => "User",
        "placeId" => "Place",
        "reviewId" => "Review",
        "preferenceId" => "Preference",
        "routineId" => "Routine",
        "runId" => "RoutineRun",
        "projectId" => "AirdropProject",
        "participationId" => "Participation",
        "postId" => "Post",
        "commentId" => "Comment",
        _ => return None,
    })
}

/// A UUID key from an `ID` argument: its global id or its raw key.
pub fn parse_uuid(field: &'static str, id: &ID) -> ApiResult<Uuid> {
    uuid_key(field, &raw_key(field, id, expected_by_name(field))?)
}

/// An integer key (above 0) from an `ID` argument: its global id or its raw key.
pub fn parse_int_id(field: &'static str, id: &ID) -> ApiResult<i64> {
    int_key(field, &raw_key(field, id, expected_by_name(field))?)
}

/// A raw UUID key.
pub fn uuid_key(field: &'static str, raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| invalid(field))
}

/// A raw integer key, above 0.
pub fn int_key(field: &'static str, raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| invalid(field))
}

fn invalid(field: &'static str) -> ApiError {
    ApiError::bad_input(field, format!("{field} is not a valid id"))
}

/// `From<Model>` for a GraphQL object, field by field: `id` the global id
/// of the struct's GraphQL name, `row_id` the raw key, other [`RawId`]
/// fields raw keys, other fields their column through `Into`; see
/// `api_macros`.
///
/// ```ignore
/// #[derive(SimpleObject, FromModel, Clone)]
/// #[from_model(entity::post::Model)]
/// pub struct Post { pub id: GlobalId, pub row_id: RawId, pub title: String, /* .. */ }
/// ```
pub use api_macros::FromModel;

/// Whether `type_name` is one of the `Node` types ([`TYPES`]), at compile
/// time: [`FromModel`] asserts it of every type it gives a global id, so
/// an id [`decode`] would not recognise cannot be served.
pub const fn is_node_type(type_name: &str) -> bool {
    let mut i = 0;
    while i < TYPES.len() {
        if same(TYPES[i], type_name) {
            return true;
        }
        i += 1;
    }
    false
}

/// `a == b` for the compile-time checks of type names (`==` on `str` is
/// not `const` yet).
pub(crate) const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(type_name: &'static str, key: impl Into<Key>) -> ID {
        ID(GlobalId::new(type_name, key).encode())
    }

    #[test]
    fn a_global_id_round_trips_and_reads_as_base64url_without_padding() {
        let id = global("Review", 7i64);
        assert_eq!(id.as_str(), "UmV2aWV3Ojc");
        assert_eq!(decode(id.as_str()), Some(("Review", "7".to_owned())));
        let place = global("Place", "ChIJN1t_tDeuEmsRUsoyG83frY4".to_owned());
        assert_eq!(decode(place.as_str()), Some(("Place", "ChIJN1t_tDeuEmsRUsoyG83frY4".to_owned())));
        let uuid = Uuid::parse_str("3f2504e0-4f89-11d3-9a0c-0305e82c3301").unwrap_or_default();
        let user = global("User", uuid);
        assert_eq!(decode(user.as_str()), Some(("User", "3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_owned())));
        assert_eq!(global("Review", i64::MIN).as_str(), URL_SAFE_NO_PAD.encode(format!("Review:{}", i64::MIN)));
    }

    #[test]
    fn a_raw_id_is_its_key_as_text_and_reads_back_only_as_its_columns_type() {
        let uuid = Uuid::parse_str("3f2504e0-4f89-11d3-9a0c-0305e82c3301").unwrap_or_default();
        assert_eq!(RawId::from(uuid).0.text(), "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        assert_eq!(RawId::from(-42i64).0.text(), "-42");
        assert_eq!(RawId::from("p1".to_owned()).0.text(), "p1");
        assert_eq!(Uuid::from_key(&Key::Uuid(uuid)), Some(uuid));
        assert_eq!(Uuid::from_key(&Key::Text(uuid.to_string())), None, "text is not parsed as a UUID");
        assert_eq!(i64::from_key(&Key::Int(7)), Some(7));
        assert_eq!(String::from_key(&Key::Int(7)), None);
    }

    #[test]
    fn raw_keys_are_not_mistaken_for_global_ids() {
        for raw in ["7", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "ChIJN1t_tDeuEmsRUsoyG83frY4", ""] {
            assert_eq!(decode(raw), None, "{raw}");
            assert_eq!(raw_key("id", raw, Some("Post")).ok().as_deref(), Some(raw));
        }
        assert_eq!(decode(global("Nope", 1i64).as_str()), None, "only the types of Node");
    }

    #[test]
    fn a_global_id_of_another_type_is_refused_by_name() {
        assert_eq!(parse_int_id("id", &global("Review", 7i64)).ok(), Some(7), "a plain id takes any type");
        let message = parse_uuid("projectId", &global("Post", Uuid::nil())).err().map(|e| format!("{e:?}"));
        let message = message.unwrap_or_default();
        assert!(message.contains("projectId is the id of a Post, not an AirdropProject"), "{message}");
        assert_eq!(parse_uuid("input.postId", &global("Post", Uuid::nil())).ok(), Some(Uuid::nil()));
        assert!(parse_int_id("id", &global("Review", "x".to_owned())).is_err(), "a malformed key inside");
    }

    #[test]
    fn only_the_node_types_count_as_node_types() {
        const { assert!(is_node_type("RoutineRun")) };
        assert!(is_node_type("Post") && is_node_type("AirdropProject"));
        for other in ["Routine Run", "Pos", "Posts", "UserStats", ""] {
            assert!(!is_node_type(other), "{other}");
        }
    }
}
