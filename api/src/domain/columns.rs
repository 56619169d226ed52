//! Reading only the columns a selection asks for.
//!
//! A list reads its keys (the cursor's, the global id's, the foreign keys
//! other fields load by) and the columns of the fields the client selected;
//! the model's other columns hold their type's default, which nothing
//! reads: such a model answers its own selection only. Reading whole rows
//! for a three-field page cost PostgreSQL (wider tuples to form and send)
//! and the server (a decode per column and row) about 8–9 % of a request's
//! CPU each (issue 11, BENCHMARKS stage 10).
//!
//! sea-orm's `FromQueryResult` reads every column of a model by name and
//! fails on a missing one; its `DerivePartialModel` reads a struct of its
//! own, while the GraphQL types are made from the entity's `Model`
//! (`FromModel`). So each entity read this way says in [`PartialModel`]
//! how its model is made from the columns present (a struct literal, in
//! its domain's `store.rs`). Nothing may keep such a model beyond the
//! response it was read for (a cache, a DataLoader): its unread columns
//! are not the row's.

use std::any::TypeId;
use std::sync::OnceLock;

use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::{self, Column, Postgres, Row, ValueRef};
use sea_orm::{DbErr, EntityTrait, IdenStatic, Iterable, QueryResult, QuerySelect, Select};

/// An entity whose model can be read from some of its columns.
pub trait PartialModel: EntityTrait {
    /// The model from the columns `columns` read of `row`; every column
    /// not read is its type's default (see [`Columns::get`]).
    fn read(row: &QueryResult, columns: &Columns<Self>) -> Result<Self::Model, DbErr>;

    /// `Self::find()` selecting no column yet, for [`Columns::select`]:
    /// made once (in a `static`) and copied. sea-orm's `find` builds an
    /// expression for every column of the table, which `select_only` then
    /// drops: for `place`, 2 % of a page's instructions (issue 11).
    ///
    /// A page's total count counts its query as it is before the page's
    /// columns are added (`SELECT COUNT(*) FROM (SELECT FROM place WHERE
    /// ..)`, valid since PostgreSQL 9.4). Such a query must not be made
    /// `DISTINCT`: over no columns, every row is the same one.
    fn find_none() -> Select<Self>;
}

/// The columns of `E` one statement reads, and where each is in its rows.
pub struct Columns<E: EntityTrait> {
    /// In `E::Column` order.
    columns: Vec<E::Column>,
    /// Where the first of them is in the row (after a joined table's).
    offset: usize,
    /// By a column's place in `E::Column::iter()`: its index in the row.
    at: Vec<Option<usize>>,
    /// By a column's place in `E::Column::iter()`: the Rust type its
    /// statement's column was checked to fit; see [`Self::get`].
    checked: Box<[OnceLock<TypeId>]>,
}

impl<E: EntityTrait> Columns<E> {
    /// `keys` always, and every other column whose field (its name in
    /// camelCase, as async-graphql names a `SimpleObject`'s fields) `asks`
    /// names, in column order, first in the row.
    pub fn selected(keys: &[E::Column], asks: impl Fn(&str) -> bool) -> Self {
        // One buffer for the field names of columns with an underscore (a
        // `String` each, and a search of the chosen columns for each
        // column's place, were 1.5 % of a page of reviews).
        let mut field = String::new();
        let chosen = E::Column::iter().map(|c| {
            let name = c.as_str();
            keys.iter().any(|k| k.as_str() == name)
                || if name.contains('_') {
                    field.clear();
                    write_field_of(&mut field, name);
                    asks(&field)
                } else {
                    // A one-word name is its field's.
                    asks(name)
                }
        });
        Self::placed(0, chosen)
    }

    /// These columns placed after `before`'s in the row (a join reads one
    /// table's columns, then the other's).
    pub fn after<F: EntityTrait>(self, before: &Columns<F>) -> Self {
        Self::placed(before.offset + before.columns.len(), self.at.iter().map(Option::is_some))
    }

    /// The columns `chosen` says are read (one answer per column, in
    /// `E::Column::iter()` order), in that order from `offset` on.
    fn placed(offset: usize, chosen: impl Iterator<Item = bool>) -> Self {
        let count = E::Column::iter().count();
        let mut columns = Vec::with_capacity(count);
        let mut at = Vec::with_capacity(count);
        for (column, read) in E::Column::iter().zip(chosen) {
            at.push(read.then(|| offset + columns.len()));
            if read {
                columns.push(column);
            }
        }
        let checked = at.iter().map(|_| OnceLock::new()).collect();
        Self { columns, offset, at, checked }
    }

    /// `query` selecting these columns after those it already selects,
    /// which must be exactly the columns these are placed [`after`](Self::after)
    /// (none for the first table: start from [`PartialModel::find_none`]),
    /// or the row is read at the wrong places.
    pub fn select<Q: QuerySelect>(&self, query: Q) -> Q {
        self.columns.iter().fold(query, |q, c| q.column(*c))
    }

