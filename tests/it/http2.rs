//! HTTP/2: cleartext by prior knowledge, HTTPS with ALPN choosing HTTP/2 or HTTP/1.1, the
//! per-connection stream limit, and idle connections.

use std::pin::pin;
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hardening::metric;
use crate::harness::{spawn_app, spawn_app_with};

fn h2c() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("HTTP/2 client")
}

#[tokio::test]
async fn cleartext_http2_carries_64_concurrent_publishes_on_one_connection() {
    let app = spawn_app().await;
    app.create_stream("H2", &["h2.>"]).await;
    let client = h2c();
    // One request first, so that the 64 below share its connection instead of racing to open
    // their own.
    let first = client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz over h2c");
    assert_eq!(first.version(), Version::HTTP_2);
    assert_eq!(first.status(), 200);
    let connections_before = metric(&app, "jetway_http_connections").await;

    let answers = join_all((0..64).map(|i| {
        client
            .post(app.url(&format!("/v1/publish/h2.{i}")))
            .header("Idempotency-Key", format!("h2-{i}"))
            .body(format!("message {i}"))
            .send()
    }))
    .await;
    let mut seqs = Vec::new();
    for answer in answers {
        let answer = answer.expect("publish over h2c");
        assert_eq!(answer.version(), Version::HTTP_2);
        assert_eq!(answer.status(), 201);
        let body: serde_json::Value = answer.json().await.expect("publish result");
        seqs.push(body["seq"].as_u64().expect("seq"));
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=64).collect::<Vec<u64>>(),
        "64 distinct sequences"
    );

    // Stored, as NATS itself says.
    let mut stream = app.js.get_stream("H2").await.expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(info.state.messages, 64);
    let stored = stream.get_raw_message(7).await.expect("message 7");
    let answer = client
        .get(app.url("/v1/streams/H2/messages/7"))
        .send()
        .await
        .expect("read over h2c");
    assert_eq!(answer.version(), Version::HTTP_2);
    let body: serde_json::Value = answer.json().await.expect("message");
    assert_eq!(body["subject"], stored.subject.as_str());

    // All of it on one connection: the open-connection gauge grew by at most the /metrics
    // requests' own (HTTP/1.1) connections.
    let connections_after = metric(&app, "jetway_http_connections").await;
    assert!(
        connections_after <= connections_before + 1,
        "h2c requests opened connections: {connections_before} before, {connections_after} after"
    );
}

