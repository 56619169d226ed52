//! Issue 10 §4: signing up and in cannot be used to guess passwords fast,
//! to create accounts in bulk, or to exhaust the server: per-address and
//! per-login rate limits (RATE_LIMITED with Retry-After), one signUp/signIn
//! per document, and a bounded wait for a password hashing thread
//! (SERVICE_UNAVAILABLE with Retry-After). The memory bound itself is
//! measured on the real binary in api/tests/cli.rs.

use serde_json::{Value, json};
use tests::{TestApp, error_code};

const SIGN_IN: &str =
    "mutation($login: String!, $password: String!) { signIn(input: {login: $login, password: $password}) { token } }";

/// A server whose sign-up and sign-in limits are `tune`d down from the
/// harness's (which are out of the way of the other tests).
async fn app_with(tune: impl FnOnce(&mut api::Config)) -> TestApp {
    let mut config = tests::test_config(&tests::create_database(true).await);
    tune(&mut config);
    TestApp::spawn_with(config).await
}

/// POSTs a GraphQL request (as `from`, when the server trusts
/// X-Forwarded-For) and returns the Retry-After header and the body.
async fn post(app: &TestApp, from: Option<&str>, query: &str, variables: Value) -> (Option<String>, Value) {
    let mut request =
        app.http.post(format!("{}/graphql", app.address)).json(&json!({ "query": query, "variables": variables }));
    if let Some(address) = from {
        request = request.header("x-forwarded-for", format!("198.51.100.250, {address}"));
    }
    let response = request.send().await.expect("request");
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (retry_after, response.json().await.expect("JSON body"))
}

async fn sign_in(app: &TestApp, from: Option<&str>, login: &str, password: &str) -> (Option<String>, Value) {
    post(app, from, SIGN_IN, json!({ "login": login, "password": password })).await
}

fn assert_rate_limited(retry_after: Option<&str>, body: &Value) {
    assert_eq!(error_code(body), "RATE_LIMITED", "{body}");
    let seconds = body["errors"][0]["extensions"]["retryAfter"].as_u64().expect("extensions.retryAfter");
    assert!(seconds >= 1, "{body}");
    assert_eq!(retry_after, Some(seconds.to_string().as_str()), "the Retry-After header says the same");
}

#[tokio::test]
async fn guessing_one_accounts_password_is_rate_limited_from_any_address_even_with_the_right_password() {
    let app = app_with(|c| {
        c.sign_in_per_login_per_minute = 3;
        c.trust_x_forwarded_for = true;
    })
    .await;
    app.sign_up("ada").await;

    for (i, from) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"].into_iter().enumerate() {
        let (_, body) = sign_in(&app, Some(from), "ada", &format!("guess-{i}")).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    }
    let (retry_after, right) = sign_in(&app, Some("203.0.113.4"), "ADA", "password-ada").await;
    assert_rate_limited(retry_after.as_deref(), &right);
    // Only the login is limited: another account signs in from the same addresses.
    app.sign_up("bob").await;
    let (none, bob) = sign_in(&app, Some("203.0.113.1"), "bob", "password-bob").await;
    assert!(bob["data"]["signIn"]["token"].is_string(), "{bob}");
    assert_eq!(none, None, "no Retry-After on success");
}

#[tokio::test]
async fn one_address_trying_many_logins_is_rate_limited_and_other_addresses_are_not() {
    let app = app_with(|c| {
        c.sign_in_per_ip_per_minute = 3;
        c.trust_x_forwarded_for = true;
    })
    .await;

    for login in ["a1", "a2", "a3"] {
        let (_, body) = sign_in(&app, Some("203.0.113.7"), login, "whatever-password").await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    }
    let (retry_after, body) = sign_in(&app, Some("203.0.113.7"), "a4", "whatever-password").await;
    assert_rate_limited(retry_after.as_deref(), &body);
    let (_, other) = sign_in(&app, Some("203.0.113.8"), "a4", "whatever-password").await;
    assert_eq!(error_code(&other), "UNAUTHENTICATED", "{other}");
    // IPv6 clients are counted per /64: a host cannot rotate its own addresses.
    for n in 1..=3 {
        let (_, body) = sign_in(&app, Some(&format!("2001:db8:1:2::{n}")), &format!("b{n}"), "pw-pw-pw-pw").await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    }
    let (retry_after, body) = sign_in(&app, Some("2001:db8:1:2:ffff::9"), "b4", "pw-pw-pw-pw").await;
    assert_rate_limited(retry_after.as_deref(), &body);
}

#[tokio::test]
async fn without_a_trusted_proxy_x_forwarded_for_cannot_dodge_the_address_limit() {
    let app = app_with(|c| c.sign_in_per_ip_per_minute = 2).await;
    let mut codes = Vec::new();
    for n in 1..=3 {
        let (_, body) = sign_in(&app, Some(&format!("203.0.113.{n}")), &format!("c{n}"), "whatever-password").await;
        codes.push(error_code(&body).to_owned());
    }
    assert_eq!(codes, ["UNAUTHENTICATED", "UNAUTHENTICATED", "RATE_LIMITED"]);
}

#[tokio::test]
async fn sign_ups_past_the_address_limit_are_rate_limited_and_create_nothing() {
    let app = app_with(|c| c.sign_up_per_ip_per_hour = 2).await;
    app.sign_up("ada").await;
    app.sign_up("bob").await;
    let (retry_after, body) = post(
        &app,
        None,
        "mutation($input: SignUpInput!) { signUp(input: $input) { token } }",
        json!({ "input": { "email": "eve@test.io", "username": "eve", "password": "password-eve", "fullName": "Eve" } }),
    )
    .await;
    assert_rate_limited(retry_after.as_deref(), &body);
    assert!(retry_after.and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s > 60), "an hourly limit waits minutes");
    assert_eq!(app.count("SELECT count(*) FROM users").await, 2);
}

