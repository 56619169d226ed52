//! Live changes of places, reviews and preferences.

use async_graphql::{Context, InputObject, SimpleObject, Subscription};
use futures_util::{Stream, StreamExt};

use super::policy;
use super::types::{Place, Preference, Review};
use crate::error::ApiError;
use crate::graphql::ContextExt;
use crate::realtime::{ChangeEvent, ChangeOperation, stream};

/// A point and a radius to watch.
#[derive(InputObject, Clone, Copy)]
pub struct NearInput {
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lng: f64,
    /// Radius in kilometres, above 0 and at most 100.
    pub radius_km: f64,
}

/// A change to a place.
#[derive(SimpleObject)]
pub struct PlaceChangeEvent {
    /// What happened.
    pub operation: ChangeOperation,
    /// The place after the change (before it, for a deletion).
    pub place: Place,
    /// Pass as `after` when resubscribing to continue right after this event.
    pub cursor: String,
}

/// A change to one of your reviews.
#[derive(SimpleObject)]
pub struct ReviewChangeEvent {
    /// What happened.
    pub operation: ChangeOperation,
    /// The review after the change (before it, for a deletion).
    pub review: Review,
    /// Pass as `after` when resubscribing to continue right after this event.
    pub cursor: String,
}

/// A change to one of your preferences.
#[derive(SimpleObject)]
pub struct PreferenceChangeEvent {
    /// What happened.
    pub operation: ChangeOperation,
    /// The preference after the change (before it, for a deletion).
    pub preference: Preference,
    /// Pass as `after` when resubscribing to continue right after this event.
    pub cursor: String,
}

#[derive(Default)]
pub struct PlacesSubscription;

#[Subscription]
impl PlacesSubscription {
    /// Places as they are created, changed and deleted, optionally only of
    /// one category or near a point. With `after`, first replays what
    /// happened since that cursor.
    async fn place_changed(
        &self,
        ctx: &Context<'_>,
        category: Option<String>,
        near: Option<NearInput>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<PlaceChangeEvent, ApiError>> + use<>, ApiError> {
        if let Some(near) = near {
            super::validate::lat("near.lat", near.lat)?;
            super::validate::lng("near.lng", near.lng)?;
            if !(near.radius_km.is_finite() && near.radius_km > 0.0 && near.radius_km <= 100.0) {
                return Err(ApiError::bad_input("near.radiusKm", "near.radiusKm must be above 0 and at most 100"));
            }
        }
        let viewer = ctx.viewer()?;
        let request = ctx.change_request(&["place"], after.as_deref())?;
        let filter = move |event: &ChangeEvent| {
            (policy::place::event_visible_to(&viewer)
                && (matches_place(event.new_row.as_ref(), category.as_deref(), near)
                    || matches_place(event.old_row.as_ref(), category.as_deref(), near)))
            .then(|| event.op.into())
        };
        Ok(stream::events(ctx.realtime()?, request, filter).map(|item| {
            let delivery = item?;
            Ok(PlaceChangeEvent {
                operation: delivery.operation,
                place: delivery.event.decode_row::<entity::place::Model>()?.into(),
                cursor: delivery.cursor,
            })
        }))
    }

    /// Your reviews as they are created, changed and deleted (sign-in required).
    async fn my_review_changed(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<ReviewChangeEvent, ApiError>> + use<>, ApiError> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let request = ctx.change_request(&["review"], after.as_deref())?;
        let filter = move |event: &ChangeEvent| {
            (event.owner == Some(me) && policy::review::event_visible_to(&viewer, event.owner)).then(|| event.op.into())
        };
        Ok(stream::events(ctx.realtime()?, request, filter).map(|item| {
            let delivery = item?;
            Ok(ReviewChangeEvent {
                operation: delivery.operation,
                review: delivery.event.decode_row::<entity::review::Model>()?.into(),
                cursor: delivery.cursor,
            })
        }))
    }

    /// Your preferences as they are set and deleted (sign-in required).
    async fn my_preference_changed(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<PreferenceChangeEvent, ApiError>> + use<>, ApiError> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let request = ctx.change_request(&["preference"], after.as_deref())?;
        let filter = move |event: &ChangeEvent| {
            (event.owner == Some(me) && policy::preference::event_visible_to(&viewer, event.owner))
                .then(|| event.op.into())
        };
        Ok(stream::events(ctx.realtime()?, request, filter).map(|item| {
            let delivery = item?;
            Ok(PreferenceChangeEvent {
                operation: delivery.operation,
                preference: delivery.event.decode_row::<entity::preference::Model>()?.into(),
                cursor: delivery.cursor,
            })
        }))
    }
}

/// Whether a place row (as JSON) passes the subscription's filters.
fn matches_place(row: Option<&serde_json::Value>, category: Option<&str>, near: Option<NearInput>) -> bool {
    let Some(row) = row else { return false };
    if let Some(category) = category
        && row.get("category").and_then(serde_json::Value::as_str) != Some(category)
    {
        return false;
    }
    if let Some(near) = near {
        let (Some(lat), Some(lng)) =
            (row.get("lat").and_then(serde_json::Value::as_f64), row.get("lng").and_then(serde_json::Value::as_f64))
        else {
            return false;
        };
        return great_circle_km(near.lat, near.lng, lat, lng) <= near.radius_km;
    }
    true
}

/// Haversine distance on earthdistance's sphere, so a subscription's `near`
/// agrees with the recommendation query's radius.
fn great_circle_km(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6378.168;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lng2 - lng1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_place_matches_by_category_and_distance() {
        let row = json!({ "category": "cafe", "lat": 0.01, "lng": 0.0 });
        let near = NearInput { lat: 0.0, lng: 0.0, radius_km: 1.2 };
        assert!(matches_place(Some(&row), Some("cafe"), Some(near)));
        assert!(!matches_place(Some(&row), Some("bar"), None));
        assert!(!matches_place(Some(&row), None, Some(NearInput { radius_km: 1.0, ..near })));
        assert!((great_circle_km(0.0, 0.0, 0.01, 0.0) - 1.113_200).abs() < 1e-6);
    }
}
