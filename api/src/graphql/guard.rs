//! Checks on a whole document, made once it is parsed and before anything
//! runs, so a hostile document costs a parse and no database work:
//! - how many fields it has once its fragments are expanded, in one pass,
//!   before async-graphql expands them (see [`expanded_fields`]);
//! - its cost and depth ([`super::cost`]) against the limits, with codes
//!   that say which limit and by how much (`QUERY_TOO_EXPENSIVE`; depth
//!   keeps its older code, `QUERY_TOO_COMPLEX`, which clients may branch on);
//! - how many root fields a mutation has (`TOO_MANY_MUTATION_FIELDS`): each
//!   is a write in one all-or-nothing transaction, so one request could
//!   otherwise hold row locks for as long as it likes; and at most one of
//!   them signs up or in ([`crate::accounts::ONE_PER_DOCUMENT`]): aliases
//!   would otherwise make one request 40 sign-ups or 40 password guesses;
//! - a NUL character in any argument or variable (BAD_USER_INPUT naming the
//!   field): PostgreSQL refuses 0x00 in `text` and `jsonb`, and checking
//!   here covers every argument of every resolver at once.
//!
//! [`operation_name`] names the operation a request runs, for logs and
//! metric labels, from the parsed document: a client-chosen `operationName`
//! that names no operation never becomes a label.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextValidation};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{
    ErrorExtensionValues, Name, Pos, Positioned, Request, ServerError, ServerResult, ValidationResult, Variables,
};
use async_graphql_value::{ConstValue, Value};

use super::Limits;

/// The longest operation name kept for logs and metric labels. GraphQL
/// names have no length limit; labels must.
pub const MAX_OPERATION_NAME: usize = 64;

/// The extension's factory, given to the schema builder.
pub struct Guard(pub Limits);

impl ExtensionFactory for Guard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GuardExtension { limits: self.0 })
    }
}

/// One per request (async-graphql creates one for each).
struct GuardExtension {
    limits: Limits,
}

#[async_graphql::async_trait::async_trait]
impl Extension for GuardExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let mut request = request;
        // Parsed here (the request keeps the document, so async-graphql
        // does not parse it again), because async-graphql's first check of
        // a parsed document already expands fragments: see expanded_fields.
        // A document that does not parse is left to async-graphql to report.
        let requested = request.operation_name.clone();
        let variables = std::mem::take(&mut request.variables);
        let checked = match request.parsed_query() {
            Ok(document) => self.check(document, &variables, requested.as_deref()),
            Err(_) => Ok(()),
        };
        request.variables = variables;
        checked?;
        next.run(ctx, request).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        let Limits { max_depth, max_complexity, .. } = self.limits;
        if result.depth > max_depth {
            return Err(vec![coded(
                format!("the query is nested {} levels deep; the limit is {max_depth}", result.depth),
                "QUERY_TOO_COMPLEX",
                None,
                &[("depth", result.depth), ("limit", max_depth)],
            )]);
        }
        if result.complexity > max_complexity {
            return Err(vec![coded(
                format!(
                    "the query costs {} and the limit is {max_complexity}: ask for smaller pages \
                     (first, limit), fewer aliases or fewer nested lists",
                    result.complexity
                ),
                "QUERY_TOO_EXPENSIVE",
                None,
                &[("cost", result.complexity), ("limit", max_complexity)],
            )]);
        }
        Ok(result)
    }
}