#[tokio::test]
async fn forty_aliased_sign_ups_in_one_document_are_refused_and_create_no_account() {
    let app = TestApp::spawn().await;
    let aliased = |n: usize| {
        let fields: String = (0..n)
            .map(|i| {
                format!(
                    "a{i}: signUp(input: {{email: \"u{i}@test.io\", username: \"user{i}\", password: \"password-{i}-x\", fullName: \"U{i}\"}}) {{ token }} "
                )
            })
            .collect();
        format!("mutation {{ {fields} }}")
    };
    // Forty trip the cap on mutation fields first; three, the one-per-document rule.
    let body = app.graphql(None, &aliased(40), json!({})).await;
    assert!(["BAD_USER_INPUT", "TOO_MANY_MUTATION_FIELDS"].contains(&error_code(&body)), "{body}");
    assert_eq!(body["data"], Value::Null, "nothing ran: {body}");
    let body = app.graphql(None, &aliased(3), json!({})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("at most one signUp or signIn")),
        "{body}"
    );
    assert_eq!(body["data"], Value::Null, "nothing ran: {body}");
    assert_eq!(app.count("SELECT count(*) FROM users").await, 0);

    // Hidden in fragments, or mixed with signIn: the same.
    let body = app
        .graphql(
            None,
            "mutation { ...A ... on Mutation { b: signIn(input: {login: \"x\", password: \"y\"}) { token } } }
             fragment A on Mutation { a: signUp(input: {email: \"a@test.io\", username: \"aaa\", password: \"password-a\", fullName: \"A\"}) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(app.count("SELECT count(*) FROM users").await, 0);

    // One per document is fine.
    app.sign_up("ada").await;
}

#[tokio::test]
async fn over_the_websocket_sign_in_is_limited_and_one_per_document_like_over_http() {
    let app = app_with(|c| c.sign_in_per_ip_per_minute = 2).await;
    let mut ws = app.subscriber(None).await;
    let mut codes = Vec::new();
    for n in 1..=3 {
        let id = n.to_string();
        ws.subscribe(&id, SIGN_IN, json!({ "login": format!("w{n}"), "password": "whatever-password" })).await;
        let message = ws.message().await;
        assert_eq!(message["id"], id.as_str(), "{message}");
        codes.push(error_code(&message["payload"]).to_owned());
        if n == 3 {
            assert!(message["payload"]["errors"][0]["extensions"]["retryAfter"].as_u64().is_some(), "{message}");
        }
        assert_eq!(ws.message().await["type"], "complete");
    }
    assert_eq!(codes, ["UNAUTHENTICATED", "UNAUTHENTICATED", "RATE_LIMITED"]);

    ws.subscribe(
        "twice",
        "mutation { a: signIn(input: {login: \"x\", password: \"y\"}) { token } b: signIn(input: {login: \"x\", password: \"y\"}) { token } }",
        json!({}),
    )
    .await;
    let message = ws.message().await;
    assert_eq!(error_code(&message["payload"]), "BAD_USER_INPUT", "{message}");
}

#[tokio::test]
async fn when_no_hashing_thread_frees_up_in_time_sign_in_answers_service_unavailable_with_retry_after() {
    let app = app_with(|c| {
        c.password_hash_threads = 1;
        c.password_hash_wait_ms = 1;
    })
    .await;
    let attempts = (0..6).map(|n| {
        let app = &app;
        async move { sign_in(app, None, &format!("nobody{n}"), "whatever-password").await }
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut unavailable = 0;
    for (retry_after, body) in &results {
        match error_code(body) {
            "UNAUTHENTICATED" => {}
            "SERVICE_UNAVAILABLE" => {
                unavailable += 1;
                assert_eq!(body["errors"][0]["extensions"]["retryAfter"], 1, "{body}");
                assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(unavailable >= 1, "six concurrent hashes on one thread, each waiting 1 ms: {results:?}");
}

#[tokio::test]
async fn the_address_limit_counts_each_tcp_peer_on_its_own() {
    let app = app_with(|c| c.sign_in_per_ip_per_minute = 2).await;
    // Loopback is a /8: a client bound to 127.0.0.2 is another peer.
    let from = |local: &str| {
        reqwest::Client::builder().local_address(local.parse::<std::net::IpAddr>().ok()).build().expect("client")
    };
    let (first, second) = (from("127.0.0.1"), from("127.0.0.2"));
    let attempt = |client: &reqwest::Client, n: u32| {
        let request = client.post(format!("{}/graphql", app.address)).json(
            &json!({ "query": SIGN_IN, "variables": { "login": format!("p{n}"), "password": "whatever-password" } }),
        );
        async move { request.send().await.expect("request").json::<Value>().await.expect("JSON") }
    };
    let mut codes = Vec::new();
    for n in 1..=3 {
        codes.push(error_code(&attempt(&first, n).await).to_owned());
    }
    assert_eq!(codes, ["UNAUTHENTICATED", "UNAUTHENTICATED", "RATE_LIMITED"]);
    assert_eq!(error_code(&attempt(&second, 4).await), "UNAUTHENTICATED", "another peer has its own limit");
}
