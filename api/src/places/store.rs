//! Queries of the places domain beyond [`crate::domain::store`]'s: filters,
//! orderings, joins and upserts. Every read is scoped by the row policy;
//! PostgreSQL's RLS applies on top of it.

use entity::{place, preference, review};
use sea_orm::sea_query::extension::postgres::PgExpr;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, Iterable, JoinType, PaginatorTrait, QueryFilter, QueryResult,
    QuerySelect, QueryTrait, RelationTrait, Set,
};
use uuid::Uuid;

use super::policy::{Places, Preferences, Reviews};
use super::types::PlaceOrder;
use crate::auth::Viewer;
use crate::domain::{Policy, store};
use crate::error::ApiResult;
use crate::graphql::pagination::{Page, PageOf, SortKey};

/// Best rated first, unrated places last; index `idx_place_rating_keyset`
/// (`idx_place_category_rating` within a category).
const BY_RATING: SortKey<place::Entity> =
    SortKey::new("place.rating", true, &[place::Column::Rating, place::Column::Id]).nulls_last();
/// By name; index `idx_place_name`.
const BY_NAME: SortKey<place::Entity> = SortKey::new("place.name", false, &[place::Column::Name, place::Column::Id]);
/// Newest first; index `idx_place_newest_keyset`.
const NEWEST: SortKey<place::Entity> =
    SortKey::new("place.newest", true, &[place::Column::CreatedAt, place::Column::Id]);
/// A user's reviews, newest (highest id) first; index `idx_review_user_id`.
pub const REVIEWS: SortKey<review::Entity> = SortKey::new("review.newest", true, &[review::Column::Id]);
/// A user's preferences by category (one each).
pub const PREFERENCES: SortKey<preference::Entity> =
    SortKey::new("preference.category", false, &[preference::Column::Category]);

/// Filters of `places`.
pub struct PlaceFilter {
    pub category: Option<String>,
    pub search: Option<String>,
    pub order: PlaceOrder,
}

pub async fn list_places(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    filter: &PlaceFilter,
    page: &Page,
) -> ApiResult<PageOf<place::Model>> {
    let mut query = place::Entity::find().filter(Places::visible_to(viewer));
    if let Some(category) = &filter.category {
        query = query.filter(place::Column::Category.eq(category.as_str()));
    }
    if let Some(search) = &filter.search {
        // ILIKE on name uses the trigram index; the term is a literal, not a pattern.
        query = query.filter(Expr::col(place::Column::Name).ilike(format!("%{}%", escape_like(search))));
    }
    let key = match filter.order {
        PlaceOrder::RatingDesc => &BY_RATING,
        PlaceOrder::NameAsc => &BY_NAME,
        PlaceOrder::CreatedAtDesc => &NEWEST,
    };
    page.fetch(db, query, key).await
}

