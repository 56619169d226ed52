//! The airdrops API (Dropfarm).

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tests::{TestApp, error_code};

const CREATE: &str = "mutation($input: CreateAirdropProjectInput!) { createAirdropProject(input: $input) { airdropProject { id name stats { participants tokensLeft } } } }";
const JOIN: &str = "mutation($p: ID!) { joinAirdrop(input: {projectId: $p}) { participation { id tokensEarned } } }";
const CREDIT: &str = "mutation($id: ID!, $t: BigInt!) { creditAirdropTokens(input: {participationId: $id, tokens: $t}) { participation { tokensEarned } } }";

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
    let id = app.data(Some(&admin.token), CREATE, project(100)).await["createAirdropProject"]["airdropProject"]["id"]
        .clone();

    let adas = app.data(Some(&ada.token), JOIN, json!({ "p": id })).await["joinAirdrop"]["participation"]["id"].clone();
    let bobs = app.data(Some(&bob.token), JOIN, json!({ "p": id })).await["joinAirdrop"]["participation"]["id"].clone();
    assert_eq!(
        error_code(&app.graphql(Some(&ada.token), JOIN, json!({ "p": id })).await),
        "CONFLICT",
        "one participation per project"
    );

    assert_eq!(error_code(&app.graphql(Some(&ada.token), CREDIT, json!({ "id": adas, "t": 10 })).await), "FORBIDDEN");
    assert_eq!(
        app.data(Some(&service.token), CREDIT, json!({ "id": adas, "t": 60 })).await["creditAirdropTokens"]["participation"]
            ["tokensEarned"],
        "60"
    );
    let over = app.graphql(Some(&service.token), CREDIT, json!({ "id": bobs, "t": 41 })).await;
    assert_eq!(error_code(&over), "CONFLICT", "{over}");
    assert_eq!(
        app.data(Some(&service.token), CREDIT, json!({ "id": bobs, "t": 40 })).await["creditAirdropTokens"]["participation"]
            ["tokensEarned"],
        "40"
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
        json!({ "participants": 2, "tokensDistributed": "100", "tokensLeft": "0" })
    );

    let mine = app.data(Some(&ada.token), "{ myParticipations { id tokensEarned } }", json!({})).await;
    assert_eq!(mine["myParticipations"], json!([{ "id": adas, "tokensEarned": "60" }]), "Ada sees only her own");
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
        app.data(None, "{ airdropProject(id: \"00000000-0000-0000-0000-000000000000\") { name } }", json!({})).await;
    assert_eq!(unknown["airdropProject"], Value::Null);
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
    let id = app.data(Some(&admin.token), CREATE, project(100)).await["createAirdropProject"]["airdropProject"]["id"]
        .clone();
    let joined =
        app.data(Some(&ada.token), JOIN, json!({ "p": id })).await["joinAirdrop"]["participation"]["id"].clone();
    app.data(Some(&service.token), CREDIT, json!({ "id": joined, "t": 70 })).await;

    let update = "mutation($id: ID!, $n: BigInt) { updateAirdropProject(input: {id: $id, name: \"Renamed\", totalTokenAllocation: $n}) { airdropProject { name totalTokenAllocation stats { tokensLeft } } } }";
    assert_eq!(error_code(&app.graphql(Some(&ada.token), update, json!({ "id": id, "n": 200 })).await), "FORBIDDEN");
    assert_eq!(error_code(&app.graphql(Some(&admin.token), update, json!({ "id": id, "n": 50 })).await), "CONFLICT");
    let updated = app.data(Some(&admin.token), update, json!({ "id": id, "n": "200" })).await;
    assert_eq!(
        updated["updateAirdropProject"]["airdropProject"],
        json!({ "name": "Renamed", "totalTokenAllocation": "200", "stats": { "tokensLeft": "130" } })
    );
}

#[tokio::test]
async fn token_amounts_travel_as_big_int_strings_and_dates_as_iso_days() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    // The largest allocation (10^15 - 1 is within JavaScript's safe
    // integers, but a string keeps clients from assuming so).
    let create = "mutation($input: CreateAirdropProjectInput!) { createAirdropProject(input: $input) { airdropProject { id startDate endDate totalTokenAllocation stats { tokensLeft } } } }";
    let input = json!({ "input": { "name": "Big", "startDate": "2026-01-01", "endDate": "2099-12-31", "totalTokenAllocation": "999999999999999" } });
    let created = app.data(Some(&admin.token), create, input).await["createAirdropProject"]["airdropProject"].clone();
    assert_eq!(created["totalTokenAllocation"], "999999999999999");
    assert_eq!(created["stats"]["tokensLeft"], "999999999999999");
    assert_eq!((created["startDate"].as_str(), created["endDate"].as_str()), (Some("2026-01-01"), Some("2099-12-31")));

    // An inline Int literal is accepted for convenience.
    let inline = "mutation { createAirdropProject(input: {name: \"Small\", startDate: \"2026-01-01\", endDate: \"2026-01-02\", totalTokenAllocation: 5}) { airdropProject { totalTokenAllocation } } }";
    assert_eq!(
        app.data(Some(&admin.token), inline, json!({})).await["createAirdropProject"]["airdropProject"]["totalTokenAllocation"],
        "5"
    );
}

