//! The resolvers every table has, over its policy: by id, the `ID`
//! argument parsed as the table's key, global or raw (a malformed one, or
//! the global id of another type, is BAD_USER_INPUT on `id`), then the
//! read, the update or the delete in the request transaction; and the
//! lists of rows the viewer sees (`users`, `posts`) or the signed-in
//! user's own (`myX`).
//!
//! Create and update share each field's rules: a domain writes one
//! [`InputField`] impl per entity (a `match` that checks a field value and
//! sets its column), which a [`create`] applies to every field and an
//! [`update`] to the fields given. [`create`], [`update`] and [`delete`]
//! are whole mutations: each returns the row and the input's
//! `clientMutationId`, which a payload converts from (`crate::payload!`).

use async_graphql::{Context, ID};
use sea_orm::{ActiveModelBehavior, ActiveModelTrait, ActiveValue, EntityTrait, IntoActiveModel, Iterable};
use uuid::Uuid;

use super::policy::{Model, Policy, PrimaryKey};
use super::store;
use crate::auth::Viewer;
use crate::error::ApiResult;
use crate::graphql::ContextExt;
use crate::graphql::ids;
use crate::graphql::pagination::{Page, PageOf, SortKey};
use crate::graphql::payload::{Changes, IdInput, UpdateInput};

/// A table's active model, for a policy.
pub type Row<P> = <<P as Policy>::Entity as EntityTrait>::ActiveModel;

