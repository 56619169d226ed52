use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tests::{JWT_SECRET, TestApp, error_code};

const ME: &str = "{ me { rowId username email role isActive } }";

#[tokio::test]
async fn sign_up_returns_a_token_that_identifies_the_user() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;

    let me = app.data(Some(&ada.token), ME, json!({})).await;

    assert_eq!(me["me"]["rowId"], ada.id.as_str());
    assert_eq!(me["me"]["email"], "ada@test.io");
    assert_eq!(me["me"]["role"], "USER");
}

#[tokio::test]
async fn sign_up_always_creates_role_user_and_me_is_null_when_anonymous() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let me = app.data(Some(&ada.token), ME, json!({})).await;
    assert_eq!(me["me"]["role"], "USER");
    assert_eq!(app.data(None, ME, json!({})).await["me"], serde_json::Value::Null);
}

#[tokio::test]
async fn sign_in_accepts_email_or_username_in_any_case() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let sign_in = "mutation($login: String!, $password: String!) { signIn(input: {login: $login, password: $password}) { token user { rowId } } }";

    for login in ["ada", "ADA@test.io", "Ada"] {
        let data = app.data(None, sign_in, json!({ "login": login, "password": "password-ada" })).await;
        assert_eq!(data["signIn"]["user"]["rowId"], ada.id.as_str(), "login {login}");
        let token = data["signIn"]["token"].as_str().unwrap_or_default();
        assert_eq!(app.data(Some(token), ME, json!({})).await["me"]["rowId"], ada.id.as_str());
    }
}

#[tokio::test]
async fn sign_in_with_a_wrong_password_or_unknown_login_is_unauthenticated() {
    let app = TestApp::spawn().await;
    app.sign_up("ada").await;
    let sign_in =
        "mutation($login: String!) { signIn(input: {login: $login, password: \"not-her-password\"}) { token } }";

    for login in ["ada", "nobody"] {
        let body = app.graphql(None, sign_in, json!({ "login": login })).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
        assert_eq!(body["errors"][0]["message"], "wrong login or password");
    }
}

#[tokio::test]
async fn a_taken_email_or_username_is_a_conflict_regardless_of_case() {
    let app = TestApp::spawn().await;
    app.sign_up("ada").await;
    let sign_up = "mutation($input: SignUpInput!) { signUp(input: $input) { token } }";

    let same_email = app
        .graphql(None, sign_up, json!({ "input": { "email": "ADA@TEST.IO", "username": "other", "password": "password1", "fullName": "X" } }))
        .await;
    let same_username = app
        .graphql(None, sign_up, json!({ "input": { "email": "other@test.io", "username": "Ada", "password": "password1", "fullName": "X" } }))
        .await;

    assert_eq!(error_code(&same_email), "CONFLICT");
    assert_eq!(same_email["errors"][0]["extensions"]["field"], "email");
    assert_eq!(error_code(&same_username), "CONFLICT");
    assert_eq!(same_username["errors"][0]["extensions"]["field"], "username");
}

#[tokio::test]
async fn sign_up_rejects_bad_input_naming_the_field() {
    let app = TestApp::spawn().await;
    let sign_up = "mutation($input: SignUpInput!) { signUp(input: $input) { token } }";
    let cases = [
        (json!({ "email": "not-an-email", "username": "ada", "password": "password1", "fullName": "A" }), "email"),
        (json!({ "email": "a@b.io", "username": "a", "password": "password1", "fullName": "A" }), "username"),
        (json!({ "email": "a@b.io", "username": "ada", "password": "short", "fullName": "A" }), "password"),
        (json!({ "email": "a@b.io", "username": "ada", "password": "password1", "fullName": " " }), "fullName"),
    ];
    for (input, field) in cases {
        let body = app.graphql(None, sign_up, json!({ "input": input })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    assert_eq!(app.count("SELECT count(*) FROM users").await, 0, "nothing was written");
}

fn forge(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap_or_default()
}

#[tokio::test]
async fn an_expired_token_is_unauthenticated_not_anonymous() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let now = chrono::Utc::now().timestamp();
    let expired = forge(&json!({ "sub": ada.id, "role": "user", "iat": now - 7200, "exp": now - 10 }), JWT_SECRET);

    let body = app.graphql(Some(&expired), ME, json!({})).await;

    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(body["errors"][0]["message"].as_str().unwrap_or_default().contains("expired"));
}

#[tokio::test]
async fn a_tampered_or_foreign_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let now = chrono::Utc::now().timestamp();
    // Same header and signature, payload rewritten to claim admin.
    let parts: Vec<&str> = ada.token.split('.').collect();
    let admin_payload = forge(&json!({ "sub": ada.id, "role": "admin", "iat": now, "exp": now + 600 }), JWT_SECRET);
    let tampered = format!("{}.{}.{}", parts[0], admin_payload.split('.').nth(1).unwrap_or_default(), parts[2]);
    let foreign = forge(
        &json!({ "sub": ada.id, "role": "admin", "iat": now, "exp": now + 600 }),
        "another-secret-another-secret-another-secret",
    );

    for token in [tampered.as_str(), foreign.as_str(), "garbage"] {
        let body = app.graphql(Some(token), "{ places { totalCount } }", json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    }
}

#[tokio::test]
async fn rotating_the_jwt_key_signs_nobody_out_until_the_previous_key_is_removed() {
    const NEW_KEY: &str = "a-new-key-a-new-key-a-new-key-a-new-key";
    let database = tests::create_database(true).await;
    let before = TestApp::spawn_with(tests::test_config(&database)).await;
    let ada = before.sign_up("ada").await;

    // The new key is deployed with the old one as the previous key.
    let mut config = tests::test_config(&database);
    config.jwt_secret = Some(NEW_KEY.into());
    config.jwt_previous_secret = Some(JWT_SECRET.into());
    let rotating = TestApp::spawn_with(config).await;
    let me = rotating.graphql(Some(&ada.token), ME, json!({})).await;
    assert_eq!(me["data"]["me"]["username"], "ada", "a token of the old key still works: {me}");
    let fresh = rotating.sign_up("bea").await;
    let old_only = before.graphql(Some(&fresh.token), ME, json!({})).await;
    assert_eq!(error_code(&old_only), "UNAUTHENTICATED", "new tokens are signed with the new key");

    // Once the old key is removed, its tokens are refused.
    let mut config = tests::test_config(&database);
    config.jwt_secret = Some(NEW_KEY.into());
    let rotated = TestApp::spawn_with(config).await;
    assert_eq!(error_code(&rotated.graphql(Some(&ada.token), ME, json!({})).await), "UNAUTHENTICATED");
    let bea = rotated.graphql(Some(&fresh.token), ME, json!({})).await;
    assert_eq!(bea["data"]["me"]["username"], "bea", "{bea}");
}

#[tokio::test]
async fn a_deactivated_user_cannot_sign_in_and_their_token_stops_working() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let ada = app.sign_up("ada").await;

    let set = "mutation($id: ID!) { setUserActive(input: {userId: $id, isActive: false, clientMutationId: \"off\"}) { user { isActive } clientMutationId } }";
    let data = app.data(Some(&admin.token), set, json!({ "id": ada.id })).await;
    assert_eq!(data["setUserActive"], json!({ "user": { "isActive": false }, "clientMutationId": "off" }));

    let with_old_token = app.graphql(Some(&ada.token), ME, json!({})).await;
    assert_eq!(error_code(&with_old_token), "UNAUTHENTICATED");
    let sign_in = app
        .graphql(None, "mutation { signIn(input: {login: \"ada\", password: \"password-ada\"}) { token } }", json!({}))
        .await;
    assert_eq!(error_code(&sign_in), "UNAUTHENTICATED");
    assert_eq!(sign_in["errors"][0]["message"], "this account is deactivated");
}

