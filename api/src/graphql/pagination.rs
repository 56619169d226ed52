//! Relay-style pagination by keyset, with opaque cursors, a capped page size
//! and a total count that runs only when it is selected.
//!
//! Every connection is ordered by a [`SortKey`]: a few columns that end in a
//! unique one, all in one direction, optionally led by a nullable column
//! whose NULLs sort after every value. A cursor carries the sort-key values of
//! its row, so `after` becomes `WHERE (rating, id) < ($1, $2)` on the
//! ordering's index: page 500 costs what page 1 costs, and rows inserted
//! while a client walks the pages never shift the rows after its cursor (an
//! OFFSET would repeat or skip them).
//!
//! Why one direction per key: a row comparison `(a, b) < (x, y)` is an index
//! condition only when every column runs the same way; with mixed directions
//! PostgreSQL can only filter, which scans every tie of the leading column.
//! Why nulls are a separate segment: NULL never compares, so a nullable lead
//! splits the list in two runs (its values, then its NULLs by the rest of the
//! key), each a plain keyset scan of the same index; a page that crosses from
//! one to the other takes a second statement, every other page one.
//!
//! Cursors are base64 of a small versioned JSON form that names the ordering;
//! a cursor of another ordering, another version or a forged one is
//! BAD_USER_INPUT naming the argument, never an SQL error.

use arrayvec::ArrayVec;
use async_graphql::{Context, SelectionField};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use sea_orm::sea_query::{ColumnType, Expr, ExprTrait, NullOrdering, Order, SelectStatement, Value};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, IdenStatic, ModelTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Select, Statement,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{ApiError, ApiResult};
use crate::graphql::ContextExt;

/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: i32 = 100;
/// The page size when neither `first` nor `last` is given.
pub const DEFAULT_PAGE_SIZE: i32 = 20;
/// The cursor format; bump it when the encoding changes, so old cursors are
/// refused as bad input rather than misread.
const CURSOR_VERSION: u8 = 1;
/// The longest cursor accepted (base64 characters). The longest real one is a
/// few keys of at most a few hundred characters; anything longer is forged
/// and is refused before it is decoded.
const MAX_CURSOR_LEN: usize = 2048;

/// The most columns a [`SortKey`] has: a cursor's values are kept in place
/// (in its edge), not in an allocation of their own per row.
pub const MAX_KEY_COLUMNS: usize = 3;

/// The order of one connection: columns compared left to right, all in one
/// direction, the last one unique (so the order is total and a cursor names
/// exactly one position).
// A private field, not `#[non_exhaustive]`: that seals a struct against
// other crates only, and keys are made in this crate's domains.
#[allow(clippy::manual_non_exhaustive)]
pub struct SortKey<E: EntityTrait> {
    /// Written into every cursor: a cursor of another ordering is refused.
    pub name: &'static str,
    /// Descending (largest first) or ascending.
    pub descending: bool,
    /// The key's columns, the unique one last.
    pub columns: &'static [E::Column],
    /// The first column may be NULL; its NULLs come after all its values,
    /// ordered by the remaining columns (`NULLS LAST`).
    pub nullable_lead: bool,
    /// Keys are made with [`SortKey::new`], which holds them to
    /// [`MAX_KEY_COLUMNS`].
    _through_new: (),
}

impl<E: EntityTrait> SortKey<E> {
    /// A key of NOT NULL columns, at most [`MAX_KEY_COLUMNS`]: a key
    /// declared as a `const` (as every key is) with more does not compile.
    pub const fn new(name: &'static str, descending: bool, columns: &'static [E::Column]) -> Self {
        assert!(columns.len() <= MAX_KEY_COLUMNS, "a cursor holds at most MAX_KEY_COLUMNS values");
        Self { name, descending, columns, nullable_lead: false, _through_new: () }
    }

    /// A key whose first column may be NULL (NULLs last).
    pub const fn nulls_last(self) -> Self {
        Self { nullable_lead: true, ..self }
    }

    /// Which run of the list a row with these key values is in: 0 for rows
    /// whose lead has a value, 1 for rows whose lead is NULL.
    fn segment_of(&self, values: &[Value]) -> usize {
        usize::from(self.nullable_lead && values.first().is_some_and(is_null))
    }

    /// The columns a segment is ordered by (the NULL run is ordered by the
    /// rest of the key) and the filter that selects it.
    fn segment(&self, segment: usize) -> (&'static [E::Column], Option<sea_orm::sea_query::SimpleExpr>) {
        match (self.nullable_lead, segment) {
            (false, _) => (self.columns, None),
            (true, 0) => (self.columns, Some(qualified(self.columns[0]).is_not_null())),
            (true, _) => (&self.columns[1..], Some(qualified(self.columns[0]).is_null())),
        }
    }

    fn segments(&self) -> usize {
        if self.nullable_lead { 2 } else { 1 }
    }
}

/// Which way a page runs from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// `first` / `after`: the rows after the cursor, in order.
    Forward,
    /// `last` / `before`: the rows before the cursor, still returned in order.
    Backward,
}

