//! Global object identification (the Relay server specification): the
//! `Node` interface, and `node(id:)`/`nodes(ids:)` on Query to refetch any
//! object by the global `id` it was served with ([`super::ids`]).
//!
//! Each domain declares its refetchable types in its own `mod.rs`, one line
//! each, in a macro named `nodes!`:
//!
//! ```ignore
//! macro_rules! nodes {
//!     ($($gathered:tt)*) => {
//!         crate::graphql::node::node_types! { $($gathered)*
//!             Place(crate::places::types::Place) = crate::places::policy::Places;
//!             Review(crate::places::types::Review) = crate::places::policy::Reviews;
//!         }
//!     };
//! }
//! pub(crate) use nodes;
//! ```
//!
//! A line gives the interface its variant, the id's type name, and the
//! fetch through the type's [`Policy`], so `node` shows exactly the rows the
//! type's own lookup shows (RLS applies underneath as everywhere).
//!
//! Why a macro in each domain and not a list here: async-graphql's
//! interfaces are closed enums (`#[derive(Interface)]` takes its possible
//! types from the enum's variants, and an object cannot join an interface
//! from elsewhere), so the variants must all be written in one enum. A
//! `macro_rules!` cannot expand another macro into its input, so the lines
//! are gathered by callbacks: `node_types!` is started with every domain's
//! name (`crate::domain::each_domain!`), calls the first domain's `nodes!`
//! with the domains left, which calls `node_types!` back with its lines
//! appended, and so on; with no domain left, `node_types!` declares the
//! enum, [`TYPES`] and the fetch from all the lines. A new refetchable type
//! is a line in its domain's `nodes!`; nothing here changes.

use async_graphql::{Context, ID, Interface, Object};

use crate::graphql::ids::GlobalId;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, Iterable, ModelTrait, PrimaryKeyToColumn, QueryFilter};

use crate::auth::{Viewer, ownership};
use crate::domain::resolve::KeyFromId;
use crate::domain::{Model, Policy, PrimaryKey};
use crate::error::{ApiError, ApiResult};
use crate::graphql::ContextExt;
use crate::graphql::ids;

/// The most ids one `nodes` call takes, like a page.
pub const MAX_NODES: usize = 100;

/// Builds the `Node` interface from the domains' declarations, in two
/// steps:
///
/// 1. Gathering: `node_types! { [accounts places ...] }` asks the first
///    domain's `nodes!`, which calls `node_types!` back with the domains
///    left and its own lines appended; when no domain is left, every line
///    has been gathered.
/// 2. Declaring: from the lines, one each,
///    `Variant(GraphQL type) = policy [=> async fn(db, rows) -> ApiResult<Vec<type>>];`,
///    the interface, [`TYPES`] and the fetch. The variant's name is the
///    GraphQL type's name and the type half of its global ids (checked
///    against the policy's [`Policy::TYPE`] at compile time). Rows become
///    objects through `From<Model>` unless a builder is named (a type whose
///    fields need more than its row, in one statement for all of them).
macro_rules! node_types {
    // The start: the domains, as `crate::domain::each_domain!` lists them.
    ($($domain:ident)*) => {
        node_types! { [$($domain)*] }
    };
    // Gathering: the next domain appends its lines and calls back.
    ([$domain:ident $($domains:ident)*] $($lines:tt)*) => {
        crate::$domain::nodes! { [$($domains)*] $($lines)* }
    };
    // Declaring: every domain's lines are here.
    ([] $( $variant:ident($($ty:tt)+) = $policy:ty $(=> $build:path)? ;)*) => {
        /// An object with a globally unique `id`: refetch it with `node(id:)`.
        #[derive(Interface)]
        #[graphql(field(
            name = "id",
            ty = "&GlobalId",
            desc = "Globally unique opaque id: the same object always has the same id, no two objects share one."
        ))]
        pub enum Node {
            $( $variant($($ty)+), )*
        }

        /// The GraphQL type names that have global ids.
        pub const TYPES: &[&str] = &[$( stringify!($variant) ),*];

        $(
            const _: () = assert!(
                crate::graphql::ids::same(<$policy as Policy>::TYPE, stringify!($variant)),
                concat!("the policy of ", stringify!($variant), " names another TYPE"),
            );
        )*

        /// Fills `out[i]` with the object `asked` names at `i` where the
        /// viewer may see it: one statement per type asked (plus a
        /// builder's).
        async fn fetch_all(
            db: &impl ConnectionTrait,
            viewer: &Viewer,
            field: &'static str,
            asked: &[(usize, &'static str, String)],
            out: &mut [Option<Node>],
        ) -> ApiResult<()> {
            $(
                let keys = asked
                    .iter()
                    .filter(|(_, type_name, _)| *type_name == stringify!($variant))
                    .map(|(i, _, raw)| Ok((*i, PrimaryKey::<$policy>::from_raw(field, raw)?)))
                    .collect::<ApiResult<Vec<_>>>()?;
                if !keys.is_empty() {
                    let (at, rows): (Vec<usize>, Vec<_>) = visible::<$policy>(db, viewer, keys).await?.into_iter().unzip();
                    let objects: Vec<$($ty)+> = node_types!(@build $($build)?)(db, rows).await?;
                    for (i, object) in at.into_iter().zip(objects) {
                        out[i] = Some(Node::$variant(object));
                    }
                }
            )*
            Ok(())
        }
    };
    (@build) => { from_rows };
    (@build $build:path) => { $build };
}

