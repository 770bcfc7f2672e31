//! Key-value buckets: buckets, keys with revisions (`ETag`, `If-Match`, `If-None-Match`),
//! history, key listing and watches over SSE and WebSocket, permissions by bucket and tenant
//! namespaces, on one node and on an R3 cluster.
//!
//! What is stored is read back with the direct client: the bucket's stream (`KV_<bucket>`) and
//! its messages through the stream leader, and async-nats' own key-value API, which must read
//! jetway's buckets as its own.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::harness::{TestApp, Topology, eventually, json, problem, spawn_app_on, spawn_app_with};
use crate::sse::SseReader;
use crate::ws::{collect_until, connect, stream_consumers, until_type};

const SECRET: &str = "kv-test-secret";

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    request.send().await.expect("request")
}

async fn create_bucket(app: &TestApp, bucket: &str, config: Value) -> Value {
    let response = app
        .http
        .put(app.url(&format!("/v1/kv/{bucket}")))
        .json(&config)
        .send()
        .await
        .expect("put bucket");
    let created = json(response, 201).await;
    if app.replicas() > 1 {
        app.wait_for_stream_leader(&format!("KV_{bucket}")).await;
    }
    created
}

async fn put(
    app: &TestApp,
    bucket: &str,
    key: &str,
    value: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    send(
        app,
        reqwest::Method::PUT,
        &format!("/v1/kv/{bucket}/keys/{key}"),
        headers,
        Some(Bytes::from(value.to_owned())),
    )
    .await
}

/// Puts `value`, asserting 200; answers the revision (checked against the ETag).
async fn put_ok(app: &TestApp, bucket: &str, key: &str, value: &str) -> u64 {
    let response = put(app, bucket, key, value, &[]).await;
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = json(response, 200).await;
    let revision = body["revision"].as_u64().expect("revision");
    assert_eq!(etag.as_deref(), Some(format!("\"{revision}\"").as_str()));
    assert_eq!(body["operation"], "put");
    revision
}

async fn get(app: &TestApp, bucket: &str, key: &str) -> reqwest::Response {
    send(
        app,
        reqwest::Method::GET,
        &format!("/v1/kv/{bucket}/keys/{key}"),
        &[],
        None,
    )
    .await
}

/// The last message on the key's subject, read through the stream leader: (revision, value,
/// `KV-Operation`).
async fn stored(app: &TestApp, bucket: &str, key: &str) -> (u64, Bytes, Option<String>) {
    let stream = app
        .js
        .get_stream(format!("KV_{bucket}"))
        .await
        .expect("stream");
    let message = stream
        .get_last_raw_message_by_subject(&format!("$KV.{bucket}.{key}"))
        .await
        .expect("last message of the key");
    let operation = message
        .headers
        .get("KV-Operation")
        .map(|v| v.as_str().to_owned());
    (message.sequence, message.payload, operation)
}