#[tokio::test]
async fn only_an_admin_sets_roles_and_a_new_role_applies_to_existing_tokens() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let ada = app.sign_up("ada").await;
    let set_role = "mutation($id: ID!, $role: Role!) { setUserRole(input: {userId: $id, role: $role, clientMutationId: \"r\"}) { user { role } clientMutationId } }";

    let by_user = app.graphql(Some(&ada.token), set_role, json!({ "id": ada.id, "role": "ADMIN" })).await;
    assert_eq!(error_code(&by_user), "FORBIDDEN");

    let by_admin = app.data(Some(&admin.token), set_role, json!({ "id": ada.id, "role": "SERVICE" })).await;
    assert_eq!(by_admin["setUserRole"], json!({ "user": { "role": "SERVICE" }, "clientMutationId": "r" }));
    // Ada's token still says `user`, but the request runs as service now.
    let create = "mutation { createPlace(input: {id: \"p1\", name: \"Cafe\", lat: 1, lng: 2}) { place { rowId } } }";
    assert_eq!(app.data(Some(&ada.token), create, json!({})).await["createPlace"]["place"]["rowId"], "p1");
}

#[tokio::test]
async fn a_user_sees_only_their_own_account() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;

    let other =
        app.data(Some(&ada.token), "query($id: ID!) { user(id: $id) { email } }", json!({ "id": bob.id })).await;
    assert_eq!(other["user"], Value::Null, "another account is null, as if missing");
    let list = app.data(Some(&ada.token), "{ users { totalCount edges { node { username } } } }", json!({})).await;
    assert_eq!(list["users"]["totalCount"], 1);
    assert_eq!(list["users"]["edges"][0]["node"]["username"], "ada");

    let reader = app.sign_up_as("auditor", "reader").await;
    let all = app.data(Some(&reader.token), "{ users { totalCount } }", json!({})).await;
    assert_eq!(all["users"]["totalCount"], 3);
}

#[tokio::test]
async fn no_type_exposes_a_password_hash() {
    let app = TestApp::spawn().await;
    let body = app.data(None, "{ __type(name: \"User\") { fields { name } } }", json!({})).await;
    let fields = body["__type"]["fields"].to_string().to_lowercase();
    assert!(fields.contains("email"));
    assert!(!fields.contains("password"), "{fields}");
}

#[tokio::test]
async fn sign_up_sign_in_and_refresh_echo_their_client_mutation_id() {
    let app = TestApp::spawn().await;
    let up = "mutation { signUp(input: {email: \"ada@test.io\", username: \"ada\", password: \"password-ada\", fullName: \"Ada\", clientMutationId: \"up-1\"}) { clientMutationId } }";
    assert_eq!(app.data(None, up, json!({})).await["signUp"]["clientMutationId"], "up-1");
    let sign_in = "mutation { signIn(input: {login: \"ada\", password: \"password-ada\", clientMutationId: \"in-2\"}) { refreshToken clientMutationId } }";
    let signed = app.data(None, sign_in, json!({})).await;
    assert_eq!(signed["signIn"]["clientMutationId"], "in-2");
    let refresh = "mutation($t: String!) { refreshSession(input: {refreshToken: $t, clientMutationId: \"re-3\"}) { clientMutationId } }";
    let refreshed = app.data(None, refresh, json!({ "t": signed["signIn"]["refreshToken"] })).await;
    assert_eq!(refreshed["refreshSession"]["clientMutationId"], "re-3");
    let without = "mutation { signIn(input: {login: \"ada\", password: \"password-ada\"}) { clientMutationId } }";
    assert_eq!(app.data(None, without, json!({})).await["signIn"]["clientMutationId"], Value::Null);
}
