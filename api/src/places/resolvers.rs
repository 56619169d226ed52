use async_graphql::{Context, ID, MaybeUndefined, Object};
use entity::{place, review};
use sea_orm::{ActiveValue, IntoActiveModel, Set};

use super::policy::{Places, Preferences, Reviews};
use super::recommend;
use super::store::{self, PlaceFilter};
use super::types::{
    CreateReviewInput, ImportPlacesPayload, Place, PlaceConnection, PlaceInput, PlaceOrder, Preference,
    PreferenceInput, Recommendation, Review, ReviewConnection, UpdatePlaceInput, UpdateReviewInput,
};
use super::validate;
use crate::domain::{self, Policy};
use crate::error::{ApiError, ApiResult, FoundExt};
use crate::graphql::ContextExt;
use crate::graphql::pagination::Page;

/// The most places one importPlaces call takes.
const MAX_IMPORT: usize = 1000;
/// The recommendation radius when none is given, in kilometres (the seed's).
const DEFAULT_RADIUS_KM: f64 = 5.0;
/// How many recommendations when no limit is given.
const DEFAULT_RECOMMENDATIONS: i32 = 10;
/// The widest recommendation radius, in kilometres.
const MAX_RADIUS_KM: f64 = 100.0;
/// The narrowest recommendation radius, in kilometres (one metre): below
/// it the distance arithmetic underflows (1e-320 is a valid float but not a
/// valid radius), and nothing that small is a useful search.
const MIN_RADIUS_KM: f64 = 0.001;
/// The most recommendations one call returns.
const MAX_RECOMMENDATIONS: i32 = 100;

#[derive(Default)]
pub struct PlacesQuery;

#[Object]
impl PlacesQuery {
    /// Places, filtered and ordered, a page at a time. Public.
    #[graphql(complexity = "crate::graphql::cost::searched_page(first, last, search.as_deref(), child_complexity)")]
    // Relay's four paging arguments plus the filters: GraphQL arguments,
    // not a Rust API to shrink.
    #[allow(clippy::too_many_arguments)]
    async fn places(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size going forward, at most 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (from an edge or `endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size going backward: the items just before `before`, or the list's last.")] last: Option<
            i32,
        >,
        #[graphql(desc = "Page back from this cursor (from an edge or `startCursor`).")] before: Option<String>,
        #[graphql(desc = "Only places of this category.")] category: Option<String>,
        #[graphql(desc = "Only places whose name contains this text (case-insensitive).")] search: Option<String>,
        #[graphql(desc = "Ordering.", default_with = "Some(PlaceOrder::RatingDesc)")] order_by: Option<PlaceOrder>,
    ) -> ApiResult<PlaceConnection> {
        let viewer = ctx.viewer()?;
        let page = Page::from_args(first, after.as_deref(), last, before.as_deref())?;
        let filter = PlaceFilter {
            category: validate::optional_text("category", category.as_deref(), 100)?,
            search: validate::optional_text("search", search.as_deref(), 200)?,
            order: order_by.unwrap_or_default(),
        };
        let tx = ctx.tx().await?;
        let rows = store::list_places(&*tx, &viewer, &filter, &page).await?;
        Ok(rows.map(Place::from).into())
    }

    /// One place by its id, or null if there is none.
    #[graphql(complexity = "crate::graphql::cost::one(child_complexity)")]
    async fn place(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Place>> {
        Ok(domain::resolve::one::<Places>(ctx, &id).await.found()?.map(Place::from))
    }

    /// The signed-in user's reviews, newest first.
    #[graphql(complexity = "crate::graphql::cost::page(first, last, child_complexity)")]
    async fn my_reviews(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size going forward, at most 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (from an edge or `endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size going backward: the items just before `before`, or the list's last.")] last: Option<
            i32,
        >,
        #[graphql(desc = "Page back from this cursor (from an edge or `startCursor`).")] before: Option<String>,
    ) -> ApiResult<ReviewConnection> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let page = Page::from_args(first, after.as_deref(), last, before.as_deref())?;
        // Review.place selected: the places come with the page, in its one
        // statement, instead of a second query from the place loader.
        let look_ahead = ctx.look_ahead();
        let with_places = look_ahead.field("nodes").field("place").exists()
            || look_ahead.field("edges").field("node").field("place").exists();
        let tx = ctx.tx().await?;
        if with_places {
            let rows = store::list_reviews_with_places(&*tx, &viewer, me, &page).await?;
            return Ok(rows.map(|(review, place)| Review::with_place(review, place.map(Place::from))).into());
        }
        let rows = store::list_reviews(&*tx, &viewer, me, &page).await?;
        Ok(rows.map(Review::from).into())
    }

    /// The signed-in user's category preferences, by category.
    #[graphql(complexity = "crate::graphql::cost::unsized_list(child_complexity)")]
    async fn my_preferences(&self, ctx: &Context<'_>) -> ApiResult<Vec<Preference>> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let tx = ctx.tx().await?;
        Ok(store::list_preferences(&*tx, &viewer, me).await?.into_iter().map(Preference::from).collect())
    }

