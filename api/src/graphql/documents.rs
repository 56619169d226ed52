//! Parsed documents by query text, so a client that sends the same document
//! again (every client does: its queries are constants in its code) is not
//! parsed again (issue 11: parsing was a steady share of a request's CPU).
//!
//! A parse depends on the text alone (not on the schema, the viewer or the
//! variables), so one process-wide cache serves every schema and protocol.
//! It is a bounded LRU: at most [`CAPACITY`] documents of at most
//! [`MAX_TEXT`] bytes each, so a client sending endless unique documents
//! costs one eviction per request and a bounded amount of memory (a few MiB
//! at worst); larger documents are parsed every time. Documents that do not
//! parse are not kept (async-graphql reports the syntax error each time).
//!
//! async-graphql executes a document it owns (it strips `@skip`/`@include`
//! selections in place), so a hit hands the request a copy: cloning the tree
//! costs a fraction of parsing it with pest.

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError};
use lru::LruCache;

/// Documents kept. Applications send tens of distinct documents.
pub const CAPACITY: usize = 512;
/// The longest query text kept, in bytes (GraphiQL's introspection query is ~2 KiB).
pub const MAX_TEXT: usize = 16 * 1024;

/// A parsed document, and what [`derived`] works out from it for the
/// first operation name it is asked about (clients send one document for
/// one operation).
struct Entry {
    document: ExecutableDocument,
    derived: OnceLock<(Option<String>, Arc<dyn Any + Send + Sync>)>,
}

type Cache = Mutex<LruCache<Box<str>, Arc<Entry>>>;

static CACHE: LazyLock<Cache> =
    LazyLock::new(|| Mutex::new(LruCache::new(NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN))));

/// Parses the request's document into the request, from the cache when the
/// same text was parsed before; the cache's entry, if the text is kept.
fn lookup(request: &mut Request) -> Result<Option<Arc<Entry>>, ServerError> {
    if request.query.len() > MAX_TEXT {
        request.parsed_query()?;
        return Ok(None);
    }
    // A poisoned lock only means another request panicked mid-lookup: the
    // cache itself is still consistent, so keep using it.
    let hit = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(request.query.as_str()).cloned();
    let entry = match hit {
        Some(entry) => {
            request.set_parsed_query(entry.document.clone());
            entry
        }
        None => {
            let entry = Arc::new(Entry { document: request.parsed_query()?.clone(), derived: OnceLock::new() });
            let text: Box<str> = request.query.as_str().into();
            CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).put(text, entry.clone());
            entry
        }
    };
    Ok(Some(entry))
}

/// The request's document, parsed into the request (which keeps it for
/// execution, as [`Request::parsed_query`] does), from the cache when the
/// same text was parsed before.
pub fn parsed(request: &mut Request) -> Result<&ExecutableDocument, ServerError> {
    lookup(request)?;
    request.parsed_query()
}

