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
//! It also keeps async-graphql's validation results of the documents it
//! has seen pass ([`Validated`]), so a document sent again skips the rules;
//! such a request skips the extension too ([`Guard::validated_before`],
//! [`super::AppSchema`]).
//!
//! [`operation_name`] names the operation a request runs, for logs and
//! metric labels, from the parsed document: a client-chosen `operationName`
//! that names no operation never becomes a label.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest, NextSubscribe,
    NextValidation,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{
    ErrorExtensionValues, Name, Pos, Positioned, Request, Response, ServerError, ServerResult, ValidationResult,
    Variables,
};
use async_graphql_value::{ConstValue, Value};
use futures_util::stream::BoxStream;
use lru::LruCache;

use super::Limits;
use crate::error::ErrorKinds;

/// The longest operation name kept for logs and metric labels. GraphQL
/// names have no length limit; labels must.
pub const MAX_OPERATION_NAME: usize = 64;

/// The extension's factory, given to the schema builder: the limits, and
/// the validation results of this schema's documents ([`Validated`]).
/// Clones share the results.
#[derive(Clone)]
pub struct Guard {
    limits: Limits,
    validated: Arc<Validated>,
}

impl Guard {
    pub fn new(limits: Limits) -> Self {
        Self { limits, validated: Arc::new(Validated::new()) }
    }

    /// Whether `request` needs neither async-graphql's validation rules
    /// nor this extension: its document parsed, passes every check of
    /// [`Guard::check`], and passed validation before (the same text,
    /// operation and, where they matter, variables: [`Validated`]) within
    /// the limits. Then nothing the extension would do for it is left but
    /// the codes of errors raised while it runs
    /// ([`crate::error::classify_after_validation`]). Any other request
    /// goes through the extension, which refuses or validates it as always.
    pub fn validated_before(&self, request: &mut Request) -> bool {
        let requested = request.operation_name.clone();
        let variables = std::mem::take(&mut request.variables);
        let checked = match request.parsed_query() {
            Ok(document) => self.check(document, &variables, requested.as_deref()).is_ok(),
            Err(_) => false,
        };
        request.variables = variables;
        if !checked {
            return false;
        }
        let Ok(document) = request.parsed_query() else { return false };
        let depends_on_variables = declares_variables(document);
        match self.validated.lookup(request, depends_on_variables) {
            Lookup::Hit(result) => self.within_limits(result).is_ok(),
            Lookup::Miss(..) | Lookup::Skip => false,
        }
    }
}

impl ExtensionFactory for Guard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GuardExtension { guard: self.clone(), lookup: Mutex::new(Lookup::Skip), kinds: ErrorKinds::default() })
    }
}

/// Whether an operation of `document` declares variables (so a validation
/// result holds for the values sent with it only: [`Validated`]).
fn declares_variables(document: &ExecutableDocument) -> bool {
    document.operations.iter().any(|(_, operation)| !operation.node.variable_definitions.is_empty())
}

/// One per request (async-graphql creates one for each).
struct GuardExtension {
    guard: Guard,
    /// What `prepare_request` found in [`Validated`] for this request, for
    /// `validation` (which async-graphql calls next, without the request).
    lookup: Mutex<Lookup>,
    /// The codes of async-graphql's own errors, run as the next link of
    /// every hook (see [`ErrorKinds`]: one extension, not two).
    kinds: ErrorKinds,
}

