//! The routines API (Dropfarm).

use serde_json::{Value, json};
use tests::{TestApp, TestUser, error_code};

const CREATE: &str = "mutation($input: CreateRoutineInput!) { createRoutine(input: $input) { routine { id name steps tokensPerRun userId } } }";

async fn routine(app: &TestApp, user: &TestUser, name: &str) -> String {
    let input =
        json!({ "input": { "name": name, "steps": [{ "action": "swap", "token": "ETH" }], "tokensPerRun": 5 } });
    app.data(Some(&user.token), CREATE, input).await["createRoutine"]["routine"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn start(app: &TestApp, user: &TestUser, routine: &str) -> Value {
    app.graphql(
        Some(&user.token),
        "mutation($r: ID!) { startRun(input: {routineId: $r}) { run { id status startTime endTime } } }",
        json!({ "r": routine }),
    )
    .await
}

const FINISH: &str = "mutation($id: ID!, $s: RunStatus!, $t: Int!, $end: DateTime) { finishRun(input: {id: $id, status: $s, tokensEarned: $t, endTime: $end}) { run { id status tokensEarned endTime } } }";

#[tokio::test]
async fn routines_are_created_listed_updated_and_deleted_by_their_owner() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let id = routine(&app, &ada, "daily farm").await;
    routine(&app, &ada, "weekly farm").await;

    let mine =
        app.data(Some(&ada.token), "{ myRoutines(first: 10) { totalCount nodes { name steps } } }", json!({})).await;
    assert_eq!(mine["myRoutines"]["totalCount"], 2);
    assert_eq!(mine["myRoutines"]["nodes"][1]["steps"], json!([{ "action": "swap", "token": "ETH" }]));

    let update = "mutation($id: ID!) { updateRoutine(input: {id: $id, name: \"renamed\", tokensPerRun: 9}) { routine { name tokensPerRun } } }";
    assert_eq!(
        app.data(Some(&ada.token), update, json!({ "id": id })).await["updateRoutine"]["routine"],
        json!({ "name": "renamed", "tokensPerRun": 9 })
    );
    let one = app.data(Some(&ada.token), "query($id: ID!) { routine(id: $id) { name } }", json!({ "id": id })).await;
    assert_eq!(one["routine"]["name"], "renamed");
    let delete = "mutation($id: ID!) { deleteRoutine(input: {id: $id}) { routine { id } } }";
    app.data(Some(&ada.token), delete, json!({ "id": id })).await;
    let gone = app.data(Some(&ada.token), "query($id: ID!) { routine(id: $id) { name } }", json!({ "id": id })).await;
    assert_eq!(gone["routine"], Value::Null, "a deleted routine is null, not an error");
}

#[tokio::test]
async fn bad_routine_input_is_rejected_naming_the_field() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let cases = [
        (json!({ "name": "x", "steps": { "action": "swap" } }), "steps"),
        (json!({ "name": "x", "steps": [{ "noAction": 1 }] }), "steps"),
        (json!({ "name": " ", "steps": [] }), "name"),
        (json!({ "name": "x", "steps": [], "tokensPerRun": -1 }), "tokensPerRun"),
    ];
    for (input, field) in cases {
        let body = app.graphql(Some(&ada.token), CREATE, json!({ "input": input })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    assert_eq!(app.count("SELECT count(*) FROM routine").await, 0);
}

#[tokio::test]
async fn runs_start_and_finish_and_stats_follow() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let id = routine(&app, &ada, "farm").await;
    let run = start(&app, &ada, &id).await;
    let run_id = run["data"]["startRun"]["run"]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(run["data"]["startRun"]["run"]["status"], "RUNNING");

    let negative = app.graphql(Some(&ada.token), FINISH, json!({ "id": run_id, "s": "SUCCESS", "t": -5 })).await;
    assert_eq!(error_code(&negative), "BAD_USER_INPUT");
    let before_start = app
        .graphql(
            Some(&ada.token),
            FINISH,
            json!({ "id": run_id, "s": "SUCCESS", "t": 5, "end": "2000-01-01T00:00:00+00:00" }),
        )
        .await;
    assert_eq!(error_code(&before_start), "BAD_USER_INPUT");
    assert_eq!(before_start["errors"][0]["extensions"]["field"], "endTime");

    let finished = app.data(Some(&ada.token), FINISH, json!({ "id": run_id, "s": "SUCCESS", "t": 7 })).await;
    assert_eq!(finished["finishRun"]["run"]["status"], "SUCCESS");
    let again = app.graphql(Some(&ada.token), FINISH, json!({ "id": run_id, "s": "FAILURE", "t": 0 })).await;
    assert_eq!(error_code(&again), "CONFLICT");
    start(&app, &ada, &id).await;

    let stats =
        app.data(Some(&ada.token), "{ myStats { totalRoutineRuns totalTokensEarned lastRunDate } }", json!({})).await;
    assert_eq!(stats["myStats"]["totalRoutineRuns"], 2);
    assert_eq!(stats["myStats"]["totalTokensEarned"], "7");
    let runs = app
        .data(
            Some(&ada.token),
            "query($r: ID!) { runs(routineId: $r, status: SUCCESS) { totalCount nodes { tokensEarned } } }",
            json!({ "r": id }),
        )
        .await;
    assert_eq!(runs["runs"]["totalCount"], 1);
}

#[tokio::test]
async fn another_user_cannot_see_run_or_change_a_routine_but_a_service_records_runs() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let service = app.sign_up_as("bot", "service").await;
    let id = routine(&app, &ada, "farm").await;

    let unseen = app.data(Some(&bob.token), "query($id: ID!) { routine(id: $id) { name } }", json!({ "id": id })).await;
    assert_eq!(unseen["routine"], Value::Null, "another user's routine is null, as if missing");
    assert_eq!(error_code(&start(&app, &bob, &id).await), "NOT_FOUND");
    let update = "mutation($id: ID!) { updateRoutine(input: {id: $id, name: \"mine now\"}) { routine { name } } }";
    assert_eq!(error_code(&app.graphql(Some(&bob.token), update, json!({ "id": id })).await), "NOT_FOUND");
    assert_eq!(
        error_code(
            &app.graphql(Some(&bob.token), "query($r: ID!) { runs(routineId: $r) { totalCount } }", json!({ "r": id }))
                .await
        ),
        "NOT_FOUND"
    );
    assert_eq!(error_code(&app.graphql(Some(&service.token), update, json!({ "id": id })).await), "FORBIDDEN");

    let by_service = start(&app, &service, &id).await;
    assert!(by_service.get("errors").is_none(), "{by_service}");
    let stats = app.data(Some(&ada.token), "{ myStats { totalRoutineRuns } }", json!({})).await;
    assert_eq!(stats["myStats"]["totalRoutineRuns"], 1, "the service's run counts for Ada");
    let bobs = app.data(Some(&bob.token), "{ myStats { totalRoutineRuns } }", json!({})).await;
    assert_eq!(bobs["myStats"]["totalRoutineRuns"], 0);
}