/// [`parsed`], and what `derive` works out from the document and the
/// request's operation name alone (the operation's name for logs, its key
/// order, ...), kept with the document: a client sending the same document
/// for the same operation gets it without the work (issue 11). One value
/// per document, for the first operation name it is derived for; other
/// names derive it each time. `derive` must read nothing but its arguments.
///
/// This runs before the guard and validation, for any document that
/// parses: a value is kept only when `small` says it is (a hostile
/// document can derive megabytes, see `http::order`), and only for a name
/// the document declares (or none), so neither a huge value nor a 1 MiB
/// `operationName` can sit in the cache 512 times over.
pub fn derived<T: Any + Send + Sync>(
    request: &mut Request,
    derive: impl FnOnce(&ExecutableDocument, Option<&str>) -> T,
    small: impl FnOnce(&T) -> bool,
) -> Result<Arc<T>, ServerError> {
    let Some(entry) = lookup(request)? else {
        let name = request.operation_name.clone();
        return Ok(Arc::new(derive(request.parsed_query()?, name.as_deref())));
    };
    let name = request.operation_name.as_deref();
    if let Some((kept_for, value)) = entry.derived.get()
        && kept_for.as_deref() == name
        && let Ok(value) = value.clone().downcast::<T>()
    {
        return Ok(value);
    }
    let value = Arc::new(derive(&entry.document, name));
    let declared =
        name.is_none_or(|name| entry.document.operations.iter().any(|(n, _)| n.is_some_and(|n| n.as_str() == name)));
    if !declared || !small(&value) {
        return Ok(value);
    }
    let kept: Arc<dyn Any + Send + Sync> = value.clone();
    // Only the first name's value is kept (a race between two requests
    // keeps either: both derived it from the same document and name).
    let _ = entry.derived.set((name.map(str::to_owned), kept));
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_gives_the_same_document_from_the_cache() {
        let text = "query CacheTest($n: Int) { a(first: $n) { b @skip(if: true) c } }";
        let mut first = Request::new(text);
        let parsed_first = format!("{:?}", parsed(&mut first).expect("parses"));
        assert!(CACHE.lock().expect("lock").contains(text), "kept after the first parse");
        let mut second = Request::new(text);
        let parsed_second = format!("{:?}", parsed(&mut second).expect("parses"));
        assert_eq!(parsed_first, parsed_second);
    }

    #[test]
    fn a_large_value_or_an_undeclared_operation_name_is_derived_each_time_not_kept() {
        let text = "query KeptOnlyIfSmall { a } query Other { b }";
        let calls = std::cell::Cell::new(0);
        let derive = |name: &str, small: bool| {
            let mut request = Request::new(text).operation_name(name);
            derived(
                &mut request,
                |_, _| {
                    calls.set(calls.get() + 1);
                },
                |_| small,
            )
            .expect("parses");
        };
        derive("KeptOnlyIfSmall", false);
        derive("KeptOnlyIfSmall", false);
        assert_eq!(calls.get(), 2, "too large: derived each time");
        derive("NotInTheDocument", true);
        derive("NotInTheDocument", true);
        assert_eq!(calls.get(), 4, "a name the document does not declare: derived each time");
        derive("KeptOnlyIfSmall", true);
        derive("KeptOnlyIfSmall", true);
        assert_eq!(calls.get(), 5, "small, for a declared name: kept");
    }

    #[test]
    fn what_is_derived_from_a_document_is_kept_for_its_first_operation_name_only() {
        let text = "query DerivedA { a } query DerivedB { b }";
        let calls = std::cell::Cell::new(0);
        let derive = |request: &mut Request| {
            derived(
                request,
                |document, name| {
                    calls.set(calls.get() + 1);
                    (document.operations.iter().count(), name.map(str::to_owned))
                },
                |_| true,
            )
            .expect("parses")
        };
        let named = |name: &str| Request::new(text).operation_name(name);
        assert_eq!(*derive(&mut named("DerivedA")), (2, Some("DerivedA".to_owned())));
        assert_eq!(*derive(&mut named("DerivedA")), (2, Some("DerivedA".to_owned())));
        assert_eq!(calls.get(), 1, "the second request for the same operation reused the first's");
        assert_eq!(*derive(&mut named("DerivedB")), (2, Some("DerivedB".to_owned())), "another name: its own");
        assert_eq!(*derive(&mut named("DerivedB")), (2, Some("DerivedB".to_owned())));
        assert_eq!(calls.get(), 3, "only the first name's is kept");
        let mut request = named("DerivedA");
        derive(&mut request);
        assert!(request.parsed_query().is_ok(), "the request has its own copy of the document");
    }

    #[test]
    fn a_syntax_error_is_reported_and_not_kept() {
        let text = "query Broken { a(";
        assert!(parsed(&mut Request::new(text)).is_err());
        assert!(!CACHE.lock().expect("lock").contains(text));
    }

    #[test]
    fn a_long_document_is_parsed_but_not_kept() {
        let text = format!("{{ {} }}", "a ".repeat(MAX_TEXT));
        assert!(parsed(&mut Request::new(text.as_str())).is_ok());
        assert!(!CACHE.lock().expect("lock").contains(text.as_str()));
    }
}