#[async_graphql::async_trait::async_trait]
impl Extension for GuardExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        self.kinds.request(ctx, next).await
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        self.kinds.subscribe(ctx, stream, next)
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        self.kinds.parse_query(ctx, query, variables, next).await
    }

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
            Ok(document) => self.guard.check(document, &variables, requested.as_deref()),
            Err(_) => Ok(()),
        };
        request.variables = variables;
        checked?;
        let mut request = self.kinds.prepare_request(ctx, request, next).await?;
        // Looked up on the request as async-graphql validates it (after
        // every extension's prepare_request).
        let lookup = match request.parsed_query() {
            Ok(document) => {
                let depends_on_variables = declares_variables(document);
                self.guard.validated.lookup(&request, depends_on_variables)
            }
            Err(_) => Lookup::Skip,
        };
        *self.lookup.lock().unwrap_or_else(PoisonError::into_inner) = lookup;
        Ok(request)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let lookup = std::mem::replace(&mut *self.lookup.lock().unwrap_or_else(PoisonError::into_inner), Lookup::Skip);
        let result = match lookup {
            Lookup::Hit(result) => result,
            Lookup::Miss(key, entry) => {
                // Only a document that passed every rule is kept; one that
                // failed is validated again each time it is sent.
                let result = self.kinds.validation(ctx, next).await?;
                self.guard.validated.insert(key, *entry, result);
                result
            }
            Lookup::Skip => self.kinds.validation(ctx, next).await?,
        };
        // The limits are compared on every request, cached or not.
        self.guard.within_limits(result)
    }
}

/// async-graphql's validation results (its rules, cost, depth and cache
/// control) of the documents this schema validated without an error, so a
/// document sent again is not validated again (issue 11: the ~20 rules walk
/// the whole document and allocate as they go, on every request).
///
/// What validation reads, and so what a result is kept under: the schema
/// (one cache per schema; its twin without the guard has the same types,
/// [`super::AppSchema`]), the document's text (which the document is
/// parsed from), the name of the operation to run (the value rule skips the
/// variables of the others), and the variables' values when an operation of
/// the document declares variables (the value rule checks the values that
/// arguments take from variables, and a field's cost reads `first` or `last`
/// from them). A document that declares none cannot use any without failing
/// validation, so its result holds for any variables. Nothing else is read:
/// not the viewer, the session or `@skip`/`@include` (removed after
/// validation, from the request's own copy).
///
/// Bounded like the parsed documents ([`super::documents`]): at most
/// [`super::documents::CAPACITY`] results, for texts of at most
/// [`super::documents::MAX_TEXT`] bytes and variables of at most
/// [`MAX_VARIABLES`] bytes (as JSON, roughly), least recently used first out.
/// Results keyed by variables sit in a smaller LRU of their own: a client
/// paging with fresh cursors or ids misses every time, and must not push
/// out the documents whose result holds for any variables.
///
/// The key is taken from the request as the extensions after [`Guard`]
/// hand it back, and the document is the one parsed from its `query`: this
/// holds while `Guard` is the first extension and no extension rewrites the
/// document or the request after its own `next.run` (none does; one that
/// would must move the lookup after itself).
struct Validated {
    /// Keyed by a hash of the text and operation name, for documents that
    /// declare no variables; the entry holds them, compared on every
    /// lookup, so a collision is only a miss.
    cache: Mutex<LruCache<u64, (Entry, ValidationResult)>>,
    /// The same, keyed by the variables' values too.
    with_variables: Mutex<LruCache<u64, (Entry, ValidationResult)>>,
    hasher: RandomState,
}

/// Results kept per set of variables: a quarter of the others.
const WITH_VARIABLES: usize = super::documents::CAPACITY / 4;

/// What a validation result holds for.
struct Entry {
    text: Box<str>,
    operation: Option<Box<str>>,
    /// `None` when no operation of the document declares variables.
    variables: Option<Variables>,
}

/// A request's lookup in [`Validated`]. (A document sent with many sets of
/// variables has a result for each, up to the cache's capacity.)
enum Lookup {
    /// Validated before: async-graphql's rules are not run again.
    Hit(ValidationResult),
    /// Not yet: validate, then keep the result under this key if it passed.
    Miss(u64, Box<Entry>),
    /// Not cacheable (too large, or not parsed): validate as always.
    Skip,
}

/// The largest variables a result is kept with, in bytes of their values
/// (about their JSON size). Applications send a few short values.
const MAX_VARIABLES: usize = 1024;

impl Validated {
    fn new() -> Self {
        let capacity = NonZeroUsize::new(super::documents::CAPACITY).unwrap_or(NonZeroUsize::MIN);
        let with_variables = NonZeroUsize::new(WITH_VARIABLES).unwrap_or(NonZeroUsize::MIN);
        Self {
            cache: Mutex::new(LruCache::new(capacity)),
            with_variables: Mutex::new(LruCache::new(with_variables)),
            hasher: RandomState::new(),
        }
    }