impl GuardExtension {
    /// Every check of the parsed document but cost and depth (which need
    /// async-graphql's validation): fields once fragments are expanded, a
    /// NUL in any input, the root fields of a mutation.
    fn check(&self, document: &ExecutableDocument, variables: &Variables, requested: Option<&str>) -> ServerResult<()> {
        let limit = self.limits.max_complexity;
        let fields = expanded_fields(document, limit);
        if fields == usize::MAX {
            return Err(coded(
                format!(
                    "the query is nested more than {MAX_NESTING} levels deep; the limit is {}",
                    self.limits.max_depth
                ),
                "QUERY_TOO_COMPLEX",
                None,
                &[("limit", self.limits.max_depth)],
            ));
        }
        if fields > limit {
            return Err(coded(
                format!("the query has more than {limit} fields once its fragments are expanded; the limit is {limit}"),
                "QUERY_TOO_EXPENSIVE",
                None,
                &[("limit", limit)],
            ));
        }
        check_no_nul(document, variables)?;
        if let Some((_, operation)) = select_operation(document, requested)
            && operation.node.ty == OperationType::Mutation
        {
            let limit = self.limits.max_mutation_fields;
            let set = &operation.node.selection_set.node;
            let any_field = |name: &str| name != "__typename";
            let count = root_fields(document, set, limit.saturating_add(1), any_field, &mut Vec::new());
            if count > limit {
                return Err(coded(
                    format!(
                        "this mutation has more than {limit} fields; send at most {limit} per document \
                         (MAX_MUTATION_FIELDS)"
                    ),
                    "TOO_MANY_MUTATION_FIELDS",
                    Some(operation.pos),
                    &[("limit", limit)],
                ));
            }
            let signs_in = |name: &str| crate::accounts::ONE_PER_DOCUMENT.contains(&name);
            if root_fields(document, set, 2, signs_in, &mut Vec::new()) > 1 {
                let err: async_graphql::Error = crate::error::ApiError::bad_input(
                    "signIn",
                    "a request may have at most one signUp or signIn field: send each in a request of its own",
                )
                .into();
                return Err(err.into_server_error(operation.pos));
            }
        }
        Ok(())
    }
}

/// A pre-execution error with its code and numbers in `extensions`.
fn coded(message: String, code: &str, pos: Option<Pos>, numbers: &[(&str, usize)]) -> ServerError {
    let mut error = ServerError::new(message, pos);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    for (name, value) in numbers {
        extensions.set(*name, u64::try_from(*value).unwrap_or(u64::MAX));
    }
    error.extensions = Some(extensions);
    error
}

/// `name` cut to [`MAX_OPERATION_NAME`] characters.
pub fn shorten(name: &str) -> String {
    name.chars().take(MAX_OPERATION_NAME).collect()
}

/// The name of the operation `document` runs for a request that asks for
/// `requested`: the operation of that name if the document has it, else the
/// document's only operation's name; shortened to [`MAX_OPERATION_NAME`].
/// `None` when that operation is anonymous or when no operation is selected
/// (async-graphql then answers with an error): never a name the document
/// does not have.
pub fn operation_name(document: &ExecutableDocument, requested: Option<&str>) -> Option<String> {
    select_operation(document, requested).and_then(|(name, _)| name).map(|name| shorten(name.as_str()))
}

