//! GraphiQL, served from vendored assets (npm `graphiql` 3.8.3 and React
//! 18.3.1 UMD builds) so it renders without internet access. The assets are
//! stored gzip-compressed and sent as such.

use axum::extract::Path;
use axum::http::{StatusCode, header};
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
    const defaultQuery = `# Welcome! Sign up in the Mutation below, then put the token in the
# Headers tab as {"Authorization": "Bearer <token>"}.

query Places {
  places(first: 5, orderBy: RATING_DESC) {
    totalCount
    edges { cursor node { id name category rating } }
    pageInfo { hasNextPage endCursor }
  }
}

mutation SignUp {
  signUp(input: {email: "ada@example.com", username: "ada", password: "correct horse", fullName: "Ada"}) {
    token
    user { id username }
  }
}
`;
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, { fetcher, defaultQuery, defaultEditorToolsVisibility: true }),
    );
  </script>
</body>
</html>
"#;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match name.as_str() {
        "graphiql.min.css" => (include_bytes!("../../assets/graphiql/graphiql.min.css.gz"), "text/css"),
        "graphiql.min.js" => (include_bytes!("../../assets/graphiql/graphiql.min.js.gz"), "text/javascript"),
        "react.production.min.js" => {
            (include_bytes!("../../assets/graphiql/react.production.min.js.gz"), "text/javascript")
        }
        "react-dom.production.min.js" => {
            (include_bytes!("../../assets/graphiql/react-dom.production.min.js.gz"), "text/javascript")
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_ENCODING, "gzip"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}
