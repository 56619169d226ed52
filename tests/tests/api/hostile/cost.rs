//! Query cost (issue 10 §5) and metrics a client cannot inflate (§6): a
//! document is priced before it runs, by what its fields cost; operation
//! labels come from the document, bounded in length and count.

use serde_json::{Value, json};
use tests::{TestApp, error_code};

/// The aliased document of the issue: `n` recommendation searches of 100
/// places in a 100 km radius.
fn aliased_recommendations(n: usize) -> String {
    let fields: Vec<String> = (0..n)
        .map(|i| format!("a{i}: recommendations(lat: 38.7, lng: -9.1, radiusKm: 100, limit: 100) {{ score }}"))
        .collect();
    format!("{{ {} }}", fields.join(" "))
}

/// GraphiQL's schema query (graphql-js 16 `getIntrospectionQuery` with
/// descriptions and deprecated input values), which GraphiQL sends on load.
const GRAPHIQL_INTROSPECTION: &str = r"
query IntrospectionQuery {
  __schema {
    description
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description specifiedByURL
  fields(includeDeprecated: true) {
    name description
    args(includeDeprecated: true) { ...InputValue }
    type { ...TypeRef }
    isDeprecated deprecationReason
  }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name description type { ...TypeRef } defaultValue isDeprecated deprecationReason
}
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}";

/// The README's query for a signed-in user (places, reviews, recommendations).
const README_QUERY: &str = r#"query {
  myReviews(first: 10) { totalCount edges { node { rating place { name category } } } }
  recommendations(lat: 38.7075, lng: -9.1364, radiusKm: 5, limit: 5) {
    place { name category rating } distanceKm score
  }
  places(first: 5, category: "cafe", orderBy: RATING_DESC) {
    totalCount
    edges { cursor node { id name rating } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

/// Fails unless `body` has no error from a document limit.
fn assert_within_limits(body: &Value, what: &str) {
    for error in body["errors"].as_array().cloned().unwrap_or_default() {
        let code = error["extensions"]["code"].as_str().unwrap_or_default();
        assert!(
            !["QUERY_TOO_EXPENSIVE", "QUERY_TOO_COMPLEX", "TOO_MANY_MUTATION_FIELDS"].contains(&code),
            "{what} must pass the default limits: {body}"
        );
    }
}

#[tokio::test]
async fn aliased_recommendation_searches_are_refused_before_they_run_stating_cost_and_limit() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    app.insert_place("p1", "cafe", 38.7, -9.1, Some(4.0), Some(10)).await;

    let body = app.graphql(Some(&ada.token), &aliased_recommendations(2400), json!({})).await;

    assert_eq!(error_code(&body), "QUERY_TOO_EXPENSIVE", "{}", &body.to_string()[..500.min(body.to_string().len())]);
    let error = &body["errors"][0];
    let (cost, limit) = (error["extensions"]["cost"].as_u64(), error["extensions"]["limit"].as_u64());
    assert_eq!(limit, Some(5000), "the default limit: {error}");
    assert!(cost.is_some_and(|cost| cost > 2400 * 100), "every search costs its 100 places: {error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(&cost.unwrap_or_default().to_string()) && message.contains("5000"), "{message}");
    assert_eq!(body["data"], Value::Null, "nothing ran");
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "one error, not one per search");
}

#[tokio::test]
async fn realistic_documents_pass_the_default_limits() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    app.insert_place("demo-place-000000", "cafe", 38.7075, -9.1364, Some(4.5), Some(100)).await;

    let introspection = app.graphql(None, GRAPHIQL_INTROSPECTION, json!({})).await;
    assert!(introspection.get("errors").is_none(), "GraphiQL loads the schema: {introspection}");

    // The README's walkthrough, as Ada.
    let mutation = app
        .graphql(
            Some(&ada.token),
            r#"mutation {
              setPreference(input: {category: "cafe", rating: 5}) { preference { category rating } }
              createReview(input: {placeId: "demo-place-000000", rating: 4.5, comment: "Great pastéis"}) {
                review { id rating place { name } }
              }
            }"#,
            json!({}),
        )
        .await;
    assert!(mutation.get("errors").is_none(), "{mutation}");
    let query = app.graphql(Some(&ada.token), README_QUERY, json!({})).await;
    assert!(query.get("errors").is_none(), "{query}");

    // Full pages: the largest page of places with every field, posts with
    // a page of comments each, and one recommendation search of 100.
    let documents = [
        "{ places(first: 100) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id name lat lng types category rating userRatingsTotal } } } }",
        "{ posts(first: 20) { totalCount nodes { id title body published author { username } comments(first: 10) { totalCount nodes { body author { username } } } } } }",
        "{ recommendations(lat: 38.7, lng: -9.1, radiusKm: 100, limit: 100) { distanceKm score place { rowId name category rating } } }",
        "{ myRoutines(first: 50) { nodes { id name steps tokensPerRun } } myStats { totalTokensEarned } myParticipations { tokensEarned } airdropProjects(first: 50) { nodes { name stats { tokensLeft } } } }",
    ];
    for document in documents {
        assert_within_limits(&app.graphql(Some(&ada.token), document, json!({})).await, document);
    }
}

