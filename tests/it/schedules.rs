//! Message schedules: a message stored now that JetStream publishes to its target later (once,
//! or repeatedly), read back and cancelled through the gateway, on one node and on an R3
//! cluster. What JetStream published is read with the direct client; the absence of a message
//! in a window is shown by a long-poll fetch that covers it and answers empty.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{
    TestApp, Topology, eventually, json, problem, spawn_app_on_with, spawn_app_with,
};

const SECRET: &str = "schedule-test-secret";

async fn schedules_app_on(topology: Topology) -> TestApp {
    let app = spawn_app_on_with(topology, |_| {}).await;
    let response = app
        .http
        .put(app.url("/v1/streams/ORDERS"))
        .json(&json!({"subjects": ["orders.>"], "allow_msg_schedules": true, "replicas": app.replicas()}))
        .send()
        .await
        .unwrap();
    let info = json(response, 201).await;
    assert_eq!(info["config"]["allow_msg_schedules"], true, "{info}");
    app
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap()
}

async fn put_schedule(app: &TestApp, subject: &str, body: Value) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/v1/streams/ORDERS/schedules/{subject}")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get_schedule(app: &TestApp, subject: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/v1/streams/ORDERS/schedules/{subject}")))
        .send()
        .await
        .unwrap()
}

/// Messages JetStream stored on `subject`, read directly.
async fn stored_on(
    app: &TestApp,
    subject: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    app.stored("ORDERS")
        .await
        .into_iter()
        .filter(|m| m.subject.as_str() == subject)
        .collect()
}

/// A consumer of new messages on `subject`, and a fetch that waits `wait` for them.
async fn watch(app: &TestApp, subject: &str) {
    let response = app
        .http
        .put(app.url("/v1/streams/ORDERS/consumers/watch"))
        .json(&json!({"deliver_policy": "new", "filter_subjects": [subject]}))
        .send()
        .await
        .unwrap();
    json(response, 201).await;
}

async fn fetch_watch(app: &TestApp, wait: &str) -> Vec<Value> {
    let response = app
        .http
        .post(app.url("/v1/streams/ORDERS/consumers/watch/fetch"))
        .json(&json!({"max_messages": 10, "wait": wait}))
        .send()
        .await
        .unwrap();
    json(response, 200).await["messages"]
        .as_array()
        .unwrap()
        .clone()
}