#[tokio::test]
async fn the_leaderboard_is_for_readers_and_admins() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    for (user, tokens) in [(&ada, 3), (&bob, 9)] {
        let id = routine(&app, user, "farm").await;
        let run = start(&app, user, &id).await["data"]["startRun"]["run"]["id"].clone();
        app.data(Some(&user.token), FINISH, json!({ "id": run, "s": "SUCCESS", "t": tokens })).await;
    }
    let reader = app.sign_up_as("auditor", "reader").await;
    let board =
        app.data(Some(&reader.token), "{ leaderboard(first: 5) { rank username totalTokensEarned } }", json!({})).await;
    assert_eq!(
        board["leaderboard"],
        json!([{ "rank": 1, "username": "bob", "totalTokensEarned": "9" }, { "rank": 2, "username": "ada", "totalTokensEarned": "3" }])
    );
    assert_eq!(error_code(&app.graphql(Some(&ada.token), "{ leaderboard { rank } }", json!({})).await), "FORBIDDEN");
}

#[tokio::test]
async fn run_and_stats_changes_reach_their_owner_only() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let after = app.change_cursor_for(&ada).await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe(
        "runs",
        "subscription($a: String) { runChanged(after: $a) { operation run { status userId } } }",
        json!({ "a": after }),
    )
    .await;
    ws.subscribe(
        "stats",
        "subscription($a: String) { myStatsChanged(after: $a) { stats { totalRoutineRuns userId } } }",
        json!({ "a": after }),
    )
    .await;

    let bobs = routine(&app, &bob, "farm").await;
    start(&app, &bob, &bobs).await;
    let adas = routine(&app, &ada, "farm").await;
    start(&app, &ada, &adas).await;

    let mut got = Vec::new();
    for _ in 0..2 {
        let message = ws.message().await;
        let data = &message["payload"]["data"];
        let user = data["runChanged"]["run"]["userId"]
            .as_str()
            .or(data["myStatsChanged"]["stats"]["userId"].as_str())
            .unwrap_or_default()
            .to_owned();
        got.push((message["id"].as_str().unwrap_or_default().to_owned(), user));
    }
    got.sort();
    assert_eq!(got, [("runs".to_owned(), ada.id.clone()), ("stats".to_owned(), ada.id.clone())]);
}

#[tokio::test]
async fn an_update_input_leaves_omitted_fields_alone_and_refuses_null_for_each_required_field_by_name() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let id = routine(&app, &ada, "daily farm").await;
    let update = "mutation($input: UpdateRoutineInput!) { updateRoutine(input: $input) { routine { name steps tokensPerRun } clientMutationId } }";

    let renamed = app
        .data(Some(&ada.token), update, json!({ "input": { "id": id, "name": "renamed", "clientMutationId": "m1" } }))
        .await;
    assert_eq!(
        renamed["updateRoutine"],
        json!({ "routine": { "name": "renamed", "steps": [{ "action": "swap", "token": "ETH" }], "tokensPerRun": 5 }, "clientMutationId": "m1" })
    );
    for field in ["name", "steps", "tokensPerRun"] {
        let response = app.graphql(Some(&ada.token), update, json!({ "input": { "id": id, field: null } })).await;
        assert_eq!(error_code(&response), "BAD_USER_INPUT", "{field}: {response}");
        assert_eq!(response["errors"][0]["extensions"]["field"], field, "{response}");
    }
    // A malformed id is the first error, before the fields, as in every
    // other mutation.
    let response = app.graphql(Some(&ada.token), update, json!({ "input": { "id": "not-a-key", "name": null } })).await;
    assert_eq!(response["errors"][0]["extensions"]["field"], "id", "{response}");
    let unchanged = "query($id: ID!) { routine(id: $id) { name tokensPerRun } }";
    assert_eq!(
        app.data(Some(&ada.token), unchanged, json!({ "id": id })).await["routine"],
        json!({ "name": "renamed", "tokensPerRun": 5 })
    );
}