/// The operation a request runs, by the rules async-graphql executes with.
fn select_operation<'a>(
    document: &'a ExecutableDocument,
    requested: Option<&str>,
) -> Option<(Option<&'a Name>, &'a Positioned<OperationDefinition>)> {
    match (&document.operations, requested) {
        (DocumentOperations::Single(operation), None) => Some((None, operation)),
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Multiple(operations), Some(requested)) => {
            operations.get_key_value(requested).map(|(name, operation)| (Some(name), operation))
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.iter().next().map(|(name, operation)| (Some(name), operation))
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Nesting (fields and fragments) [`expanded_fields`] walks at most, so
/// the walk cannot overflow the stack on a chain of thousands of fragments.
/// Deeper counts as `usize::MAX` fields and is refused as too deep:
/// async-graphql refuses anything nested past 32 levels anyway. (Counting it
/// as none instead could record a fragment first met deep down as empty and
/// let it through elsewhere.)
const MAX_NESTING: usize = 64;

/// The fields of every operation of `document` with its fragments
/// expanded, counted up to just past `stop`. async-graphql walks the
/// expanded document (its recursion-depth check after parsing, then cost
/// and depth), so a "fragment bomb" (each fragment spreading the next twice:
/// 30 short lines, 2^30 fields) would take minutes of CPU before any limit
/// could refuse it. This count takes one pass over the document (each
/// fragment's size is worked out once) and runs first. Every field costs at
/// least one point when it runs, so the cost limit bounds it too.
fn expanded_fields(document: &ExecutableDocument, stop: usize) -> usize {
    fn size<'a>(
        document: &'a ExecutableDocument,
        set: &'a SelectionSet,
        sizes: &mut HashMap<&'a str, usize>,
        open: &mut Vec<&'a str>,
        nesting: usize,
    ) -> usize {
        if nesting > MAX_NESTING {
            return usize::MAX;
        }
        let nesting = nesting + 1;
        let mut total = 0usize;
        for item in &set.items {
            let n = match &item.node {
                Selection::Field(field) => {
                    1usize.saturating_add(size(document, &field.node.selection_set.node, sizes, open, nesting))
                }
                Selection::InlineFragment(inline) => {
                    size(document, &inline.node.selection_set.node, sizes, open, nesting)
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if let Some(known) = sizes.get(name) {
                        *known
                    } else if open.contains(&name) {
                        0 // a cycle: validation refuses it
                    } else if let Some(fragment) = document.fragments.get(name) {
                        open.push(name);
                        let n = size(document, &fragment.node.selection_set.node, sizes, open, nesting);
                        open.pop();
                        sizes.insert(name, n);
                        n
                    } else {
                        0 // unknown: validation refuses it
                    }
                }
            };
            total = total.saturating_add(n);
        }
        total
    }
    let mut sizes = HashMap::new();
    let mut total = 0usize;
    for (_, operation) in document.operations.iter() {
        total =
            total.saturating_add(size(document, &operation.node.selection_set.node, &mut sizes, &mut Vec::new(), 0));
        if total > stop {
            break;
        }
    }
    total
}

/// Root fields of `set`, through fragments, counting up to `stop` (enough
/// to know the limit is passed; it also bounds the walk). A fragment that
/// spreads itself is counted once on its path (validation reports the cycle).
fn root_fields<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    stop: usize,
    counts: impl Fn(&str) -> bool + Copy,
    path: &mut Vec<&'a str>,
) -> usize {
    let mut count = 0;
    for item in &set.items {
        if count >= stop {
            break;
        }
        count += match &item.node {
            Selection::Field(field) => usize::from(counts(field.node.name.node.as_str())),
            Selection::InlineFragment(inline) => {
                root_fields(document, &inline.node.selection_set.node, stop - count, counts, path)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                match document.fragments.get(name) {
                    Some(fragment) if !path.contains(&name) => {
                        path.push(name);
                        let n = root_fields(document, &fragment.node.selection_set.node, stop - count, counts, path);
                        path.pop();
                        n
                    }
                    _ => 0,
                }
            }
        };
    }
    count
}

/// BAD_USER_INPUT for the first NUL character in a variable, an argument or
/// a variable's default value, naming the innermost input field (or the
/// argument, or the variable).
fn check_no_nul(document: &ExecutableDocument, variables: &Variables) -> ServerResult<()> {
    for (name, value) in variables.iter() {
        if let Some(field) = nul_in_const(name.as_str(), value) {
            return Err(nul_error(&field, None));
        }
    }
    for (_, operation) in document.operations.iter() {
        for definition in &operation.node.variable_definitions {
            if let Some(default) = &definition.node.default_value
                && let Some(field) = nul_in_const(definition.node.name.node.as_str(), &default.node)
            {
                return Err(nul_error(&field, Some(default.pos)));
            }
        }
        check_selection(&operation.node.selection_set.node)?;
    }
    for fragment in document.fragments.values() {
        check_selection(&fragment.node.selection_set.node)?;
    }
    Ok(())
}

/// [`check_no_nul`] for the arguments of one selection set and those it
/// nests (fragment definitions are checked once each, on their own).
fn check_selection(set: &SelectionSet) -> ServerResult<()> {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                for (name, value) in &field.node.arguments {
                    if let Some(found) = nul_in_value(name.node.as_str(), &value.node) {
                        return Err(nul_error(&found, Some(value.pos)));
                    }
                }
                check_selection(&field.node.selection_set.node)?;
            }
            Selection::InlineFragment(inline) => check_selection(&inline.node.selection_set.node)?,
            Selection::FragmentSpread(_) => {}
        }
    }
    Ok(())
}

