//! The harness itself: what a test leaves behind once it ends.

use tests::TestApp;

/// Runs `test` the way libtest runs one: on a thread of its own with a
/// runtime of its own, and returns what it yields, or `None` if it panicked.
fn run_as_a_test<T: Send + 'static>(test: impl AsyncFnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("building a runtime");
        runtime.block_on(test())
    })
    .join()
    .ok()
}

async fn databases_named(app: &TestApp, name: &str) -> i64 {
    app.count(&format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'")).await
}

#[tokio::test]
async fn a_tests_database_is_dropped_when_the_test_ends() {
    let observer = TestApp::spawn().await;
    let database = run_as_a_test(async || {
        let app = TestApp::spawn().await;
        app.sign_up("ada").await;
        app.database.clone()
    })
    .expect("the inner test passes");
    assert_eq!(databases_named(&observer, &observer.database).await, 1, "the observer sees its own database");
    assert_eq!(databases_named(&observer, &database).await, 0, "{database} outlived its test");
}

#[tokio::test]
async fn a_tests_database_is_dropped_even_when_the_test_panics_with_its_server_connected() {
    let observer = TestApp::spawn().await;
    let (named, name) = std::sync::mpsc::channel();
    let outcome = run_as_a_test(async move || {
        let app = TestApp::spawn().await;
        let _subscriber = app.subscriber(None).await;
        named.send(app.database.clone()).expect("sending the name");
        // Without the panic hook, so the output shows no alarming message.
        std::panic::resume_unwind(Box::new("failing on purpose"));
    });
    assert!(outcome.is_none(), "the inner test panicked");
    let database = name.recv().expect("the inner test named its database");
    assert_eq!(databases_named(&observer, &database).await, 0, "{database} outlived its test");
}

#[tokio::test]
async fn a_database_created_outside_a_server_is_dropped_too() {
    let observer = TestApp::spawn().await;
    let database = run_as_a_test(async || tests::create_database(false).await).expect("the inner test passes");
    assert_eq!(databases_named(&observer, &database).await, 0, "{database} outlived its test");
}
