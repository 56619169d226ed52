//! A realtime GraphQL data layer over PostgreSQL, filtered row by row for
//! every viewer.
//!
//! Crate map:
//! - [`app`]: start-up (database, migrations, pool, listener) and shutdown.
//! - [`config`], [`cli`]: settings and the command line.
//! - [`db`]: the pool, the per-request transaction that carries the viewer
//!   into PostgreSQL (`SET LOCAL ROLE` + `app.user_id`), the embedded database.
//! - [`auth`]: viewers, roles, tokens, password hashes.
//! - [`error`]: every client-visible error and its code.
//! - [`domain`]: what every domain shares: a [`domain::Policy`] per table,
//!   the generic reads and writes over it ([`domain::store`],
//!   [`domain::resolve`]), and the constraint tables ([`domain::Constraint`]).
//! - [`graphql`]: schema assembly, context access, pagination, global ids
//!   and the `Node` interface ([`graphql::ids`], [`graphql::node`]), and the
//!   text and number rules of every input ([`graphql::validate`]).
//! - [`http`]: routes, GraphiQL, health checks, metrics, request ids, the
//!   websocket protocol.
//! - [`ops`]: backups with retention, Prometheus metrics.
//! - Domains, each with its types, resolvers, row policy and queries:
//!   [`accounts`], [`places`], [`routines`], [`airdrops`], [`posts`].
//! - [`realtime`]: the change feed: listener, subscriber streams, cursors.
//! - [`commands`], [`seed`]: the CLI's non-serving commands.
//!
//! # How to write a domain
//!
//! A domain is a folder; each file has one job, and a resolver reads like
//! parse input -> policy -> store -> map:
//!
//! - `policy.rs`: one unit struct per table implementing
//!   [`domain::Policy`]. Mostly data: the entity, a `NAME` for messages,
//!   the `OWNER` column for a table whose rows belong to a user (the
//!   ownership rule is the default), `PUBLIC` for a table every viewer
//!   reads, the `WRITERS` roles and the `DENIED` message. Only where the
//!   rule differs, override `visible_to` (SQL) with its in-memory twin
//!   `can_read` (for the change feed), or `can_write`; it mirrors the
//!   table's RLS policies in its migration.
//! - `store.rs`: the orderings of its lists ([`graphql::pagination::SortKey`]
//!   constants, with the index each uses) and only the queries that are the
//!   domain's own (filters, joins, upserts), each starting from
//!   `domain::store::visible_rows::<P>(viewer, owner)`. The rest is
//!   [`domain::store`]'s, over the policy: a row by id (`visible::<P>`),
//!   a row the viewer may change (`writable::<P>`), the rows the viewer
//!   sees, all or one owner's, as a page or a list (`visible_page::<P>`,
//!   `visible_list::<P>`), `insert`, `update`, `delete::<P>`; and from the
//!   resolver's context [`domain::resolve`]'s `one::<P>` and `delete::<P>`
//!   (an `ID` argument), `page::<P>` (`users`, `posts(authorId)`) and the
//!   signed-in user's own rows, `my_page::<P>` and `my_list::<P>`. Role
//!   checks before any SQL are `P::require_writer`; resolvers do not test
//!   roles themselves.
//! - `types.rs`: GraphQL types (`///` on each field becomes the schema's
//!   description) and input objects. Entities never derive GraphQL traits;
//!   a type built from one row derives its `From<entity::x::Model>` with
//!   [`graphql::ids::FromModel`]: `id` is the global id, `rowId` the raw
//!   key, other `RawId` fields raw keys (both kept as keys, written out
//!   only when selected), every other field its column through `Into`; a
//!   field attribute names a function (`with`), another column (`column`)
//!   or none (`default`):
//!
//!   ```ignore
//!   #[derive(SimpleObject, FromModel, Clone)]
//!   #[graphql(complex)]
//!   #[from_model(entity::routine_run::Model)]
//!   pub struct RoutineRun {
//!       pub id: GlobalId,
//!       pub row_id: RawId,
//!       pub routine_id: RawId,
//!       pub start_time: DateTime<FixedOffset>,
//!       #[from_model(with = RunStatus::parse)]
//!       pub status: RunStatus,
//!   }
//!   ```
//!
//!   Every mutation input is declared with
//!   [`graphql::payload::mutation_input`] (it adds `clientMutationId`); an
//!   entity clients change has one create input, and the attribute writes
//!   its update twin and the enum of its field values from it:
//!
//!   ```ignore
//!   /// A new review.
//!   #[mutation_input(update = UpdateReviewInput, fields = ReviewField)]
//!   pub struct CreateReviewInput {
//!       /// The place to review.
//!       #[input(create_only)] // not in the update twin
//!       pub place_id: ID,
//!       /// 0 to 5.
//!       pub rating: f64,
//!       /// Optional text, at most 5000 characters.
//!       pub comment: Option<String>, // null on update clears it
//!   }
//!   ```
//!
//!   Payloads and delete inputs are one line each (`crate::payload!`,
//!   `crate::id_input!`). A foreign key is two fields:
//!   its raw id (`userId: ID!`) and its object (`user: User`, nullable
//!   where the viewer may not see the target), resolved with
//!   [`domain::loader::load`]`::<P>` (batched per table and response).
//! - `resolvers.rs`: the `XQuery`/`XMutation` objects. Inputs are checked
//!   with [`graphql::validate`] (text, counts, tokens, ratings,
//!   coordinates) before any SQL. A field's rules are written once, as the
//!   [`domain::resolve::InputField`] impl of its entity's field enum (one
//!   `match` arm per field: check the value, set its column), so create and
//!   update share them; a create, update or delete without other rules is
//!   one call ([`domain::resolve`]: the role check and the input's checks
//!   before any SQL, the owner column set from the policy), whose row and
//!   `clientMutationId` the payload converts from:
//!
//!   ```ignore
//!   async fn create_review(&self, ctx: &Context<'_>, input: CreateReviewInput) -> ApiResult<CreateReviewPayload> {
//!       domain::resolve::create::<Reviews, _>(ctx, input.into_fields()).await.map(Into::into)
//!   }
//!
//!   async fn update_review(&self, ctx: &Context<'_>, input: UpdateReviewInput) -> ApiResult<UpdateReviewPayload> {
//!       domain::resolve::update::<Reviews, _>(ctx, input).await.map(Into::into)
//!   }
//!
//!   async fn delete_review(&self, ctx: &Context<'_>, input: DeleteReviewInput) -> ApiResult<DeleteReviewPayload> {
//!       domain::resolve::delete::<Reviews, _>(ctx, input).await.map(Into::into)
//!   }
//!
//!   impl InputField for ReviewField {
//!       type Row = review::ActiveModel;
//!
//!       fn set(self, row: &mut review::ActiveModel) -> ApiResult<()> {
//!           match self {
//!               Self::PlaceId(id) => {
//!                   let key = ids::raw_key("placeId", &id, Some("Place"))?; // a global id or the raw key
//!                   row.place_id = Set(validate::text("placeId", &key, 100)?);
//!               }
//!               Self::Rating(rating) => row.rating = Set(validate::rating("rating", rating)?),
//!               Self::Comment(comment) => row.comment = Set(validate::comment(comment.as_deref())?),
//!           }
//!           Ok(())
//!       }
//!   }
//!   ```
//!
//!   A rule across fields or needing the stored row is written once over
//!   the active model (a project's dates, checked on a new row and on a
//!   stored row with its changes, [`domain::resolve::Update`]). Ids are
//!   parsed with [`graphql::ids`]; pages with
//!   [`graphql::pagination`]. A connection field takes one parameter
//!   marked `#[page]` and its impl carries [`graphql::pagination::paged`]
//!   above `#[Object]` (or `#[ComplexObject]` for a nested list): the
//!   attribute writes Relay's `first`/`after`/`last`/`before` with their
//!   descriptions, checks them into the parameter before the body runs
//!   (BAD_USER_INPUT naming the argument; the resolver's `ctx` tells the
//!   page whether its selection reads the edges' cursors) and costs the
//!   field as a page unless it names its own `complexity`. A page's type comes from
//!   `connection_type!(RoutineConnection, RoutineEdge, Routine, "routines")`
//!   in `types.rs`; it converts the page's rows (`.into()`) and resolves
//!   its edges and nodes inline ([`graphql::inline`]):
//!
//!   ```ignore
//!   #[paged]
//!   #[Object]
//!   impl RoutinesQuery {
//!       /// The signed-in user's routines, newest first.
//!       async fn my_routines(&self, ctx: &Context<'_>, #[page] page: Page) -> ApiResult<RoutineConnection> {
//!           Ok(domain::resolve::my_page::<Routines>(ctx, &page, &store::ROUTINES).await?.into())
//!       }
//!   }
//!   ```
//!
//!   A nested list batched by a DataLoader takes `#[page] args: PageArgs`
//!   (its key) instead of a `Page` (`Post.comments`).
//! - `subscriptions.rs` (if the tables are published on the change feed):
//!   `impl realtime::Published` for each watched node type, two lines: its
//!   table's `type Policy` (which gives the table, the model its captured
//!   rows decode into and who sees them) and its event's schema names
//!   (`EVENT`); and resolvers returning `realtime::my_changes::<E>(ctx,
//!   after)` (the signed-in user's rows), `owned_changes` (one owner's or
//!   all) or `changes::<E>(ctx, after, filter)` (a filter of their own).
//! - `mod.rs`: everything the rest of the crate takes from the domain:
//!   - its part of the schema's roots, exported as `Query`, `Mutation` and
//!     `Subscription` ([`graphql::NoSubscriptions`] where it has none;
//!     two objects of one root merged into one, as `accounts::Mutation`);
//!   - `DOMAIN`: each named constraint of its tables and the client error
//!     its violation means (a CONFLICT on a field, a BAD_USER_INPUT, a
//!     NOT_FOUND), and the key of each table subscribers watch (a replay
//!     re-checks rows by it);
//!   - `nodes!`: its refetchable types, one line each,
//!     `Type(its GraphQL type) = its policy;` (the `Node` interface is
//!     gathered from these: [`graphql::node`]).
//!
//! Errors are [`error::ApiError`] everywhere: a row the viewer cannot see
//! is NOT_FOUND (as if it did not exist), a row it sees but may not change
//! is FORBIDDEN.
//!
//! # What a new table or domain touches
//!
//! A new table of an existing domain touches its migration, its entity and
//! its domain folder, nothing else:
//! - its migration: `migration/src/sql/0000NN_x.{up,down}.sql` (table, RLS
//!   policies, the change-feed trigger if published) and its line in
//!   `migration/src/lib.rs`;
//! - its entity: `entity/src/x.rs` and its line in `entity/src/lib.rs`;
//! - the domain folder: a policy struct (`policy.rs`), the store queries of
//!   its own (`store.rs`), its types (`types.rs`) and resolvers
//!   (`resolvers.rs`), and in `mod.rs` its constraints in `DOMAIN` (and,
//!   if published on the change feed, its key there and its `Published`
//!   impl in `subscriptions.rs`);
//! - if clients refetch its rows (a type with an `id`): the policy's `TYPE`
//!   (its GraphQL type's name), `id: ID` and `row_id: ID` in its type
//!   (`#[derive(FromModel)]` fills them, and refuses to compile a global
//!   id whose type `Node` does not list), and its line in the domain's
//!   `nodes!` (`mod.rs`).
//!
//! The entity lives in the `entity` crate because the stack keeps sea-orm's
//! models (what `sea-orm-cli generate entity` writes from the migrated
//! schema) in a crate of their own; it is the migration's other half.
//!
//! A new domain `x` is a folder written as above (`x/mod.rs` with its
//! `Query`, `Mutation`, `Subscription`, `DOMAIN` and `nodes!`,
//! `policy.rs`, `store.rs`, `types.rs`, `resolvers.rs`, and
//! `subscriptions.rs` if it publishes changes), its migrations and
//! entities, plus two lines: `pub mod x;` here and its name in
//! `domain::each_domain!`. That list merges its roots into the schema
//! ([`graphql`]), its `DOMAIN` into [`domain::DOMAINS`] and its `nodes!`
//! into the `Node` interface ([`graphql::node`]). Nothing in [`error`],
//! [`realtime`] or [`graphql`] changes.

pub mod accounts;
pub mod airdrops;
pub mod app;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod ops;
pub mod places;
pub mod posts;
pub mod realtime;
pub mod routines;
pub mod seed;

pub use app::Application;
pub use config::Config;
