//! The posts API (Allogator).

use serde_json::{Value, json};
use tests::{TestApp, TestUser, error_code};

const CREATE: &str = "mutation($t: String!, $p: Boolean) { createPost(input: {title: $t, body: \"b\", published: $p}) { post { id published author { username } } } }";

async fn post(app: &TestApp, user: &TestUser, title: &str, published: bool) -> String {
    app.data(Some(&user.token), CREATE, json!({ "t": title, "p": published })).await["createPost"]["post"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn titles(data: &Value, field: &str) -> Vec<String> {
    data[field]["nodes"]
        .as_array()
        .map(|n| n.iter().map(|p| p["title"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn drafts_are_visible_to_their_author_only_and_published_posts_to_every_signed_in_user() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let draft = post(&app, &ada, "draft", false).await;
    post(&app, &ada, "live", true).await;

    let list = "{ posts { totalCount nodes { title author { username fullName } } } }";
    assert_eq!(titles(&app.data(Some(&bob.token), list, json!({})).await, "posts"), ["live"]);
    let mut adas = titles(&app.data(Some(&ada.token), "{ myPosts { nodes { title } } }", json!({})).await, "myPosts");
    adas.sort();
    assert_eq!(adas, ["draft", "live"]);
    let unseen =
        app.data(Some(&bob.token), "query($id: ID!) { post(id: $id) { title } }", json!({ "id": draft })).await;
    assert_eq!(unseen["post"], Value::Null, "another user's draft is null, as if missing");
    assert_eq!(error_code(&app.graphql(None, list, json!({})).await), "UNAUTHENTICATED");
    let profile = app.data(Some(&bob.token), list, json!({})).await;
    assert_eq!(
        profile["posts"]["nodes"][0]["author"],
        json!({ "username": "ada", "fullName": "ada" }),
        "a public profile, no email"
    );

    let edit = "mutation($id: ID!) { updatePost(input: {id: $id, title: \"mine\"}) { post { title } } }";
    assert_eq!(error_code(&app.graphql(Some(&bob.token), edit, json!({ "id": draft })).await), "NOT_FOUND");
    let blank = app.graphql(Some(&ada.token), CREATE, json!({ "t": "  ", "p": false })).await;
    assert_eq!(error_code(&blank), "BAD_USER_INPUT");
    assert_eq!(blank["errors"][0]["extensions"]["field"], "title");
    let published = app
        .data(
            Some(&ada.token),
            "mutation($id: ID!) { publishPost(input: {id: $id}) { post { published } } }",
            json!({ "id": draft }),
        )
        .await;
    assert_eq!(published["publishPost"]["post"]["published"], true);
    assert_eq!(app.data(Some(&bob.token), list, json!({})).await["posts"]["totalCount"], 2);
}

#[tokio::test]
async fn comments_follow_their_post_and_either_author_may_delete_them() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    let live = post(&app, &ada, "live", true).await;
    let draft = post(&app, &ada, "draft", false).await;
    let add = "mutation($p: ID!, $b: String!) { addComment(input: {postId: $p, body: $b}) { comment { id author { username } } } }";

    let bobs =
        app.data(Some(&bob.token), add, json!({ "p": live, "b": "nice" })).await["addComment"]["comment"]["id"].clone();
    app.data(Some(&carol.token), add, json!({ "p": live, "b": "agreed" })).await;
    assert_eq!(error_code(&app.graphql(Some(&bob.token), add, json!({ "p": draft, "b": "hi" })).await), "NOT_FOUND");
    assert_eq!(error_code(&app.graphql(Some(&bob.token), add, json!({ "p": live, "b": " " })).await), "BAD_USER_INPUT");

    let page = app
        .data(Some(&carol.token), "query($id: ID!) { post(id: $id) { comments(first: 1) { totalCount nodes { body author { username } } pageInfo { hasNextPage } } } }", json!({ "id": live }))
        .await;
    assert_eq!(page["post"]["comments"]["totalCount"], 2);
    assert_eq!(page["post"]["comments"]["nodes"][0], json!({ "body": "nice", "author": { "username": "bob" } }));
    assert_eq!(page["post"]["comments"]["pageInfo"]["hasNextPage"], true);

    let delete = "mutation($id: ID!) { deleteComment(input: {id: $id}) { comment { id } } }";
    assert_eq!(error_code(&app.graphql(Some(&carol.token), delete, json!({ "id": bobs })).await), "FORBIDDEN");
    app.data(Some(&ada.token), delete, json!({ "id": bobs })).await;
    assert_eq!(error_code(&app.graphql(Some(&bob.token), delete, json!({ "id": bobs })).await), "NOT_FOUND");
}

#[tokio::test]
async fn a_drafts_events_reach_its_author_only_until_it_is_published_and_unpublishing_is_a_deletion() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    // Cursors are signed for the viewer they are handed to.
    let (adas_after, bobs_after) = (app.change_cursor_for(&ada).await, app.change_cursor_for(&bob).await);
    let query = "subscription($a: String) { postChanged(after: $a) { operation post { title published } } }";
    let mut adas = app.subscriber(Some(&ada.token)).await;
    adas.subscribe("1", query, json!({ "a": adas_after })).await;
    let mut bobs = app.subscriber(Some(&bob.token)).await;
    bobs.subscribe("1", query, json!({ "a": bobs_after })).await;
    // Both replays are over once each has a post published after them:
    // what commits before a replay ends is history, filtered by what the
    // viewer may see when it is read (an unpublished post: nothing), which
    // is not what this test is about.
    post(&app, &ada, "ready", true).await;
    for ws in [&mut adas, &mut bobs] {
        while ws.next_data("1").await["postChanged"]["post"]["title"] != "ready" {}
    }

    let id = post(&app, &ada, "draft", false).await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { updatePost(input: {id: $id, title: \"still a draft\"}) { post { id } } }",
        json!({ "id": id }),
    )
    .await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { publishPost(input: {id: $id}) { post { id } } }",
        json!({ "id": id }),
    )
    .await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { updatePost(input: {id: $id, title: \"edited\"}) { post { id } } }",
        json!({ "id": id }),
    )
    .await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { publishPost(input: {id: $id, published: false}) { post { id } } }",
        json!({ "id": id }),
    )
    .await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { updatePost(input: {id: $id, title: \"secret again\"}) { post { id } } }",
        json!({ "id": id }),
    )
    .await;
    let marker = post(&app, &ada, "marker", true).await;

    let mut seen_by_bob = Vec::new();
    loop {
        let event = bobs.next_data("1").await["postChanged"].clone();
        let title = event["post"]["title"].as_str().unwrap_or_default().to_owned();
        seen_by_bob.push((event["operation"].as_str().unwrap_or_default().to_owned(), title.clone()));
        if title == "marker" {
            break;
        }
    }
    assert_eq!(
        seen_by_bob,
        [
            ("INSERTED".to_owned(), "still a draft".to_owned()),
            ("UPDATED".to_owned(), "edited".to_owned()),
            ("DELETED".to_owned(), "edited".to_owned()),
            ("INSERTED".to_owned(), "marker".to_owned()),
        ],
        "Bob sees the post from publication to unpublication, nothing of the draft before or after"
    );
    let mut seen_by_ada = 0;
    loop {
        let event = adas.next_data("1").await["postChanged"].clone();
        seen_by_ada += 1;
        if event["post"]["title"] == "marker" {
            break;
        }
    }
    assert_eq!(seen_by_ada, 7, "the author sees every change");
    let _ = marker;
}

#[tokio::test]
async fn comment_added_streams_new_comments_of_a_visible_post() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let live = post(&app, &ada, "live", true).await;
    let draft = post(&app, &ada, "draft", false).await;
    let query = "subscription($p: ID!, $a: String) { commentAdded(postId: $p, after: $a) { comment { body author { username } } } }";

    let mut hidden = app.subscriber(Some(&bob.token)).await;
    hidden.subscribe("1", query, json!({ "p": draft })).await;
    let refused = hidden.message().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "NOT_FOUND");

    let mut ws = app.subscriber(Some(&bob.token)).await;
    ws.subscribe("1", query, json!({ "p": live, "a": app.change_cursor_for(&bob).await })).await;
    app.data(
        Some(&ada.token),
        "mutation($p: ID!) { addComment(input: {postId: $p, body: \"first\"}) { comment { id } } }",
        json!({ "p": live }),
    )
    .await;
    let event = ws.next_data("1").await;
    assert_eq!(event["commentAdded"]["comment"], json!({ "body": "first", "author": { "username": "ada" } }));

    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { publishPost(input: {id: $id, published: false}) { post { id } } }",
        json!({ "id": live }),
    )
    .await;
    let ended = ws.message().await;
    assert_eq!(ended["type"], "error", "{ended}");
    assert_eq!(ended["payload"][0]["extensions"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn only_the_author_deletes_a_post_and_its_comments_go_with_it() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let live = post(&app, &ada, "live", true).await;
    app.data(
        Some(&bob.token),
        "mutation($p: ID!) { addComment(input: {postId: $p, body: \"hi\"}) { comment { id } } }",
        json!({ "p": live }),
    )
    .await;
    let delete = "mutation($id: ID!) { deletePost(input: {id: $id}) { post { title } } }";
    assert_eq!(error_code(&app.graphql(Some(&bob.token), delete, json!({ "id": live })).await), "FORBIDDEN");
    assert_eq!(app.data(Some(&ada.token), delete, json!({ "id": live })).await["deletePost"]["post"]["title"], "live");
    assert_eq!(app.count("SELECT count(*) FROM comment").await, 0);
    assert_eq!(error_code(&app.graphql(Some(&ada.token), delete, json!({ "id": live })).await), "NOT_FOUND");
}

#[tokio::test]
async fn a_post_change_event_carries_the_posts_comments_and_their_count() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let live = post(&app, &ada, "live", true).await;
    for body in ["one", "two", "three"] {
        app.data(
            Some(&bob.token),
            "mutation($p: ID!, $b: String!) { addComment(input: {postId: $p, body: $b}) { comment { id } } }",
            json!({ "p": live, "b": body }),
        )
        .await;
    }
    let mut ws = app.subscriber(Some(&bob.token)).await;
    let query = "subscription($a: String) { postChanged(after: $a) { operation post { title comments(first: 2) { \
                 totalCount nodes { body author { username } } pageInfo { hasNextPage } } } } }";
    ws.subscribe("1", query, json!({ "a": app.change_cursor_for(&bob).await })).await;

    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { updatePost(input: {id: $id, title: \"edited\"}) { post { id } } }",
        json!({ "id": live }),
    )
    .await;

    let event = ws.next_data("1").await;
    let post = &event["postChanged"]["post"];
    assert_eq!(post["title"], "edited", "{event}");
    assert_eq!(post["comments"]["totalCount"], 3, "{event}");
    assert_eq!(
        post["comments"]["nodes"],
        json!([{ "body": "one", "author": { "username": "bob" } }, { "body": "two", "author": { "username": "bob" } }])
    );
    assert_eq!(post["comments"]["pageInfo"]["hasNextPage"], true);
}

#[tokio::test]
async fn comments_of_many_posts_page_each_post_on_its_own() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    for n in 0..3 {
        let id = post(&app, &ada, &format!("p{n}"), true).await;
        for k in 0..n {
            app.data(
                Some(&ada.token),
                "mutation($p: ID!, $b: String!) { addComment(input: {postId: $p, body: $b}) { comment { id } } }",
                json!({ "p": id, "b": format!("c{n}.{k}") }),
            )
            .await;
        }
    }
    let page = |first: i32, after: Option<String>| {
        let query = "query($f: Int, $a: String) { posts { nodes { title comments(first: $f, after: $a) { \
                     nodes { body } pageInfo { hasNextPage endCursor } } } } }";
        app.data(Some(&ada.token), query, json!({ "f": first, "a": after }))
    };
    let bodies = |post: &Value| -> Vec<String> {
        post["comments"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["body"].as_str().unwrap_or("").to_owned())
            .collect()
    };

    let data = page(1, None).await;
    let posts = data["posts"]["nodes"].as_array().cloned().unwrap_or_default();
    let by_title = |title: &str| posts.iter().find(|p| p["title"] == title).cloned().unwrap_or(Value::Null);
    assert_eq!(bodies(&by_title("p0")), Vec::<String>::new());
    assert_eq!(bodies(&by_title("p1")), ["c1.0"]);
    assert_eq!(bodies(&by_title("p2")), ["c2.0"]);
    assert_eq!(by_title("p1")["comments"]["pageInfo"]["hasNextPage"], false);
    assert_eq!(by_title("p2")["comments"]["pageInfo"]["hasNextPage"], true);

    // A cursor of one post's comments continues that post's page.
    let after = by_title("p2")["comments"]["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    let data = page(5, after).await;
    let p2 = data["posts"]["nodes"].as_array().into_iter().flatten().find(|p| p["title"] == "p2").cloned();
    assert_eq!(bodies(&p2.unwrap_or(Value::Null)), ["c2.1"]);

    let newest = "{ posts { nodes { title comments(last: 1) { nodes { body } } } } }";
    let newest = app.data(Some(&ada.token), newest, json!({})).await;
    let p2 = newest["posts"]["nodes"].as_array().into_iter().flatten().find(|p| p["title"] == "p2").cloned();
    assert_eq!(bodies(&p2.unwrap_or(Value::Null)), ["c2.1"], "last: 1 is each post's newest comment");

    let bad = app
        .graphql(Some(&ada.token), "{ posts { nodes { comments(first: 101) { nodes { body } } } } }", json!({}))
        .await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT", "{bad}");
}

#[tokio::test]
async fn an_update_post_input_keeps_omitted_fields_and_refuses_null_for_title_and_body_by_name() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let id = post(&app, &ada, "first title", true).await;
    let update =
        "mutation($input: UpdatePostInput!) { updatePost(input: $input) { post { title body } clientMutationId } }";

    let edited = app
        .data(Some(&ada.token), update, json!({ "input": { "id": id, "body": "", "clientMutationId": "e1" } }))
        .await;
    assert_eq!(
        edited["updatePost"],
        json!({ "post": { "title": "first title", "body": "" }, "clientMutationId": "e1" })
    );
    for field in ["title", "body"] {
        let response = app.graphql(Some(&ada.token), update, json!({ "input": { "id": id, field: null } })).await;
        assert_eq!(error_code(&response), "BAD_USER_INPUT", "{field}: {response}");
        assert_eq!(response["errors"][0]["extensions"]["field"], field, "{response}");
    }
}

const COMMENT_CHANGED: &str = "subscription($p: ID!, $a: String) { commentChanged(postId: $p, after: $a) { operation comment { id body author { username } } cursor } }";
const ADD_COMMENT: &str =
    "mutation($p: ID!, $b: String!) { addComment(input: {postId: $p, body: $b}) { comment { id } } }";
const DELETE_COMMENT: &str = "mutation($id: ID!) { deleteComment(input: {id: $id}) { comment { id } } }";

async fn comment(app: &TestApp, user: &TestUser, post: &str, body: &str) -> String {
    app.data(Some(&user.token), ADD_COMMENT, json!({ "p": post, "b": body })).await["addComment"]["comment"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn comment_changed_streams_a_posts_comments_as_they_are_added_and_deleted_with_their_operation() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let live = post(&app, &ada, "live", true).await;
    let other = post(&app, &ada, "other", true).await;
    let mut ws = app.subscriber(Some(&bob.token)).await;
    ws.subscribe("1", COMMENT_CHANGED, json!({ "p": live, "a": app.change_cursor_for(&bob).await })).await;

    let id = comment(&app, &bob, &live, "first").await;
    let added = ws.next_data("1").await;
    assert_eq!(added["commentChanged"]["operation"], "INSERTED", "{added}");
    assert_eq!(
        added["commentChanged"]["comment"],
        json!({ "id": id, "body": "first", "author": { "username": "bob" } })
    );

    comment(&app, &bob, &other, "elsewhere").await;
    app.data(Some(&bob.token), DELETE_COMMENT, json!({ "id": id })).await;
    let deleted = ws.next_data("1").await;
    assert_eq!(deleted["commentChanged"]["operation"], "DELETED", "only this post's comments: {deleted}");
    assert_eq!(deleted["commentChanged"]["comment"]["body"], "first", "as it was: {deleted}");
}

#[tokio::test]
async fn comment_changed_never_delivers_the_comments_of_another_users_draft() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let draft = post(&app, &ada, "draft", false).await;
    let live = post(&app, &ada, "live", true).await;

    let mut refused = app.subscriber(Some(&bob.token)).await;
    refused.subscribe("1", COMMENT_CHANGED, json!({ "p": draft })).await;
    let error = refused.message().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["payload"][0]["extensions"]["code"], "NOT_FOUND");

    // The author sees her draft's comments; Bob, watching her live post,
    // gets none of them.
    let mut own = app.subscriber(Some(&ada.token)).await;
    own.subscribe("1", COMMENT_CHANGED, json!({ "p": draft, "a": app.change_cursor_for(&ada).await })).await;
    let mut ws = app.subscriber(Some(&bob.token)).await;
    ws.subscribe("1", COMMENT_CHANGED, json!({ "p": live, "a": app.change_cursor_for(&bob).await })).await;
    comment(&app, &ada, &draft, "a note on the draft").await;
    comment(&app, &ada, &live, "public").await;
    assert_eq!(own.next_data("1").await["commentChanged"]["comment"]["body"], "a note on the draft");
    let event = ws.next_data("1").await;
    assert_eq!(event["commentChanged"]["comment"]["body"], "public", "{event}");

    // Unpublished: Bob's stream ends rather than showing what follows.
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { publishPost(input: {id: $id, published: false}) { post { id } } }",
        json!({ "id": live }),
    )
    .await;
    comment(&app, &ada, &live, "secret").await;
    let ended = ws.message().await;
    assert_eq!(ended["type"], "error", "{ended}");
    assert_eq!(ended["payload"][0]["extensions"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn comment_changed_resumed_with_after_replays_what_happened_to_the_comments_since_that_cursor() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let live = post(&app, &ada, "live", true).await;
    let mut ws = app.subscriber(Some(&bob.token)).await;
    ws.subscribe("1", COMMENT_CHANGED, json!({ "p": live, "a": app.change_cursor_for(&bob).await })).await;
    let kept = comment(&app, &bob, &live, "before the drop").await;
    let cursor = ws.next_data("1").await["commentChanged"]["cursor"].clone();
    drop(ws);

    // While Bob is away: one comment added, one added and deleted, one
    // deleted.
    comment(&app, &ada, &live, "while away").await;
    let gone = comment(&app, &ada, &live, "soon gone").await;
    app.data(Some(&ada.token), DELETE_COMMENT, json!({ "id": gone })).await;
    app.data(Some(&bob.token), DELETE_COMMENT, json!({ "id": kept })).await;

    let mut ws = app.subscriber(Some(&bob.token)).await;
    ws.subscribe("1", COMMENT_CHANGED, json!({ "p": live, "a": cursor })).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = ws.next_data("1").await;
        let change = &event["commentChanged"];
        seen.push((
            change["operation"].as_str().unwrap_or("").to_owned(),
            change["comment"]["body"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let seen: Vec<(&str, &str)> = seen.iter().map(|(o, b)| (o.as_str(), b.as_str())).collect();
    assert_eq!(
        seen,
        [("INSERTED", "while away"), ("DELETED", "soon gone"), ("DELETED", "before the drop")],
        "a comment added and deleted since arrives as its deletion alone"
    );
    comment(&app, &ada, &live, "live again").await;
    assert_eq!(ws.next_data("1").await["commentChanged"]["operation"], "INSERTED");
}
