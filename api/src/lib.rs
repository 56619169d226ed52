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
//!   ownership rule is the default), the `WRITERS` roles and the `DENIED`
//!   message. Override `visible_to`/`can_write` only where the rule
//!   differs; it mirrors the table's RLS policies in its migration.
//! - `store.rs`: only the queries that are the domain's own (filters,
//!   orderings, joins, upserts), each scoped by `P::visible_to`. Finding a
//!   row by id, a row the viewer may change, insert, update and delete are
//!   [`domain::store`]'s: `visible::<P>`, `writable::<P>`, `insert`,
//!   `update`, `delete::<P>`, and from an `ID` argument
//!   [`domain::resolve`]'s `one::<P>` and `delete::<P>`. Role checks before
//!   any SQL are `P::require_writer`; resolvers do not test roles themselves.
//! - `types.rs`: GraphQL types (`///` on each field becomes the schema's
//!   description), `From<entity::x::Model>` conversions, input objects.
//!   Entities never derive GraphQL traits. A foreign key is two fields:
//!   its raw id (`userId: ID!`) and its object (`user: User`, nullable
//!   where the viewer may not see the target), resolved with
//!   [`domain::loader::load`]`::<P>` (batched per table and response).
//! - `resolvers.rs`: the `XQuery`/`XMutation` objects. Inputs are checked
//!   with [`graphql::validate`] (text, counts, tokens, ratings,
//!   coordinates) before any SQL; ids with [`graphql::ids`]; pages with
//!   [`graphql::pagination`]. A connection field takes one parameter
//!   marked `#[page]` and its impl carries [`graphql::pagination::paged`]
//!   above `#[Object]` (or `#[ComplexObject]` for a nested list): the
//!   attribute writes Relay's `first`/`after`/`last`/`before` with their
//!   descriptions, checks them into the parameter before the body runs
//!   (BAD_USER_INPUT naming the argument) and costs the field as a page
//!   unless it names its own `complexity`:
//!
//!   ```ignore
//!   #[paged]
//!   #[Object]
//!   impl RoutinesQuery {
//!       /// The signed-in user's routines, newest first.
//!       async fn my_routines(&self, ctx: &Context<'_>, #[page] page: Page) -> ApiResult<RoutineConnection> {
//!           let viewer = ctx.viewer()?;
//!           let me = viewer.require_user()?;
//!           let tx = ctx.tx().await?;
//!           Ok(store::list_routines(&*tx, &viewer, me, &page).await?.map(Routine::from).into())
//!       }
//!   }
//!   ```
//!
//!   A nested list batched by a DataLoader takes `#[page] args: PageArgs`
//!   (its key) instead of a `Page` (`Post.comments`).
//! - `subscriptions.rs` (if the tables are published on the change feed):
//!   `impl realtime::Published` for each watched node type (its table, its
//!   event's schema names, its model; visibility defaults to ownership), and
//!   a resolver returning `realtime::changes::<E>(ctx, after, filter)`.
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
//!   (its GraphQL type's name), `id: ids::global("Type", key)` and `rowId`
//!   in its `From`, and its line in the domain's `nodes!` (`mod.rs`).
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
