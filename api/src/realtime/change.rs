//! One change event type and one stream for every table that subscribers
//! watch, so a domain adds a live feed with an `impl Published` and a
//! one-line resolver body.
//!
//! A domain's node type names its table's row policy (which gives the
//! table, the model its captured rows decode into, and who may see a row,
//! [`Policy::can_read`]) and how its event is named in the schema.
//! [`changes`] then turns the change feed
//! into [`Change`]s for one subscriber: the policy decides, from the row
//! before and after, what an event means for this viewer (a post that is
//! published appears as INSERTED, one unpublished disappears as DELETED),
//! and the subscription's own filter (a category, an author) narrows it.
//! Subscriptions with state of their own (`commentChanged` watches its post)
//! pass their filter to [`stream`], the same stream underneath.

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::registry::{MetaField, MetaType, MetaTypeId, Registry};
use async_graphql::resolver_utils::{ContainerType, resolve_container};
use async_graphql::{Context, ContextSelectionSet, ObjectType, OutputType, Positioned, ServerResult, Value};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use sea_orm::{EntityName, EntityTrait};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::stream::{self, Delivery, Request};
use super::{ChangeEvent, ChangeOperation, Operation, Realtime};
use crate::auth::Viewer;
use crate::domain::{Model, Policy};
use crate::error::{ApiError, ApiResult};
use crate::graphql::ContextExt;

/// How one entity's change event reads in the schema.
pub struct EventSchema {
    /// The event's type name, e.g. `PlaceChangeEvent`.
    pub name: &'static str,
    /// The event type's description.
    pub description: &'static str,
    /// The field that carries the entity, e.g. `place`.
    pub field: &'static str,
    /// That field's description; by default "The {field} after the change
    /// (before it, for a deletion)."
    pub field_description: Option<&'static str>,
    /// The `operation` field's description; `None` for a feed of additions
    /// only (`commentAdded`), whose events have no such field.
    pub operation: Option<&'static str>,
}

impl EventSchema {
    /// An event `name { operation <field> cursor }`, described by `description`.
    pub const fn new(name: &'static str, description: &'static str, field: &'static str) -> Self {
        Self { name, description, field, field_description: None, operation: Some("What happened.") }
    }

    /// Describes the entity's field otherwise.
    pub const fn field_doc(self, description: &'static str) -> Self {
        Self { field_description: Some(description), ..self }
    }

    /// Describes the `operation` field otherwise.
    pub const fn operation_doc(self, description: &'static str) -> Self {
        Self { operation: Some(description), ..self }
    }

    /// An event of a feed of additions only: no `operation` field.
    pub const fn additions_only(self) -> Self {
        Self { operation: None, ..self }
    }
}

/// An entity whose changes reach subscribers: its GraphQL node type, built
/// from the model the change log's rows decode into. Usually two lines:
///
/// ```ignore
/// impl Published for Review {
///     type Policy = Reviews;
///     const EVENT: EventSchema = EventSchema::new("ReviewChangeEvent", "A change to one of your reviews.", "review");
/// }
/// ```
pub trait Published: OutputType + From<Model<Self::Policy>> + 'static {
    /// Its table's row policy: the table its events come from (the
    /// policy's entity's), the model a captured row decodes into, and who
    /// may see a row ([`Policy::can_read`]).
    type Policy: Policy<Entity: EntityTrait<Model: DeserializeOwned + Sync + 'static>>;
    /// Its change event's name and docs in the schema.
    const EVENT: EventSchema;

    /// What a replayed removal shows of a row the viewer may no longer see
    /// (see [`Delivery::tombstone`]); the row as it was by default, for
    /// rows whose last visible state is still the viewer's to read.
    fn tombstone(model: Model<Self::Policy>) -> Model<Self::Policy> {
        model
    }
}

/// The table `E`'s events come from: its policy's entity's.
fn table<E: Published>() -> &'static str {
    <E::Policy as Policy>::Entity::default().table_name()
}

