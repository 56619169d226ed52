//! Objects whose fields are resolved inline: [`Inline`] wraps an object
//! type and resolves the fields a client selected as one future, where
//! async-graphql's own objects box a future per selected field, run them
//! in a `FuturesUnordered` and build their answer in an `IndexMap` grown
//! one field at a time. Most fields are read from a struct and never
//! wait; for them that machinery was most of their cost (issue 11: pages'
//! edges and nodes resolved inline take 9 % off the instructions of a
//! request for 20 places, 6 % off one for 20 reviews).
//!
//! What it keeps from async-graphql ([`resolve_container`]): each field is
//! resolved by the type's own `resolve_field` (arguments, guards, errors
//! and their paths, complex fields are unchanged); fragments apply by the
//! same type conditions; `__typename`; a response key selected twice is
//! merged; an error in a field is reported and the field left out. Fields
//! that do wait (a loader's) still run concurrently with their siblings:
//! the fields are joined, not awaited one after another. A custom
//! directive on a field may wrap its resolution, which only
//! [`resolve_container`] knows how to do: such a selection falls back to
//! it as a whole.
//!
//! What it does not do: call schema extensions' `resolve` hooks.
//! async-graphql keeps whether a schema has extensions to itself
//! (`Extensions::is_empty` is crate-private), so this cannot fall back for
//! them; the one extension of this schema ([`super::guard`]) hooks no
//! field, and [`super::build_schema`] says so where extensions are added.
//!
//! Only `resolve` is ours: the schema sees the wrapped type (its name, its
//! fields, its interfaces), so `schema.graphql` does not change.

use std::borrow::Cow;
use std::ops::Deref;

use async_graphql::indexmap::IndexMap;
use async_graphql::indexmap::map::Entry;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::resolve_container;
use async_graphql::{ContextSelectionSet, Name, ObjectType, OutputType, Positioned, ServerError, ServerResult, Value};
use futures_util::future::join_all;

/// The object `T` points to, for the schema; resolved inline (the
/// module's doc says how). `T` is a reference to an object type, or any
/// other pointer to one (`Inline(&edge.node)`, `Inline(Cow<Place>)`).
/// Objects only (`ObjectType`): an interface or a union answers for
/// fields of its own only. Not for a `#[graphql(serial)]` object either,
/// whose fields must run one after another (the mutation root).
pub struct Inline<T>(pub T);

impl<T> OutputType for Inline<T>
where
    T: Deref + Send + Sync,
    T::Target: ObjectType,
{
    fn type_name() -> Cow<'static, str> {
        T::Target::type_name()
    }

    fn qualified_type_name() -> String {
        T::Target::qualified_type_name()
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        self.0.introspection_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::Target::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, _field: &Positioned<Field>) -> ServerResult<Value> {
        resolve_inline(ctx, &*self.0).await
    }
}

/// Resolves `root`'s selected fields, as [`resolve_container`] would
/// (the module's doc says what is kept), with one future for them all.
async fn resolve_inline<T: ObjectType + ?Sized>(ctx: &ContextSelectionSet<'_>, root: &T) -> ServerResult<Value> {
    // Sized for a selection without fragments, the usual one.
    let mut selected = Vec::with_capacity(ctx.item.node.items.len());
    if !select(ctx, ctx.item, root, &mut selected)? {
        return resolve_container(ctx, root).await;
    }
    // `__typename` is answered here, every other field by `root`. A field's
    // error is reported as it ends, before those of fields that end later
    // (nested ones included), as async-graphql reports them.
    let resolve = async |field| match root.resolve_field(&ctx.with_field(field)).await {
        Ok(value) => Some(value.unwrap_or_default()),
        Err(error) => {
            ctx.add_error(error);
            None
        }
    };
    // Of known length, so `join_all` allocates its futures' slice at its
    // size: from a filter it grew a `Vec` and reallocated it to fit (a copy
    // of every future; 3 % of a page of reviews).
    let fields: Cow<[&Positioned<Field>]> = if selected.iter().any(|field| is_typename(field)) {
        Cow::Owned(selected.iter().copied().filter(|field| !is_typename(field)).collect())
    } else {
        Cow::Borrowed(&selected)
    };
    let (one, many) = match fields.as_ref() {
        // The usual edge (`edges { node { … } }`): nothing to join.
        [field] => (Some(resolve(field).await), Vec::new()),
        fields => (None, join_all(fields.iter().copied().map(resolve)).await),
    };
    let mut resolved = one.into_iter().chain(many);

    let mut object = IndexMap::with_capacity(selected.len());
    for field in selected {
        let value = if is_typename(field) {
            Value::String(root.introspection_type_name().into_owned())
        } else {
            // One result per field other than `__typename`; none for a
            // field that failed, which is left out.
            let Some(Some(value)) = resolved.next() else { continue };
            value
        };
        insert(&mut object, field.node.response_key().node.clone(), value);
    }
    Ok(if object.is_empty() { Value::Null } else { Value::Object(object) })
}