#[tokio::test]
async fn a_malformed_big_int_or_date_is_bad_user_input_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let create = "mutation($input: CreateAirdropProjectInput!) { createAirdropProject(input: $input) { airdropProject { id } } }";
    let with = |start: Value, allocation: Value| json!({ "input": { "name": "x", "startDate": start, "endDate": "2099-12-31", "totalTokenAllocation": allocation } });
    let cases = [
        with(json!("2026-01-01"), json!("12abc")),
        with(json!("2026-01-01"), json!(1.5)),
        with(json!("2026-01-01"), json!("99999999999999999999")),
        with(json!("2026-02-30"), json!("1")),
        with(json!("01/02/2026"), json!("1")),
        with(json!("2026-01-01T00:00:00Z"), json!("1")),
    ];
    for variables in cases {
        let body = app.graphql(Some(&admin.token), create, variables.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{variables} -> {body}");
    }
    let inline = "mutation { createAirdropProject(input: {name: \"x\", startDate: \"2026-13-01\", endDate: \"2099-12-31\", totalTokenAllocation: \"1\"}) { airdropProject { id } } }";
    let body = app.graphql(Some(&admin.token), inline, json!({})).await;
    assert!(matches!(error_code(&body), "BAD_USER_INPUT" | "GRAPHQL_VALIDATION_FAILED"), "{body}");
    assert_eq!(app.count("SELECT count(*) FROM airdrop_project").await, 0, "nothing written");
}

#[tokio::test]
async fn an_update_input_clears_the_description_with_null_and_refuses_null_for_each_required_field_by_name() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let input = json!({ "input": { "name": "Drop", "description": "tokens for all", "startDate": "2026-01-01",
        "endDate": "2099-12-31", "totalTokenAllocation": "100", "clientMutationId": "c1" } });
    let create = "mutation($input: CreateAirdropProjectInput!) { createAirdropProject(input: $input) { airdropProject { id description } clientMutationId } }";
    let created = app.data(Some(&admin.token), create, input).await["createAirdropProject"].clone();
    assert_eq!(created["airdropProject"]["description"], "tokens for all");
    assert_eq!(created["clientMutationId"], "c1");
    let id = created["airdropProject"]["id"].clone();
    let update = "mutation($input: UpdateAirdropProjectInput!) { updateAirdropProject(input: $input) { airdropProject { name description totalTokenAllocation } } }";

    let renamed = app.data(Some(&admin.token), update, json!({ "input": { "id": id, "name": "Renamed" } })).await;
    assert_eq!(
        renamed["updateAirdropProject"]["airdropProject"]["description"], "tokens for all",
        "omitted: unchanged"
    );
    let cleared = app.data(Some(&admin.token), update, json!({ "input": { "id": id, "description": null } })).await;
    assert_eq!(
        cleared["updateAirdropProject"]["airdropProject"],
        json!({ "name": "Renamed", "description": null, "totalTokenAllocation": "100" })
    );
    assert_eq!(app.count("SELECT count(*) FROM airdrop_project WHERE description IS NULL").await, 1);

    for field in ["name", "startDate", "endDate", "totalTokenAllocation"] {
        let response = app.graphql(Some(&admin.token), update, json!({ "input": { "id": id, field: null } })).await;
        assert_eq!(error_code(&response), "BAD_USER_INPUT", "{field}: {response}");
        assert_eq!(response["errors"][0]["extensions"]["field"], field, "{response}");
    }
}

#[tokio::test]
async fn an_update_writes_only_the_columns_it_names_and_checks_new_dates_against_the_stored_ones() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let id = app.data(Some(&admin.token), CREATE, project(100)).await["createAirdropProject"]["airdropProject"]["id"]
        .clone();
    app.db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.expect("extension");
    // Deltas, not a reset: pg_stat_statements is shared with tests running
    // at the same time in other databases.
    let writes = |like| app.statement_calls(like);
    let (name_only, any_date) =
        (r#"UPDATE "airdrop_project" SET "name" = $1 WHERE %"#, r#"UPDATE "airdrop_project" SET %_date" = $%"#);
    let before = (writes(name_only).await, writes(any_date).await);

    let update = "mutation($input: UpdateAirdropProjectInput!) { updateAirdropProject(input: $input) { airdropProject { name startDate endDate } } }";
    let renamed = app.data(Some(&admin.token), update, json!({ "input": { "id": id, "name": "Renamed" } })).await;
    assert_eq!(
        renamed["updateAirdropProject"]["airdropProject"],
        json!({ "name": "Renamed", "startDate": "2026-01-01", "endDate": "2099-12-31" })
    );
    // Writing the dates it was not given would undo a concurrent change of them.
    assert_eq!(writes(name_only).await - before.0, 1, "the UPDATE sets the name alone");
    assert_eq!(writes(any_date).await - before.1, 0, "no date was written");

    // The one date rule, on the stored row with the change on it.
    let backwards =
        app.graphql(Some(&admin.token), update, json!({ "input": { "id": id, "endDate": "2025-12-31" } })).await;
    assert_eq!(error_code(&backwards), "BAD_USER_INPUT", "{backwards}");
    assert_eq!(backwards["errors"][0]["extensions"]["field"], "endDate");
    let later = app.data(Some(&admin.token), update, json!({ "input": { "id": id, "startDate": "2099-01-01" } })).await;
    assert_eq!(later["updateAirdropProject"]["airdropProject"]["startDate"], "2099-01-01");
}
