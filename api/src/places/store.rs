//! Queries of the places domain beyond [`crate::domain::store`]'s: filters,
//! orderings, joins and upserts. Every read is scoped by the row policy;
//! PostgreSQL's RLS applies on top of it.

use std::sync::LazyLock;

use entity::{place, preference, review};
use futures_util::future::BoxFuture;
use sea_orm::sea_query::extension::postgres::PgExpr;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, JoinType, PaginatorTrait, QueryFilter, QueryResult, QuerySelect,
    RelationTrait, Select, Set, Statement,
};
use uuid::Uuid;

use super::policy::{Places, Preferences, Reviews};
use super::types::PlaceOrder;
use crate::auth::Viewer;
use crate::domain::columns::{Columns, PartialModel};
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

/// A page of places: the key, the ordering's columns (the cursor's) and
/// the columns of the fields `asks` names; the others hold defaults, so
/// the models answer this selection only (see [`Columns`]).
pub async fn list_places(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    filter: &PlaceFilter,
    page: &Page,
    asks: impl Fn(&str) -> bool,
) -> ApiResult<PageOf<place::Model>> {
    let mut query = place::Entity::find_none().filter(Places::visible_to(viewer));
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
    let columns = &list_columns(key, asks);
    let read = |statement| read_rows(db, statement, |row| columns.read(row));
    page.fetch_with(query, key, |q| columns.select(q), read, |place| place).await
}