fn escape_like(term: &str) -> String {
    term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Upserts places by id in one statement; returns how many existed before.
pub async fn upsert_places(
    db: &impl ConnectionTrait,
    rows: Vec<place::ActiveModel>,
    ids: Vec<String>,
) -> ApiResult<u64> {
    let existing = place::Entity::find().filter(place::Column::Id.is_in(ids)).count(db).await?;
    let on_conflict = OnConflict::column(place::Column::Id)
        .update_columns([
            place::Column::Name,
            place::Column::Lat,
            place::Column::Lng,
            place::Column::Types,
            place::Column::Category,
            place::Column::Rating,
            place::Column::UserRatingsTotal,
            place::Column::Description,
        ])
        .to_owned();
    place::Entity::insert_many(rows).on_conflict(on_conflict).exec_without_returning(db).await?;
    Ok(existing)
}

/// A page of `owner`'s reviews ([`REVIEWS`]) with each review's place,
/// joined in the same statement: a page of reviews that selects `place`
/// costs one query, not two. A place the viewer may not see is `None` (the
/// policy is part of the join, and RLS hides the row), exactly as the row
/// loader would leave it.
pub async fn list_reviews_with_places(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    owner: Uuid,
    page: &Page,
) -> ApiResult<PageOf<(review::Model, Option<place::Model>)>> {
    let query = store::visible_rows::<Reviews>(viewer, Some(owner));
    let viewer = *viewer;
    let to_place = review::Relation::Place.def().on_condition(move |_review, _place| Places::visible_to(&viewer));
    page.fetch_with(
        query,
        &REVIEWS,
        |q| {
            let statement = q
                .join(JoinType::LeftJoin, to_place.clone())
                .select_also(place::Entity)
                .build(db.get_database_backend());
            Box::pin(async move { db.query_all_raw(statement).await?.iter().map(review_and_place).collect() })
        },
        |(review, _)| review,
    )
    .await
}

/// One row of a `select_also(place)` over reviews, read by position: the
/// review's columns in `review::Column` order, then the place's (as
/// `select_also` lists them; test below). sea-orm's own reader finds each
/// column by name, formatting `"A_" + column` or `"B_" + column` for every
/// column of every row: 18 strings and name lookups per review (issue 11).
/// As sea-orm does, a place whose columns are all NULL (none joined: the
/// viewer may not see it) is `None`; its key is NOT NULL, so that is the
/// test.
fn review_and_place(row: &QueryResult) -> Result<(review::Model, Option<place::Model>), DbErr> {
    use place::Column as P;
    use review::Column as R;
    let places_at = review::Column::iter().count();
    let r = |column: R| column as usize;
    let p = |column: P| places_at + column as usize;
    let review = review::Model {
        id: row.try_get_by_index(r(R::Id))?,
        user_id: row.try_get_by_index(r(R::UserId))?,
        place_id: row.try_get_by_index(r(R::PlaceId))?,
        rating: row.try_get_by_index(r(R::Rating))?,
        comment: row.try_get_by_index(r(R::Comment))?,
        created_at: row.try_get_by_index(r(R::CreatedAt))?,
        updated_at: row.try_get_by_index(r(R::UpdatedAt))?,
    };
    let Some(id) = row.try_get_by_index::<Option<String>>(p(P::Id))? else {
        return Ok((review, None));
    };
    let place = place::Model {
        id,
        name: row.try_get_by_index(p(P::Name))?,
        lat: row.try_get_by_index(p(P::Lat))?,
        lng: row.try_get_by_index(p(P::Lng))?,
        types: row.try_get_by_index(p(P::Types))?,
        category: row.try_get_by_index(p(P::Category))?,
        rating: row.try_get_by_index(p(P::Rating))?,
        user_ratings_total: row.try_get_by_index(p(P::UserRatingsTotal))?,
        description: row.try_get_by_index(p(P::Description))?,
        created_at: row.try_get_by_index(p(P::CreatedAt))?,
        updated_at: row.try_get_by_index(p(P::UpdatedAt))?,
    };
    Ok((review, Some(place)))
}

pub async fn find_preference(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    owner: Uuid,
    category: &str,
) -> ApiResult<Option<preference::Model>> {
    let row = store::visible_rows::<Preferences>(viewer, Some(owner));
    Ok(row.filter(preference::Column::Category.eq(category)).one(db).await?)
}

/// Creates or replaces the owner's preference for a category, atomically.
pub async fn upsert_preference(
    db: &impl ConnectionTrait,
    owner: Uuid,
    category: String,
    rating: f64,
) -> ApiResult<preference::Model> {
    let row = preference::ActiveModel {
        user_id: Set(owner),
        category: Set(category),
        rating: Set(rating),
        ..Default::default()
    };
    let on_conflict = OnConflict::columns([preference::Column::UserId, preference::Column::Category])
        .update_column(preference::Column::Rating)
        .to_owned();
    Ok(preference::Entity::insert(row).on_conflict(on_conflict).exec_with_returning(db).await?)
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, IdenStatic};

    use super::*;

    #[test]
    fn a_joined_review_row_is_read_in_the_order_select_also_lists_its_columns() {
        let sql = review::Entity::find().select_also(place::Entity).build(DbBackend::Postgres).sql;
        let aliases: Vec<&str> =
            sql.split(" AS \"").skip(1).map(|rest| rest.split('"').next().unwrap_or_default()).collect();
        let listed: Vec<String> = review::Column::iter()
            .map(|c| format!("A_{}", c.as_str()))
            .chain(place::Column::iter().map(|c| format!("B_{}", c.as_str())))
            .collect();
        assert_eq!(aliases, listed);
        // `review_and_place` reads column `c` at `c as usize` (after the
        // review's columns, for the place's): its place in those lists.
        assert!(review::Column::iter().enumerate().all(|(i, c)| c as usize == i));
        assert!(place::Column::iter().enumerate().all(|(i, c)| c as usize == i));
    }
}