pub(crate) use node_types;

crate::domain::each_domain!(node_types);

async fn from_rows<M, T: From<M>>(_db: &impl ConnectionTrait, rows: Vec<M>) -> ApiResult<Vec<T>> {
    Ok(rows.into_iter().map(T::from).collect())
}

/// The rows of these keys the viewer may see, each with the position it
/// was asked at, in one statement.
async fn visible<P: Policy>(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    keys: Vec<(usize, PrimaryKey<P>)>,
) -> ApiResult<Vec<(usize, Model<P>)>>
where
    PrimaryKey<P>: Into<sea_orm::Value> + Clone,
    Model<P>: Clone,
{
    let Some(key) = <P::Entity as EntityTrait>::PrimaryKey::iter().next() else {
        return Err(ApiError::internal(format!("the {} table has no key", P::NAME)));
    };
    let column = key.into_column();
    let condition = P::visible_to(viewer);
    if condition == ownership::nothing() {
        // No row, without asking: the anonymous role may not even read
        // some tables (a FORBIDDEN that would abort the transaction), and a
        // row it cannot see is null here like any other.
        return Ok(Vec::new());
    }
    let rows =
        P::Entity::find().filter(column.is_in(keys.iter().map(|(_, k)| k.clone()))).filter(condition).all(db).await?;
    Ok(keys
        .into_iter()
        .filter_map(|(i, k)| {
            let k: sea_orm::Value = k.into();
            rows.iter().find(|row| row.get(column) == k).map(|row| (i, row.clone()))
        })
        .collect())
}

/// The type and raw key of a global id argument; a raw key alone names no
/// type, so it is BAD_USER_INPUT here.
fn parse(field: &'static str, id: &ID) -> ApiResult<(&'static str, String)> {
    ids::decode(id.as_str())
        .ok_or_else(|| ApiError::bad_input(field, format!("{field} is not a valid id (pass an object's `id`)")))
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// The object with this global `id`, or null if there is none the viewer
    /// may see (as each type's own lookup). A malformed id is
    /// BAD_USER_INPUT.
    #[graphql(complexity = "crate::graphql::cost::one(child_complexity)")]
    async fn node(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Node>> {
        let (type_name, raw) = parse("id", &id)?;
        let viewer = ctx.viewer()?;
        let tx = ctx.tx().await?;
        let mut out = [None];
        fetch_all(&*tx, &viewer, "id", &[(0, type_name, raw)], &mut out).await?;
        let [node] = out;
        Ok(node)
    }

    /// The objects with these global ids, in the order asked: null where
    /// there is none the viewer may see. At most 100 ids; one statement per
    /// type asked, not per id.
    #[graphql(complexity = "crate::graphql::cost::nodes(ids.len(), child_complexity)")]
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> ApiResult<Vec<Option<Node>>> {
        if ids.len() > MAX_NODES {
            return Err(ApiError::bad_input("ids", format!("ids takes at most {MAX_NODES} ids, not {}", ids.len())));
        }
        let asked = ids
            .iter()
            .enumerate()
            .map(|(i, id)| parse("ids", id).map(|(type_name, raw)| (i, type_name, raw)))
            .collect::<ApiResult<Vec<_>>>()?;
        let viewer = ctx.viewer()?;
        let tx = ctx.tx().await?;
        let mut out: Vec<Option<Node>> = std::iter::repeat_with(|| None).take(ids.len()).collect();
        fetch_all(&*tx, &viewer, "ids", &asked, &mut out).await?;
        Ok(out)
    }
}