    /// The value of `column` in `row` by its position, or `T::default()`
    /// when it is not read. `column` is the column's discriminant
    /// (`place::Column::Name as usize`), its place in `E::Column::iter()`
    /// for sea-orm's derived columns; read by position because sea-orm's
    /// own reader finds each column by name, formatting a name per column
    /// and row.
    ///
    /// A column's type is checked once per `T`, against the statement's
    /// column rather than each cell: the statements of one `Columns` select
    /// the same columns of the same tables ([`Self::select`]), so their
    /// types are the same in every row. sea-orm's `try_get_by_index`
    /// checked every cell twice (its own check, then sqlx's), and sqlx's
    /// check of a text type is several comparisons: ~5 % of a page's
    /// instructions. A cell is never decoded as a type not checked for its
    /// column (sqlx's decoders misread or panic on a wrong type).
    pub fn get<T>(&self, row: &QueryResult, column: usize) -> Result<T, DbErr>
    where
        T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres> + Default + 'static,
    {
        debug_assert!(column < self.at.len(), "{column} is not a column of this entity");
        let Some(index) = self.at.get(column).copied().flatten() else { return Ok(T::default()) };
        let row = pg_row(row)?;
        let checked = &self.checked[column];
        if checked.get() != Some(&TypeId::of::<T>()) {
            let column = row.try_column(index).map_err(|e| DbErr::Type(e.to_string()))?;
            if !T::compatible(column.type_info()) {
                return Err(DbErr::Type(format!(
                    "column {} is {}, not a {}",
                    column.name(),
                    column.type_info(),
                    std::any::type_name::<T>()
                )));
            }
            // The first type checked is kept; another is checked each time.
            let _ = checked.set(TypeId::of::<T>());
        }
        row.try_get_unchecked(index).map_err(|e| DbErr::Type(e.to_string()))
    }

    /// Whether `column` is NULL in `row` (or not read), whatever its type:
    /// a LEFT JOIN that found no row leaves its columns NULL.
    pub fn is_null(&self, row: &QueryResult, column: usize) -> Result<bool, DbErr> {
        let Some(index) = self.at.get(column).copied().flatten() else { return Ok(true) };
        let row = pg_row(row)?;
        Ok(row.try_get_raw(index).map_err(|e| DbErr::Type(e.to_string()))?.is_null())
    }
}

impl<E: PartialModel> Columns<E> {
    /// The model in `row`, from these columns.
    pub fn read(&self, row: &QueryResult) -> Result<E::Model, DbErr> {
        E::read(row, self)
    }
}

fn pg_row(row: &QueryResult) -> Result<&PgRow, DbErr> {
    row.try_as_pg_row().ok_or_else(|| DbErr::Type("a row not read from PostgreSQL".into()))
}

/// The GraphQL field a column is exposed as: its name in camelCase
/// (`user_ratings_total` is `userRatingsTotal`), as async-graphql names a
/// `SimpleObject`'s fields. For tests, which state the rule with it
/// (`Columns::selected` writes the names into a buffer of its own).
#[cfg(test)]
pub fn field_of(column: impl IdenStatic) -> String {
    let mut field = String::new();
    write_field_of(&mut field, column.as_str());
    field
}

/// Appends the field of the column named `name` to `field`: each `_`
/// dropped and the letter after it capitalised.
fn write_field_of(field: &mut String, name: &str) {
    let mut capital = false;
    for c in name.chars() {
        match c {
            '_' => capital = true,
            // Column names are ASCII: no case tables for them.
            c if capital && c.is_ascii() => {
                field.push(c.to_ascii_uppercase());
                capital = false;
            }
            c if capital => {
                field.extend(c.to_uppercase());
                capital = false;
            }
            c => field.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use entity::{place, review};

    use super::*;

    #[test]
    fn a_columns_discriminant_is_its_place_among_its_entitys_columns() {
        // `Columns::get` finds a column by its discriminant: every entity
        // with a `PartialModel` belongs here.
        for (i, column) in place::Column::iter().enumerate() {
            assert_eq!(column as usize, i, "place.{}", column.as_str());
        }
        for (i, column) in review::Column::iter().enumerate() {
            assert_eq!(column as usize, i, "review.{}", column.as_str());
        }
    }

    #[test]
    fn a_column_is_found_where_the_statement_reads_it_and_joined_columns_come_after_the_first_tables() {
        let reviews = Columns::<review::Entity>::selected(&[review::Column::Id], |f| f == "comment");
        let places = Columns::<place::Entity>::selected(&[place::Column::Id], |f| f == "name").after(&reviews);
        assert_eq!(reviews.at[review::Column::Id as usize], Some(0));
        assert_eq!(reviews.at[review::Column::Comment as usize], Some(1));
        assert_eq!(reviews.at[review::Column::Rating as usize], None);
        assert_eq!(places.at[place::Column::Id as usize], Some(2));
        assert_eq!(places.at[place::Column::Name as usize], Some(3));
        assert_eq!(places.at[place::Column::Lat as usize], None);
        // A third table comes after both.
        let third = Columns::<review::Entity>::selected(&[review::Column::Id], |_| false).after(&places);
        assert_eq!(third.at[review::Column::Id as usize], Some(4));
    }

    #[test]
    fn a_columns_field_is_its_name_in_camel_case() {
        assert_eq!(field_of(place::Column::UserRatingsTotal), "userRatingsTotal");
        assert_eq!(field_of(place::Column::Name), "name");
        let written = |name: &str| {
            let mut field = String::new();
            write_field_of(&mut field, name);
            field
        };
        assert_eq!(written("created_at"), "createdAt");
        assert_eq!(written("a__b_"), "aB");
        assert_eq!(written("über_ärger"), "überÄrger");
    }
}
