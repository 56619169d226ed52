//! Checks on a whole document, made once it is parsed and before anything
//! runs, so a hostile document costs a parse and no database work:
//! - its cost and depth ([`super::cost`]) against the limits, with codes
//!   that say which limit and by how much (`QUERY_TOO_EXPENSIVE`; depth
//!   keeps its older code, `QUERY_TOO_COMPLEX`, which clients may branch on);
//! - how many root fields a mutation has (`TOO_MANY_MUTATION_FIELDS`): each
//!   is a write in one all-or-nothing transaction, so one request could
//!   otherwise hold row locks for as long as it likes;
//! - a NUL character in any argument or variable (BAD_USER_INPUT naming the
//!   field): PostgreSQL refuses 0x00 in `text` and `jsonb`, and checking
//!   here covers every argument of every resolver at once.
//!
//! [`operation_name`] names the operation a request runs, for logs and
//! metric labels, from the parsed document: a client-chosen `operationName`
//! that names no operation never becomes a label.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextValidation,
};
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
        Arc::new(GuardExtension { limits: self.0, requested: Mutex::default() })
    }
}

/// One per request (async-graphql creates one for each).
struct GuardExtension {
    limits: Limits,
    /// The request's `operationName`, kept from `prepare_request` (the
    /// parse hook does not see it).
    requested: Mutex<Option<String>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for GuardExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        (*self.requested.lock().unwrap_or_else(PoisonError::into_inner)).clone_from(&request.operation_name);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let requested = self.requested.lock().unwrap_or_else(PoisonError::into_inner).take();
        let selected = select_operation(&document, requested.as_deref());
        check_no_nul(&document, variables)?;
        if let Some((_, operation)) = selected
            && operation.node.ty == OperationType::Mutation
        {
            let limit = self.limits.max_mutation_fields;
            let count = root_fields(&document, &operation.node.selection_set.node, limit + 1, &mut Vec::new());
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
        }
        Ok(document)
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

/// Root fields of `set`, through fragments, counting up to `stop` (enough
/// to know the limit is passed; it also bounds the walk). A fragment that
/// spreads itself is counted once on its path (validation reports the cycle).
fn root_fields<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    stop: usize,
    path: &mut Vec<&'a str>,
) -> usize {
    let mut count = 0;
    for item in &set.items {
        if count >= stop {
            break;
        }
        count += match &item.node {
            Selection::Field(field) => usize::from(field.node.name.node.as_str() != "__typename"),
            Selection::InlineFragment(inline) => {
                root_fields(document, &inline.node.selection_set.node, stop - count, path)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                match document.fragments.get(name) {
                    Some(fragment) if !path.contains(&name) => {
                        path.push(name);
                        let n = root_fields(document, &fragment.node.selection_set.node, stop - count, path);
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
        check_selection(&operation.node.selection_set.node, &mut HashSet::new(), document)?;
    }
    for fragment in document.fragments.values() {
        check_selection(&fragment.node.selection_set.node, &mut HashSet::new(), document)?;
    }
    Ok(())
}

fn check_selection<'a>(
    set: &'a SelectionSet,
    seen: &mut HashSet<*const SelectionSet>,
    document: &'a ExecutableDocument,
) -> ServerResult<()> {
    if !seen.insert(std::ptr::from_ref(set)) {
        return Ok(());
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                for (name, value) in &field.node.arguments {
                    if let Some(found) = nul_in_value(name.node.as_str(), &value.node) {
                        return Err(nul_error(&found, Some(value.pos)));
                    }
                }
                check_selection(&field.node.selection_set.node, seen, document)?;
            }
            Selection::InlineFragment(inline) => check_selection(&inline.node.selection_set.node, seen, document)?,
            // Fragments are checked once each, by check_no_nul.
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
