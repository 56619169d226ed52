//! Places, reviews and preferences (the Planwise seed), and the seed's
//! recommendation query.

use crate::domain::{Constraint, Domain, ReplayKey};

pub(crate) mod policy;
mod recommend;
mod resolvers;
mod store;
mod subscriptions;
pub(crate) mod types;
mod validate;

pub use resolvers::{PlacesMutation as Mutation, PlacesQuery as Query};
pub use subscriptions::PlacesSubscription as Subscription;

/// The named constraints of this domain's tables (its migrations) and the
/// client errors their violations mean.
const CONSTRAINTS: &[Constraint] = &[
    Constraint::conflict("place_pkey", "id", "a place with this id already exists"),
    Constraint::bad_input("place_name_check", "name", "name must not be empty"),
    Constraint::bad_input("place_lat_check", "lat", "lat must be between -90 and 90"),
    Constraint::bad_input("place_lng_check", "lng", "lng must be between -180 and 180"),
    Constraint::bad_input("place_rating_check", "rating", "rating must be between 0 and 5"),
    Constraint::conflict("review_user_id_place_id_key", "placeId", "you have already reviewed this place"),
    Constraint::not_found("review_place_id_fkey", "place"),
    Constraint::bad_input("review_rating_check", "rating", "rating must be between 0 and 5"),
    Constraint::bad_input("preference_rating_check", "rating", "rating must be between 0 and 5"),
    Constraint::bad_input("review_comment_check", "comment", "comment is too long"),
    Constraint::bad_input("preference_category_check", "category", "category must not be empty"),
];

/// This domain for the shared machinery ([`crate::domain::DOMAINS`]): its
/// constraints, and the keys of its tables subscribers watch.
pub const DOMAIN: Domain = Domain {
    constraints: CONSTRAINTS,
    replayed: &[
        ReplayKey::new("place", "id", "text"),
        ReplayKey::new("review", "id", "bigint"),
        ReplayKey::new("preference", "id", "bigint"),
    ],
};

/// This domain's types that clients refetch by global id, one line each,
/// gathered into the `Node` interface (how: [`crate::graphql::node`]).
macro_rules! nodes {
    ($($gathered:tt)*) => {
        crate::graphql::node::node_types! { $($gathered)*
            Place(crate::places::types::Place) = crate::places::policy::Places;
            Review(crate::places::types::Review) = crate::places::policy::Reviews;
            Preference(crate::places::types::Preference) = crate::places::policy::Preferences;
        }
    };
}
pub(crate) use nodes;