/// The fields a connection's selection asks its nodes for, under `nodes`
/// and under `edges { node }` (aliases and fragments included), for a
/// resolver that reads only the columns asked for. Directives and type
/// conditions are not looked at: a field under a custom directive is read
/// anyway, more than needed but never less (async-graphql has removed
/// `@skip`ped fields before any resolver runs).
///
/// The selection is walked once, and each column's field looked up in
/// what it found: a `Lookahead::field` per column walked it once per
/// column and made a `Vec` each time (issue 11: 2 % of a page).
pub struct Asked<'a>(
    /// The fields asked for, fragments expanded.
    Vec<SelectionField<'a>>,
);

impl<'a> Asked<'a> {
    /// What the connection being resolved asks its nodes for.
    pub fn of_nodes(ctx: &'a Context<'_>) -> Self {
        let connection = Self(ctx.look_ahead().selection_fields()).children(|_| true);
        let mut nodes = connection.under("nodes");
        nodes.0.extend(connection.under("edges").under("node").0);
        nodes
    }

    /// Whether `field` is asked for.
    pub fn has(&self, field: &str) -> bool {
        self.0.iter().any(|asked| asked.name() == field)
    }

    /// What the fields named `field` ask for in turn.
    pub fn under(&self, field: &str) -> Self {
        self.children(|asked| asked.name() == field)
    }

    /// What the fields `of` picks ask for.
    fn children(&self, of: impl Fn(&SelectionField<'a>) -> bool) -> Self {
        let mut children = Vec::new();
        for field in self.0.iter().filter(|asked| of(asked)) {
            children.extend(field.selection_set());
        }
        Self(children)
    }
}

/// The Relay arguments of a page as the client gave them, to key a
/// DataLoader by (a [`Page`] holds decoded JSON, which does not hash).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageArgs {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

impl PageArgs {
    /// The page they ask for; see [`Page::from_args`].
    pub fn page(&self) -> ApiResult<Page> {
        Page::from_args(self.first, self.after.as_deref(), self.last, self.before.as_deref())
    }
}

/// Gives a resolver Relay's four paging arguments (`first`, `after`,
/// `last`, `before`, with their descriptions) in place of its parameter
/// marked `#[page]`, checked into that parameter's type before the body
/// runs. Placed above `#[Object]` / `#[ComplexObject]`; see `api_macros`.
pub use api_macros::paged;

/// What a `#[page]` parameter of a [`paged`] resolver can be, built from
/// the client's arguments: BAD_USER_INPUT naming the argument when they do
/// not make a page.
pub trait FromPageArgs: Sized {
    /// `ctx`: the connection field's, whose selection says what the page
    /// must read.
    fn from_page_args(args: PageArgs, ctx: &Context<'_>) -> ApiResult<Self>;
}

/// A list read in the resolver itself: it makes the cursors of its edges
/// only if the selection reads an edge's `cursor` (the first and last,
/// for `pageInfo`, always).
impl FromPageArgs for Page {
    fn from_page_args(args: PageArgs, ctx: &Context<'_>) -> ApiResult<Self> {
        let mut page = args.page()?;
        page.edge_cursors = ctx.look_ahead().field("edges").field("cursor").exists();
        Ok(page)
    }
}

/// A DataLoader key: checked here, so bad arguments fail their field alone
/// (naming the argument) rather than the whole batch. (Its pages make
/// every cursor: a batch serves many selections.)
impl FromPageArgs for PageArgs {
    fn from_page_args(args: PageArgs, _: &Context<'_>) -> ApiResult<Self> {
        args.page()?;
        Ok(args)
    }
}

/// One parent's page of a nested list (a post's comments), as a
/// DataLoader key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChildPage {
    pub parent: uuid::Uuid,
    pub args: PageArgs,
}

impl ChildPage {
    /// The distinct pages `keys` ask for, each with its parents: a batch
    /// reads each once for all its parents (see [`Page::fetch_each`]).
    pub fn by_page(keys: &[Self]) -> ApiResult<Vec<(&PageArgs, Page, Vec<uuid::Uuid>)>> {
        let mut parents_by_args: std::collections::HashMap<&PageArgs, Vec<uuid::Uuid>> = Default::default();
        for key in keys {
            parents_by_args.entry(&key.args).or_default().push(key.parent);
        }
        parents_by_args.into_iter().map(|(args, parents)| Ok((args, args.page()?, parents))).collect()
    }
}

/// Which rows one page covers: a size, a direction and where to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    limit: u64,
    direction: Direction,
    cursor: Option<RawCursor>,
    /// Whether each edge's cursor is made, or only the first and last
    /// (`pageInfo`'s): a cursor per row was a steady share of a page's
    /// work that most selections never read (issue 11).
    edge_cursors: bool,
}

/// A decoded cursor whose values are not yet checked against an ordering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RawCursor {
    /// Format version ([`CURSOR_VERSION`]).
    v: u8,
    /// The ordering's name ([`SortKey::name`]).
    o: String,
    /// The sort-key values of the row, in key order.
    k: Vec<Json>,
}