/// The innermost field name whose value (or key) holds a NUL, if any, in
/// an argument as written (variables are checked on their own).
fn nul_in_value(field: &str, value: &Value) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then(|| field.to_owned()),
        Value::List(items) => items.iter().find_map(|item| nul_in_value(field, item)),
        Value::Object(fields) => fields.iter().find_map(|(key, value)| {
            if key.contains('\0') { Some(field.to_owned()) } else { nul_in_value(key.as_str(), value) }
        }),
        _ => None,
    }
}

/// [`nul_in_value`] for a variable's value or default.
fn nul_in_const(field: &str, value: &ConstValue) -> Option<String> {
    match value {
        ConstValue::String(text) => text.contains('\0').then(|| field.to_owned()),
        ConstValue::List(items) => items.iter().find_map(|item| nul_in_const(field, item)),
        ConstValue::Object(fields) => fields.iter().find_map(|(key, value)| {
            if key.contains('\0') { Some(field.to_owned()) } else { nul_in_const(key.as_str(), value) }
        }),
        _ => None,
    }
}

fn nul_error(field: &str, pos: Option<Pos>) -> ServerError {
    let field = shorten(field);
    let mut error = ServerError::new(format!("{field} must not contain a NUL character (\\u0000)"), pos);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", "BAD_USER_INPUT");
    extensions.set("field", field);
    error.extensions = Some(extensions);
    error
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn mutation_fields(query: &str, stop: usize) -> usize {
        let document = parse_query(query).unwrap_or_else(|e| panic!("{e}"));
        let Some((_, operation)) = select_operation(&document, None) else { panic!("one operation") };
        root_fields(&document, &operation.node.selection_set.node, stop, |name| name != "__typename", &mut Vec::new())
    }

    #[test]
    fn root_fields_count_through_fragments_and_stop_on_cycles() {
        let query = "mutation { a: deletePost(id: 1) { id } ...F ... on Mutation { c: deletePost(id: 3) { id } } }
                     fragment F on Mutation { b: deletePost(id: 2) { id } __typename ...F }";
        assert_eq!(mutation_fields(query, 100), 3, "a cycle is counted once, __typename not at all");
    }

    #[test]
    fn root_fields_stop_counting_past_the_limit_even_for_exponential_fragments() {
        // Each fragment spreads the next twice: 2^30 fields if expanded.
        let mut query = String::from("mutation { ...F0 }");
        for i in 0..30 {
            query.push_str(&format!(" fragment F{i} on Mutation {{ ...F{} ...F{} }}", i + 1, i + 1));
        }
        query.push_str(" fragment F30 on Mutation { deletePost(id: 1) { id } }");
        assert_eq!(mutation_fields(&query, 11), 11);
    }

    #[tokio::test]
    async fn a_fragment_bomb_is_refused_in_one_pass_before_validation_expands_it() {
        let mut query = String::from("query { ...F0 }");
        for i in 0..25 {
            query.push_str(&format!(" fragment F{i} on Query {{ ...F{} ...F{} }}", i + 1, i + 1));
        }
        query.push_str(" fragment F25 on Query { changeCursor }");
        let document = parse_query(&query).unwrap_or_else(|e| panic!("{e}"));
        assert!(expanded_fields(&document, 5000) > 5000);

        let started = std::time::Instant::now();
        let response = super::super::build_schema(Limits::default()).execute(query.as_str()).await;
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
        let code = response.errors.first().and_then(|e| e.extensions.as_ref()).and_then(|ext| ext.get("code")).cloned();
        assert_eq!(code, Some(async_graphql::Value::from("QUERY_TOO_EXPENSIVE")), "{:?}", response.errors);
    }

    #[test]
    fn expanded_fields_count_each_use_of_a_fragment() {
        let query =
            "query A { ...F ...F x: changeCursor } query B { ...F } fragment F on Query { changeCursor me { id } }";
        let document = parse_query(query).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(expanded_fields(&document, 100), 3 * 3 + 1);
    }
}