    fn lru(&self, with_variables: bool) -> &Mutex<LruCache<u64, (Entry, ValidationResult)>> {
        if with_variables { &self.with_variables } else { &self.cache }
    }

    fn lookup(&self, request: &Request, depends_on_variables: bool) -> Lookup {
        let text = request.query.as_str();
        if text.len() > super::documents::MAX_TEXT {
            return Lookup::Skip;
        }
        let operation = request.operation_name.as_deref();
        let variables = depends_on_variables.then_some(&request.variables);
        let key = {
            let mut hasher = self.hasher.build_hasher();
            (text, operation).hash(&mut hasher);
            if let Some(variables) = variables {
                for (name, value) in variables.iter() {
                    name.hash(&mut hasher);
                    hash_value(value, &mut hasher);
                }
            }
            hasher.finish()
        };
        let mut cache = self.lru(variables.is_some()).lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((entry, result)) = cache.get(&key)
            && &*entry.text == text
            && entry.operation.as_deref() == operation
            && entry.variables.as_ref() == variables
        {
            return Lookup::Hit(*result);
        }
        drop(cache);
        if variables.is_some_and(|variables| !fits(variables.values(), MAX_VARIABLES)) {
            return Lookup::Skip;
        }
        Lookup::Miss(
            key,
            Box::new(Entry { text: text.into(), operation: operation.map(Into::into), variables: variables.cloned() }),
        )
    }

    fn insert(&self, key: u64, entry: Entry, result: ValidationResult) {
        self.lru(entry.variables.is_some()).lock().unwrap_or_else(PoisonError::into_inner).put(key, (entry, result));
    }
}

/// Hashes `value` consistently with its `==`: strings and enum values
/// alike (they compare equal), objects by their size only (they compare
/// equal in any key order).
fn hash_value(value: &ConstValue, hasher: &mut impl Hasher) {
    match value {
        ConstValue::Null => 0u8.hash(hasher),
        ConstValue::Number(number) => number.hash(hasher),
        ConstValue::String(text) => text.as_str().hash(hasher),
        ConstValue::Enum(name) => name.as_str().hash(hasher),
        ConstValue::Boolean(flag) => flag.hash(hasher),
        ConstValue::Binary(bytes) => bytes.hash(hasher),
        ConstValue::List(items) => {
            items.len().hash(hasher);
            for item in items {
                hash_value(item, hasher);
            }
        }
        ConstValue::Object(fields) => fields.len().hash(hasher),
    }
}

/// Whether `values` take at most `budget` bytes (strings and names by
/// their length, anything else 8), stopping as soon as they do not.
fn fits<'a>(values: impl Iterator<Item = &'a ConstValue>, budget: usize) -> bool {
    fn spend(value: &ConstValue, budget: &mut usize) -> bool {
        let own = match value {
            ConstValue::String(text) => text.len(),
            ConstValue::Binary(bytes) => bytes.len(),
            _ => 8,
        };
        let Some(left) = budget.checked_sub(own) else { return false };
        *budget = left;
        match value {
            ConstValue::List(items) => items.iter().all(|item| spend(item, budget)),
            ConstValue::Object(fields) => fields.iter().all(|(key, value)| {
                budget.checked_sub(key.len()).is_some_and(|left| {
                    *budget = left;
                    spend(value, budget)
                })
            }),
            _ => true,
        }
    }
    let mut budget = budget;
    values.into_iter().all(|value| spend(value, &mut budget))
}