fn escape_like(term: &str) -> String {
    term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// What a page of places in `key`'s order reads: the ordering's columns
/// (its cursors are made of them; every ordering ends in the key, which
/// global ids are made of) and the columns of the fields `asks` names.
fn list_columns(key: &SortKey<place::Entity>, asks: impl Fn(&str) -> bool) -> Columns<place::Entity> {
    debug_assert!(matches!(key.columns.last(), Some(place::Column::Id)), "{}: an ordering ends in the key", key.name);
    Columns::selected(key.columns, asks)
}

/// The rows of a page's `statement` (its columns narrowed by a
/// [`Columns`]), each read by `read`: sea-orm's own reader would look every
/// column up by name.
fn read_rows<'a, T: Send + 'a>(
    db: &'a impl ConnectionTrait,
    statement: Statement,
    read: impl Fn(&QueryResult) -> Result<T, DbErr> + Send + 'a,
) -> BoxFuture<'a, Result<Vec<T>, DbErr>> {
    Box::pin(async move {
        let rows = db.query_all_raw(statement).await?;
        // Sized up front: collected through `Result`, the rows (a review
        // and its place are ~400 bytes) were copied at each doubling.
        let mut read_rows = Vec::with_capacity(rows.len());
        for row in &rows {
            read_rows.push(read(row)?);
        }
        Ok(read_rows)
    })
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
/// loader would leave it. Only `columns` are read.
pub async fn list_reviews_with_places(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    owner: Uuid,
    page: &Page,
    columns: &JoinedColumns,
) -> ApiResult<PageOf<(review::Model, Option<place::Model>)>> {
    let query = store::only_visible::<Reviews>(review::Entity::find_none(), viewer, Some(owner));
    let viewer = *viewer;
    let to_place = review::Relation::Place.def().on_condition(move |_review, _place| Places::visible_to(&viewer));
    page.fetch_with(
        query,
        &REVIEWS,
        |q| columns.select(q.join(JoinType::LeftJoin, to_place.clone())),
        |statement| read_rows(db, statement, |row| columns.read(row)),
        |(review, _)| review,
    )
    .await
}

/// The columns a page of reviews with their places reads: the keys always
/// (the cursor, global ids, `user` and the row loader's fallback read
/// them), every other column only when the selection asks for its field.
pub struct JoinedColumns {
    review: Columns<review::Entity>,
    place: Columns<place::Entity>,
}

impl JoinedColumns {
    /// `review_asks(field)`: whether the selection asks a review for that
    /// field; `place_asks`, its place.
    pub fn selected(review_asks: impl Fn(&str) -> bool, place_asks: impl Fn(&str) -> bool) -> Self {
        use review::Column as R;
        let review = Columns::selected(&[R::Id, R::UserId, R::PlaceId], review_asks);
        let place = Columns::selected(&[place::Column::Id], place_asks).after(&review);
        Self { review, place }
    }

    /// `query` (of [`PartialModel::find_none`]) reading these columns.
    fn select(&self, query: Select<review::Entity>) -> Select<review::Entity> {
        self.place.select(self.review.select(query))
    }

    /// One row of [`Self::select`]. As sea-orm does, a place whose columns
    /// are all NULL (none joined: the viewer may not see it) is `None`; its
    /// key is NOT NULL, so that is the test.
    fn read(&self, row: &QueryResult) -> Result<(review::Model, Option<place::Model>), DbErr> {
        let review = self.review.read(row)?;
        if self.place.is_null(row, place::Column::Id as usize)? {
            return Ok((review, None));
        }
        Ok((review, Some(self.place.read(row)?)))
    }
}

impl PartialModel for place::Entity {
    fn read(row: &QueryResult, columns: &Columns<Self>) -> Result<place::Model, DbErr> {
        use place::Column as P;
        Ok(place::Model {
            id: columns.get(row, P::Id as usize)?,
            name: columns.get(row, P::Name as usize)?,
            lat: columns.get(row, P::Lat as usize)?,
            lng: columns.get(row, P::Lng as usize)?,
            types: columns.get(row, P::Types as usize)?,
            category: columns.get(row, P::Category as usize)?,
            rating: columns.get(row, P::Rating as usize)?,
            user_ratings_total: columns.get(row, P::UserRatingsTotal as usize)?,
            description: columns.get(row, P::Description as usize)?,
            created_at: columns.get(row, P::CreatedAt as usize)?,
            updated_at: columns.get(row, P::UpdatedAt as usize)?,
        })
    }

    fn find_none() -> Select<Self> {
        static FIND: LazyLock<Select<place::Entity>> = LazyLock::new(|| place::Entity::find().select_only());
        FIND.clone()
    }
}

impl PartialModel for review::Entity {
    fn read(row: &QueryResult, columns: &Columns<Self>) -> Result<review::Model, DbErr> {
        use review::Column as R;
        Ok(review::Model {
            id: columns.get(row, R::Id as usize)?,
            user_id: columns.get(row, R::UserId as usize)?,
            place_id: columns.get(row, R::PlaceId as usize)?,
            rating: columns.get(row, R::Rating as usize)?,
            comment: columns.get(row, R::Comment as usize)?,
            created_at: columns.get(row, R::CreatedAt as usize)?,
            updated_at: columns.get(row, R::UpdatedAt as usize)?,
        })
    }

    fn find_none() -> Select<Self> {
        static FIND: LazyLock<Select<review::Entity>> = LazyLock::new(|| review::Entity::find().select_only());
        FIND.clone()
    }
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
    use sea_orm::{DbBackend, Iterable, QueryTrait};

    use super::*;
    use crate::domain::columns::field_of;

    fn columns(review: &[&str], place: &[&str]) -> JoinedColumns {
        JoinedColumns::selected(|f| review.contains(&f), |f| place.contains(&f))
    }

    fn sql(columns: &JoinedColumns) -> String {
        columns.select(review::Entity::find_none()).build(DbBackend::Postgres).sql
    }

    #[test]
    fn a_joined_page_reads_the_keys_and_the_columns_of_the_fields_asked_for_in_column_order() {
        let asked = columns(&["comment", "rating"], &["userRatingsTotal", "name"]);
        assert_eq!(
            sql(&asked),
            r#"SELECT "review"."id", "review"."user_id", "review"."place_id", "review"."rating", "review"."comment", "place"."id", "place"."name", "place"."user_ratings_total" FROM "review""#
        );
        let keys_only = columns(&[], &[]);
        assert_eq!(
            sql(&keys_only),
            r#"SELECT "review"."id", "review"."user_id", "review"."place_id", "place"."id" FROM "review""#
        );
    }

    #[test]
    fn a_page_of_places_reads_the_key_the_orderings_columns_and_the_columns_of_the_fields_asked_for() {
        let sql = |key: &SortKey<place::Entity>, asked: &[&str]| {
            list_columns(key, |f| asked.contains(&f)).select(place::Entity::find_none()).build(DbBackend::Postgres).sql
        };
        assert_eq!(
            sql(&BY_RATING, &["name", "category"]),
            r#"SELECT "place"."id", "place"."name", "place"."category", "place"."rating" FROM "place""#
        );
        assert_eq!(sql(&BY_NAME, &[]), r#"SELECT "place"."id", "place"."name" FROM "place""#);
        assert_eq!(
            sql(&NEWEST, &["lat", "lng"]),
            r#"SELECT "place"."id", "place"."lat", "place"."lng", "place"."created_at" FROM "place""#
        );
    }

    #[test]
    fn every_column_is_named_after_a_field_of_its_graphql_type() {
        // A column whose field is named otherwise would never be read, and
        // its field would answer the type's default.
        let sdl = crate::graphql::sdl();
        let fields_of = |type_name: &str| -> Vec<String> {
            let body = sdl.split(&format!("type {type_name} ")).nth(1).and_then(|rest| rest.split('}').next());
            let body = body.unwrap_or_else(|| panic!("no type {type_name} in the schema"));
            body.lines().filter_map(|line| line.trim().split(['(', ':']).next()).map(str::to_owned).collect()
        };
        let (reviews, places) = (fields_of("Review"), fields_of("Place"));
        for column in review::Column::iter().filter(|c| !matches!(c, review::Column::Id)) {
            assert!(reviews.iter().any(|f| *f == field_of(column)), "Review has no field {}", field_of(column));
        }
        for column in place::Column::iter().filter(|c| !matches!(c, place::Column::Id)) {
            assert!(places.iter().any(|f| *f == field_of(column)), "Place has no field {}", field_of(column));
        }
    }
}