async fn bucket_lifecycle_is_idempotent_and_lays_the_stream_out_as_nats_clients_do(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    let replicas = app.replicas();
    let created = create_bucket(
        &app,
        "flags",
        json!({"history": 5, "replicas": replicas, "description": "Feature flags"}),
    )
    .await;
    assert_eq!(created["bucket"], "flags");
    assert_eq!(created["config"]["history"], 5);
    assert_eq!(created["revision"], 0);

    let info = app
        .js
        .get_stream("KV_flags")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    assert_eq!(info.subjects, vec!["$KV.flags.>".to_owned()]);
    assert_eq!(info.max_messages_per_subject, 5);
    assert_eq!(info.num_replicas, replicas);
    assert!(info.allow_rollup && info.deny_delete && info.allow_direct);
    assert_eq!(
        info.discard,
        async_nats::jetstream::stream::DiscardPolicy::New
    );

    // The same configuration again changes nothing; another history updates it.
    let body = json!({"history": 5, "replicas": replicas, "description": "Feature flags"});
    let again = app
        .http
        .put(app.url("/v1/kv/flags"))
        .json(&body)
        .send()
        .await
        .unwrap();
    json(again, 200).await;
    let updated = app
        .http
        .put(app.url("/v1/kv/flags"))
        .json(&json!({"history": 10, "replicas": replicas}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(updated, 200).await["config"]["history"], 10);
    let stream = app.js.get_stream("KV_flags").await.unwrap();
    assert_eq!(stream.cached_info().config.max_messages_per_subject, 10);
    let memory = app
        .http
        .put(app.url("/v1/kv/flags"))
        .json(&json!({"history": 10, "replicas": replicas, "storage": "memory"}))
        .send()
        .await
        .unwrap();
    problem(memory, 409, "stream_conflict").await;

    // A bucket made by a NATS client is a bucket here too, and jetway's is one for the client.
    app.js
        .create_key_value(kv::Config {
            bucket: "native".to_owned(),
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .expect("native bucket");
    let list = json(app.http.get(app.url("/v1/kv")).send().await.unwrap(), 200).await;
    let names: Vec<&str> = list["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["flags", "native"]);
    let store = app
        .js
        .get_key_value("flags")
        .await
        .expect("flags as a bucket");
    let revision = put_ok(&app, "flags", "checkout.new_flow", "on").await;
    let entry = eventually(
        "the client reads jetway's write",
        Duration::from_secs(10),
        || async {
            store
                .entry("checkout.new_flow")
                .await
                .ok()
                .flatten()
                .filter(|e| e.revision == revision)
        },
    )
    .await;
    assert_eq!(entry.value.as_ref(), b"on");

    let deleted = send(&app, reqwest::Method::DELETE, "/v1/kv/flags", &[], None).await;
    assert_eq!(deleted.status(), 204);
    assert!(app.js.get_stream("KV_flags").await.is_err());
    problem(
        app.http.get(app.url("/v1/kv/flags")).send().await.unwrap(),
        404,
        "bucket_not_found",
    )
    .await;
    problem(get(&app, "flags", "k").await, 404, "bucket_not_found").await;
    problem(
        put(&app, "flags", "k", "v", &[]).await,
        404,
        "bucket_not_found",
    )
    .await;
}

async fn revisions_make_writes_conditional_and_reads_see_every_acknowledged_write(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    create_bucket(
        &app,
        "cfg",
        json!({"history": 10, "replicas": app.replicas()}),
    )
    .await;

    let first = put_ok(&app, "cfg", "db.url", r#"{"host":"a"}"#).await;
    assert_eq!(stored(&app, "cfg", "db.url").await.0, first);
    let read = get(&app, "cfg", "db.url").await;
    assert_eq!(read.headers()["etag"], format!("\"{first}\"").as_str());
    let entry = json(read, 200).await;
    assert_eq!(entry["value"], json!({"host": "a"}));
    assert_eq!(entry["encoding"], "json");
    assert_eq!(entry["revision"], first);
    assert_eq!(entry["operation"], "put");

    // If-Match on the current revision writes; on a stale one it is refused and writes nothing.
    let second = json(
        put(
            &app,
            "cfg",
            "db.url",
            "b",
            &[("if-match", &format!("\"{first}\""))],
        )
        .await,
        200,
    )
    .await["revision"]
        .as_u64()
        .unwrap();
    assert!(second > first);
    let stale = problem(
        put(
            &app,
            "cfg",
            "db.url",
            "c",
            &[("if-match", &format!("\"{first}\""))],
        )
        .await,
        412,
        "precondition_failed",
    )
    .await;
    let detail = stale["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("revision {second}")), "{detail}");
    assert_eq!(
        stored(&app, "cfg", "db.url").await,
        (second, Bytes::from("b"), None)
    );

    // Conditional GET.
    let unchanged = send(
        &app,
        reqwest::Method::GET,
        "/v1/kv/cfg/keys/db.url",
        &[("if-none-match", &format!("\"{second}\""))],
        None,
    )
    .await;
    assert_eq!(unchanged.status(), 304);
    let changed = send(
        &app,
        reqwest::Method::GET,
        "/v1/kv/cfg/keys/db.url",
        &[("if-none-match", &format!("\"{first}\""))],
        None,
    )
    .await;
    assert_eq!(json(changed, 200).await["value"], "b");

    // Create only: refused over a value, allowed for a new key and over a deleted one.
    problem(
        put(&app, "cfg", "db.url", "x", &[("if-none-match", "*")]).await,
        412,
        "precondition_failed",
    )
    .await;
    let created = json(
        put(&app, "cfg", "db.pool", "4", &[("if-none-match", "*")]).await,
        200,
    )
    .await;
    let deleted = json(
        send(
            &app,
            reqwest::Method::DELETE,
            "/v1/kv/cfg/keys/db.pool",
            &[],
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(deleted["operation"], "delete");
    let (seq, _, op) = stored(&app, "cfg", "db.pool").await;
    assert_eq!(
        (seq, op.as_deref()),
        (deleted["revision"].as_u64().unwrap(), Some("DEL"))
    );
    let gone = problem(get(&app, "cfg", "db.pool").await, 404, "key_not_found").await;
    assert!(
        gone["detail"]
            .as_str()
            .unwrap()
            .contains("deleted at revision"),
        "{gone}"
    );
    problem(
        put(&app, "cfg", "db.pool", "5", &[("if-match", "*")]).await,
        412,
        "precondition_failed",
    )
    .await;
    let recreated = json(
        put(&app, "cfg", "db.pool", "8", &[("if-none-match", "*")]).await,
        200,
    )
    .await;
    assert!(recreated["revision"].as_u64() > created["revision"].as_u64());

    // Raw values are byte-exact; old revisions stay readable; history keeps every kept write.
    let binary = Bytes::from_static(&[0, 159, 146, 150, 255]);
    let raw_revision = json(
        send(
            &app,
            reqwest::Method::PUT,
            "/v1/kv/cfg/keys/blob",
            &[],
            Some(binary.clone()),
        )
        .await,
        200,
    )
    .await["revision"]
        .as_u64()
        .unwrap();
    let raw = send(
        &app,
        reqwest::Method::GET,
        "/v1/kv/cfg/keys/blob",
        &[("accept", "application/octet-stream")],
        None,
    )
    .await;
    assert_eq!(raw.status(), 200);
    assert_eq!(
        raw.headers()["jetway-revision"],
        raw_revision.to_string().as_str()
    );
    assert_eq!(raw.bytes().await.unwrap(), binary);
    let old = json(
        send(
            &app,
            reqwest::Method::GET,
            &format!("/v1/kv/cfg/keys/db.url?revision={first}"),
            &[],
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(old["value"], json!({"host": "a"}));
    problem(
        send(
            &app,
            reqwest::Method::GET,
            &format!("/v1/kv/cfg/keys/db.url?revision={raw_revision}"),
            &[],
            None,
        )
        .await,
        404,
        "key_not_found",
    )
    .await;
    let history = json(
        send(
            &app,
            reqwest::Method::GET,
            "/v1/kv/cfg/keys/db.pool/history",
            &[],
            None,
        )
        .await,
        200,
    )
    .await;
    let operations: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, vec!["put", "delete", "put"]);

    // A purge leaves only itself.
    let purged = json(
        send(
            &app,
            reqwest::Method::DELETE,
            "/v1/kv/cfg/keys/db.pool?purge=true",
            &[],
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(purged["operation"], "purge");
    let history = json(
        send(
            &app,
            reqwest::Method::GET,
            "/v1/kv/cfg/keys/db.pool/history",
            &[],
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(history["entries"].as_array().unwrap().len(), 1);
    assert_eq!(history["entries"][0]["operation"], "purge");
    problem(
        send(
            &app,
            reqwest::Method::GET,
            "/v1/kv/cfg/keys/never/history",
            &[],
            None,
        )
        .await,
        404,
        "key_not_found",
    )
    .await;
}

async fn concurrent_read_modify_write_with_if_match_loses_no_update(topology: Topology) {
    let app = spawn_app_on(topology).await;
    create_bucket(&app, "counts", json!({"replicas": app.replicas()})).await;
    put_ok(&app, "counts", "n", "0").await;
    const WRITERS: u64 = 8;
    const EACH: u64 = 5;
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let http = app.http.clone();
        let url = app.url("/v1/kv/counts/keys/n");
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                loop {
                    let read = http.get(&url).send().await.unwrap();
                    assert_eq!(read.status(), 200);
                    let etag = read.headers()["etag"].to_str().unwrap().to_owned();
                    let value: Value = read.json().await.unwrap();
                    let next = value["value"].as_u64().unwrap() + 1;
                    let write = http
                        .put(&url)
                        .header("if-match", etag)
                        .body(next.to_string())
                        .send()
                        .await
                        .unwrap();
                    match write.status().as_u16() {
                        200 => break,
                        412 => conflicts += 1,
                        other => {
                            panic!("unexpected status {other}: {}", write.text().await.unwrap())
                        }
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let (_, value, _) = stored(&app, "counts", "n").await;
    assert_eq!(value, Bytes::from((WRITERS * EACH).to_string()));
    // The writers did race: without If-Match some of these would have been lost updates.
    assert!(conflicts > 0, "no writer ever conflicted");
}

async fn keys_are_listed_without_deleted_ones_and_by_pattern(topology: Topology) {
    let app = spawn_app_on(topology).await;
    create_bucket(&app, "dir", json!({"replicas": app.replicas()})).await;
    for key in ["users.1.name", "users.2.name", "users.2.email", "teams.a"] {
        put_ok(&app, "dir", key, "x").await;
    }
    send(
        &app,
        reqwest::Method::DELETE,
        "/v1/kv/dir/keys/users.2.email",
        &[],
        None,
    )
    .await;
    let list = |query: &'static str| {
        let app = &app;
        async move {
            json(
                app.http
                    .get(app.url(&format!("/v1/kv/dir/keys{query}")))
                    .send()
                    .await
                    .unwrap(),
                200,
            )
            .await
        }
    };
    let mut all: Vec<String> = serde_json::from_value(list("").await["keys"].clone()).unwrap();
    all.sort();
    assert_eq!(all, vec!["teams.a", "users.1.name", "users.2.name"]);
    let names = list("?key=users.*.name").await;
    assert_eq!(names["keys"], json!(["users.1.name", "users.2.name"]));
    assert_eq!(names["truncated"], false);
    let one = list("?max_keys=1").await;
    assert_eq!(one["keys"].as_array().unwrap().len(), 1);
    assert_eq!(one["truncated"], true);
    // The listing's ordered consumer is gone afterwards.
    eventually("no consumer left", Duration::from_secs(10), || async {
        stream_consumers(&app, "KV_dir")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

async fn sse_watch_sends_current_values_then_changes_and_resumes_after_the_last_revision(
    topology: Topology,
) {
    let app = spawn_app_on(topology).await;
    create_bucket(
        &app,
        "live",
        json!({"history": 5, "replicas": app.replicas()}),
    )
    .await;
    put_ok(&app, "live", "a", "1").await;
    let b = put_ok(&app, "live", "b", "2").await;
    let a2 = put_ok(&app, "live", "a", "3").await;
    put_ok(&app, "live", "other.x", "no").await;

    let response = app
        .http
        .get(app.url("/v1/kv/live/events?key=*"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = SseReader::new(response);
    let first = events.until_kind("caught_up").await;
    let entries: Vec<(String, u64, Value)> = first
        .iter()
        .filter(|e| e.kind() == "message")
        .map(|e| {
            let entry = e.json();
            assert_eq!(
                e.id.as_deref(),
                Some(entry["revision"].to_string().as_str())
            );
            (
                entry["key"].as_str().unwrap().to_owned(),
                entry["revision"].as_u64().unwrap(),
                entry["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            ("b".to_owned(), b, json!(2)),
            ("a".to_owned(), a2, json!(3))
        ]
    );

    let b2 = put_ok(&app, "live", "b", "4").await;
    let live = events.next_event().await.json();
    assert_eq!(
        (live["key"].clone(), live["revision"].clone()),
        (json!("b"), json!(b2))
    );
    let deleted = json(
        send(
            &app,
            reqwest::Method::DELETE,
            "/v1/kv/live/keys/a",
            &[],
            None,
        )
        .await,
        200,
    )
    .await["revision"]
        .as_u64()
        .unwrap();
    let delete = events.next_event().await.json();
    assert_eq!(delete["operation"], "delete");
    assert_eq!(delete["revision"], deleted);
    assert!(delete.get("value").is_none(), "{delete}");
    drop(events);

    // Resume after the last revision seen: only what came later.
    let a3 = put_ok(&app, "live", "a", "5").await;
    let resumed = app
        .http
        .get(app.url("/v1/kv/live/events?key=*"))
        .header("last-event-id", deleted.to_string())
        .send()
        .await
        .unwrap();
    let mut resumed = SseReader::new(resumed);
    let next = resumed.next_event().await;
    assert_eq!(next.id, Some(a3.to_string()));
    drop(resumed);

    // Every kept revision with deliver=history.
    let history = app
        .http
        .get(app.url("/v1/kv/live/events?key=a&deliver=history"))
        .send()
        .await
        .unwrap();
    let mut history = SseReader::new(history);
    let revisions: Vec<Value> = history
        .until_kind("caught_up")
        .await
        .iter()
        .filter(|e| e.kind() == "message")
        .map(|e| e.json()["operation"].clone())
        .collect();
    assert_eq!(
        revisions,
        vec![json!("put"), json!("put"), json!("delete"), json!("put")]
    );
    drop(history);

    eventually(
        "every watch's consumer is gone",
        Duration::from_secs(30),
        || async {
            stream_consumers(&app, "KV_live")
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
}

async fn websocket_watch_delivers_entries_as_msg_frames_with_credit(topology: Topology) {
    let app = spawn_app_on(topology).await;
    create_bucket(&app, "ws", json!({"replicas": app.replicas()})).await;
    put_ok(&app, "ws", "users.1", "ann").await;
    put_ok(&app, "ws", "teams.1", "red").await;
    let mut socket = connect(&app, "/v1/kv/ws/ws?key=users.%3E&credit=10").await;
    let frames = until_type(&mut socket, "caught_up").await;
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0]["type"], "msg");
    assert_eq!(frames[0]["bucket"], "ws");
    assert_eq!(frames[0]["key"], "users.1");
    assert_eq!(frames[0]["value"], "ann");
    let revision = put_ok(&app, "ws", "users.2", "bob").await;
    put_ok(&app, "ws", "teams.2", "blue").await;
    let live = collect_until(&mut socket, Duration::from_secs(10), |f| {
        f.iter().any(|f| f["type"] == "msg")
    })
    .await;
    let entry = live.iter().find(|f| f["type"] == "msg").unwrap();
    assert_eq!(
        (entry["key"].clone(), entry["revision"].clone()),
        (json!("users.2"), json!(revision))
    );
    socket.close(None).await.ok();
    while socket.next().await.is_some() {}
    eventually(
        "the watch's consumer is gone",
        Duration::from_secs(30),
        || async {
            stream_consumers(&app, "KV_ws")
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
}

crate::on_r1_and_r3!(
    bucket_lifecycle_is_idempotent_and_lays_the_stream_out_as_nats_clients_do,
    revisions_make_writes_conditional_and_reads_see_every_acknowledged_write,
    concurrent_read_modify_write_with_if_match_loses_no_update,
    keys_are_listed_without_deleted_ones_and_by_pattern,
    sse_watch_sends_current_values_then_changes_and_resumes_after_the_last_revision,
    websocket_watch_delivers_entries_as_msg_frames_with_credit,
);

fn token(sub: &str, grants: Value) -> String {
    let claims = json!({
        "sub": sub,
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
        "jetway": grants,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn as_token(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn buckets_are_granted_by_name_and_tenants_see_only_their_own_keys() {
    let app = spawn_app_with(|c| {
        c.no_auth = false;
        c.jwt_secret = vec![SECRET.to_owned()];
    })
    .await;
    let admin = token("admin", json!({"admin": true}));
    for bucket in ["flags", "secrets"] {
        // No body: the defaults.
        let response = as_token(
            &app,
            &admin,
            reqwest::Method::PUT,
            &format!("/v1/kv/{bucket}"),
            None,
        )
        .await;
        assert_eq!(json(response, 201).await["config"]["history"], 1);
    }
    json(
        as_token(
            &app,
            &admin,
            reqwest::Method::PUT,
            "/v1/kv/secrets/keys/root",
            Some("hunter2"),
        )
        .await,
        200,
    )
    .await;

    let reader = token("reader", json!({"kv_read": ["flags"]}));
    let writer = token("writer", json!({"kv_write": ["flags"]}));
    let streams = token("streams", json!({"read": ["*"], "publish": [">"]}));

    json(
        as_token(
            &app,
            &writer,
            reqwest::Method::PUT,
            "/v1/kv/flags/keys/beta",
            Some("on"),
        )
        .await,
        200,
    )
    .await;
    json(
        as_token(
            &app,
            &reader,
            reqwest::Method::GET,
            "/v1/kv/flags/keys/beta",
            None,
        )
        .await,
        200,
    )
    .await;
    problem(
        as_token(
            &app,
            &reader,
            reqwest::Method::PUT,
            "/v1/kv/flags/keys/beta",
            Some("off"),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    problem(
        as_token(
            &app,
            &reader,
            reqwest::Method::DELETE,
            "/v1/kv/flags/keys/beta",
            None,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    problem(
        as_token(
            &app,
            &writer,
            reqwest::Method::GET,
            "/v1/kv/secrets/keys/root",
            None,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    problem(
        as_token(&app, &writer, reqwest::Method::DELETE, "/v1/kv/flags", None).await,
        403,
        "forbidden",
    )
    .await;
    problem(
        as_token(
            &app,
            &reader,
            reqwest::Method::GET,
            "/v1/kv/secrets/events",
            None,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    let listed = json(
        as_token(&app, &reader, reqwest::Method::GET, "/v1/kv", None).await,
        200,
    )
    .await;
    assert_eq!(listed["buckets"].as_array().unwrap().len(), 1);
    assert_eq!(listed["buckets"][0]["bucket"], "flags");

    // A grant of every stream and every subject opens no bucket: not as a stream, not by
    // publishing to its subjects.
    problem(
        as_token(
            &app,
            &streams,
            reqwest::Method::GET,
            "/v1/kv/secrets/keys/root",
            None,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    problem(
        as_token(
            &app,
            &streams,
            reqwest::Method::GET,
            "/v1/streams/KV_secrets/messages",
            None,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    problem(
        as_token(
            &app,
            &streams,
            reqwest::Method::POST,
            "/v1/publish/$KV.secrets.root",
            Some("pwned"),
        )
        .await,
        400,
        "invalid_subject",
    )
    .await;
    let streams_listed = json(
        as_token(&app, &streams, reqwest::Method::GET, "/v1/streams", None).await,
        200,
    )
    .await;
    assert!(
        streams_listed["streams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s["name"].as_str().unwrap().starts_with("KV_")),
        "{streams_listed}"
    );
    assert_eq!(
        stored(&app, "secrets", "root").await.1,
        Bytes::from("hunter2")
    );

    // Tenants: keys under the prefix, shown without it; another tenant's key is not there.
    let acme = token("acme", json!({"kv_write": ["flags"], "prefix": "acme"}));
    let globex = token("globex", json!({"kv_write": ["flags"], "prefix": "globex"}));
    json(
        as_token(
            &app,
            &acme,
            reqwest::Method::PUT,
            "/v1/kv/flags/keys/beta",
            Some("acme-on"),
        )
        .await,
        200,
    )
    .await;
    json(
        as_token(
            &app,
            &globex,
            reqwest::Method::PUT,
            "/v1/kv/flags/keys/beta",
            Some("globex-on"),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        stored(&app, "flags", "acme.beta").await.1,
        Bytes::from("acme-on")
    );
    assert_eq!(stored(&app, "flags", "beta").await.1, Bytes::from("on"));
    let acme_read = json(
        as_token(
            &app,
            &acme,
            reqwest::Method::GET,
            "/v1/kv/flags/keys/beta",
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (acme_read["key"].clone(), acme_read["value"].clone()),
        (json!("beta"), json!("acme-on"))
    );
    let keys = json(
        as_token(&app, &acme, reqwest::Method::GET, "/v1/kv/flags/keys", None).await,
        200,
    )
    .await;
    assert_eq!(keys["keys"], json!(["beta"]));
    problem(
        as_token(
            &app,
            &acme,
            reqwest::Method::GET,
            "/v1/kv/flags/keys/globex.beta",
            None,
        )
        .await,
        404,
        "key_not_found",
    )
    .await;
    let watch = as_token(
        &app,
        &acme,
        reqwest::Method::GET,
        "/v1/kv/flags/events",
        None,
    )
    .await;
    assert_eq!(watch.status(), 200);
    let mut watch = SseReader::new(watch);
    let seen: Vec<Value> = watch
        .until_kind("caught_up")
        .await
        .iter()
        .filter(|e| e.kind() == "message")
        .map(|e| e.json()["value"].clone())
        .collect();
    assert_eq!(seen, vec![json!("acme-on")]);
}

#[tokio::test]
async fn invalid_names_conditions_and_configurations_answer_problems_and_store_nothing() {
    let app = spawn_app_on(Topology::Single).await;
    create_bucket(&app, "v", json!({"max_value_size": 16})).await;
    create_bucket(&app, "plain", json!({})).await;
    for (method, path, code) in [
        (reqwest::Method::PUT, "/v1/kv/bad.name", "invalid_name"),
        (reqwest::Method::GET, "/v1/kv/v/keys/a..b", "invalid_name"),
        (reqwest::Method::PUT, "/v1/kv/v/keys/a*", "invalid_name"),
        (reqwest::Method::PUT, "/v1/kv/v/keys/.a", "invalid_name"),
        (
            reqwest::Method::GET,
            "/v1/kv/v/keys?key=a..b",
            "invalid_name",
        ),
        (
            reqwest::Method::GET,
            "/v1/kv/v/keys?max_keys=0",
            "invalid_parameter",
        ),
        (
            reqwest::Method::GET,
            "/v1/kv/v/keys/a?revision=0",
            "invalid_parameter",
        ),
        (
            reqwest::Method::GET,
            "/v1/kv/v/events?deliver=all",
            "invalid_parameter",
        ),
        (
            reqwest::Method::GET,
            "/v1/kv/v/events?deliver=history&start_revision=3",
            "invalid_parameter",
        ),
        (
            reqwest::Method::GET,
            "/v1/kv/v/events?credit=5",
            "invalid_parameter",
        ),
        (
            reqwest::Method::GET,
            "/v1/kv/v/events?filter=a",
            "invalid_parameter",
        ),
    ] {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        problem(response, 400, code).await;
    }
    for (name, value) in [
        ("if-match", "W/\"3\""),
        ("if-match", "three"),
        ("if-match", "\"1\", \"2\""),
        ("if-none-match", "\"3\""),
    ] {
        problem(
            put(&app, "v", "k", "x", &[(name, value)]).await,
            400,
            "invalid_header",
        )
        .await;
    }
    problem(
        put(
            &app,
            "v",
            "k",
            "x",
            &[("if-match", "*"), ("if-none-match", "*")],
        )
        .await,
        400,
        "invalid_header",
    )
    .await;
    for config in [
        json!({"history": 65}),
        json!({"history": 0}),
        json!({"replicas": 7}),
        json!({"limit_marker_ttl": "10ms"}),
        json!({"unknown": true}),
    ] {
        let response = app
            .http
            .put(app.url("/v1/kv/other"))
            .json(&config)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{config}");
    }
    // A per-key TTL needs limit_marker_ttl on the bucket; a value over max_value_size is refused.
    put_ok(&app, "v", "k", "x").await;
    let ttl = send(
        &app,
        reqwest::Method::PUT,
        "/v1/kv/plain/keys/t?ttl=5s",
        &[],
        Some(Bytes::from("x")),
    )
    .await;
    problem(ttl, 400, "ttl_not_enabled").await;
    problem(
        put(&app, "v", "k", &"x".repeat(64), &[]).await,
        413,
        "payload_too_large",
    )
    .await;
    assert_eq!(stored(&app, "v", "k").await.1, Bytes::from("x"));
    problem(
        app.http
            .get(app.url("/v1/kv/missing/events"))
            .send()
            .await
            .unwrap(),
        404,
        "bucket_not_found",
    )
    .await;
    assert!(app.js.get_stream("KV_other").await.is_err());
}

#[tokio::test]
async fn a_value_put_with_a_ttl_expires_and_a_watcher_sees_it_go() {
    let app = spawn_app_on(Topology::Single).await;
    create_bucket(&app, "sessions", json!({"limit_marker_ttl": "5s"})).await;
    let response = app
        .http
        .get(app.url("/v1/kv/sessions/events?deliver=updates"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut watch = SseReader::new(response);
    watch.until_kind("caught_up").await;
    let revision = json(
        send(
            &app,
            reqwest::Method::PUT,
            "/v1/kv/sessions/keys/s1?ttl=1s",
            &[],
            Some(Bytes::from("token")),
        )
        .await,
        200,
    )
    .await["revision"]
        .as_u64()
        .unwrap();
    let (_, _, _) = stored(&app, "sessions", "s1").await;
    let put = watch.next_event().await.json();
    assert_eq!(
        (put["operation"].clone(), put["revision"].clone()),
        (json!("put"), json!(revision))
    );
    // JetStream removes it after a second and leaves a marker, which the watch shows.
    let gone = watch.next_event().await.json();
    assert_eq!(gone["key"], "s1");
    assert_eq!(gone["operation"], "purge");
    problem(get(&app, "sessions", "s1").await, 404, "key_not_found").await;
}