    /// Places near a point in the categories the signed-in user likes, best first.
    #[graphql(complexity = "crate::graphql::cost::recommendations(limit, DEFAULT_RECOMMENDATIONS, child_complexity)")]
    async fn recommendations(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Latitude of the point, -90 to 90.")] lat: f64,
        #[graphql(desc = "Longitude of the point, -180 to 180.")] lng: f64,
        #[graphql(desc = "Search radius in kilometres, 0.001 to 100.", default_with = "Some(DEFAULT_RADIUS_KM)")]
        radius_km: Option<f64>,
        #[graphql(desc = "How many to return, 1 to 100.", default_with = "Some(DEFAULT_RECOMMENDATIONS)")]
        limit: Option<i32>,
    ) -> ApiResult<Vec<Recommendation>> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let lat = validate::lat("lat", lat)?;
        let lng = validate::lng("lng", lng)?;
        let radius_km = radius_km.unwrap_or(DEFAULT_RADIUS_KM);
        let limit = limit.unwrap_or(DEFAULT_RECOMMENDATIONS);
        if !(MIN_RADIUS_KM..=MAX_RADIUS_KM).contains(&radius_km) {
            return Err(ApiError::bad_input(
                "radiusKm",
                format!("radiusKm must be between {MIN_RADIUS_KM} and {MAX_RADIUS_KM}"),
            ));
        }
        if !(1..=MAX_RECOMMENDATIONS).contains(&limit) {
            return Err(ApiError::bad_input("limit", format!("limit must be between 1 and {MAX_RECOMMENDATIONS}")));
        }
        let tx = ctx.tx().await?;
        let rows = recommend::recommend(&*tx, me, lat, lng, radius_km, i64::from(limit)).await?;
        Ok(rows.into_iter().map(Recommendation::from).collect())
    }
}

#[derive(Default)]
pub struct PlacesMutation;

#[Object]
impl PlacesMutation {
    /// Reviews a place as the signed-in user; one review per user and place.
    async fn create_review(&self, ctx: &Context<'_>, input: CreateReviewInput) -> ApiResult<Review> {
        let viewer = ctx.viewer()?;
        let me = Reviews::require_writer(&viewer)?;
        let place_id = crate::graphql::ids::raw_key("placeId", &input.place_id, Some("Place"))?;
        let place_id = validate::text("placeId", &place_id, 100)?;
        let row = review::ActiveModel {
            user_id: Set(me),
            place_id: Set(place_id),
            rating: Set(validate::rating("rating", input.rating)?),
            comment: Set(validate::comment(input.comment.as_deref())?),
            ..Default::default()
        };
        let tx = ctx.tx().await?;
        Ok(domain::store::insert(&*tx, row).await?.into())
    }

    /// Changes a review. NOT_FOUND for reviews the viewer cannot see,
    /// FORBIDDEN for ones it sees but may not change.
    async fn update_review(&self, ctx: &Context<'_>, id: ID, input: UpdateReviewInput) -> ApiResult<Review> {
        let viewer = ctx.viewer()?;
        let id = domain::resolve::key::<Reviews>("id", &id)?;
        let rating = input.rating.map(|r| validate::rating("rating", r)).transpose()?;
        let comment = match input.comment {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(text) => Some(validate::comment(Some(&text))?),
        };
        let tx = ctx.tx().await?;
        let mut row = domain::store::writable::<Reviews>(&*tx, &viewer, id).await?.into_active_model();
        if let Some(rating) = rating {
            row.rating = Set(rating);
        }
        if let Some(comment) = comment {
            row.comment = Set(comment);
        }
        Ok(domain::store::update(&*tx, row).await?.into())
    }