impl Page {
    /// Validates the Relay arguments: `first`/`after` page forward,
    /// `last`/`before` backward, and the two do not mix. BAD_USER_INPUT on
    /// a negative or oversized size, on a mix, and on a cursor this server
    /// did not issue.
    pub fn from_args(
        first: Option<i32>,
        after: Option<&str>,
        last: Option<i32>,
        before: Option<&str>,
    ) -> ApiResult<Self> {
        if first.is_some() && last.is_some() {
            return Err(ApiError::bad_input("last", "give first (forward) or last (backward), not both"));
        }
        if after.is_some() && before.is_some() {
            return Err(ApiError::bad_input("before", "give after (forward) or before (backward), not both"));
        }
        let backward = last.is_some() || before.is_some();
        if backward && (first.is_some() || after.is_some()) {
            let field = if last.is_some() { "last" } else { "before" };
            return Err(ApiError::bad_input(field, "first/after page forward, last/before backward: do not mix them"));
        }
        let (size_field, size, cursor_field, cursor) =
            if backward { ("last", last, "before", before) } else { ("first", first, "after", after) };
        let size = size.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ApiError::bad_input(size_field, format!("{size_field} must be between 0 and {MAX_PAGE_SIZE}")));
        }
        Ok(Self {
            limit: u64::try_from(size).unwrap_or(0),
            direction: if backward { Direction::Backward } else { Direction::Forward },
            cursor: cursor.map(|c| decode_cursor(cursor_field, c)).transpose()?,
            edge_cursors: true,
        })
    }

    fn cursor_field(&self) -> &'static str {
        match self.direction {
            Direction::Forward => "after",
            Direction::Backward => "before",
        }
    }

    fn bad_cursor(&self) -> ApiError {
        let field = self.cursor_field();
        ApiError::bad_input(field, format!("{field} is not a cursor of this list and ordering"))
    }

    /// This page of `query` in the order of `key`: `limit + 1` rows are read
    /// so `hasNextPage` (or `hasPreviousPage` backward) is exact without a
    /// count. The count of `query` is prepared, not run: the connection's
    /// `totalCount` runs it only when it is selected.
    pub async fn fetch<C, E>(&self, db: &C, query: Select<E>, key: &SortKey<E>) -> ApiResult<PageOf<E::Model>>
    where
        C: ConnectionTrait,
        E: EntityTrait,
        E::Model: Send + Sync,
    {
        self.fetch_with(
            query,
            key,
            |q| q,
            |statement| Box::pin(E::Model::find_by_statement(statement).all(db)),
            |row| row,
        )
        .await
    }

    /// [`fetch`](Self::fetch) with each segment's query reshaped by `shape`
    /// (e.g. a join, so a nested object costs no query of its own, or only
    /// some columns) and its statement ([`page_statement`]) read by `run`;
    /// `model` gives a row's own model, whose `key` columns `run` must
    /// read: the cursors are made of them.
    pub async fn fetch_with<'a, E, T>(
        &self,
        query: Select<E>,
        key: &SortKey<E>,
        shape: impl Fn(Select<E>) -> Select<E>,
        run: impl Fn(Statement) -> BoxFuture<'a, Result<Vec<T>, DbErr>>,
        model: impl Fn(&T) -> &E::Model,
    ) -> ApiResult<PageOf<T>>
    where
        E: EntityTrait,
    {
        let start = self.start(key)?;
        let forward = self.direction == Direction::Forward;
        // Segments in the order this page walks them.
        let mut order: Vec<usize> = (0..key.segments()).collect();
        if !forward {
            order.reverse();
        }
        let first_segment = start.as_ref().map_or(order[0], |values| key.segment_of(values));
        let mut rows: Vec<T> = Vec::new();
        let segments = order.iter().copied().skip_while(|&s| s != first_segment);
        // Each segment walked reads a copy of the query (a deep copy of its
        // expressions) and the count keeps the query itself: one copy for
        // most pages, which end in their first segment.
        for segment in segments {
            // Only the cursor's own segment starts at the cursor; later
            // segments are read from their beginning.
            let from = start.as_deref().filter(|_| segment == first_segment);
            // The page's whole LIMIT in every segment, not what is still
            // missing: one statement per page size (see `page_statement`);
            // `finish` keeps the first rows.
            let segment = shape(self.segment_query(query.clone(), key, segment, from).limit(self.limit + 1));
            let read = run(page_statement(&segment)).await?;
            // The first segment's rows are the page's (not copied into it).
            if rows.is_empty() {
                rows = read;
            } else {
                rows.extend(read);
            }
            if rows.len() as u64 > self.limit {
                break;
            }
        }
        Ok(self.finish(rows, key, model, TotalCount::of(query.into_query())))
    }

    /// This page of `query` for each of `parents` (e.g. the comments of
    /// each post of a page), in one statement: the page's query runs once
    /// per parent as a LATERAL subquery, each an index range scan that
    /// stops at the page's end. `parent` is the column that names the
    /// parent. For orders without a nullable lead (whose pages may take a
    /// second statement, see the module docs).
    pub async fn fetch_each<C, E>(
        &self,
        db: &C,
        query: Select<E>,
        key: &SortKey<E>,
        parent: E::Column,
        parents: &[uuid::Uuid],
    ) -> ApiResult<std::collections::HashMap<uuid::Uuid, PageOf<E::Model>>>
    where
        C: ConnectionTrait,
        E: EntityTrait,
        E::Model: Send + Sync,
    {
        if key.nullable_lead {
            return Err(ApiError::internal(format!(
                "{}: a batched page needs a key without a nullable lead",
                key.name
            )));
        }
        let mut parents = parents.to_vec();
        parents.sort_unstable();
        parents.dedup();
        let start = self.start(key)?;
        let inner = page_statement(
            &self
                .segment_query(
                    query.clone().filter(qualified(parent).eq(Expr::cust("batch.parent_id"))),
                    key,
                    0,
                    start.as_deref(),
                )
                .limit(self.limit + 1),
        );
        let mut values = inner.values.map(|v| v.0).unwrap_or_default();
        // The rows of each parent in page order, parents one after another.
        let dir = if key.descending == (self.direction == Direction::Forward) { "DESC" } else { "ASC" };
        let order: Vec<String> = key.columns.iter().map(|c| format!("page.\"{}\" {dir}", c.as_str())).collect();
        let sql = format!(
            "SELECT page.* FROM unnest(${}::uuid[]) AS batch(parent_id) CROSS JOIN LATERAL ({}) AS page \
             ORDER BY batch.parent_id, {}",
            values.len() + 1,
            inner.sql,
            order.join(", ")
        );
        values.push(parents.clone().into());
        let rows =
            E::find().from_raw_sql(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).all(db).await?;
        let mut by_parent: std::collections::HashMap<uuid::Uuid, Vec<E::Model>> = std::collections::HashMap::new();
        for row in rows {
            if let Value::Uuid(Some(id)) = row.get(parent) {
                by_parent.entry(id).or_default().push(row);
            }
        }
        Ok(parents
            .into_iter()
            .map(|id| {
                let total = TotalCount::of(query.clone().filter(qualified(parent).eq(id)).into_query());
                let rows = by_parent.remove(&id).unwrap_or_default();
                (id, self.finish(rows, key, |row| row, total))
            })
            .collect())
    }

    /// The cursor's key values, if the page has a cursor.
    fn start<E: EntityTrait>(&self, key: &SortKey<E>) -> ApiResult<Option<Vec<Value>>> {
        self.cursor.as_ref().map(|raw| self.check_cursor(raw, key)).transpose()
    }

    /// `query` narrowed to one segment of `key`, past `from` (the cursor's
    /// values, in the cursor's own segment) and ordered the way this page
    /// walks; without its limit.
    fn segment_query<E: EntityTrait>(
        &self,
        query: Select<E>,
        key: &SortKey<E>,
        segment: usize,
        from: Option<&[Value]>,
    ) -> Select<E> {
        let forward = self.direction == Direction::Forward;
        let (columns, filter) = key.segment(segment);
        let mut q = query;
        if let Some(filter) = filter {
            q = q.filter(filter);
        }
        if let Some(values) = from {
            let values = &values[values.len() - columns.len()..];
            q = q.filter(past(columns, values, key.descending == forward));
        }
        let descending = key.descending == forward;
        for (i, column) in columns.iter().enumerate() {
            let dir = if descending { Order::Desc } else { Order::Asc };
            q = if i == 0 && key.nullable_lead && segment == 0 {
                // Spelled out so the ORDER BY matches the index
                // `(lead DESC NULLS LAST, ..)` read either way.
                let nulls = if forward { NullOrdering::Last } else { NullOrdering::First };
                q.order_by_with_nulls(*column, dir, nulls)
            } else {
                q.order_by(*column, dir)
            };
        }
        q
    }

    /// The page from the rows read (up to `limit + 1`, in walking order):
    /// the extra row only tells that there are more.
    fn finish<E: EntityTrait, T>(
        &self,
        mut rows: Vec<T>,
        key: &SortKey<E>,
        model: impl Fn(&T) -> &E::Model,
        total: TotalCount,
    ) -> PageOf<T> {
        let forward = self.direction == Direction::Forward;
        let more = rows.len() as u64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or(usize::MAX));
        if !forward {
            rows.reverse();
        }
        // Beside the rows, not paired with them: the rows stay where they
        // were read and move once, into their edges (pairs moved every row
        // once more, and each cursor's values had an allocation of their
        // own: together ~1 % of a request for 20 places).
        let cursor = |row: &T| Cursor::of(key, model(row));
        let cursors = self.edge_cursors.then(|| rows.iter().map(cursor).collect::<Vec<_>>());
        let (start, end) = match &cursors {
            Some(cursors) => (cursors.first().cloned(), cursors.last().cloned()),
            None => (rows.first().map(cursor), rows.last().map(cursor)),
        };
        // Relay: going forward, rows exist before `after` (its own row, at
        // least, when it was issued); going backward, after `before`.
        let more = More {
            before: if forward { self.cursor.is_some() } else { more },
            after: if forward { more } else { self.cursor.is_some() },
        };
        PageOf { rows, cursors, start, end, more, total }
    }

    /// The cursor's values, typed by the key's columns; bad input when they
    /// do not fit the key (another ordering, a forged value).
    fn check_cursor<E: EntityTrait>(&self, raw: &RawCursor, key: &SortKey<E>) -> ApiResult<Vec<Value>> {
        if raw.v != CURSOR_VERSION || raw.o != key.name || raw.k.len() != key.columns.len() {
            return Err(self.bad_cursor());
        }
        let values = key
            .columns
            .iter()
            .zip(&raw.k)
            .enumerate()
            .map(|(i, (column, json))| {
                let nullable = i == 0 && key.nullable_lead;
                value_of(column.def().get_column_type(), json, nullable)
            })
            .collect::<Option<Vec<Value>>>()
            .ok_or_else(|| self.bad_cursor())?;
        Ok(values)
    }
}

