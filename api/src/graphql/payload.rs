//! Mutation payloads in the Relay shape: the changed object under its
//! type's name beside the input's `clientMutationId`, one line each, so a
//! domain declares its payloads without copying a struct per mutation; and
//! the inputs that only name a row (deletes), likewise.

/// `crate::payload!(CreateReviewPayload, review: Review, "The review as saved.");`
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
    };
}

/// An input that names one row and nothing else (a delete):
/// `crate::id_input!(DeleteReviewInput, "The review to delete.");`
#[macro_export]
macro_rules! id_input {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(async_graphql::InputObject)]
        pub struct $name {
            /// Its `id` (or raw key, `rowId`).
            pub id: async_graphql::ID,
            /// Echoed in the payload, so a client can match the answer to
            /// its call.
            pub client_mutation_id: Option<String>,
        }
    };
}