/// A table key from its raw form (what `rowId` holds).
pub trait KeyFromId: Sized {
    fn from_raw(field: &'static str, raw: &str) -> ApiResult<Self>;
}

impl KeyFromId for Uuid {
    fn from_raw(field: &'static str, raw: &str) -> ApiResult<Self> {
        ids::uuid_key(field, raw)
    }
}

impl KeyFromId for i64 {
    fn from_raw(field: &'static str, raw: &str) -> ApiResult<Self> {
        ids::int_key(field, raw)
    }
}

/// Text keys (a place's Google id) are looked up as given: an unknown one
/// is NOT_FOUND.
impl KeyFromId for String {
    fn from_raw(_field: &'static str, raw: &str) -> ApiResult<Self> {
        Ok(raw.to_owned())
    }
}

/// The key of a `P` row an `ID` argument names: its global id or its raw
/// key. A global id of another type is BAD_USER_INPUT ("id is the id of a
/// Post, not a Review"), as is a malformed key.
pub fn key<P: Policy>(field: &'static str, id: &ID) -> ApiResult<PrimaryKey<P>>
where
    PrimaryKey<P>: KeyFromId,
{
    PrimaryKey::<P>::from_raw(field, &ids::raw_key(field, id, Some(P::TYPE))?)
}

/// The row with this `id` if the viewer may see it, else NOT_FOUND.
pub async fn one<P: Policy>(ctx: &Context<'_>, id: &ID) -> ApiResult<Model<P>>
where
    PrimaryKey<P>: KeyFromId,
{
    let viewer = ctx.viewer()?;
    let key = key::<P>("id", id)?;
    let tx = ctx.tx().await?;
    store::visible::<P>(&*tx, &viewer, key).await
}

/// The whole delete mutation of a table: the role check before any SQL
/// (as [`update`]'s), then the row with the input's `id` deleted if the
/// viewer may change it (see [`store::writable`]). Returns the row as it
/// was and the `clientMutationId`.
pub async fn delete<P, I>(ctx: &Context<'_>, input: I) -> ApiResult<(Model<P>, Option<String>)>
where
    P: Policy,
    I: IdInput,
    PrimaryKey<P>: KeyFromId,
    Model<P>: Clone + IntoActiveModel<<P::Entity as EntityTrait>::ActiveModel>,
    <P::Entity as EntityTrait>::ActiveModel: ActiveModelBehavior + Send,
{
    let viewer = ctx.viewer()?;
    P::require_writer(&viewer)?;
    let (id, client_mutation_id) = input.into_id();
    let key = key::<P>("id", &id)?;
    let tx = ctx.tx().await?;
    Ok((store::delete::<P>(&*tx, &viewer, key).await?, client_mutation_id))
}

/// A field value of a create input or its update twin (the enum
/// `#[mutation_input(fields = ..)]` declares), checked and set on its row:
/// the one place a field's rules live.
pub trait InputField: Sized {
    /// The table's active model.
    type Row: ActiveModelTrait;

    /// Checks the value (BAD_USER_INPUT naming the field) and sets its
    /// column on `row`.
    fn set(self, row: &mut Self::Row) -> ApiResult<()>;

    /// `row` with every field checked and set: a create's row, over the
    /// columns the resolver sets itself (the owner, ...).
    fn row(mut row: Self::Row, fields: Vec<Self>) -> ApiResult<Self::Row> {
        for field in fields {
            field.set(&mut row)?;
        }
        Ok(row)
    }
}

/// The whole create mutation of a table without rules beyond its fields':
/// a create input's fields and `clientMutationId` (its `into_fields()`),
/// checked as [`create_with`] does with no rule across fields.
pub async fn create<P, F>(ctx: &Context<'_>, input: (Vec<F>, Option<String>)) -> ApiResult<(Model<P>, Option<String>)>
where
    P: Policy,
    F: InputField<Row = Row<P>>,
    Row<P>: ActiveModelTrait<Entity = P::Entity> + ActiveModelBehavior + Send,
    Model<P>: IntoActiveModel<Row<P>>,
{
    create_with::<P, F>(ctx, input, |_| Ok(())).await
}

/// A create mutation: the role check, then the new row, its owner column
/// ([`Policy::OWNER`]) set to the signed-in user and every field checked
/// and set by its [`InputField`] rules, then `rule` (one across fields,
/// such as a project's dates), all before any SQL; then the insert.
/// Returns the row as stored and the `clientMutationId`.
pub async fn create_with<P, F>(
    ctx: &Context<'_>,
    (fields, client_mutation_id): (Vec<F>, Option<String>),
    rule: impl FnOnce(&Row<P>) -> ApiResult<()>,
) -> ApiResult<(Model<P>, Option<String>)>
where
    P: Policy,
    F: InputField<Row = Row<P>>,
    Row<P>: ActiveModelTrait<Entity = P::Entity> + ActiveModelBehavior + Send,
    Model<P>: IntoActiveModel<Row<P>>,
{
    let viewer = ctx.viewer()?;
    let me = P::require_writer(&viewer)?;
    let mut row = <Row<P> as ActiveModelTrait>::default();
    if let Some(owner) = P::OWNER {
        row.try_set(owner, me.into())?;
    }
    let row = F::row(row, fields)?;
    rule(&row)?;
    let tx = ctx.tx().await?;
    Ok((store::insert(&*tx, row).await?, client_mutation_id))
}

/// An update input, checked: the row's key and the changed columns.
pub struct Update<P: Policy> {
    pub key: PrimaryKey<P>,
    /// The checked changes: only the columns given are set.
    changes: Row<P>,
    pub client_mutation_id: Option<String>,
}

impl<P: Policy> Update<P>
where
    PrimaryKey<P>: KeyFromId + Clone,
    Row<P>: ActiveModelTrait<Entity = P::Entity>,
    Model<P>: IntoActiveModel<Row<P>>,
{
    /// Checks an update input without SQL: its `id`, null on required
    /// fields, and each given field by its [`InputField`] rules (a bad
    /// field costs no row lock).
    pub fn check<I>(input: I) -> ApiResult<Self>
    where
        I: UpdateInput,
        I::Field: InputField<Row = Row<P>>,
    {
        let key = key::<P>("id", input.id())?;
        let Changes { fields, client_mutation_id, .. } = input.into_changes()?;
        let changes = I::Field::row(<Row<P> as ActiveModelTrait>::default(), fields)?;
        Ok(Self { key, changes, client_mutation_id })
    }

    /// The row if `viewer` may change it (see [`store::writable`]) with the
    /// changes on it, not yet written. Only the changed columns are set, so
    /// the UPDATE leaves the others to concurrent writers.
    pub async fn writable(&self, db: &impl sea_orm::ConnectionTrait, viewer: &Viewer) -> ApiResult<Row<P>> {
        let mut row = store::writable::<P>(db, viewer, self.key.clone()).await?.into_active_model();
        for column in <P::Entity as EntityTrait>::Column::iter() {
            if let ActiveValue::Set(value) = self.changes.get(column) {
                row.try_set(column, value)?;
            }
        }
        Ok(row)
    }
}

/// The whole update mutation of a table without rules beyond its fields':
/// the role check and the input's checks before any SQL, then the row the
/// viewer may change, written with the changed columns. Returns the row as
/// stored and the `clientMutationId`.
pub async fn update<P, I>(ctx: &Context<'_>, input: I) -> ApiResult<(Model<P>, Option<String>)>
where
    P: Policy,
    I: UpdateInput,
    I::Field: InputField<Row = Row<P>>,
    PrimaryKey<P>: KeyFromId + Clone,
    Row<P>: ActiveModelTrait<Entity = P::Entity> + ActiveModelBehavior + Send,
    Model<P>: IntoActiveModel<Row<P>>,
{
    let viewer = ctx.viewer()?;
    P::require_writer(&viewer)?;
    let update = Update::<P>::check(input)?;
    let tx = ctx.tx().await?;
    let row = update.writable(&*tx, &viewer).await?;
    Ok((store::update(&*tx, row).await?, update.client_mutation_id))
}

/// A page of the `P` rows the viewer sees, only `owner`'s when given, in
/// `key`'s order ([`store::visible_page`]). Sign-in required: no list of
/// owned rows shows anything to the anonymous viewer, and UNAUTHENTICATED
/// says why. (Public lists, places and projects, are their domain's own.)
pub async fn page<P: Policy>(
    ctx: &Context<'_>,
    owner: Option<Uuid>,
    page: &Page,
    key: &SortKey<P::Entity>,
) -> ApiResult<PageOf<Model<P>>>
where
    Model<P>: Sync,
{
    let viewer = ctx.viewer()?;
    viewer.require_user()?;
    let tx = ctx.tx().await?;
    store::visible_page::<P>(&*tx, &viewer, owner, page, key).await
}

/// A page of the signed-in user's `P` rows in `key`'s order: a `myX`
/// connection's body. UNAUTHENTICATED for the anonymous viewer.
pub async fn my_page<P: Policy>(ctx: &Context<'_>, page: &Page, key: &SortKey<P::Entity>) -> ApiResult<PageOf<Model<P>>>
where
    Model<P>: Sync,
{
    let me = ctx.viewer()?.require_user()?;
    self::page::<P>(ctx, Some(me), page, key).await
}

/// All the signed-in user's `P` rows in `key`'s order: a short `myX`
/// list's body ([`store::visible_list`]). UNAUTHENTICATED for the
/// anonymous viewer.
pub async fn my_list<P: Policy>(ctx: &Context<'_>, key: &SortKey<P::Entity>) -> ApiResult<Vec<Model<P>>> {
    let viewer = ctx.viewer()?;
    let me = viewer.require_user()?;
    let tx = ctx.tx().await?;
    store::visible_list::<P>(&*tx, &viewer, Some(me), key).await
}