/// Rows strictly past `values` in the scan's direction, as one row
/// comparison so PostgreSQL uses it as an index condition.
fn past<Col: ColumnTrait>(columns: &[Col], values: &[Value], descending: bool) -> sea_orm::sea_query::SimpleExpr {
    let (left, right): (Expr, Expr) = if columns.len() == 1 {
        (qualified(columns[0]), Expr::val(values[0].clone()))
    } else {
        (Expr::tuple(columns.iter().map(|c| qualified(*c))), Expr::tuple(values.iter().map(|v| Expr::val(v.clone()))))
    };
    if descending { left.lt(right) } else { left.gt(right) }
}

/// A page's statement, with its LIMIT written out as a number.
///
/// sea-query binds LIMIT as a parameter (its last, at the statement's end).
/// Then PostgreSQL prices the generic plan of the prepared statement for a
/// LIMIT of 10 % of the rows it expects, and keeps planning every execution
/// anew whenever a custom plan, priced with the real LIMIT, looks cheaper:
/// `places(first: 20, category: ..)` (667 rows in a category) was planned
/// on every request, 18 % of PostgreSQL's CPU in its profile. Written out,
/// the generic plan is priced as the custom one and PostgreSQL keeps it
/// after its fifth execution. Each page size is then a statement of its
/// own in sqlx's per-connection cache: a few in practice, and at most
/// [`MAX_PAGE_SIZE`] + 1 LIMITs of one query's shape.
/// A statement that does not end in its last parameter as LIMIT is left
/// as built (a test pins sea-query's form). PostgreSQL still plans again
/// when a statement under row-level security runs as another role than its
/// plan was made for: a connection that alternates anonymous and signed-in
/// requests gains less.
fn page_statement<S: QueryTrait>(query: &S) -> Statement {
    let mut statement = query.build(DbBackend::Postgres);
    if let Some(values) = statement.values.as_mut()
        && let Some(&Value::BigUnsigned(Some(limit))) = values.0.last()
    {
        // ` LIMIT $<n>`, checked without putting it together.
        let mut number = itoa::Buffer::new();
        let head =
            statement.sql.strip_suffix(number.format(values.0.len())).and_then(|sql| sql.strip_suffix(" LIMIT $"));
        if let Some(head) = head {
            let head = head.len();
            statement.sql.truncate(head);
            statement.sql.push_str(" LIMIT ");
            statement.sql.push_str(number.format(limit));
            values.0.pop();
        }
    }
    statement
}

