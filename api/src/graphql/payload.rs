//! Mutation payloads in the Relay shape: the changed object under its
//! type's name beside the input's `clientMutationId`, one line each, so a
//! domain declares its payloads without copying a struct per mutation; and
//! the inputs: every one declared with [`mutation_input`] (its
//! `clientMutationId` and, for an entity clients change, its update twin
//! generated), those that only name a row (deletes) with one line each.

use async_graphql::ID;

use crate::error::ApiResult;

/// Declares a mutation input: `#[derive(InputObject)]` plus
/// `clientMutationId`, and with `update = UpdateX, fields = XField` the
/// update twin (`id`, then each field not marked `#[input(create_only)]` as
/// `MaybeUndefined`, described from the create field with its null rule)
/// and the enum of field values. Options and field markers (`part`,
/// `update_doc`, `#[input(nullable)]`, `#[input(on_update = "..")]`): see
/// `api_macros`'s `input` module.
pub use api_macros::mutation_input;

/// What an update input asks for: the row (`id`, global or raw), the fields
/// given, as the create input's types (null on a required field already
/// refused), and the `clientMutationId` to echo.
pub struct Changes<F> {
    pub id: ID,
    pub fields: Vec<F>,
    pub client_mutation_id: Option<String>,
}

/// An update twin declared by [`mutation_input`]; its impl is generated.
pub trait UpdateInput {
    /// The enum of the entity's field values.
    type Field;

    /// The row to change, as the client named it: checked before the
    /// fields, so a bad `id` is the error a client sees first, as in every
    /// other mutation.
    fn id(&self) -> &ID;

    /// The changes asked for, before any SQL: null on a field whose column
    /// cannot be null is BAD_USER_INPUT naming the field.
    fn into_changes(self) -> ApiResult<Changes<Self::Field>>;
}

/// An input that names one row (a delete's): its `id`, global or raw, and
/// the `clientMutationId` to echo. [`id_input!`](crate::id_input) inputs
/// implement it; a bare `ID` is one without a `clientMutationId`.
pub trait IdInput {
    fn into_id(self) -> (ID, Option<String>);
}

impl IdInput for ID {
    fn into_id(self) -> (ID, Option<String>) {
        (self, None)
    }
}

/// `crate::payload!(CreateReviewPayload, review: Review, "The review as saved.");`
///
/// A payload converts from `(row, clientMutationId)` for any row its object
/// converts from (the table's model; the object itself), so a resolver that
/// returns what [`crate::domain::resolve`] gives ends in `.map(Into::into)`.
#[macro_export]
macro_rules! payload {
    ($name:ident, $field:ident: $ty:ty, $doc:literal) => {
        #[doc = concat!("What the mutation returns: ", $doc)]
        #[derive(async_graphql::SimpleObject)]
        pub struct $name {
            #[doc = $doc]
            pub $field: $ty,
            /// The input's `clientMutationId`, echoed so a client can match
            /// the answer to its call.
            pub client_mutation_id: Option<String>,
        }

        impl<M> From<(M, Option<String>)> for $name
        where
            $ty: From<M>,
        {
            fn from((row, client_mutation_id): (M, Option<String>)) -> Self {
                Self { $field: row.into(), client_mutation_id }
            }
        }
    };
}

/// An input that names one row and nothing else (a delete):
/// `crate::id_input!(DeleteReviewInput, "The review to delete.");`
#[macro_export]
macro_rules! id_input {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[$crate::graphql::payload::mutation_input]
        pub struct $name {
            /// Its `id` (or raw key, `rowId`).
            pub id: async_graphql::ID,
        }

        impl $crate::graphql::payload::IdInput for $name {
            fn into_id(self) -> (async_graphql::ID, Option<String>) {
                (self.id, self.client_mutation_id)
            }
        }
    };
}
