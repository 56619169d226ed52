//! Live changes of places, reviews and preferences.

use async_graphql::{Context, InputObject, Subscription};

use super::policy::{Places, Preferences, Reviews};
use super::types::{Place, Preference, Review};
use crate::error::ApiError;
use crate::realtime::{Changes, EventSchema, Published, changes, my_changes};

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

impl Published for Place {
    type Policy = Places;
    const EVENT: EventSchema = EventSchema::new("PlaceChangeEvent", "A change to a place.", "place");
}

impl Published for Review {
    type Policy = Reviews;
    const EVENT: EventSchema = EventSchema::new("ReviewChangeEvent", "A change to one of your reviews.", "review");
}

impl Published for Preference {
    type Policy = Preferences;
    const EVENT: EventSchema =
        EventSchema::new("PreferenceChangeEvent", "A change to one of your preferences.", "preference");
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
    ) -> Result<Changes<Place>, ApiError> {
        if let Some(near) = near {
            super::validate::lat("near.lat", near.lat)?;
            super::validate::lng("near.lng", near.lng)?;
            if !(near.radius_km.is_finite() && near.radius_km > 0.0 && near.radius_km <= 100.0) {
                return Err(ApiError::bad_input("near.radiusKm", "near.radiusKm must be above 0 and at most 100"));
            }
        }
        changes(ctx, after.as_deref(), move |event| {
            matches_place(event.new_row.as_ref(), category.as_deref(), near)
                || matches_place(event.old_row.as_ref(), category.as_deref(), near)
        })
    }

    /// Your reviews as they are created, changed and deleted (sign-in required).
    async fn my_review_changed(&self, ctx: &Context<'_>, after: Option<String>) -> Result<Changes<Review>, ApiError> {
        my_changes(ctx, after.as_deref())
    }

    /// Your preferences as they are set and deleted (sign-in required).
    async fn my_preference_changed(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<Changes<Preference>, ApiError> {
        my_changes(ctx, after.as_deref())
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