#[tokio::test]
async fn http1_requests_are_still_served_next_to_http2() {
    let app = spawn_app().await;
    // A request that starts like the HTTP/2 preface ("P…") and one that does not.
    let plain = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    for answer in [
        plain.get(app.url("/healthz")).send().await,
        plain
            .post(app.url("/v1/publish/nowhere.x"))
            .body("x")
            .send()
            .await,
    ] {
        let answer = answer.expect("HTTP/1.1 answer");
        assert_eq!(answer.version(), Version::HTTP_11);
        assert_ne!(answer.status(), 500);
    }
    // A client that sends a few bytes of something else is answered as HTTP/1.1 (400).
    let mut socket = TcpStream::connect(app.addr).await.expect("connect");
    socket
        .write_all(b"PRX * HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
}

/// Reads the server's SETTINGS through a real HTTP/2 client library.
#[tokio::test]
async fn the_stream_limit_is_announced_and_enforced_per_connection() {
    let app = spawn_app_with(|c| c.http2_max_streams = 2).await;
    let tcp = TcpStream::connect(app.addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let mut connection = pin!(connection);
    let deadline = Instant::now() + Duration::from_secs(10);
    while connection.max_concurrent_send_streams() != 2 {
        assert!(
            Instant::now() < deadline,
            "the server never announced 2 streams: {}",
            connection.max_concurrent_send_streams()
        );
        let _ = tokio::time::timeout(Duration::from_millis(20), connection.as_mut()).await;
    }
    drop(client);

    // Three long polls at once through a client that honours the limit: the third waits for a
    // stream, so the three take at least two poll times instead of one.
    app.create_stream("LIMIT", &["limit.>"]).await;
    let created = app
        .http
        .put(app.url("/v1/streams/LIMIT/consumers/idle"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("create consumer");
    assert!(created.status().is_success(), "{}", created.status());
    let client = h2c();
    client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("open the connection");
    let started = Instant::now();
    let polls = join_all((0..3).map(|_| {
        client
            .post(app.url("/v1/streams/LIMIT/consumers/idle/fetch"))
            .json(&serde_json::json!({"max_messages": 1, "wait": "1s"}))
            .send()
    }))
    .await;
    let took = started.elapsed();
    for poll in polls {
        let poll = poll.expect("fetch");
        assert_eq!(poll.version(), Version::HTTP_2);
        assert_eq!(poll.status(), 200);
    }
    assert!(
        took >= Duration::from_millis(1900),
        "3 polls of 1 s on 2 streams took {took:?}: the limit was not applied"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_header_read_timeout() {
    let app = spawn_app_with(|c| c.header_read_timeout = Duration::from_secs(1)).await;
    let tcp = TcpStream::connect(app.addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(ended.is_ok(), "still open after 10 s");
    let lived = started.elapsed();
    assert!(
        lived >= Duration::from_millis(900),
        "closed after {lived:?}, before the timeout"
    );
    drop(client);

    // A connection that never sends its preface is closed as well.
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a silent connection was not closed: {read:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// HTTPS

struct Certificate {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    pem: String,
}

fn certificate() -> Certificate {
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("self-signed certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let pem = generated.cert.pem();
    std::fs::write(&cert, &pem).expect("write cert");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
    Certificate {
        _dir: dir,
        cert,
        key,
        pem,
    }
}

fn https_client(certificate: &Certificate, http1_only: bool) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(certificate.pem.as_bytes()).expect("root");
    let builder = reqwest::Client::builder()
        .add_root_certificate(root)
        .tls_built_in_root_certs(false)
        .use_rustls_tls();
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().expect("HTTPS client")
}

#[tokio::test]
async fn https_offers_http2_and_http1_by_alpn_and_stores_what_it_acknowledges() {
    let certificate = certificate();
    let (cert, key) = (certificate.cert.clone(), certificate.key.clone());
    let app = spawn_app_with(move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await;
    app.create_stream("TLS", &["tls.>"]).await;
    let url = |path: &str| format!("https://{}{path}", app.addr);

    for (http1_only, version) in [(false, Version::HTTP_2), (true, Version::HTTP_11)] {
        let client = https_client(&certificate, http1_only);
        let answer = client
            .post(url("/v1/publish/tls.in"))
            .header("Content-Type", "text/plain")
            .body(format!("over {version:?}"))
            .send()
            .await
            .expect("publish over HTTPS");
        assert_eq!(answer.version(), version);
        assert_eq!(answer.status(), 201);
    }
    let stream = app.js.get_stream("TLS").await.expect("stream");
    let first = stream.get_raw_message(1).await.expect("message 1");
    let second = stream.get_raw_message(2).await.expect("message 2");
    assert_eq!(first.payload.as_ref(), b"over HTTP/2.0");
    assert_eq!(second.payload.as_ref(), b"over HTTP/1.1");

    // Plain HTTP to the TLS listener gets no HTTP answer.
    let plain = app.http.get(app.url("/healthz")).send().await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // `jetway healthcheck` asks the TLS listener on loopback.
    let checked = jetway::healthcheck::check(
        &jetway::healthcheck::default_url(app.addr, true),
        Duration::from_secs(5),
        true,
    )
    .await;
    assert!(checked.is_ok(), "{checked:?}");
}

#[tokio::test]
async fn a_missing_or_mismatched_certificate_stops_the_start_with_the_flag_named() {
    let certificate = certificate();
    let other = self::certificate();
    let server = crate::harness::NatsServer::start().await;
    for (cert, key, expected) in [
        (
            certificate.cert.with_file_name("absent.pem"),
            certificate.key.clone(),
            "--tls-cert",
        ),
        (
            certificate.key.clone(),
            certificate.key.clone(),
            "--tls-cert",
        ),
        (certificate.cert.clone(), other.cert.clone(), "--tls-key"),
        (
            certificate.cert.clone(),
            other.key.clone(),
            "--tls-cert/--tls-key",
        ),
    ] {
        let mut config = jetway::config::Config::defaults();
        config.nats_url = server.urls();
        config.no_auth = true;
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
        let Err(err) = jetway::build(config).await else {
            panic!("started with {cert:?} and {key:?}");
        };
        let err = err.to_string();
        assert!(err.contains(expected), "{cert:?}, {key:?}: {err}");
    }
}