/// `"table"."column"`: a page may join another table with the same names.
fn qualified<Col: ColumnTrait>(column: Col) -> Expr {
    Expr::col(column.as_column_ref())
}

fn is_null(value: &Value) -> bool {
    matches!(
        value,
        Value::String(None)
            | Value::Double(None)
            | Value::Float(None)
            | Value::BigInt(None)
            | Value::Int(None)
            | Value::Uuid(None)
            | Value::ChronoDate(None)
            | Value::ChronoDateTimeWithTimeZone(None)
    )
}

/// A sort-key value as it is written into a cursor. Timestamps keep their
/// microseconds, floats their exact value (JSON numbers round-trip f64).
fn json_of(value: &Value) -> Json {
    match value {
        Value::String(Some(s)) => Json::from(s.as_str()),
        Value::Double(Some(f)) => Json::from(*f),
        Value::Float(Some(f)) => Json::from(f64::from(*f)),
        Value::BigInt(Some(i)) => Json::from(*i),
        Value::Int(Some(i)) => Json::from(*i),
        Value::Uuid(Some(u)) => Json::from(u.to_string()),
        Value::ChronoDate(Some(d)) => Json::from(d.to_string()),
        Value::ChronoDateTimeWithTimeZone(Some(t)) => {
            Json::from(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        _ => Json::Null,
    }
}

/// The value of a cursor's JSON for a column of `kind`; `None` when it does
/// not fit (a forged or foreign cursor).
fn value_of(kind: &ColumnType, json: &Json, nullable: bool) -> Option<Value> {
    if json.is_null() {
        // Only the nullable lead may be NULL; its kind decides the variant.
        return nullable.then(|| null_of(kind)).flatten();
    }
    Some(match kind {
        ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_) => {
            Value::String(Some(json.as_str()?.to_owned()))
        }
        ColumnType::Double | ColumnType::Float => Value::Double(Some(json.as_f64()?)),
        ColumnType::BigInteger => Value::BigInt(Some(json.as_i64()?)),
        ColumnType::Integer => Value::Int(Some(i32::try_from(json.as_i64()?).ok()?)),
        ColumnType::Uuid => Value::Uuid(Some(uuid::Uuid::parse_str(json.as_str()?).ok()?)),
        ColumnType::Date => Value::ChronoDate(Some(json.as_str()?.parse().ok()?)),
        ColumnType::TimestampWithTimeZone => {
            Value::ChronoDateTimeWithTimeZone(Some(chrono::DateTime::parse_from_rfc3339(json.as_str()?).ok()?))
        }
        _ => return None,
    })
}

fn null_of(kind: &ColumnType) -> Option<Value> {
    Some(match kind {
        ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_) => Value::String(None),
        ColumnType::Double | ColumnType::Float => Value::Double(None),
        ColumnType::BigInteger => Value::BigInt(None),
        ColumnType::Integer => Value::Int(None),
        ColumnType::Uuid => Value::Uuid(None),
        ColumnType::Date => Value::ChronoDate(None),
        ColumnType::TimestampWithTimeZone => Value::ChronoDateTimeWithTimeZone(None),
        _ => return None,
    })
}

