use async_graphql::{Context, ID, Object};
use entity::{place, review};
use sea_orm::Set;

use super::policy::{Places, Preferences, Reviews};
use super::recommend;
use super::store::{self, PlaceFilter};
use super::types::{
    CreatePlaceInput, CreatePlacePayload, CreateReviewInput, CreateReviewPayload, DeletePlaceInput, DeletePlacePayload,
    DeletePreferenceInput, DeletePreferencePayload, DeleteReviewInput, DeleteReviewPayload, ImportPlacesInput,
    ImportPlacesPayload, Place, PlaceConnection, PlaceField, PlaceOrder, Preference, Recommendation, ReviewConnection,
    ReviewField, SetPreferenceInput, SetPreferencePayload, UpdatePlaceInput, UpdatePlacePayload, UpdateReviewInput,
    UpdateReviewPayload,
};
use super::validate;
use crate::domain::resolve::InputField;
use crate::domain::{self, Policy};
use crate::error::{ApiError, ApiResult, FoundExt};
use crate::graphql::ContextExt;
use crate::graphql::pagination::{Asked, Page, paged};

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

#[paged]
#[Object]
impl PlacesQuery {
    /// Places, filtered and ordered, a page at a time. Public.
    #[graphql(complexity = "crate::graphql::cost::searched_page(first, last, search.as_deref(), child_complexity)")]
    async fn places(
        &self,
        ctx: &Context<'_>,
        #[page] page: Page,
        #[graphql(desc = "Only places of this category.")] category: Option<String>,
        #[graphql(desc = "Only places whose name contains this text (case-insensitive).")] search: Option<String>,
        #[graphql(desc = "Ordering.", default_with = "Some(PlaceOrder::RatingDesc)")] order_by: Option<PlaceOrder>,
    ) -> ApiResult<PlaceConnection> {
        let viewer = ctx.viewer()?;
        let filter = PlaceFilter {
            category: validate::optional_text("category", category.as_deref(), 100)?,
            search: validate::optional_text("search", search.as_deref(), 200)?,
            order: order_by.unwrap_or_default(),
        };
        // Only the columns of the fields asked for (as in `my_reviews`).
        let asked = Asked::of_nodes(ctx);
        let tx = ctx.tx().await?;
        let rows = store::list_places(&*tx, &viewer, &filter, &page, |field| asked.has(field)).await?;
        Ok(rows.into())
    }