/// `E`'s table as a change request's tables, `'static` as its domain
/// declared it published ([`crate::domain::ReplayKey`]). INTERNAL for a
/// table no domain declares: the capture would not publish it either.
fn tables<E: Published>() -> ApiResult<&'static [&'static str]> {
    let table = table::<E>();
    let key = crate::domain::replay_key(table)
        .ok_or_else(|| ApiError::internal(format!("{table} is not declared as a published table")))?;
    Ok(std::slice::from_ref(&key.table))
}

/// A change to one `E`, as a subscriber sees it; named per entity in the
/// schema (`PlaceChangeEvent { operation place cursor }`), see [`EventSchema`].
pub struct Change<E> {
    /// What happened, for this viewer.
    pub operation: ChangeOperation,
    /// The row after the change (before it, for DELETED).
    pub node: E,
    /// Pass as `after` when resubscribing to continue right after this event.
    pub cursor: String,
}

/// What a subscription resolver returns.
pub type Changes<E> = BoxStream<'static, Result<Change<E>, ApiError>>;

/// The events of `E`'s table that `matches` lets through and the viewer may
/// see by `E`'s policy, replayed from `after` first when given.
pub fn changes<E: Published>(
    ctx: &Context<'_>,
    after: Option<&str>,
    matches: impl Fn(&ChangeEvent) -> bool + Send + 'static,
) -> ApiResult<Changes<E>> {
    let viewer = ctx.viewer()?;
    let request = ctx.change_request(tables::<E>()?, after)?;
    let filter = move |event: &ChangeEvent| matches(event).then(|| seen_as::<E>(&viewer, event)).flatten();
    Ok(stream::<E>(ctx.realtime()?, request, filter))
}

/// The changes of `owner`'s rows (every row's, for `None`) that the viewer
/// may see, replayed from `after` first when given: `postChanged(authorId)`.
/// Sign-in required, as for the lists of the same rows.
pub fn owned_changes<E: Published>(
    ctx: &Context<'_>,
    owner: Option<Uuid>,
    after: Option<&str>,
) -> ApiResult<Changes<E>> {
    ctx.viewer()?.require_user()?;
    changes(ctx, after, move |event| owner.is_none_or(|owner| event.owner == Some(owner)))
}

/// The changes of the signed-in user's own rows: a `myXChanged` body.
/// UNAUTHENTICATED for the anonymous viewer.
pub fn my_changes<E: Published>(ctx: &Context<'_>, after: Option<&str>) -> ApiResult<Changes<E>> {
    let me = ctx.viewer()?.require_user()?;
    owned_changes(ctx, Some(me), after)
}

/// The events `filter` lets through, as `E`s: the stream under [`changes`],
/// for filters with state of their own. An event of another of the
/// request's tables that the filter passes (the parent a feed is scoped to,
/// gone for the viewer) ends the stream with NOT_FOUND naming that table.
pub fn stream<E: Published>(
    realtime: Realtime,
    request: Request,
    filter: impl FnMut(&ChangeEvent) -> Option<ChangeOperation> + Send + 'static,
) -> Changes<E> {
    stream::events(realtime, request, filter).map(|item| Change::of(item?)).boxed()
}

/// What `event` means for `viewer` by `E`'s policy: the operation to report,
/// or None when they may see neither the row before nor after it.
fn seen_as<E: Published>(viewer: &Viewer, event: &ChangeEvent) -> Option<ChangeOperation> {
    let visible =
        |row: Option<&serde_json::Value>| row.is_some_and(|row| E::Policy::can_read(viewer, event.owner, row));
    match (event.op, visible(event.old_row.as_ref()), visible(event.new_row.as_ref())) {
        (Operation::Insert, _, true) | (Operation::Update, false, true) => Some(ChangeOperation::Inserted),
        (Operation::Update, true, true) => Some(ChangeOperation::Updated),
        (Operation::Update, true, false) | (Operation::Delete, true, _) => Some(ChangeOperation::Deleted),
        _ => None,
    }
}