/// A row's place in its ordering: the ordering's name and the row's
/// sort-key values, written out as a cursor only where a client selects
/// one (an edge's `cursor`, `pageInfo`'s first and last). Encoding every
/// row's (JSON, then base64) whether selected or not was a steady share of
/// a page's work (issue 11).
#[derive(Debug, Clone)]
pub struct Cursor {
    ordering: &'static str,
    values: ArrayVec<Value, MAX_KEY_COLUMNS>,
}

impl Cursor {
    fn of<E: EntityTrait>(key: &SortKey<E>, row: &E::Model) -> Self {
        // (`take`: `SortKey::new` holds keys to the capacity.)
        let values = key.columns.iter().take(MAX_KEY_COLUMNS).map(|column| row.get(*column)).collect();
        Self { ordering: key.name, values }
    }

    /// The cursor as clients see it.
    pub fn encode(&self) -> String {
        let raw =
            RawCursor { v: CURSOR_VERSION, o: self.ordering.to_owned(), k: self.values.iter().map(json_of).collect() };
        // Serialising plain strings and numbers cannot fail.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&raw).unwrap_or_default())
    }
}

fn decode_cursor(field: &'static str, cursor: &str) -> ApiResult<RawCursor> {
    Some(cursor)
        .filter(|c| c.len() <= MAX_CURSOR_LEN)
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .and_then(|bytes| serde_json::from_slice::<RawCursor>(&bytes).ok())
        .ok_or_else(|| ApiError::bad_input(field, format!("{field} is not a cursor from this API")))
}

/// The count of a connection's rows, prepared with its page and run only if
/// a client selects `totalCount` (a `COUNT(*)` of a large list costs more
/// than the page itself).
#[derive(Clone)]
pub struct TotalCount(SelectStatement);

impl TotalCount {
    fn of(mut query: SelectStatement) -> Self {
        query.clear_order_by();
        Self(query)
    }

    /// Counts the rows in the request transaction (or, in a subscription's
    /// event, in one of its own).
    pub async fn resolve(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        let count = SelectStatement::new()
            .expr(Expr::cust("COUNT(*) AS num_items"))
            .from_subquery(self.0.clone(), "sub_query")
            .to_owned();
        let row = ctx.reader()?.run(ctx.viewer()?, async |tx| Ok(tx.query_one(&count).await?)).await?;
        let Some(row) = row else { return Ok(0) };
        let total: i64 = row.try_get("", "num_items")?;
        Ok(u64::try_from(total).unwrap_or(0))
    }
}

/// One page of rows with their cursors, before it becomes a domain's
/// connection type (see [`connection_type!`](crate::connection_type)).
#[derive(Clone)]
pub struct PageOf<N> {
    /// The rows in page order.
    pub rows: Vec<N>,
    /// Each row's cursor, in the same order; `None` when the selection
    /// reads no edge's cursor (see [`Page`]).
    pub cursors: Option<Vec<Cursor>>,
    /// The first and the last row's cursors, for `pageInfo`.
    pub start: Option<Cursor>,
    pub end: Option<Cursor>,
    pub more: More,
    pub total: TotalCount,
}

/// Whether rows exist before and after a page.
#[derive(Debug, Clone, Copy)]
pub struct More {
    pub before: bool,
    pub after: bool,
}