fn is_typename(field: &Positioned<Field>) -> bool {
    field.node.name.node == "__typename"
}

/// Adds the fields of `selection_set` that apply to `root` to `selected`,
/// fragments expanded, in document order. False if a field carries a
/// directive (`@skip` and `@include` are gone by now: async-graphql
/// applies them before it executes; any other is custom and may wrap the
/// field's resolution, which only [`resolve_container`] knows how to do).
fn select<'a, T: ObjectType + ?Sized>(
    ctx: &ContextSelectionSet<'a>,
    selection_set: &'a Positioned<SelectionSet>,
    root: &T,
    selected: &mut Vec<&'a Positioned<Field>>,
) -> ServerResult<bool> {
    for selection in &selection_set.node.items {
        let (condition, fragment) = match &selection.node {
            Selection::Field(field) => {
                if !field.node.directives.is_empty() {
                    return Ok(false);
                }
                selected.push(field);
                continue;
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                let Some(fragment) = ctx.query_env.fragments.get(name) else {
                    return Err(ServerError::new(format!(r#"Unknown fragment "{name}"."#), Some(spread.pos)));
                };
                (Some(&fragment.node.type_condition), &fragment.node.selection_set)
            }
            Selection::InlineFragment(fragment) => {
                (fragment.node.type_condition.as_ref(), &fragment.node.selection_set)
            }
        };
        if applies(ctx, condition.map(|condition| condition.node.on.node.as_str()), root)
            && !select(ctx, fragment, root, selected)?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a fragment on `condition` applies to `root`: none, `root`'s own
/// type, or an interface it implements (async-graphql's rule for an
/// object in `Fields::add_set`).
fn applies<T: ObjectType + ?Sized>(ctx: &ContextSelectionSet<'_>, condition: Option<&str>, root: &T) -> bool {
    let Some(condition) = condition else { return true };
    let name = root.introspection_type_name();
    name == condition
        || T::type_name() == condition
        || ctx
            .schema_env
            .registry
            .implements
            .get(name.as_ref())
            .is_some_and(|interfaces| interfaces.contains(condition))
}

/// Adds a field's value under its response key; a key selected twice
/// (`a: place { name } a: place { rating }`) merges its objects, and its
/// lists' objects item by item, as async-graphql's `insert_value` does.
/// One lookup of the key (async-graphql's looks it up, then inserts).
fn insert(target: &mut IndexMap<Name, Value>, key: Name, value: Value) {
    let mut previous = match target.entry(key) {
        Entry::Vacant(entry) => {
            entry.insert(value);
            return;
        }
        Entry::Occupied(entry) => entry,
    };
    match (previous.get_mut(), value) {
        (Value::Object(previous), Value::Object(object)) => {
            for (key, value) in object {
                insert(previous, key, value);
            }
        }
        (Value::List(previous), Value::List(list)) => {
            for (previous, value) in previous.iter_mut().zip(list) {
                if let (Value::Object(previous), Value::Object(object)) = (previous, value) {
                    for (key, value) in object {
                        insert(previous, key, value);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{
        Context, EmptyMutation, EmptySubscription, Interface, Object, Schema, SimpleObject, ValidationMode,
    };

    use super::Inline;

    /// One object resolved both ways: `theirs` by async-graphql, `inline`
    /// through [`Inline`].
    #[derive(SimpleObject)]
    #[graphql(complex)]
    struct Thing {
        id: i32,
        name: String,
        child: Option<Box<Thing>>,
    }

    #[async_graphql::ComplexObject]
    impl Thing {
        /// Waits before it answers, as a loader's field does.
        async fn later(&self) -> i32 {
            tokio::task::yield_now().await;
            self.id * 10
        }

        async fn fails(&self) -> async_graphql::Result<Option<i32>> {
            Err("nullable field failed".into())
        }

        async fn must(&self) -> async_graphql::Result<i32> {
            Err("non-null field failed".into())
        }

        async fn echo(&self, ctx: &Context<'_>, text: String) -> String {
            let _ = ctx;
            format!("{}:{text}", self.name)
        }
    }

    #[derive(Interface)]
    #[graphql(field(name = "id", ty = "&i32"))]
    enum Named {
        Thing(Thing),
    }

    struct Query(Thing);

    #[Object]
    impl Query {
        async fn theirs(&self) -> &Thing {
            &self.0
        }

        async fn inline(&self) -> Inline<&Thing> {
            Inline(&self.0)
        }

        async fn inline_list(&self) -> Vec<Inline<&Thing>> {
            vec![Inline(&self.0), Inline(&self.0)]
        }

        async fn theirs_list(&self) -> Vec<&Thing> {
            vec![&self.0, &self.0]
        }

        async fn unused(&self) -> Option<Named> {
            None
        }
    }

    /// Fast validation lets through what only execution refuses (a
    /// fragment spread where it cannot apply, an unknown fragment).
    fn schema(mode: ValidationMode) -> Schema<Query, EmptyMutation, EmptySubscription> {
        let child = Thing { id: 2, name: "child".into(), child: None };
        let thing = Thing { id: 1, name: "thing".into(), child: Some(Box::new(child)) };
        Schema::build(Query(thing), EmptyMutation, EmptySubscription).validation_mode(mode).finish()
    }

    /// The response to `{ <root> <selection> }` plus `fragments`, as JSON
    /// text (data, errors, their paths and locations), with `inline`
    /// written as `theirs`: the names are as long, so locations agree.
    async fn answer(mode: ValidationMode, root: &str, selection: &str, fragments: &str) -> String {
        let response = schema(mode).execute(format!("{{ {root} {selection} }} {fragments}")).await;
        serde_json::to_string(&response).expect("a response as JSON").replace("inline", "theirs")
    }

    /// `answer` as a value: objects compare whatever their keys' order.
    /// async-graphql orders an object's keys as its fields finish (the HTTP
    /// layer puts them back in the document's order: `http::order`).
    fn value(answer: &str) -> serde_json::Value {
        serde_json::from_str(answer).expect("JSON")
    }

    #[tokio::test]
    async fn an_inline_object_answers_every_selection_as_async_graphql_does() {
        let cases = [
            ("{ id name }", ""),
            ("{ __typename name id __typename }", ""),
            ("{ a: name b: id a: name }", ""),
            ("{ child { name } child { id later } }", ""),
            ("{ later id later2: later name }", ""),
            (
                "{ ... on Thing { name } ... on Named { id } ... { later } ...F }",
                "fragment F on Thing { id child { ...G } } fragment G on Named { id }",
            ),
            ("{ id @skip(if: true) name @include(if: true) later @include(if: false) }", ""),
            ("{ id @unknown name }", ""),
            ("{ ... on Named { id } name }", ""),
            ("{ ...G name }", "fragment G on Named { id }"),
            ("{ ... on Query { name } id }", ""),
            ("{ ...Missing id }", ""),
            ("{ id fails name }", ""),
            ("{ id must name }", ""),
            ("{ echo(text: \"hi\") e2: echo(text: \"ho\") }", ""),
            ("{ child { must } name }", ""),
            ("{ fails child { must } }", ""),
            ("{ child { must } fails }", ""),
            ("{ later fails child { fails must } must }", ""),
        ];
        let mut answered = 0;
        for (selection, fragments) in cases {
            for mode in [ValidationMode::Strict, ValidationMode::Fast] {
                for (inline, theirs) in [("inline", "theirs"), ("inlineList", "theirsList")] {
                    let expected = answer(mode, theirs, selection, fragments).await;
                    let inlined = answer(mode, inline, selection, fragments).await;
                    assert_eq!(value(&inlined), value(&expected), "{inline} {selection}: {inlined}");
                    answered += usize::from(expected.contains(r#""data":{"#));
                }
            }
        }
        // Not every case is refused by validation: most reach execution.
        assert!(answered >= 62, "{answered} answers with data");
    }

    #[tokio::test]
    async fn an_inline_object_keeps_the_documents_order_when_a_field_waits() {
        let inlined = answer(ValidationMode::Strict, "inline", "{ later id later2: later name }", "").await;
        assert_eq!(inlined, r#"{"data":{"theirs":{"later":10,"id":1,"later2":10,"name":"thing"}}}"#);
    }
}
