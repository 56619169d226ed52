use serde_json::{Value, json};
use tests::TestApp;

#[test]
fn schema_graphql_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = api::graphql::sdl();
    assert!(
        committed == generated,
        "schema.graphql is out of date; regenerate it with: cargo run -q -p api -- schema > schema.graphql"
    );
}

#[tokio::test]
async fn every_type_and_field_of_ours_is_documented() {
    let app = TestApp::spawn().await;
    let query = "{ __schema { types { name kind description fields { name description } inputFields { name description } enumValues { name description } } } }";
    let data = app.data(None, query, json!({})).await;
    let mut missing = Vec::new();
    for ty in data["__schema"]["types"].as_array().cloned().unwrap_or_default() {
        let name = ty["name"].as_str().unwrap_or_default().to_owned();
        if name.starts_with("__") || ty["kind"] == "SCALAR" {
            continue;
        }
        if ty["description"].is_null() && !["Query", "Mutation", "Subscription"].contains(&name.as_str()) {
            missing.push(name.clone());
        }
        for list in ["fields", "inputFields", "enumValues"] {
            for member in ty[list].as_array().cloned().unwrap_or_default() {
                if member["description"] == Value::Null {
                    missing.push(format!("{name}.{}", member["name"].as_str().unwrap_or_default()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}