impl<E: Published> Change<E> {
    fn of(delivery: Delivery) -> ApiResult<Self> {
        let event = &delivery.event;
        if event.table != table::<E>() {
            return Err(ApiError::not_found(&event.table));
        }
        // An update that hides the row is DELETED for this viewer: they
        // get the row as they last saw it, not its new content.
        let model = if delivery.operation == ChangeOperation::Deleted && event.op != Operation::Delete {
            let row = event.old_row.as_ref().ok_or_else(|| ApiError::internal("update event without its old row"))?;
            Model::<E::Policy>::deserialize(row)
                .map_err(|e| ApiError::internal(format!("change event row of {}: {e}", table::<E>())))?
        } else {
            event.decode_row::<Model<E::Policy>>()?
        };
        let model = if delivery.tombstone { E::tombstone(model) } else { model };
        Ok(Self { operation: delivery.operation, node: model.into(), cursor: delivery.cursor })
    }
}

// By hand rather than derived: the derive names fields at compile time,
// and each entity's event keeps its own field name (`place`, `post`).

fn field<T: OutputType>(registry: &mut Registry, name: &str, description: &str) -> (String, MetaField) {
    let field = MetaField {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        args: Default::default(),
        ty: T::create_type_info(registry),
        deprecation: Default::default(),
        cache_control: Default::default(),
        external: false,
        requires: None,
        provides: None,
        visible: None,
        shareable: false,
        inaccessible: false,
        tags: Vec::new(),
        override_from: None,
        compute_complexity: None,
        directive_invocations: Vec::new(),
        requires_scopes: Vec::new(),
    };
    (name.to_owned(), field)
}

impl<E: Published> OutputType for Change<E> {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed(E::EVENT.name)
    }

    fn create_type_info(registry: &mut Registry) -> String {
        registry.create_output_type::<Self, _>(MetaTypeId::Object, |registry| {
            let schema = E::EVENT;
            let mut fields = async_graphql::indexmap::IndexMap::new();
            if let Some(description) = schema.operation {
                let (name, meta) = field::<ChangeOperation>(registry, "operation", description);
                fields.insert(name, meta);
            }
            let description = schema.field_description.map_or_else(
                || format!("The {} after the change (before it, for a deletion).", schema.field),
                str::to_owned,
            );
            let (name, meta) = field::<E>(registry, schema.field, &description);
            fields.insert(name, meta);
            let (name, meta) = field::<String>(registry, "cursor", CURSOR_DOC);
            fields.insert(name, meta);
            MetaType::Object {
                name: schema.name.to_owned(),
                description: Some(schema.description.to_owned()),
                fields,
                cache_control: Default::default(),
                extends: false,
                shareable: false,
                resolvable: true,
                inaccessible: false,
                interface_object: false,
                tags: Vec::new(),
                keys: None,
                visible: None,
                is_subscription: false,
                rust_typename: Some(std::any::type_name::<Self>()),
                directive_invocations: Vec::new(),
                requires_scopes: Vec::new(),
            }
        })
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, _field: &Positioned<Field>) -> ServerResult<Value> {
        resolve_container(ctx, self).await
    }
}

impl<E: Published> ContainerType for Change<E> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        let name = ctx.item.node.name.node.as_str();
        let inner = ctx.with_selection_set(&ctx.item.node.selection_set);
        let value = match name {
            "operation" if E::EVENT.operation.is_some() => self.operation.resolve(&inner, ctx.item).await?,
            "cursor" => self.cursor.resolve(&inner, ctx.item).await?,
            _ if name == E::EVENT.field => self.node.resolve(&inner, ctx.item).await?,
            _ => return Ok(None),
        };
        Ok(Some(value))
    }
}

impl<E: Published> ObjectType for Change<E> {}

