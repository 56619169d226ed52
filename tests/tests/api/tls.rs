//! TLS to the database: what the operations guide promises with
//! `sslmode=verify-full` in DATABASE_URL.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use tests::{Cluster, TestApp, test_config_on};

const PLACES: &str = "subscription($after: String) { placeChanged(after: $after) { operation place { rowId } } }";

/// Runs the `openssl` CLI in `dir` with `args` (split on whitespace),
/// failing the test with its output.
fn openssl(dir: &Path, args: &str) {
    let output = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run openssl");
    assert!(output.status.success(), "openssl {args} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// A certificate authority `<name>.crt` with its key `<name>.key` in `dir`.
/// A CA of its own, not a self-signed server certificate: webpki (rustls)
/// refuses a CA certificate presented as the server's.
fn certificate_authority(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -days 1 \
             -keyout {name}.key -out {name}.crt -subj /CN=api-test-{name} \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
}

/// `server.crt` and `server.key` in `dir` for `localhost`, signed by `ca`.
/// The names are in subjectAltName: webpki ignores the common name.
fn server_certificate(dir: &Path, ca: &str) {
    openssl(
        dir,
        "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
         -keyout server.key -out server.csr -subj /CN=localhost",
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        .expect("writing server.ext");
    openssl(
        dir,
        &format!("x509 -req -in server.csr -CA {ca}.crt -CAkey {ca}.key -days 1 -extfile server.ext -out server.crt"),
    );
    // PostgreSQL refuses a private key that others can read: mode 0600,
    // owned by the user it runs as (`postgres` when root runs the tests).
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("setting the key's permissions");
    if let Some((uid, gid)) = api::db::embedded::postgres_user_if_root().expect("looking up the postgres user") {
        std::os::unix::fs::chown(&key, Some(uid), Some(gid)).expect("giving the key to the postgres user");
    }
}

/// The error `Application::build` returns for `config`, proving on the way
/// that it returns one rather than starting or panicking.
async fn build_error(config: api::Config) -> String {
    // In a task of its own, so that a panic is told apart from an error.
    let built = tokio::spawn(api::Application::build(config))
        .await
        .expect("building the server panicked instead of returning an error");
    built.err().map(|e| e.to_string()).expect("the server started")
}

#[tokio::test]
async fn the_server_talks_to_the_database_only_over_verified_tls_and_plaintext_or_a_foreign_ca_is_refused() {
    // Arrange: a CA that signed the database's certificate, and another.
    let certs = std::env::temp_dir().join(format!(
        "apitest-tls-{}-{}",
        std::process::id(),
        api::db::embedded::random_hex(3).expect("the OS random generator works")
    ));
    std::fs::create_dir_all(&certs).unwrap_or_else(|e| panic!("cannot create {}: {e}", certs.display()));
    certificate_authority(&certs, "ca");
    certificate_authority(&certs, "other-ca");
    server_certificate(&certs, "ca");
    // A cluster of its own: TCP with TLS, and plaintext TCP refused by the
    // server itself (the unix socket stays for the harness's superuser).
    let cluster = Cluster::start_with(
        &[
            "listen_addresses=127.0.0.1",
            "ssl=on",
            &format!("ssl_cert_file={}", certs.join("server.crt").display()),
            &format!("ssl_key_file={}", certs.join("server.key").display()),
        ],
        "hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject",
    );
    let database = cluster.migrated_database("tls").await;
    let url = cluster.tcp_url("app_authenticator", &database);
    let with_url = |url: String| api::Config { database_url: Some(url.into()), ..test_config_on(&cluster, &database) };
    let verified = |ca: &str| format!("{url}?sslmode=verify-full&sslrootcert={}", certs.join(ca).display());

    // Act: the server on the verified URL, which the change feed and the
    // realtime listener use too (no DATABASE_LISTEN_URL).
    let app = TestApp::spawn_on(&cluster, with_url(verified("ca.crt"))).await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe("1", PLACES, json!({ "after": app.change_cursor().await })).await;
    let ada = app.sign_up("ada").await;
    app.insert_place("p1", "cafe", 0.0, 0.0, None, None).await;

    // Assert: requests and live changes work.
    assert!(!ada.token.is_empty(), "a mutation went through");
    let event = ws.next_data("1").await["placeChanged"].clone();
    assert_eq!(event["place"]["rowId"], "p1", "the listener and the feed read the change: {event}");
    let places = app.data(None, "{ places { totalCount } }", json!({})).await;
    assert_eq!(places["places"]["totalCount"], 1, "{places}");
    // And the database says each of the server's connections is encrypted:
    // the request pool, the change feed and the realtime listener.
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT a.application_name, a.query, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.datname = '{database}' AND a.usename = 'app_authenticator'"
            ),
        ))
        .await
        .expect("reading the server's connections");
    let backends: Vec<(String, String, bool)> = rows
        .iter()
        .map(|row| {
            let column = |i| row.try_get_by_index::<String>(i).expect("reading a column");
            (column(0), column(1), row.try_get_by_index::<bool>(2).expect("reading a column"))
        })
        .collect();
    assert!(backends.iter().all(|(_, _, ssl)| *ssl), "every connection uses TLS: {backends:?}");
    assert!(backends.iter().any(|(name, _, _)| name == "api"), "the request pool: {backends:?}");
    assert!(backends.iter().any(|(name, _, _)| name == "api-feed"), "the change feed: {backends:?}");
    assert!(backends.iter().any(|(_, query, _)| query.starts_with("LISTEN")), "the listener: {backends:?}");

    // Without TLS the database turns the server away (pg_hba.conf)...
    let plaintext = build_error(with_url(format!("{url}?sslmode=disable"))).await;
    assert!(plaintext.contains("no encryption"), "refused for want of TLS: {plaintext}");
    // ...and a database certificate the server cannot trace to a trusted
    // CA stops it. (sqlx with rustls trusts sslrootcert *in addition to*
    // the Mozilla roots it bundles, unlike libpq, which trusts it alone;
    // neither holds the test CA.)
    let foreign = build_error(with_url(verified("other-ca.crt"))).await;
    assert!(foreign.contains("UnknownIssuer"), "refused for the certificate: {foreign}");

    let _ = std::fs::remove_dir_all(certs);
}
