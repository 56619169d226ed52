use std::borrow::Cow;

use async_graphql::{ComplexObject, Context, Enum, ID, OutputType, SimpleObject};
use chrono::{DateTime, FixedOffset};

use super::policy::Places;
use crate::accounts::{User, Users};
use crate::domain::loader::{load, raw_key};
use crate::error::ApiResult;
use crate::graphql::ids::{FromModel, GlobalId, RawId};
use crate::graphql::inline::Inline;
use crate::graphql::payload::mutation_input;

/// A place people can review, from the seed's `place` table. Public.
// A page of places, and of reviews with their places, reads only the
// columns of the fields asked for, by name (`domain::columns`): a field
// reading another column than its own (camelCase) one must read a key, or
// be taught there (`store::list_columns`, `store::JoinedColumns`).
#[derive(SimpleObject, FromModel, Clone)]
#[from_model(entity::place::Model)]
pub struct Place {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a Place.
    pub id: GlobalId,
    /// The row's key, the Google Place ID (what `id` was before this
    /// release; foreign keys such as `placeId` hold it).
    pub row_id: RawId,
    /// Display name.
    pub name: String,
    /// Latitude in degrees, -90 to 90.
    pub lat: f64,
    /// Longitude in degrees, -180 to 180.
    pub lng: f64,
    /// Google place types, e.g. `cafe`, `food`.
    #[from_model(with = PlaceTypes::new)]
    pub types: PlaceTypes,
    /// The category that preferences and recommendations match on.
    pub category: Option<String>,
    /// Average rating, 0 to 5.
    pub rating: Option<f64>,
    /// How many ratings the average is made of.
    pub user_ratings_total: Option<i32>,
    /// Free-text description.
    pub description: Option<String>,
    /// When the place was added.
    pub created_at: DateTime<FixedOffset>,
    /// When the place last changed (kept by the database).
    pub updated_at: DateTime<FixedOffset>,
}

/// `Place.types`, stored as the seed's comma-separated VARCHAR(500) and
/// split when the field is resolved: splitting every place's column into a
/// list of strings, selected or not, was a handful of allocations per place
/// of every page (issue 11). Clients see `[String!]!`, as from a
/// `Vec<String>`.
#[derive(Clone)]
pub struct PlaceTypes(Option<String>);

impl PlaceTypes {
    pub fn new(column: Option<String>) -> Self {
        Self(column)
    }

    /// The types, trimmed, without empty entries.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty())
    }
}

impl OutputType for PlaceTypes {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <Vec<String> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<String> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <Vec<String> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        _ctx: &async_graphql::ContextSelectionSet<'_>,
        _field: &async_graphql::Positioned<async_graphql::parser::types::Field>,
    ) -> async_graphql::ServerResult<async_graphql::Value> {
        Ok(async_graphql::Value::List(self.iter().map(|t| async_graphql::Value::String(t.to_owned())).collect()))
    }
}

crate::connection_type!(PlaceConnection, PlaceEdge, Place, "places");
crate::connection_type!(ReviewConnection, ReviewEdge, Review, "reviews");

/// A user's review of a place. Visible to its author only (and to readers,
/// services and admins).
// As for `Place`: `store::JoinedColumns` reads a column for its own field
// only; the complex fields below read keys (`user_id`, `place_id`).
#[derive(SimpleObject, FromModel, Clone)]
#[graphql(complex)]
#[from_model(entity::review::Model)]
pub struct Review {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a Review.
    pub id: GlobalId,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: RawId,
    /// The author's user id.
    pub user_id: RawId,
    /// The reviewed place's id.
    pub place_id: RawId,
    /// 0 to 5.
    pub rating: f64,
    /// Free text, at most 5000 characters.
    pub comment: Option<String>,
    /// When the review was written.
    pub created_at: DateTime<FixedOffset>,
    /// When the review last changed.
    pub updated_at: DateTime<FixedOffset>,
    /// The place when it was read with the review (a join); `None` leaves
    /// it to the row loader.
    #[graphql(skip)]
    #[from_model(default)]
    pub place: Option<Place>,
}

#[ComplexObject]
impl Review {
    /// The author (`userId`): null unless the viewer may see that account
    /// (their own, or any as a reader, service or admin), like every
    /// `user` field. Batched across the response.
    async fn user(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        Ok(load::<Users>(ctx, raw_key::<uuid::Uuid>(&self.user_id)?).await?.map(User::from))
    }

