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

use super::types::Recommendation;
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

/// One recommended place and why, as the query returns it: the place's
/// columns (read by name into the place row), then the three figures.
#[derive(Debug, FromQueryResult)]
pub struct RecommendationRow {
    #[sea_orm(nested)]
    pub place: entity::place::Model,
    pub distance_km: f64,
    pub preference_rating: f64,
    pub score: f64,
}

impl From<RecommendationRow> for Recommendation {
    fn from(row: RecommendationRow) -> Self {
        Self {
            place: row.place.into(),
            distance_km: row.distance_km,
            preference_rating: row.preference_rating,
            score: row.score,
        }
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