    /// One place by its id, or null if there is none.
    #[graphql(complexity = "crate::graphql::cost::one(child_complexity)")]
    async fn place(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Place>> {
        Ok(domain::resolve::one::<Places>(ctx, &id).await.found()?.map(Place::from))
    }

    /// The signed-in user's reviews, newest first.
    async fn my_reviews(&self, ctx: &Context<'_>, #[page] page: Page) -> ApiResult<ReviewConnection> {
        // Review.place selected: the places come with the page, in its one
        // statement, instead of a second query from the row loader.
        let asked = Asked::of_nodes(ctx);
        if !asked.has("place") {
            return Ok(domain::resolve::my_page::<Reviews>(ctx, &page, &store::REVIEWS).await?.into());
        }
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let tx = ctx.tx().await?;
        // Only the columns of the fields asked for (aliases and fragments
        // included).
        let place_asked = asked.under("place");
        let columns = store::JoinedColumns::selected(|field| asked.has(field), |field| place_asked.has(field));
        Ok(store::list_reviews_with_places(&*tx, &viewer, me, &page, &columns).await?.into())
    }

    /// The signed-in user's category preferences, by category.
    #[graphql(complexity = "crate::graphql::cost::unsized_list(child_complexity)")]
    async fn my_preferences(&self, ctx: &Context<'_>) -> ApiResult<Vec<Preference>> {
        Ok(domain::resolve::my_list::<Preferences>(ctx, &store::PREFERENCES)
            .await?
            .into_iter()
            .map(Preference::from)
            .collect())
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
    async fn create_review(&self, ctx: &Context<'_>, input: CreateReviewInput) -> ApiResult<CreateReviewPayload> {
        domain::resolve::create::<Reviews, _>(ctx, input.into_fields()).await.map(Into::into)
    }

    /// Changes a review. NOT_FOUND for reviews the viewer cannot see,
    /// FORBIDDEN for ones it sees but may not change.
    async fn update_review(&self, ctx: &Context<'_>, input: UpdateReviewInput) -> ApiResult<UpdateReviewPayload> {
        domain::resolve::update::<Reviews, _>(ctx, input).await.map(Into::into)
    }

    /// Deletes a review and returns it. NOT_FOUND for reviews the viewer
    /// cannot see, FORBIDDEN for ones it sees but may not change.
    async fn delete_review(&self, ctx: &Context<'_>, input: DeleteReviewInput) -> ApiResult<DeleteReviewPayload> {
        domain::resolve::delete::<Reviews, _>(ctx, input).await.map(Into::into)
    }

    /// Sets how much the signed-in user likes a category (creates or replaces).
    async fn set_preference(&self, ctx: &Context<'_>, input: SetPreferenceInput) -> ApiResult<SetPreferencePayload> {
        let viewer = ctx.viewer()?;
        let me = Preferences::require_writer(&viewer)?;
        let category = validate::text("category", &input.category, 100)?;
        let rating = validate::rating("rating", input.rating)?;
        let tx = ctx.tx().await?;
        Ok((store::upsert_preference(&*tx, me, category, rating).await?, input.client_mutation_id).into())
    }

    /// Removes one of the signed-in user's preferences, by its id or by its
    /// category, and returns it.
    async fn delete_preference(
        &self,
        ctx: &Context<'_>,
        input: DeletePreferenceInput,
    ) -> ApiResult<DeletePreferencePayload> {
        let viewer = ctx.viewer()?;
        let me = Preferences::require_writer(&viewer)?;
        let deleted = match (input.id, input.category) {
            (Some(id), None) => domain::resolve::delete::<Preferences, _>(ctx, id).await?.0,
            (None, Some(category)) => {
                let category = validate::text("category", &category, 100)?;
                let tx = ctx.tx().await?;
                let existing = store::find_preference(&*tx, &viewer, me, &category)
                    .await?
                    .ok_or_else(|| ApiError::not_found("preference"))?;
                domain::store::delete::<Preferences>(&*tx, &viewer, existing.id).await?
            }
            _ => return Err(ApiError::bad_input("id", "give exactly one of id and category")),
        };
        Ok((deleted, input.client_mutation_id).into())
    }

    /// Adds a place (admin and service).
    async fn create_place(&self, ctx: &Context<'_>, input: CreatePlaceInput) -> ApiResult<CreatePlacePayload> {
        let fields = (input.place.into_fields(), input.client_mutation_id);
        domain::resolve::create::<Places, _>(ctx, fields).await.map(Into::into)
    }

    /// Changes a place (admin and service).
    async fn update_place(&self, ctx: &Context<'_>, input: UpdatePlaceInput) -> ApiResult<UpdatePlacePayload> {
        domain::resolve::update::<Places, _>(ctx, input).await.map(Into::into)
    }

    /// Deletes a place and its reviews (admin and service), returning it.
    async fn delete_place(&self, ctx: &Context<'_>, input: DeletePlaceInput) -> ApiResult<DeletePlacePayload> {
        domain::resolve::delete::<Places, _>(ctx, input).await.map(Into::into)
    }

    /// Creates or overwrites up to 1000 places by id in one statement
    /// (admin and service). Importing the same list twice changes nothing
    /// the second time; within one list, the last entry for an id wins.
    async fn import_places(&self, ctx: &Context<'_>, input: ImportPlacesInput) -> ApiResult<ImportPlacesPayload> {
        let viewer = ctx.viewer()?;
        Places::require_writer(&viewer)?;
        let client_mutation_id = input.client_mutation_id;
        if input.places.len() > MAX_IMPORT {
            return Err(ApiError::bad_input("places", format!("at most {MAX_IMPORT} places per call")));
        }
        let mut by_id = std::collections::BTreeMap::new();
        for place in input.places {
            by_id.insert(place.id.to_string(), place);
        }
        if by_id.is_empty() {
            return Ok(ImportPlacesPayload { created: 0, updated: 0, client_mutation_id });
        }
        let ids: Vec<String> = by_id.keys().cloned().collect();
        let rows = by_id
            .into_values()
            .map(|place| PlaceField::row(place::ActiveModel::default(), place.into_fields()))
            .collect::<ApiResult<Vec<_>>>()?;
        let count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
        let tx = ctx.tx().await?;
        let existing = i32::try_from(store::upsert_places(&*tx, rows, ids).await?).unwrap_or(i32::MAX);
        Ok(ImportPlacesPayload { created: count - existing, updated: existing, client_mutation_id })
    }
}

/// A new place's key: free text, but never one that reads as a global id
/// (`ids::decode`), or `place(id:)` would find another row by it.
fn place_key(id: &str) -> ApiResult<String> {
    let id = validate::text("id", id, 100)?;
    if crate::graphql::ids::decode(&id).is_some() {
        return Err(ApiError::bad_input("id", "id may not be a global id (the base64 form of `Type:key`)"));
    }
    Ok(id)
}

impl InputField for ReviewField {
    type Row = review::ActiveModel;

    fn set(self, row: &mut review::ActiveModel) -> ApiResult<()> {
        match self {
            Self::PlaceId(id) => {
                let place_id = crate::graphql::ids::raw_key("placeId", &id, Some("Place"))?;
                row.place_id = Set(validate::text("placeId", &place_id, 100)?);
            }
            Self::Rating(rating) => row.rating = Set(validate::rating("rating", rating)?),
            Self::Comment(comment) => row.comment = Set(validate::comment(comment.as_deref())?),
        }
        Ok(())
    }
}

impl InputField for PlaceField {
    type Row = place::ActiveModel;

    fn set(self, row: &mut place::ActiveModel) -> ApiResult<()> {
        match self {
            Self::Id(id) => row.id = Set(place_key(&id)?),
            Self::Name(name) => row.name = Set(validate::text("name", &name, 200)?),
            Self::Lat(lat) => row.lat = Set(validate::lat("lat", lat)?),
            Self::Lng(lng) => row.lng = Set(validate::lng("lng", lng)?),
            Self::Types(types) => row.types = Set(validate::types(&types)?),
            Self::Category(category) => {
                row.category = Set(validate::optional_text("category", category.as_deref(), 100)?);
            }
            Self::Rating(rating) => row.rating = Set(rating.map(|r| validate::rating("rating", r)).transpose()?),
            Self::UserRatingsTotal(total) => {
                row.user_ratings_total = Set(total.map(|n| validate::count("userRatingsTotal", n)).transpose()?);
            }
            Self::Description(description) => row.description = Set(description),
        }
        Ok(())
    }
}
