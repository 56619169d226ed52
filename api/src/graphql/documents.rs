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

use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError};
use lru::LruCache;

/// Documents kept. Applications send tens of distinct documents.
pub const CAPACITY: usize = 512;
/// The longest query text kept, in bytes (GraphiQL's introspection query is ~2 KiB).
pub const MAX_TEXT: usize = 16 * 1024;

type Cache = Mutex<LruCache<Box<str>, Arc<ExecutableDocument>>>;

static CACHE: LazyLock<Cache> =
    LazyLock::new(|| Mutex::new(LruCache::new(NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN))));

/// The request's document, parsed into the request (which keeps it for
/// execution, as [`Request::parsed_query`] does), from the cache when the
/// same text was parsed before.
pub fn parsed(request: &mut Request) -> Result<&ExecutableDocument, ServerError> {
    if request.query.len() <= MAX_TEXT {
        // A poisoned lock only means another request panicked mid-lookup:
        // the cache itself is still consistent, so keep using it.
        let hit = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(request.query.as_str()).cloned();
        match hit {
            Some(document) => request.set_parsed_query(ExecutableDocument::clone(&document)),
            None => {
                let document = Arc::new(request.parsed_query()?.clone());
                let text: Box<str> = request.query.as_str().into();
                CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).put(text, document);
            }
        }
    }
    request.parsed_query()
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