#[tokio::test]
async fn a_list_costs_the_page_it_asks_for_times_its_items() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let nested = |first: u32| {
        format!(
            "{{ posts(first: {first}) {{ nodes {{ comments(first: {first}) {{ nodes {{ body author {{ username }} }} }} }} }} }}"
        )
    };

    let small = app.graphql(Some(&ada.token), &nested(5), json!({})).await;
    assert!(small.get("errors").is_none(), "{small}");
    // 100 posts × 100 comments each: 101 statements, up to 10,000 rows.
    let large = app.graphql(Some(&ada.token), &nested(100), json!({})).await;
    assert_eq!(error_code(&large), "QUERY_TOO_EXPENSIVE", "{large}");
    // The page size counts even when it comes in a variable.
    let variable = app
        .graphql(
            Some(&ada.token),
            "query($n: Int) { posts(first: $n) { nodes { comments(first: $n) { nodes { body } } } } }",
            json!({ "n": 100 }),
        )
        .await;
    assert_eq!(error_code(&variable), "QUERY_TOO_EXPENSIVE", "{variable}");
}

#[tokio::test]
async fn a_fragment_bomb_is_refused_at_once_without_expanding_it() {
    let app = TestApp::spawn().await;
    // 27 short lines; each fragment spreads the next twice: 2^26 fields.
    let mut bomb = String::from("query Bomb { ...F0 }");
    for i in 0..26 {
        bomb.push_str(&format!(" fragment F{i} on Query {{ ...F{next} ...F{next} }}", next = i + 1));
    }
    bomb.push_str(" fragment F26 on Query { changeCursor }");

    let started = std::time::Instant::now();
    let body = app.graphql(None, &bomb, json!({})).await;

    assert_eq!(error_code(&body), "QUERY_TOO_EXPENSIVE", "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "refused in {:?}", started.elapsed());
}

#[tokio::test]
async fn a_document_nested_too_deep_is_refused_stating_its_depth_and_the_limit() {
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.max_query_depth = 3;
    let app = TestApp::spawn_with(config).await;

    let body = app.graphql(None, "{ places { edges { node { id } } } }", json!({})).await;

    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["depth"], 4, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["limit"], 3, "{body}");
}

#[tokio::test]
async fn more_mutation_fields_than_the_cap_are_refused_before_any_write() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let fields = |prefix: &str, n: usize| {
        (0..n)
            .map(|i| format!("{prefix}{i}: createPost(input: {{title: \"post {i}\"}}) {{ post {{ id }} }}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let posts = |n: usize| format!("mutation {{ {} }}", fields("p", n));

    let over = app.graphql(Some(&ada.token), &posts(11), json!({})).await;
    assert_eq!(error_code(&over), "TOO_MANY_MUTATION_FIELDS", "{over}");
    assert_eq!(over["errors"][0]["extensions"]["limit"], 10, "{over}");
    // Fragments count too.
    let spread = app
        .graphql(
            Some(&ada.token),
            &format!(
                "mutation {{ ...A ...B }} fragment A on Mutation {{ {} }} fragment B on Mutation {{ {} }}",
                fields("a", 6),
                fields("b", 6),
            ),
            json!({}),
        )
        .await;
    assert_eq!(error_code(&spread), "TOO_MANY_MUTATION_FIELDS", "{spread}");
    assert_eq!(app.count("SELECT count(*) FROM post").await, 0, "no post written");

    let at_cap = app.graphql(Some(&ada.token), &posts(10), json!({})).await;
    assert!(at_cap.get("errors").is_none(), "{at_cap}");
    assert_eq!(app.count("SELECT count(*) FROM post").await, 10);
}

/// POSTs `query` with `operationName`.
async fn named(app: &TestApp, query: &str, operation_name: &str) -> Value {
    app.http
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": query, "operationName": operation_name }))
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON body")
}

#[tokio::test]
async fn an_operation_name_that_names_no_operation_is_a_coded_error_and_never_a_label() {
    let app = TestApp::spawn().await;
    let huge = "X".repeat(200_000);

    for _ in 0..3 {
        let body = named(&app, "query Real { changeCursor }", &huge).await;
        assert_eq!(error_code(&body), "OPERATION_RESOLUTION_FAILURE", "{}", &body.to_string()[..300]);
        assert!(!body.to_string().contains(&huge[..1000]), "the name is not echoed back");
    }
    let body = named(&app, "{ changeCursor }", "Other").await;
    assert_eq!(error_code(&body), "OPERATION_RESOLUTION_FAILURE", "{body}");

    let metrics = app.metrics().await;
    assert!(!metrics.0.contains("XXXXXXXX") && !metrics.0.contains("Other"), "{}", &metrics.0[..2000]);
    assert!(metrics.0.len() < 64 * 1024, "/metrics stays small: {} bytes", metrics.0.len());
}

#[tokio::test]
async fn operation_labels_are_cut_to_64_characters_and_capped_at_200_names() {
    let app = TestApp::spawn().await;
    let long = format!("Op{}", "L".repeat(500));

    let body = app.graphql(None, &format!("query {long} {{ changeCursor }}"), json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    for i in 0..210 {
        let body =
            named(&app, &format!("query Op{i} {{ changeCursor }} query Unused {{ changeCursor }}"), &format!("Op{i}"))
                .await;
        assert!(body.get("errors").is_none(), "{body}");
    }

    let metrics = app.metrics().await;
    let names: std::collections::BTreeSet<&str> = metrics
        .0
        .lines()
        .filter_map(|line| line.strip_prefix("api_graphql_request_duration_seconds_count{operation=\""))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(names.len() <= 201, "200 names, then \"other\": {}", names.len());
    assert!(names.contains("other"), "{names:?}");
    assert!(!names.contains("Unused"), "only the operation that ran is a label");
    assert!(names.contains(&long[..64]), "the long name, cut to 64 characters: {names:?}");
    assert!(names.iter().all(|name| name.len() <= 64), "{names:?}");
}