impl Guard {
    /// `result` if its depth and cost are within the limits, else the
    /// error that says which limit and by how much.
    fn within_limits(&self, result: ValidationResult) -> Result<ValidationResult, Vec<ServerError>> {
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

    fn request(query: &str, operation: Option<&str>, variables: serde_json::Value) -> Request {
        let request = Request::new(query).variables(Variables::from_json(variables));
        match operation {
            Some(name) => request.operation_name(name),
            None => request,
        }
    }

    #[test]
    fn a_validation_result_holds_for_its_text_operation_and_variables_only() {
        let validated = Validated::new();
        let text = "query A($n: Int) { a(n: $n) } query B { b }";
        let kept = request(text, Some("A"), serde_json::json!({ "n": 1 }));
        let Lookup::Miss(key, entry) = validated.lookup(&kept, true) else { panic!("a miss before any insert") };
        let result = ValidationResult { cache_control: Default::default(), complexity: 7, depth: 2 };
        validated.insert(key, *entry, result);

        assert!(matches!(validated.lookup(&kept, true), Lookup::Hit(r) if r.complexity == 7));
        let other_values = request(text, Some("A"), serde_json::json!({ "n": 2 }));
        assert!(matches!(validated.lookup(&other_values, true), Lookup::Miss(..)), "other variables");
        let float = request(text, Some("A"), serde_json::json!({ "n": 1.0 }));
        assert!(matches!(validated.lookup(&float, true), Lookup::Miss(..)), "1.0 is not 1");
        let other_operation = request(text, Some("B"), serde_json::json!({ "n": 1 }));
        assert!(matches!(validated.lookup(&other_operation, true), Lookup::Miss(..)), "another operation");
        let no_operation = request(text, None, serde_json::json!({ "n": 1 }));
        assert!(matches!(validated.lookup(&no_operation, true), Lookup::Miss(..)), "no operation name");
        let other_text = request("query A($n: Int) { a(n: $n) }", Some("A"), serde_json::json!({ "n": 1 }));
        assert!(matches!(validated.lookup(&other_text, true), Lookup::Miss(..)), "another text");

        let Lookup::Miss(key, entry) = validated.lookup(&other_values, true) else { panic!("a miss") };
        validated.insert(key, *entry, ValidationResult { complexity: 8, ..result });
        assert!(matches!(validated.lookup(&other_values, true), Lookup::Hit(r) if r.complexity == 8));
        assert!(matches!(validated.lookup(&kept, true), Lookup::Hit(r) if r.complexity == 7), "both kept");
    }

    #[test]
    fn a_document_without_variables_is_validated_once_whatever_variables_come_with_it() {
        let validated = Validated::new();
        let first = request("{ a }", None, serde_json::json!({}));
        let Lookup::Miss(key, entry) = validated.lookup(&first, false) else { panic!("a miss before any insert") };
        validated.insert(key, *entry, ValidationResult { cache_control: Default::default(), complexity: 1, depth: 1 });
        let with_variables = request("{ a }", None, serde_json::json!({ "unused": "x" }));
        assert!(matches!(validated.lookup(&with_variables, false), Lookup::Hit(_)));
    }

    #[test]
    fn large_variables_and_long_texts_are_validated_every_time() {
        let validated = Validated::new();
        let large =
            request("query($s: String) { a(s: $s) }", None, serde_json::json!({ "s": "x".repeat(MAX_VARIABLES + 1) }));
        assert!(matches!(validated.lookup(&large, true), Lookup::Skip));
        let nested = serde_json::json!({ "o": { "list": vec!["abcdefgh"; MAX_VARIABLES / 8] } });
        assert!(matches!(validated.lookup(&request("query($o: I) { a(o: $o) }", None, nested), true), Lookup::Skip));
        let small = request("query($s: String) { a(s: $s) }", None, serde_json::json!({ "s": "x" }));
        assert!(matches!(validated.lookup(&small, true), Lookup::Miss(..)));
        let long = format!("{{ {} }}", "a ".repeat(super::super::documents::MAX_TEXT));
        assert!(matches!(validated.lookup(&request(&long, None, serde_json::json!({})), false), Lookup::Skip));
    }

    #[test]
    fn expanded_fields_count_each_use_of_a_fragment() {
        let query =
            "query A { ...F ...F x: changeCursor } query B { ...F } fragment F on Query { changeCursor me { id } }";
        let document = parse_query(query).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(expanded_fields(&document, 100), 3 * 3 + 1);
    }
}
