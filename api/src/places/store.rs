//! Queries of the places domain beyond [`crate::domain::store`]'s: filters,
//! orderings, joins and upserts. Every read is scoped by the row policy;
//! PostgreSQL's RLS applies on top of it.

use entity::{place, preference, review};
use sea_orm::sea_query::extension::postgres::PgExpr;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IdenStatic, Iterable, JoinType, PaginatorTrait, QueryFilter,
    QueryResult, QuerySelect, QueryTrait, RelationTrait, Select, Set, TryGetable,
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
/// loader would leave it. Only `columns` are read.
pub async fn list_reviews_with_places(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    owner: Uuid,
    page: &Page,
    columns: &JoinedColumns,
) -> ApiResult<PageOf<(review::Model, Option<place::Model>)>> {
    let query = store::visible_rows::<Reviews>(viewer, Some(owner));
    let viewer = *viewer;
    let to_place = review::Relation::Place.def().on_condition(move |_review, _place| Places::visible_to(&viewer));
    page.fetch_with(
        query,
        &REVIEWS,
        |q| {
            let statement =
                columns.select(q.join(JoinType::LeftJoin, to_place.clone())).build(db.get_database_backend());
            Box::pin(async move { db.query_all_raw(statement).await?.iter().map(|row| columns.read(row)).collect() })
        },
        |(review, _)| review,
    )
    .await
}

/// The columns a page of reviews with their places reads: the keys always
/// (the cursor, global ids, `user` and the row loader's fallback read
/// them), every other column only when the selection asks for its field.
/// A model's columns left out hold their type's default, which nothing
/// reads: its objects answer this selection only. Reading all 18 columns
/// of both rows for case a's `rating comment place { name }` cost the
/// server about 9 % and PostgreSQL about 8 % more CPU per request (issue
/// 11, BENCHMARKS stage 10).
pub struct JoinedColumns {
    review: Vec<review::Column>,
    place: Vec<place::Column>,
}

impl JoinedColumns {
    /// `review_asks(field)`: whether the selection asks a review for that
    /// field; `place_asks`, its place.
    pub fn selected(review_asks: impl Fn(&str) -> bool, place_asks: impl Fn(&str) -> bool) -> Self {
        use place::Column as P;
        use review::Column as R;
        Self {
            review: review::Column::iter()
                .filter(|c| matches!(c, R::Id | R::UserId | R::PlaceId) || review_asks(&field_of(*c)))
                .collect(),
            place: place::Column::iter().filter(|c| matches!(c, P::Id) || place_asks(&field_of(*c))).collect(),
        }
    }

    fn select(&self, query: Select<review::Entity>) -> Select<review::Entity> {
        let query = self.review.iter().fold(query.select_only(), |q, c| q.column(*c));
        self.place.iter().fold(query, |q, c| q.column(*c))
    }

    /// One row of [`Self::select`], read by position: the review's columns,
    /// then the place's, each in its `Column` order. sea-orm's own reader
    /// finds each column by name, formatting a name per column and row. As
    /// sea-orm does, a place whose columns are all NULL (none joined: the
    /// viewer may not see it) is `None`; its key is NOT NULL, so that is
    /// the test.
    fn read(&self, row: &QueryResult) -> Result<(review::Model, Option<place::Model>), DbErr> {
        use place::Column as P;
        use review::Column as R;
        let r = |column: R| self.review.iter().position(|c| *c as usize == column as usize);
        let p =
            |column: P| self.place.iter().position(|c| *c as usize == column as usize).map(|i| self.review.len() + i);
        let review = review::Model {
            id: read_or_default(row, r(R::Id))?,
            user_id: read_or_default(row, r(R::UserId))?,
            place_id: read_or_default(row, r(R::PlaceId))?,
            rating: read_or_default(row, r(R::Rating))?,
            comment: read_or_default(row, r(R::Comment))?,
            created_at: read_or_default(row, r(R::CreatedAt))?,
            updated_at: read_or_default(row, r(R::UpdatedAt))?,
        };
        let Some(id) = read_or_default::<Option<String>>(row, p(P::Id))? else {
            return Ok((review, None));
        };
        let place = place::Model {
            id,
            name: read_or_default(row, p(P::Name))?,
            lat: read_or_default(row, p(P::Lat))?,
            lng: read_or_default(row, p(P::Lng))?,
            types: read_or_default(row, p(P::Types))?,
            category: read_or_default(row, p(P::Category))?,
            rating: read_or_default(row, p(P::Rating))?,
            user_ratings_total: read_or_default(row, p(P::UserRatingsTotal))?,
            description: read_or_default(row, p(P::Description))?,
            created_at: read_or_default(row, p(P::CreatedAt))?,
            updated_at: read_or_default(row, p(P::UpdatedAt))?,
        };
        Ok((review, Some(place)))
    }
}

/// The value at `index`, or the type's default for a column not read.
fn read_or_default<T: TryGetable + Default>(row: &QueryResult, index: Option<usize>) -> Result<T, DbErr> {
    index.map_or_else(|| Ok(T::default()), |i| row.try_get_by_index(i))
}

/// The GraphQL field a column is exposed as: its name in camelCase
/// (`user_ratings_total` is `userRatingsTotal`), as async-graphql names a
/// `SimpleObject`'s fields.
fn field_of(column: impl IdenStatic) -> String {
    let mut field = String::new();
    for (i, word) in column.as_str().split('_').enumerate() {
        let mut chars = word.chars();
        match chars.next() {
            Some(first) if i > 0 => field.extend(first.to_uppercase().chain(chars)),
            _ => field.push_str(word),
        }
    }
    field
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
    use sea_orm::DbBackend;

    use super::*;

    fn columns(review: &[&str], place: &[&str]) -> JoinedColumns {
        JoinedColumns::selected(|f| review.contains(&f), |f| place.contains(&f))
    }

    fn sql(columns: &JoinedColumns) -> String {
        columns.select(review::Entity::find()).build(DbBackend::Postgres).sql
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
