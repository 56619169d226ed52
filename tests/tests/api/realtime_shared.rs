//! Shared execution of subscription payloads: subscribers with the same
//! document, variables and audience get one execution per event, and each
//! exactly what its own execution would give it.

use serde_json::{Value, json};
use tests::{TestApp, TestUser, WsClient, eventually};

const PLACES: &str = "subscription($category: String) {
  placeChanged(category: $category) { operation cursor place { rowId name category } }
}";
const PLACES_OTHER_FIELDS: &str = "subscription { placeChanged { operation place { rowId lat description } } }";
const POSTS: &str = "subscription { postChanged { operation cursor post { id title published author { username } } } }";

/// The metric's value now.
async fn metric(app: &TestApp, series: &str) -> f64 {
    app.metrics().await.value(series)
}

async fn attached(app: &TestApp, subscriptions: usize) {
    eventually("every subscription is attached to the feed", async || {
        metric(app, "api_subscriptions").await == subscriptions as f64
    })
    .await;
}

/// The next `next` message's payload for operation `id`.
async fn payload(ws: &mut WsClient, id: &str) -> Value {
    let message = ws.message().await;
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(message["id"], id, "{message}");
    message["payload"].clone()
}

async fn create_post(app: &TestApp, user: &TestUser, title: &str, published: bool) -> String {
    app.data(
        Some(&user.token),
        "mutation($t: String!, $p: Boolean) { createPost(input: {title: $t, body: \"b\", published: $p}) { post { id } } }",
        json!({ "t": title, "p": published }),
    )
    .await["createPost"]["post"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn subscribers_of_one_audience_share_one_execution_per_event_each_under_its_own_id() {
    let app = TestApp::spawn().await;
    let ids = ["a", "b", "c", "a-much-longer-id-\"quoted\""];
    let mut sockets = Vec::new();
    for id in ids {
        let mut ws = app.subscriber(None).await;
        ws.subscribe(id, PLACES, json!({})).await;
        sockets.push(ws);
    }
    attached(&app, ids.len()).await;
    let (executed, delivered) =
        (metric(&app, "api_events_executed_total").await, metric(&app, "api_events_delivered_total").await);

    for place in ["p1", "p2", "p3"] {
        app.insert_place(place, "cafe", 1.0, 1.0, None, None).await;
    }
    let mut first: Option<Vec<Value>> = None;
    for (ws, id) in sockets.iter_mut().zip(ids) {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(payload(ws, id).await);
        }
        let places: Vec<&str> =
            seen.iter().filter_map(|p| p["data"]["placeChanged"]["place"]["rowId"].as_str()).collect();
        assert_eq!(places, ["p1", "p2", "p3"], "in commit order");
        // Anonymous viewers get the same cursors: the same payloads.
        assert_eq!(first.get_or_insert_with(|| seen.clone()), &seen);
    }

    assert_eq!(metric(&app, "api_events_executed_total").await - executed, 3.0, "one execution per event");
    assert_eq!(metric(&app, "api_events_delivered_total").await - delivered, 12.0, "every subscriber got every event");
}

#[tokio::test]
async fn a_subscriber_with_a_different_selection_set_on_the_same_event_gets_its_own_execution() {
    let app = TestApp::spawn().await;
    let mut same_one = app.subscriber(None).await;
    same_one.subscribe("1", PLACES, json!({})).await;
    let mut same_two = app.subscriber(None).await;
    same_two.subscribe("1", PLACES, json!({})).await;
    let mut other = app.subscriber(None).await;
    other.subscribe("1", PLACES_OTHER_FIELDS, json!({})).await;
    attached(&app, 3).await;
    let executed = metric(&app, "api_events_executed_total").await;

    app.insert_place("p1", "cafe", 1.5, 2.5, None, None).await;

    let one = payload(&mut same_one, "1").await;
    assert_eq!(payload(&mut same_two, "1").await, one);
    let place = &one["data"]["placeChanged"]["place"];
    assert_eq!(place, &json!({ "rowId": "p1", "name": "Place p1", "category": "cafe" }));
    let theirs = payload(&mut other, "1").await;
    assert_eq!(
        theirs["data"]["placeChanged"],
        json!({ "operation": "INSERTED", "place": { "rowId": "p1", "lat": 1.5, "description": null } }),
        "its own fields, no cursor"
    );
    assert_eq!(metric(&app, "api_events_executed_total").await - executed, 2.0, "one execution per document");
}

/// Each subscriber beside a twin on its own socket: the same viewer,
/// document and variables, but a document text of its own (a comment), so
/// the twin is an audience of one and its payload is what the subscriber's
/// own execution gives. Shared or not, the payloads must be identical.
#[tokio::test]
async fn shared_execution_gives_each_subscriber_exactly_what_its_own_execution_would() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    // (viewer, document, variables, events it will see)
    let plan: Vec<(Option<&TestUser>, &str, Value, usize)> = vec![
        (None, PLACES, json!({}), 2),
        (None, PLACES_OTHER_FIELDS, json!({}), 2),
        // A signed-in viewer of the same public audience: same execution,
        // its own cursors.
        (Some(&ada), PLACES, json!({}), 2),
        (Some(&bob), PLACES, json!({ "category": "cafe" }), 1),
        // Per-viewer audiences: the author is loaded as the viewer; Bob's
        // draft reaches Bob only.
        (Some(&ada), POSTS, json!({}), 2),
        (Some(&ada), POSTS, json!({}), 2),
        (Some(&bob), POSTS, json!({}), 3),
    ];
    let mut pairs = Vec::new();
    for (n, (viewer, document, variables, count)) in plan.iter().enumerate() {
        let token = viewer.map(|v| v.token.as_str());
        let mut shared = app.subscriber(token).await;
        shared.subscribe("s", document, variables.clone()).await;
        let mut own = app.subscriber(token).await;
        own.subscribe("o", &format!("{document}\n# own execution {n}"), variables.clone()).await;
        pairs.push((shared, own, *count));
    }
    attached(&app, 2 * plan.len()).await;
    let (executed, delivered) =
        (metric(&app, "api_events_executed_total").await, metric(&app, "api_events_delivered_total").await);

    app.insert_place("p1", "cafe", 1.0, 1.0, None, None).await;
    app.insert_place("p2", "bar", 1.0, 1.0, None, None).await;
    let post = create_post(&app, &ada, "hello", true).await;
    create_post(&app, &bob, "bob's draft", false).await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { updatePost(input: {id: $id, title: \"edited\"}) { post { id } } }",
        json!({ "id": post }),
    )
    .await;

    let mut received = Vec::new();
    for (shared, own, count) in &mut pairs {
        let mut seen = Vec::new();
        for _ in 0..*count {
            let (a, b) = (payload(shared, "s").await, payload(own, "o").await);
            assert!(a.get("errors").is_none(), "{a}");
            assert_eq!(a, b, "a shared payload is what the subscriber's own execution gives");
            seen.push(a);
        }
        received.push(seen);
    }
    let total: usize = pairs.iter().map(|(_, _, count)| 2 * count).sum();
    let executions = metric(&app, "api_events_executed_total").await - executed;
    assert_eq!(metric(&app, "api_events_delivered_total").await - delivered, total as f64);
    assert!(executions < total as f64, "some executions were shared: {executions} of {total}");

    // The same public payload, but each viewer's own cursor spliced in.
    let cursor = |seen: &Vec<Value>| seen[0]["data"]["placeChanged"]["cursor"].as_str().unwrap_or_default().to_owned();
    let (anonymous, adas) = (cursor(&received[0]), cursor(&received[2]));
    assert_ne!(anonymous, adas);
    assert_eq!(received[0][0]["data"]["placeChanged"]["place"], received[2][0]["data"]["placeChanged"]["place"]);
    // Bob's draft reached Bob's subscription only, with Bob as its author.
    assert_eq!(received[6][1]["data"]["postChanged"]["post"]["author"]["username"], "bob");
    assert!(received[4].iter().all(|p| p["data"]["postChanged"]["post"]["author"]["username"] == "ada"));

    // Ada's spliced cursor is hers: resuming from it gives what followed.
    let mut resumed = app.subscriber(Some(&ada.token)).await;
    let resume = "subscription($after: String) { placeChanged(after: $after) { place { rowId } } }";
    resumed.subscribe("r", resume, json!({ "after": adas })).await;
    let next = payload(&mut resumed, "r").await;
    assert_eq!(next["data"]["placeChanged"]["place"]["rowId"], "p2", "{next}");
}

#[tokio::test]
async fn subscriptions_multiplexed_on_one_socket_each_get_every_event_once_in_commit_order() {
    // Frames of one socket are written together (one write for the frames
    // that are ready at once, by whichever subscription's task gets the
    // socket first): none may be lost, doubled or reordered per subscription,
    // whether its payload was shared or executed for it alone.
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    let shared_ids = ["s1", "s2", "s3", "s4", "s5"];
    for id in shared_ids {
        ws.subscribe(id, PLACES, json!({})).await;
    }
    ws.subscribe("own", PLACES_OTHER_FIELDS, json!({})).await;
    attached(&app, shared_ids.len() + 1).await;

    let places: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    for place in &places {
        app.insert_place(place, "cafe", 1.0, 1.0, None, None).await;
    }
    let mut seen: std::collections::HashMap<String, Vec<String>> = Default::default();
    for _ in 0..places.len() * (shared_ids.len() + 1) {
        let message = ws.message().await;
        assert_eq!(message["type"], "next", "{message}");
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        let place =
            message["payload"]["data"]["placeChanged"]["place"]["rowId"].as_str().unwrap_or_default().to_owned();
        seen.entry(id).or_default().push(place);
    }
    for id in shared_ids.iter().copied().chain(["own"]) {
        assert_eq!(seen.get(id), Some(&places), "subscription {id}: every event once, in commit order");
    }
}

#[tokio::test]
async fn a_completed_subscription_gets_nothing_more_while_its_neighbours_go_on() {
    // A shared subscription's events are read by a task of its own, which
    // writes to the socket itself: `complete` must stop that task too, not
    // only the operation that started it.
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    for id in ["stays", "goes"] {
        ws.subscribe(id, PLACES, json!({})).await;
    }
    attached(&app, 2).await;
    app.insert_place("before", "cafe", 1.0, 1.0, None, None).await;
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..2 {
        ids.push(ws.message().await["id"].as_str().unwrap_or_default().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["goes", "stays"], "both get the first event");

    ws.send(json!({ "type": "complete", "id": "goes" })).await;
    attached(&app, 1).await;
    for place in ["after1", "after2", "after3"] {
        app.insert_place(place, "cafe", 1.0, 1.0, None, None).await;
    }
    for place in ["after1", "after2", "after3"] {
        let message = ws.message().await;
        assert_eq!(message["id"], "stays", "only the subscription left gets events: {message}");
        assert_eq!(message["payload"]["data"]["placeChanged"]["place"]["rowId"], place);
    }
}

#[tokio::test]
async fn one_event_for_several_subscriptions_on_one_socket_leaves_in_one_write() {
    // graphql-ws clients multiplex a page's subscriptions over one socket:
    // the deliveries one event makes to it are written together, one
    // `send` rather than one per subscription (`api_ws_writes`; the unit
    // test in `http::ws_outbox` registers other subscribers between a
    // socket's two, and `realtime::drivers`' move a lone source into them).
    let mut config = tests::test_config(&tests::create_database(true).await);
    // No keepalive ping (a write of its own) inside the measured window.
    config.ws_keepalive = 3600;
    let app = TestApp::spawn_with(config).await;
    let (sockets, per_socket) = (10_u32, 3_u32);
    let mut clients = Vec::new();
    for _ in 0..sockets {
        clients.push(app.subscriber(None).await);
    }
    for k in 0..per_socket {
        for ws in &mut clients {
            ws.subscribe(&k.to_string(), PLACES, json!({})).await;
        }
    }
    attached(&app, (sockets * per_socket) as usize).await;
    let mut event = 0;
    let mut one_event = async |clients: &mut Vec<WsClient>| {
        event += 1;
        app.insert_place(&format!("p{event}"), "cafe", 1.0, 1.0, None, None).await;
        for ws in clients.iter_mut() {
            for _ in 0..per_socket {
                let message = ws.message().await;
                assert_eq!(message["type"], "next", "{message}");
            }
        }
    };
    // Each socket's first subscription started alone; these events move
    // it in with the others (api::realtime::drivers::LOOK_EVERY wakes).
    for _ in 0..=16 {
        one_event(&mut clients).await;
    }
    let writes = metric(&app, "api_ws_writes_total").await;
    let events = 3;
    for _ in 0..events {
        one_event(&mut clients).await;
    }
    let written = metric(&app, "api_ws_writes_total").await - writes;
    // One write per socket and event; one per delivery would be three times
    // that. A write is counted just after the kernel took it, so the last
    // warm-up event's may fall inside the window: one per socket of slack.
    let most = f64::from(sockets * events + sockets);
    assert!(written <= most, "{written} writes for {events} events to {sockets} sockets of {per_socket}");
}
