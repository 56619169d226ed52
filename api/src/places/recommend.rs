//! The seed's recommendation query, in one SQL statement.
//!
//! Candidate places are those whose category the viewer has a preference
//! for, within `radius_km` of the given point. The radius filter is
//! `earth_box(..) @> app_earth_point(lat, lng)`, which the GiST index
//! `idx_place_location` answers; `earth_box` is a bounding cube, so the exact
//! great-circle distance then trims its corners. The score is the seed's, with
//! each term scaled to 0..1 so the weights mean what they say:
//!
//! ```text
//! 0.6 × preference/5                                 (how much you like the category)
//! 0.2 × rating/5                                     (how good the place is)
//! 0.1 × min(1, log10(user_ratings_total + 1) / 10)   (how popular it is)
//! 0.1 × (1 − min(1, distance / radius))              (how close it is)
//! ```

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use crate::error::ApiResult;

const RECOMMENDATIONS_SQL: &str = r"
WITH user_prefs AS (
    SELECT category, rating
    FROM preference
    WHERE user_id = $1
)
SELECT p.id, p.name, p.lat, p.lng, p.types, p.category, p.rating, p.user_ratings_total,
       p.description, p.created_at, p.updated_at,
       up.rating AS preference_rating,
       d.distance_km,
       up.rating / 5.0 * 0.6
         + COALESCE(p.rating, 0) / 5.0 * 0.2
         + LEAST(1.0, log((COALESCE(p.user_ratings_total, 0) + 1)::float8) / 10.0) * 0.1
         + (1.0 - LEAST(1.0, d.distance_km / $4)) * 0.1 AS score
FROM place p
JOIN user_prefs up ON p.category = up.category
CROSS JOIN LATERAL (
    SELECT earth_distance(app_earth_point($2, $3), app_earth_point(p.lat, p.lng)) / 1000.0 AS distance_km
) d
WHERE earth_box(app_earth_point($2, $3), $4 * 1000.0) @> app_earth_point(p.lat, p.lng)
  AND d.distance_km <= $4
ORDER BY score DESC, d.distance_km, p.id
LIMIT $5
";

#[derive(Debug, FromQueryResult)]
pub struct RecommendationRow {
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lng: f64,
    pub types: Option<String>,
    pub category: Option<String>,
    pub rating: Option<f64>,
    pub user_ratings_total: Option<i32>,
    pub description: Option<String>,
    pub created_at: chrono::DateTime<chrono::FixedOffset>,
    pub updated_at: chrono::DateTime<chrono::FixedOffset>,
    pub preference_rating: f64,
    pub distance_km: f64,
    pub score: f64,
}

impl RecommendationRow {
    pub fn into_place(self) -> (entity::place::Model, f64, f64, f64) {
        let place = entity::place::Model {
            id: self.id,
            name: self.name,
            lat: self.lat,
            lng: self.lng,
            types: self.types,
            category: self.category,
            rating: self.rating,
            user_ratings_total: self.user_ratings_total,
            description: self.description,
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        (place, self.distance_km, self.preference_rating, self.score)
    }
}

pub async fn recommend(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    lat: f64,
    lng: f64,
    radius_km: f64,
    limit: i64,
) -> ApiResult<Vec<RecommendationRow>> {
    Ok(RecommendationRow::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        RECOMMENDATIONS_SQL,
        [user_id.into(), lat.into(), lng.into(), radius_km.into(), limit.into()],
    ))
    .all(db)
    .await?)
}
