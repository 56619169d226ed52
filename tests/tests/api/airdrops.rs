//! The airdrops API (Dropfarm).

use serde_json::{Value, json};
use tests::{TestApp, error_code};

const CREATE: &str = "mutation($input: CreateAirdropProjectInput!) { createAirdropProject(input: $input) { id name stats { participants tokensLeft } } }";
const JOIN: &str = "mutation($p: ID!) { joinAirdrop(projectId: $p) { id tokensEarned } }";
const CREDIT: &str =
    "mutation($id: ID!, $t: Int!) { creditAirdropTokens(participationId: $id, tokens: $t) { tokensEarned } }";

fn project(allocation: i64) -> Value {
    json!({ "input": { "name": "Drop", "description": "d", "startDate": "2026-01-01", "endDate": "2099-12-31", "totalTokenAllocation": allocation } })
}

#[tokio::test]
async fn admins_create_projects_users_join_services_credit_within_the_allocation() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let service = app.sign_up_as("bot", "service").await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;

    assert_eq!(error_code(&app.graphql(Some(&ada.token), CREATE, project(100)).await), "FORBIDDEN");
    let id = app.data(Some(&admin.token), CREATE, project(100)).await["createAirdropProject"]["id"].clone();

    let adas = app.data(Some(&ada.token), JOIN, json!({ "p": id })).await["joinAirdrop"]["id"].clone();
    let bobs = app.data(Some(&bob.token), JOIN, json!({ "p": id })).await["joinAirdrop"]["id"].clone();
    assert_eq!(
        error_code(&app.graphql(Some(&ada.token), JOIN, json!({ "p": id })).await),
        "CONFLICT",
        "one participation per project"
    );

    assert_eq!(error_code(&app.graphql(Some(&ada.token), CREDIT, json!({ "id": adas, "t": 10 })).await), "FORBIDDEN");
    assert_eq!(
        app.data(Some(&service.token), CREDIT, json!({ "id": adas, "t": 60 })).await["creditAirdropTokens"]["tokensEarned"],
        60
    );
    let over = app.graphql(Some(&service.token), CREDIT, json!({ "id": bobs, "t": 41 })).await;
    assert_eq!(error_code(&over), "CONFLICT", "{over}");
    assert_eq!(
        app.data(Some(&service.token), CREDIT, json!({ "id": bobs, "t": 40 })).await["creditAirdropTokens"]["tokensEarned"],
        40
    );
    assert_eq!(
        error_code(&app.graphql(Some(&service.token), CREDIT, json!({ "id": bobs, "t": -1 })).await),
        "BAD_USER_INPUT"
    );

    let public = app
        .data(
            None,
            "query($id: ID!) { airdropProject(id: $id) { stats { participants tokensDistributed tokensLeft } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        public["airdropProject"]["stats"],
        json!({ "participants": 2, "tokensDistributed": 100, "tokensLeft": 0 })
    );

    let mine = app.data(Some(&ada.token), "{ myParticipations { id tokensEarned } }", json!({})).await;
    assert_eq!(mine["myParticipations"], json!([{ "id": adas, "tokensEarned": 60 }]), "Ada sees only her own");
}

#[tokio::test]
async fn project_input_and_ids_are_checked() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let backwards = json!({ "input": { "name": "x", "startDate": "2026-02-01", "endDate": "2026-01-01", "totalTokenAllocation": 1 } });
    let body = app.graphql(Some(&admin.token), CREATE, backwards).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "endDate");
    assert_eq!(error_code(&app.graphql(Some(&admin.token), CREATE, project(-5)).await), "BAD_USER_INPUT");
    let unknown =
        app.graphql(None, "{ airdropProject(id: \"00000000-0000-0000-0000-000000000000\") { name } }", json!({})).await;
    assert_eq!(error_code(&unknown), "NOT_FOUND");
    let ada = app.sign_up("ada").await;
    assert_eq!(
        error_code(&app.graphql(Some(&ada.token), JOIN, json!({ "p": "00000000-0000-0000-0000-000000000000" })).await),
        "NOT_FOUND"
    );
    assert_eq!(error_code(&app.graphql(Some(&ada.token), JOIN, json!({ "p": "nope" })).await), "BAD_USER_INPUT");
}

#[tokio::test]
async fn active_projects_are_those_running_today() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    app.data(Some(&admin.token), CREATE, project(1)).await;
    let past = json!({ "input": { "name": "old", "startDate": "2020-01-01", "endDate": "2020-12-31", "totalTokenAllocation": 1 } });
    app.data(Some(&admin.token), CREATE, past).await;
    let active = app.data(None, "{ airdropProjects(active: true) { totalCount nodes { name } } }", json!({})).await;
    assert_eq!(active["airdropProjects"]["nodes"], json!([{ "name": "Drop" }]));
    let all = app.data(None, "{ airdropProjects { totalCount } }", json!({})).await;
    assert_eq!(all["airdropProjects"]["totalCount"], 2);
}

#[tokio::test]
async fn an_admin_updates_a_project_but_not_below_what_is_distributed() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let service = app.sign_up_as("bot", "service").await;
    let ada = app.sign_up("ada").await;
    let id = app.data(Some(&admin.token), CREATE, project(100)).await["createAirdropProject"]["id"].clone();
    let joined = app.data(Some(&ada.token), JOIN, json!({ "p": id })).await["joinAirdrop"]["id"].clone();
    app.data(Some(&service.token), CREDIT, json!({ "id": joined, "t": 70 })).await;

    let update = "mutation($id: ID!, $n: Int) { updateAirdropProject(id: $id, input: {name: \"Renamed\", totalTokenAllocation: $n}) { name totalTokenAllocation stats { tokensLeft } } }";
    assert_eq!(error_code(&app.graphql(Some(&ada.token), update, json!({ "id": id, "n": 200 })).await), "FORBIDDEN");
    assert_eq!(error_code(&app.graphql(Some(&admin.token), update, json!({ "id": id, "n": 50 })).await), "CONFLICT");
    let updated = app.data(Some(&admin.token), update, json!({ "id": id, "n": 200 })).await;
    assert_eq!(
        updated["updateAirdropProject"],
        json!({ "name": "Renamed", "totalTokenAllocation": 200, "stats": { "tokensLeft": 130 } })
    );
}