async fn a_message_scheduled_at_a_time_is_published_then_and_the_schedule_is_gone(
    topology: Topology,
) {
    let app = schedules_app_on(topology).await;
    let at = OffsetDateTime::now_utc() + time::Duration::seconds(3);

    let body = json(
        put_schedule(
            &app,
            "orders.schedules.reminder-1",
            json!({"target": "orders.reminders", "at": rfc3339(at),
                   "data": {"order_id": 1, "remind": "pay"}, "headers": {"X-Kind": "reminder"}}),
        )
        .await,
        201,
    )
    .await;

    assert_eq!(body["subject"], "orders.schedules.reminder-1");
    assert_eq!(body["target"], "orders.reminders");
    assert!(
        body["schedule"].as_str().unwrap().starts_with("@at "),
        "{body}"
    );
    let read = json(get_schedule(&app, "orders.schedules.reminder-1").await, 200).await;
    assert_eq!(read["seq"], body["seq"]);
    assert!(
        stored_on(&app, "orders.reminders").await.is_empty(),
        "not before its time"
    );

    let published = eventually("the scheduled message", Duration::from_secs(20), || async {
        stored_on(&app, "orders.reminders").await.pop()
    })
    .await;

    assert!(
        published.time >= at - time::Duration::milliseconds(50),
        "published at {} before {at}",
        published.time
    );
    let data: Value = serde_json::from_slice(&published.payload).unwrap();
    assert_eq!(data, json!({"order_id": 1, "remind": "pay"}));
    assert_eq!(
        published.headers.get("X-Kind").map(|v| v.as_str()),
        Some("reminder")
    );
    assert_eq!(
        published.headers.get("Content-Type").map(|v| v.as_str()),
        Some("application/json")
    );
    eventually(
        "the fired schedule to be gone",
        Duration::from_secs(10),
        || async {
            (get_schedule(&app, "orders.schedules.reminder-1")
                .await
                .status()
                == 404)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        stored_on(&app, "orders.reminders").await.len(),
        1,
        "fired once"
    );
}

async fn a_cancelled_schedule_never_fires_and_a_repeating_one_fires_until_cancelled(
    topology: Topology,
) {
    let app = schedules_app_on(topology).await;
    watch(&app, "orders.reminders").await;
    let at = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    json(
        put_schedule(
            &app,
            "orders.schedules.once",
            json!({"target": "orders.reminders", "at": rfc3339(at), "data": "once"}),
        )
        .await,
        201,
    )
    .await;

    let cancel = app
        .http
        .delete(app.url("/v1/streams/ORDERS/schedules/orders.schedules.once"))
        .send()
        .await
        .unwrap();

    assert_eq!(cancel.status(), 204);
    problem(
        get_schedule(&app, "orders.schedules.once").await,
        404,
        "message_not_found",
    )
    .await;
    assert!(stored_on(&app, "orders.schedules.once").await.is_empty());
    // A fetch covering the time it would have fired, and more, gets nothing.
    let nothing = fetch_watch(&app, "4s").await;
    assert!(
        nothing.is_empty(),
        "a cancelled schedule fired: {nothing:?}"
    );

    // Repeating, every second.
    json(
        put_schedule(
            &app,
            "orders.schedules.tick",
            json!({"target": "orders.reminders", "every": "1s", "data": "tick"}),
        )
        .await,
        201,
    )
    .await;
    let ticks = eventually("two ticks", Duration::from_secs(20), || async {
        let ticks = stored_on(&app, "orders.reminders").await;
        (ticks.len() >= 2).then_some(ticks)
    })
    .await;
    assert!(ticks.iter().all(|m| m.payload.as_ref() == b"tick"));
    let read = json(get_schedule(&app, "orders.schedules.tick").await, 200).await;
    assert_eq!(read["schedule"], "@every 1000ms", "{read}");

    let cancel = app
        .http
        .delete(app.url("/v1/streams/ORDERS/schedules/orders.schedules.tick"))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 204);
    // Drain what fired before the cancel, then nothing more comes.
    while !fetch_watch(&app, "0s").await.is_empty() {}
    let after = fetch_watch(&app, "3s").await;
    assert!(after.is_empty(), "fired after cancel: {after:?}");
}

crate::on_r1_and_r3!(
    a_message_scheduled_at_a_time_is_published_then_and_the_schedule_is_gone,
    a_cancelled_schedule_never_fires_and_a_repeating_one_fires_until_cancelled,
);