/// Where a page sits in the whole list: async-graphql's `PageInfo` as
/// clients see it (the same name, fields and descriptions), whose cursors
/// are the page's first and last edges' and are written out only when
/// selected. async-graphql's holds them as text, so every page encoded
/// two cursors (JSON, then base64) that few clients read. Two
/// differences: async-graphql marks its own `shareable`, which shows only
/// in a federation SDL (this server writes none); and the two cannot both
/// be in the schema (the same name twice fails the schema's build), so
/// async-graphql's `connection::Connection` is not for this schema.
pub struct PageInfo<'a> {
    pub more: More,
    pub start: Option<&'a Cursor>,
    pub end: Option<&'a Cursor>,
}

/// Information about pagination in a connection
#[async_graphql::Object]
impl PageInfo<'_> {
    /// When paginating backwards, are there more items?
    async fn has_previous_page(&self) -> bool {
        self.more.before
    }

    /// When paginating forwards, are there more items?
    async fn has_next_page(&self) -> bool {
        self.more.after
    }

    /// When paginating backwards, the cursor to continue.
    async fn start_cursor(&self) -> Option<String> {
        self.start.map(Cursor::encode)
    }

    /// When paginating forwards, the cursor to continue.
    async fn end_cursor(&self) -> Option<String> {
        self.end.map(Cursor::encode)
    }
}

impl<N> PageOf<N> {
    /// The page's rows.
    pub fn nodes(&self) -> impl Iterator<Item = &N> {
        self.rows.iter()
    }

    /// The same page with every row converted (e.g. model to GraphQL type).
    pub fn map<M>(self, f: impl FnMut(N) -> M) -> PageOf<M> {
        PageOf {
            rows: self.rows.into_iter().map(f).collect(),
            cursors: self.cursors,
            start: self.start,
            end: self.end,
            more: self.more,
            total: self.total,
        }
    }
}