    /// The reviewed place (`placeId`); places are public. Read with the
    /// reviews when they are listed, otherwise batched across the response.
    /// Null only in the DELETED event of a review removed with its place
    /// (the place is gone by the time the event is read).
    async fn place(&self, ctx: &Context<'_>) -> ApiResult<Option<Inline<Cow<'_, Place>>>> {
        // The joined place is resolved where it is, not copied (issue 11).
        if let Some(place) = &self.place {
            return Ok(Some(Inline(Cow::Borrowed(place))));
        }
        let loaded = load::<Places>(ctx, raw_key::<String>(&self.place_id)?).await?;
        Ok(loaded.map(|model| Inline(Cow::Owned(Place::from(model)))))
    }
}

/// A review with its place read in the same statement.
impl From<(entity::review::Model, Option<entity::place::Model>)> for Review {
    fn from((review, place): (entity::review::Model, Option<entity::place::Model>)) -> Self {
        Self { place: place.map(Place::from), ..Self::from(review) }
    }
}

/// How much a user likes a category of places; drives recommendations.
/// Visible to its owner only.
#[derive(SimpleObject, FromModel, Clone)]
#[graphql(complex)]
#[from_model(entity::preference::Model)]
pub struct Preference {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a Preference.
    pub id: GlobalId,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: RawId,
    /// The owner's user id.
    pub user_id: RawId,
    /// The place category this preference is about.
    pub category: String,
    /// 0 (avoid) to 5 (love).
    pub rating: f64,
    /// When the preference was first set.
    pub created_at: DateTime<FixedOffset>,
    /// When the preference last changed.
    pub updated_at: DateTime<FixedOffset>,
}

#[ComplexObject]
impl Preference {
    /// The owner (`userId`): null unless the viewer may see that account.
    /// Batched across the response.
    async fn user(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        Ok(load::<Users>(ctx, raw_key::<uuid::Uuid>(&self.user_id)?).await?.map(User::from))
    }
}

/// A place recommended to the viewer, with why.
#[derive(SimpleObject)]
pub struct Recommendation {
    /// The recommended place.
    pub place: Place,
    /// Great-circle distance from the given point, in kilometres.
    pub distance_km: f64,
    /// The viewer's preference rating for the place's category, 0 to 5.
    pub preference_rating: f64,
    /// 0.6 × preference/5 + 0.2 × rating/5 + 0.1 × popularity + 0.1 × closeness, 0 to 1.
    pub score: f64,
}

/// Orderings of `places`. Each value names its column and its direction.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaceOrder {
    /// Best rated first; unrated places last.
    #[default]
    RatingDesc,
    /// Alphabetical by name.
    NameAsc,
    /// Most recently added first.
    CreatedAtDesc,
}

/// A new review.
#[mutation_input(update = UpdateReviewInput, fields = ReviewField)]
pub struct CreateReviewInput {
    /// The place to review.
    #[input(create_only)]
    pub place_id: ID,
    /// 0 to 5.
    pub rating: f64,
    /// Optional text, at most 5000 characters.
    pub comment: Option<String>,
}

crate::id_input!(DeleteReviewInput, "The review to delete.");

/// A preference to create or replace.
#[mutation_input]
pub struct SetPreferenceInput {
    /// The place category, at most 100 characters.
    pub category: String,
    /// 0 to 5.
    pub rating: f64,
}

/// The preference to delete: give its `id`, or the `category` it is about
/// (the signed-in user has at most one per category); exactly one of them.
#[mutation_input]
pub struct DeletePreferenceInput {
    /// The preference to delete.
    pub id: Option<ID>,
    /// The category whose preference to delete.
    pub category: Option<String>,
}

/// A complete place, for createPlace and importPlaces.
#[mutation_input(part, update = UpdatePlaceInput, fields = PlaceField)]
#[derive(Clone)]
pub struct PlaceInput {
    /// The Google Place ID, at most 100 characters.
    #[input(create_only)]
    pub id: ID,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lng: f64,
    /// Google place types.
    #[graphql(default)]
    #[input(nullable, on_update = "so does an empty list")]
    pub types: Vec<String>,
    /// Category, at most 100 characters.
    pub category: Option<String>,
    /// Average rating, 0 to 5.
    pub rating: Option<f64>,
    /// Number of ratings, 0 or more.
    pub user_ratings_total: Option<i32>,
    /// Free-text description.
    pub description: Option<String>,
}

/// A new place: the fields of a `PlaceInput`.
#[mutation_input]
pub struct CreatePlaceInput {
    #[graphql(flatten)]
    pub place: PlaceInput,
}

crate::id_input!(DeletePlaceInput, "The place to delete (its reviews go with it).");

/// Places to create or overwrite, by id.
#[mutation_input]
pub struct ImportPlacesInput {
    /// At most 1000 places; within the list, the last entry for an id wins.
    pub places: Vec<PlaceInput>,
}

crate::payload!(CreateReviewPayload, review: Review, "The review as saved.");
crate::payload!(UpdateReviewPayload, review: Review, "The review as it is now.");
crate::payload!(DeleteReviewPayload, review: Review, "The review as it was before it was deleted.");
crate::payload!(SetPreferencePayload, preference: Preference, "The preference as saved.");
crate::payload!(DeletePreferencePayload, preference: Preference, "The preference as it was before it was deleted.");
crate::payload!(CreatePlacePayload, place: Place, "The place as saved.");
crate::payload!(UpdatePlacePayload, place: Place, "The place as it is now.");
crate::payload!(DeletePlacePayload, place: Place, "The place as it was before it was deleted.");

/// What importPlaces did (it touches many places, so it counts them
/// rather than returning them).
#[derive(SimpleObject)]
pub struct ImportPlacesPayload {
    /// Places that did not exist before.
    pub created: i32,
    /// Places that existed and were overwritten.
    pub updated: i32,
    /// The input's `clientMutationId`, echoed so a client can match the
    /// answer to its call.
    pub client_mutation_id: Option<String>,
}