const CURSOR_DOC: &str = "Pass as `after` when resubscribing to continue right after this event.";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::Role;
    use crate::realtime::Cursor;

    /// Posts under a rule of this test's own: public once `published`, and
    /// always their author's (no roles that read all).
    struct Notes;

    impl Policy for Notes {
        type Entity = entity::post::Entity;
        const NAME: &'static str = "note";
        const TYPE: &'static str = "Note";
        const OWNER: Option<entity::post::Column> = Some(entity::post::Column::AuthorId);

        fn can_read(viewer: &Viewer, owner: Option<Uuid>, row: &serde_json::Value) -> bool {
            row["published"] == true || owner.is_some_and(|owner| viewer.user_id() == Some(owner))
        }
    }

    #[derive(async_graphql::SimpleObject)]
    struct Note {
        title: String,
    }

    impl From<entity::post::Model> for Note {
        fn from(row: entity::post::Model) -> Self {
            Self { title: row.title }
        }
    }

    impl Published for Note {
        type Policy = Notes;
        const EVENT: EventSchema = EventSchema::new("NoteChangeEvent", "A change to a note.", "note");
    }

    fn event(op: Operation, owner: Uuid, old: Option<bool>, new: Option<bool>) -> ChangeEvent {
        let row = |published: bool| {
            json!({
                "id": Uuid::nil(), "author_id": owner, "title": "t", "body": "", "published": published,
                "created_at": "2026-11-27T00:00:00Z", "updated_at": "2026-11-27T00:00:00Z",
            })
        };
        ChangeEvent {
            cursor: Cursor { seq: 1, id: 1 },
            table: "post".into(),
            op,
            key: "k".into(),
            owner: Some(owner),
            new_row: new.map(row),
            old_row: old.map(row),
            committed_at: std::time::Instant::now(),
            decoded: std::sync::OnceLock::new(),
        }
    }

    #[test]
    fn a_row_that_becomes_visible_is_inserted_and_one_hidden_is_deleted_for_that_viewer_only() {
        let owner = Uuid::new_v4();
        let (author, stranger) =
            (Viewer::User { id: owner, role: Role::User }, Viewer::User { id: Uuid::new_v4(), role: Role::User });
        let seen = |viewer: &Viewer, e: ChangeEvent| seen_as::<Note>(viewer, &e);
        use ChangeOperation::{Deleted, Inserted, Updated};
        use Operation::{Delete, Insert, Update};

        assert_eq!(seen(&stranger, event(Insert, owner, None, Some(false))), None);
        assert_eq!(seen(&author, event(Insert, owner, None, Some(false))), Some(Inserted));
        assert_eq!(seen(&stranger, event(Update, owner, Some(false), Some(true))), Some(Inserted), "published");
        assert_eq!(seen(&author, event(Update, owner, Some(false), Some(true))), Some(Updated));
        assert_eq!(seen(&stranger, event(Update, owner, Some(true), Some(false))), Some(Deleted), "unpublished");
        assert_eq!(seen(&stranger, event(Update, owner, Some(false), Some(false))), None);
        assert_eq!(seen(&stranger, event(Delete, owner, Some(false), None)), None);
        assert_eq!(seen(&author, event(Delete, owner, Some(false), None)), Some(Deleted));
    }

    #[test]
    fn a_hidden_row_is_delivered_as_it_was_before_the_change() {
        let e = event(Operation::Update, Uuid::new_v4(), Some(true), Some(false));
        let mut before = e.old_row.clone().unwrap_or_default();
        before["title"] = json!("before");
        let e = ChangeEvent { old_row: Some(before), ..e };
        let delivery = Delivery {
            event: std::sync::Arc::new(e),
            operation: ChangeOperation::Deleted,
            cursor: "c".into(),
            tombstone: false,
        };
        let change = Change::<Note>::of(delivery).unwrap_or_else(|e| panic!("{}", e.message()));
        assert_eq!(change.node.title, "before");
    }

    /// A table no domain declares published.
    mod ledger {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Deserialize)]
        #[sea_orm(table_name = "ledger")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    struct Ledger;

    impl Policy for Ledger {
        type Entity = ledger::Entity;
        const NAME: &'static str = "entry";
        const TYPE: &'static str = "Entry";
    }

    #[derive(async_graphql::SimpleObject)]
    struct Entry {
        id: i64,
    }

    impl From<ledger::Model> for Entry {
        fn from(row: ledger::Model) -> Self {
            Self { id: row.id }
        }
    }

    impl Published for Entry {
        type Policy = Ledger;
        const EVENT: EventSchema = EventSchema::new("EntryChangeEvent", "A change to an entry.", "entry");
    }

    #[test]
    fn a_feed_reads_its_policy_s_table_and_only_one_a_domain_declared_published() {
        assert_eq!(table::<Note>(), "post");
        assert_eq!(tables::<Note>().ok(), Some(&["post"][..]));
        assert!(matches!(tables::<Entry>(), Err(ApiError::Internal)));
    }
}