/// Declares a documented Relay connection and edge type for one node type,
/// e.g. `connection_type!(PlaceConnection, PlaceEdge, Place, "places");`.
/// (async-graphql's generic `Connection` has no type descriptions.)
#[macro_export]
macro_rules! connection_type {
    ($connection:ident, $edge:ident, $node:ty, $what:literal) => {
        /// Each node is kept once, in its edge: `nodes` lists the edges'
        /// nodes by reference (a copy per node for `nodes`, selected or
        /// not, was a steady share of a page's allocations; issue 11).
        pub struct $connection {
            pub edges: Vec<$edge>,
            /// The first and last edges' cursors, for `pageInfo`.
            pub start: Option<$crate::graphql::pagination::Cursor>,
            pub end: Option<$crate::graphql::pagination::Cursor>,
            pub more: $crate::graphql::pagination::More,
            pub total: $crate::graphql::pagination::TotalCount,
        }

        #[doc = concat!("A page of ", $what, " (a Relay connection).")]
        #[async_graphql::Object]
        impl $connection {
            /// The items of this page, each with its cursor.
            async fn edges(&self) -> Vec<$crate::graphql::inline::Inline<&$edge>> {
                self.edges.iter().map($crate::graphql::inline::Inline).collect()
            }

            /// The items of this page, without cursors.
            async fn nodes(&self) -> Vec<$crate::graphql::inline::Inline<&$node>> {
                self.edges.iter().map(|edge| $crate::graphql::inline::Inline(&edge.node)).collect()
            }

            /// Where this page sits in the whole list.
            async fn page_info(&self) -> $crate::graphql::pagination::PageInfo<'_> {
                $crate::graphql::pagination::PageInfo {
                    more: self.more,
                    start: self.start.as_ref(),
                    end: self.end.as_ref(),
                }
            }

            /// How many items match, across all pages (one more query: select
            /// it only when you need it).
            async fn total_count(&self, ctx: &async_graphql::Context<'_>) -> $crate::error::ApiResult<u64> {
                self.total.resolve(ctx).await
            }
        }

        pub struct $edge {
            /// `None` when the page was read for a selection without an
            /// edge's cursor (see `Page`).
            pub cursor: Option<$crate::graphql::pagination::Cursor>,
            pub node: $node,
        }

        #[doc = concat!("One of ", $what, " and its cursor.")]
        #[async_graphql::Object]
        impl $edge {
            /// Pass as `after` to continue after this item, or as `before`
            /// to page back from it.
            async fn cursor(&self) -> $crate::error::ApiResult<String> {
                self.cursor.as_ref().map($crate::graphql::pagination::Cursor::encode).ok_or_else(|| {
                    $crate::error::ApiError::internal("an edge's cursor was selected but not read with its page")
                })
            }

            /// The item.
            async fn node(&self) -> $crate::graphql::inline::Inline<&$node> {
                $crate::graphql::inline::Inline(&self.node)
            }
        }

        /// Rows become nodes on the way into edges: one pass over the page
        /// (a `map` first was one more move of every row).
        impl<M> From<$crate::graphql::pagination::PageOf<M>> for $connection
        where
            $node: From<M>,
        {
            fn from(page: $crate::graphql::pagination::PageOf<M>) -> Self {
                Self {
                    edges: {
                        let mut cursors = page.cursors.into_iter().flatten();
                        page.rows.into_iter().map(|row| $edge { cursor: cursors.next(), node: row.into() }).collect()
                    },
                    start: page.start,
                    end: page.end,
                    more: page.more,
                    total: page.total,
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(o: &str, k: Json) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&serde_json::json!({ "v": 1, "o": o, "k": k })).unwrap_or_default())
    }

    #[test]
    fn a_foreign_cursor_is_bad_input_naming_its_argument() {
        assert!(matches!(
            Page::from_args(None, Some("bm9wZQ"), None, None),
            Err(ApiError::BadUserInput { field: "after", .. })
        ));
        assert!(matches!(
            Page::from_args(None, None, None, Some("bm9wZQ")),
            Err(ApiError::BadUserInput { field: "before", .. })
        ));
    }

    #[test]
    fn an_old_offset_cursor_is_bad_input() {
        let old = URL_SAFE_NO_PAD.encode("o:4");
        assert!(matches!(
            Page::from_args(None, Some(&old), None, None),
            Err(ApiError::BadUserInput { field: "after", .. })
        ));
    }

    #[test]
    fn a_cursor_of_another_ordering_or_with_values_of_the_wrong_type_is_bad_input() {
        let key: SortKey<entity::place::Entity> =
            SortKey::new("place.name", false, &[entity::place::Column::Name, entity::place::Column::Id]);
        for forged in [
            cursor("place.rating", serde_json::json!(["a", "b"])),
            cursor("place.name", serde_json::json!([1, "b"])),
            cursor("place.name", serde_json::json!(["a"])),
            cursor("place.name", serde_json::json!([null, "b"])),
        ] {
            let page = Page::from_args(None, Some(&forged), None, None).unwrap_or_else(|e| panic!("{}", e.message()));
            let raw = page.cursor.clone().unwrap_or_else(|| panic!("a cursor"));
            assert!(
                matches!(page.check_cursor(&raw, &key), Err(ApiError::BadUserInput { field: "after", .. })),
                "{forged}"
            );
        }
        let good = cursor("place.name", serde_json::json!(["a", "b"]));
        let page = Page::from_args(None, Some(&good), None, None).unwrap_or_else(|e| panic!("{}", e.message()));
        let raw = page.cursor.clone().unwrap_or_else(|| panic!("a cursor"));
        assert!(page.check_cursor(&raw, &key).is_ok());
    }

    #[test]
    fn a_page_over_the_cap_is_bad_input() {
        assert!(matches!(
            Page::from_args(Some(MAX_PAGE_SIZE + 1), None, None, None),
            Err(ApiError::BadUserInput { field: "first", .. })
        ));
        assert!(matches!(
            Page::from_args(None, None, Some(-1), None),
            Err(ApiError::BadUserInput { field: "last", .. })
        ));
    }

    #[test]
    fn forward_and_backward_arguments_do_not_mix() {
        assert!(Page::from_args(Some(1), None, Some(1), None).is_err());
        assert!(Page::from_args(None, Some("x"), None, Some("y")).is_err());
        assert!(Page::from_args(Some(1), None, None, Some("y")).is_err());
    }

    #[test]
    fn a_page_statement_writes_its_limit_as_a_number_and_binds_everything_else() {
        use entity::place::{Column, Entity};
        let query = Entity::find().filter(Column::Category.eq("cafe")).order_by_desc(Column::Rating).limit(21);
        let statement = page_statement(&query);
        assert!(statement.sql.ends_with(r#"ORDER BY "place"."rating" DESC LIMIT 21"#), "{}", statement.sql);
        assert!(statement.sql.contains(r#""place"."category" = $1"#), "{}", statement.sql);
        let values = statement.values.map(|v| v.0).unwrap_or_default();
        assert_eq!(values, vec![Value::from("cafe")]);

        // Twelve values: the LIMIT is `$12`, which `$1` must not be taken for.
        let names: Vec<String> = (0..11).map(|n| format!("p{n}")).collect();
        let many = Entity::find().filter(Column::Name.is_in(names)).limit(5);
        let statement = page_statement(&many);
        assert!(
            statement.sql.ends_with(r#""place"."name" IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) LIMIT 5"#),
            "{}",
            statement.sql
        );
        assert_eq!(statement.values.map(|v| v.0.len()), Some(11));

        // Nothing to write out, or the LIMIT is not last: left as built.
        let unlimited = Entity::find().filter(Column::Category.eq("cafe"));
        let offset = Entity::find().filter(Column::Category.eq("cafe")).limit(5).offset(10);
        let locked = Entity::find().filter(Column::Category.eq("cafe")).limit(5).lock_exclusive();
        for query in [unlimited, offset, locked] {
            assert_eq!(page_statement(&query), query.build(DbBackend::Postgres));
        }
    }
}
