//! GraphiQL, served from vendored assets (npm `graphiql` 3.8.3 and React
//! 18.3.1 UMD builds) so it renders without internet access.
//!
//! The page:
//! - keeps the Headers tab (the `Authorization` token) across reloads
//!   (`shouldPersistHeaders`, in the browser's localStorage for this origin);
//! - opens `?query=`, `?variables=` and `?operationName=` links, and keeps
//!   the address up to date as you edit, so a reload or a shared link shows
//!   the same document;
//! - wraps long lines in every editor (CodeMirror's `lineWrapping`), so a
//!   README example with a long input fits without scrolling sideways.
//!
//! The assets are stored gzip-compressed and sent so to clients that accept
//! gzip; the few that do not get them inflated (once, then kept).

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>GraphiQL</title>
  <link rel="stylesheet" href="/graphiql/graphiql.min.css">
  <style>body { margin: 0; height: 100vh; } #graphiql { height: 100vh; }</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="/graphiql/react.production.min.js"></script>
  <script src="/graphiql/react-dom.production.min.js"></script>
  <script src="/graphiql/graphiql.min.js"></script>
  <script>
    const wsScheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const fetcher = GraphiQL.createFetcher({
      url: '/graphql',
      subscriptionUrl: wsScheme + location.host + '/graphql/ws',
    });
    const defaultQuery = `# Welcome! Sign up with the SignUp mutation below, then put
# the token in the Headers tab as
#   {"Authorization": "Bearer <token>"}
# (it is kept across reloads).

query Places {
  places(first: 5, orderBy: RATING_DESC) {
    totalCount
    edges { cursor node { id name category rating } }
    pageInfo { hasNextPage endCursor }
  }
}

mutation SignUp {
  signUp(input: {
    email: "ada@example.com"
    username: "ada"
    password: "correct horse"
    fullName: "Ada"
  }) {
    token
    user { id username }
  }
}
`;
    // ?query=, ?variables= and ?operationName= open a document; edits
    // are written back to the address (replaceState: no history entries).
    const params = new URLSearchParams(location.search);
    function remember(key, value) {
      if (value) { params.set(key, value); } else { params.delete(key); }
      const search = params.toString();
      history.replaceState(null, '', location.pathname + (search ? '?' + search : ''));
    }
    // Long lines wrap in every editor: GraphiQL exposes no option for it,
    // but each CodeMirror instance hangs off its element.
    new MutationObserver(() => {
      for (const element of document.querySelectorAll('.CodeMirror')) {
        if (element.CodeMirror && !element.CodeMirror.getOption('lineWrapping')) {
          element.CodeMirror.setOption('lineWrapping', true);
        }
      }
    }).observe(document.getElementById('graphiql'), { childList: true, subtree: true });
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, {
        fetcher,
        defaultQuery,
        query: params.get('query') ?? undefined,
        variables: params.get('variables') ?? undefined,
        operationName: params.get('operationName') ?? undefined,
        onEditQuery: (query) => remember('query', query),
        onEditVariables: (variables) => remember('variables', variables),
        onEditOperationName: (name) => remember('operationName', name),
        shouldPersistHeaders: true,
        defaultEditorToolsVisibility: true,
      }),
    );
  </script>
</body>
</html>
"#;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cache = (header::CACHE_CONTROL, "public, max-age=86400");
    // Caches keep one copy per encoding.
    let vary = (header::VARY, "accept-encoding");
    if accepts_gzip(&headers) {
        return (
            [(header::CONTENT_TYPE, asset.content_type), (header::CONTENT_ENCODING, "gzip"), cache, vary],
            asset.gzip,
        )
            .into_response();
    }
    match asset.inflated() {
        Some(body) => ([(header::CONTENT_TYPE, asset.content_type), cache, vary], body).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// One vendored asset, gzipped in the binary.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    gzip: &'static [u8],
    plain: OnceLock<Option<Vec<u8>>>,
}

impl Asset {
    const fn new(name: &'static str, content_type: &'static str, gzip: &'static [u8]) -> Self {
        Self { name, content_type, gzip, plain: OnceLock::new() }
    }

    /// The asset inflated, once (most browsers never ask for it).
    fn inflated(&'static self) -> Option<&'static [u8]> {
        let plain = self.plain.get_or_init(|| {
            let mut plain = Vec::new();
            let read = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(self.gzip), &mut plain);
            read.inspect_err(|err| tracing::error!(asset = self.name, %err, "vendored asset does not inflate")).ok()?;
            Some(plain)
        });
        plain.as_deref()
    }
}

static ASSETS: [Asset; 4] = [
    Asset::new("graphiql.min.css", "text/css", include_bytes!("../../assets/graphiql/graphiql.min.css.gz")),
    Asset::new("graphiql.min.js", "text/javascript", include_bytes!("../../assets/graphiql/graphiql.min.js.gz")),
    Asset::new(
        "react.production.min.js",
        "text/javascript",
        include_bytes!("../../assets/graphiql/react.production.min.js.gz"),
    ),
    Asset::new(
        "react-dom.production.min.js",
        "text/javascript",
        include_bytes!("../../assets/graphiql/react-dom.production.min.js.gz"),
    ),
];

/// Whether `Accept-Encoding` allows gzip (RFC 9110 12.5.3): named, or `*`,
/// with a q above 0. No header means no preference, which allows any
/// encoding, but a client that sends none is more likely a script than a
/// browser: it gets the plain bytes it can read.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for coding in
        headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','))
    {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, value)| value.trim().parse::<f32>().unwrap_or(0.0));
        match name.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => any = Some(q),
            _ => {}
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_sent_only_when_accept_encoding_allows_it() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap_or_else(|e| panic!("{e}")));
            accepts_gzip(&headers)
        };
        assert!(!accepts_gzip(&HeaderMap::new()));
        for yes in ["gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.8", "*", "GZIP", "x-gzip"] {
            assert!(with(yes), "{yes}");
        }
        for no in ["identity", "br", "gzip;q=0", "*, gzip;q=0", "deflate", ""] {
            assert!(!with(no), "{no}");
        }
    }

    #[test]
    fn every_vendored_asset_inflates() {
        for asset in &ASSETS {
            assert!(asset.inflated().is_some_and(|plain| plain.len() > asset.gzip.len()), "{}", asset.name);
        }
    }
}