    /// Deletes a review and returns it. NOT_FOUND for reviews the viewer
    /// cannot see, FORBIDDEN for ones it sees but may not change.
    async fn delete_review(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Review> {
        Ok(domain::resolve::delete::<Reviews>(ctx, &id).await?.into())
    }

    /// Sets how much the signed-in user likes a category (creates or replaces).
    async fn set_preference(&self, ctx: &Context<'_>, input: PreferenceInput) -> ApiResult<Preference> {
        let viewer = ctx.viewer()?;
        let me = Preferences::require_writer(&viewer)?;
        let category = validate::text("category", &input.category, 100)?;
        let rating = validate::rating("rating", input.rating)?;
        let tx = ctx.tx().await?;
        Ok(store::upsert_preference(&*tx, me, category, rating).await?.into())
    }

    /// Removes the signed-in user's preference for a category and returns it.
    async fn delete_preference(&self, ctx: &Context<'_>, category: String) -> ApiResult<Preference> {
        let viewer = ctx.viewer()?;
        let me = Preferences::require_writer(&viewer)?;
        let category = validate::text("category", &category, 100)?;
        let tx = ctx.tx().await?;
        let existing = store::find_preference(&*tx, &viewer, me, &category)
            .await?
            .ok_or_else(|| ApiError::not_found("preference"))?;
        Ok(domain::store::delete::<Preferences>(&*tx, &viewer, existing.id).await?.into())
    }

    /// Adds a place (admin and service).
    async fn create_place(&self, ctx: &Context<'_>, input: PlaceInput) -> ApiResult<Place> {
        let viewer = ctx.viewer()?;
        Places::require_writer(&viewer)?;
        let row = place_row(input)?;
        let tx = ctx.tx().await?;
        Ok(domain::store::insert(&*tx, row).await?.into())
    }

    /// Changes a place (admin and service).
    async fn update_place(&self, ctx: &Context<'_>, id: ID, input: UpdatePlaceInput) -> ApiResult<Place> {
        let viewer = ctx.viewer()?;
        Places::require_writer(&viewer)?;
        let tx = ctx.tx().await?;
        let mut row = domain::store::writable::<Places>(&*tx, &viewer, id.to_string()).await?.into_active_model();
        apply_place_changes(&mut row, input)?;
        Ok(domain::store::update(&*tx, row).await?.into())
    }

    /// Deletes a place and its reviews (admin and service), returning it.
    async fn delete_place(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Place> {
        Places::require_writer(&ctx.viewer()?)?;
        Ok(domain::resolve::delete::<Places>(ctx, &id).await?.into())
    }

    /// Creates or overwrites up to 1000 places by id in one statement
    /// (admin and service). Importing the same list twice changes nothing
    /// the second time; within one list, the last entry for an id wins.
    async fn import_places(&self, ctx: &Context<'_>, places: Vec<PlaceInput>) -> ApiResult<ImportPlacesPayload> {
        let viewer = ctx.viewer()?;
        Places::require_writer(&viewer)?;
        if places.len() > MAX_IMPORT {
            return Err(ApiError::bad_input("places", format!("at most {MAX_IMPORT} places per call")));
        }
        let mut by_id = std::collections::BTreeMap::new();
        for input in places {
            by_id.insert(input.id.to_string(), input);
        }
        if by_id.is_empty() {
            return Ok(ImportPlacesPayload { created: 0, updated: 0 });
        }
        let ids: Vec<String> = by_id.keys().cloned().collect();
        let rows = by_id.into_values().map(place_row).collect::<ApiResult<Vec<_>>>()?;
        let count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
        let tx = ctx.tx().await?;
        let existing = i32::try_from(store::upsert_places(&*tx, rows, ids).await?).unwrap_or(i32::MAX);
        Ok(ImportPlacesPayload { created: count - existing, updated: existing })
    }
}

fn place_row(input: PlaceInput) -> ApiResult<place::ActiveModel> {
    Ok(place::ActiveModel {
        id: Set(validate::text("id", &input.id, 100)?),
        name: Set(validate::text("name", &input.name, 200)?),
        lat: Set(validate::lat("lat", input.lat)?),
        lng: Set(validate::lng("lng", input.lng)?),
        types: Set(validate::types(&input.types)?),
        category: Set(validate::optional_text("category", input.category.as_deref(), 100)?),
        rating: Set(input.rating.map(|r| validate::rating("rating", r)).transpose()?),
        user_ratings_total: Set(input
            .user_ratings_total
            .map(|n| validate::count("userRatingsTotal", n))
            .transpose()?),
        description: Set(input.description),
        created_at: ActiveValue::NotSet,
        updated_at: ActiveValue::NotSet,
    })
}

fn apply_place_changes(row: &mut place::ActiveModel, input: UpdatePlaceInput) -> ApiResult<()> {
    if let Some(name) = input.name {
        row.name = Set(validate::text("name", &name, 200)?);
    }
    if let Some(lat) = input.lat {
        row.lat = Set(validate::lat("lat", lat)?);
    }
    if let Some(lng) = input.lng {
        row.lng = Set(validate::lng("lng", lng)?);
    }
    match input.types {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => row.types = Set(None),
        MaybeUndefined::Value(types) => row.types = Set(validate::types(&types)?),
    }
    match input.category {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => row.category = Set(None),
        MaybeUndefined::Value(c) => row.category = Set(validate::optional_text("category", Some(&c), 100)?),
    }
    match input.rating {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => row.rating = Set(None),
        MaybeUndefined::Value(r) => row.rating = Set(Some(validate::rating("rating", r)?)),
    }
    match input.user_ratings_total {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => row.user_ratings_total = Set(None),
        MaybeUndefined::Value(n) => row.user_ratings_total = Set(Some(validate::count("userRatingsTotal", n)?)),
    }
    match input.description {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => row.description = Set(None),
        MaybeUndefined::Value(d) => row.description = Set(Some(d)),
    }
    Ok(())
}