#[tokio::test]
async fn schedules_refuse_streams_without_them_bad_times_and_foreign_targets() {
    let app = schedules_app_on(Topology::Single).await;
    app.create_stream("PLAIN", &["plain.>"]).await;
    let later = rfc3339(OffsetDateTime::now_utc() + time::Duration::hours(1));

    let plain = app
        .http
        .put(app.url("/v1/streams/PLAIN/schedules/plain.s"))
        .json(&json!({"target": "plain.t", "at": later}))
        .send()
        .await
        .unwrap();
    problem(plain, 400, "schedules_not_enabled").await;
    // The schedule's subject belongs to another stream: nothing stored.
    problem(
        put_schedule(&app, "plain.s", json!({"target": "orders.t", "at": later})).await,
        412,
        "precondition_failed",
    )
    .await;
    for bad in [
        json!({"target": "orders.t"}),
        json!({"target": "orders.t", "at": later, "every": "5s"}),
        json!({"target": "orders.t", "every": "500ms"}),
        json!({"target": "orders.t", "at": "tomorrow"}),
        json!({"target": "orders.t", "at": "2300-01-01T00:00:00Z"}),
        json!({"target": "orders.t", "at": later, "time_zone": "Europe/Berlin"}),
        json!({"target": "orders.t", "cron": "not a cron"}),
        json!({"target": "orders.t", "cron": "0 0 * * * *", "time_zone": "Mars/Olympus"}),
        json!({"target": "orders.s", "at": later}),
        json!({"target": "orders.*", "at": later}),
        json!({"target": "plain.t", "at": later}),
        json!({"target": "orders.t", "at": later, "headers": {"Nats-Rollup": "all"}}),
        json!({"target": "orders.t", "at": later, "extra": 1}),
    ] {
        let response = put_schedule(&app, "orders.s", bad.clone()).await;
        assert_eq!(
            response.status(),
            400,
            "{bad}: {}",
            response.text().await.unwrap()
        );
    }
    assert!(
        stored_on(&app, "orders.s").await.is_empty(),
        "nothing was stored"
    );
    problem(
        get_schedule(&app, "orders.nothing").await,
        404,
        "message_not_found",
    )
    .await;
    let cron = json(
        put_schedule(
            &app,
            "orders.s",
            json!({"target": "orders.t", "cron": "0 30 9 * * 1-5", "time_zone": "Europe/Berlin"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(cron["schedule"], "0 30 9 * * 1-5");
    assert_eq!(cron["time_zone"], "Europe/Berlin");
    // A new schedule on the subject replaces the old one.
    json(
        put_schedule(&app, "orders.s", json!({"target": "orders.t", "at": later})).await,
        201,
    )
    .await;
    let stored = stored_on(&app, "orders.s").await;
    assert_eq!(stored.len(), 1, "replaced");
    assert!(
        stored[0]
            .headers
            .get("Nats-Schedule")
            .unwrap()
            .as_str()
            .starts_with("@at "),
        "{:?}",
        stored[0].headers
    );
}

fn token(grants: Value) -> String {
    let claims = json!({
        "sub": "schedules",
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

#[tokio::test]
async fn scheduling_needs_publish_on_the_subject_and_the_target_and_tenants_stay_in_their_namespace()
 {
    let app = spawn_app_with(|c| {
        c.no_auth = false;
        c.jwt_secret = vec![SECRET.to_owned()];
    })
    .await;
    app.js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "ORDERS".to_owned(),
            subjects: vec!["orders.>".to_owned(), "acme.>".to_owned()],
            allow_message_schedules: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let later = rfc3339(OffsetDateTime::now_utc() + time::Duration::hours(1));
    let only_schedules = token(json!({"publish": ["orders.schedules.>"], "read": ["ORDERS"]}));
    let both = token(json!({"publish": ["orders.schedules.>", "orders.reminders"]}));
    let tenant = token(json!({"publish": ["orders.>"], "read": ["ORDERS"], "prefix": "acme"}));
    let put = |token: &str| {
        app.http
            .put(app.url("/v1/streams/ORDERS/schedules/orders.schedules.r"))
            .bearer_auth(token)
            .json(&json!({"target": "orders.reminders", "at": later}))
            .send()
    };

    problem(put(&only_schedules).await.unwrap(), 403, "forbidden").await;
    assert!(stored_on(&app, "orders.schedules.r").await.is_empty());
    json(put(&both).await.unwrap(), 201).await;
    let read = app
        .http
        .get(app.url("/v1/streams/ORDERS/schedules/orders.schedules.r"))
        .bearer_auth(&both)
        .send()
        .await
        .unwrap();
    problem(read, 403, "forbidden").await;

    let created = json(put(&tenant).await.unwrap(), 201).await;
    assert_eq!(created["subject"], "orders.schedules.r");
    assert_eq!(created["target"], "orders.reminders");
    let stored = stored_on(&app, "acme.orders.schedules.r").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0]
            .headers
            .get("Nats-Schedule-Target")
            .unwrap()
            .as_str(),
        "acme.orders.reminders"
    );
    // Cancelling the tenant's schedule leaves the other one.
    let cancel = app
        .http
        .delete(app.url("/v1/streams/ORDERS/schedules/orders.schedules.r"))
        .bearer_auth(&tenant)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 204);
    assert!(stored_on(&app, "acme.orders.schedules.r").await.is_empty());
    assert_eq!(stored_on(&app, "orders.schedules.r").await.len(), 1);
}
