//! Health, readiness through a NATS outage, routing errors, request ids, the OpenAPI document,
//! Swagger UI and the console.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{eventually, json, problem, spawn_app};

/// The committed OpenAPI document.
fn committed_openapi() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Status of GET `url`, or `None` when the request itself failed.
async fn status_of(http: &reqwest::Client, url: &str) -> Option<u16> {
    http.get(url).send().await.ok().map(|r| r.status().as_u16())
}

#[tokio::test]
async fn healthz_returns_200_ok() {
    let app = spawn_app().await;

    let response = app.http.get(app.url("/healthz")).send().await.unwrap();

    assert_eq!(
        json(response, 200).await,
        serde_json::json!({"status": "ok"})
    );
}

#[tokio::test]
async fn readyz_follows_nats_through_an_outage_and_recovery() {
    let mut app = spawn_app().await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        json(ready, 200).await,
        serde_json::json!({"status": "ready"})
    );

    app.server.stop();

    let url = app.url("/readyz");
    eventually("readyz to answer 503", Duration::from_secs(20), || async {
        (status_of(&app.http, &url).await == Some(503)).then_some(())
    })
    .await;
    let response = app.http.get(&url).send().await.unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .expect("503 carries Retry-After")
        .to_str()
        .unwrap()
        .to_owned();
    problem(response, 503, "jetstream_unavailable").await;
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s > 0),
        "Retry-After: {retry_after}"
    );

    app.server.restart().await;

    eventually(
        "readyz to answer 200 again",
        Duration::from_secs(20),
        || async { (status_of(&app.http, &url).await == Some(200)).then_some(()) },
    )
    .await;
    let response = app.http.get(&url).send().await.unwrap();
    assert_eq!(
        json(response, 200).await,
        serde_json::json!({"status": "ready"})
    );
}

#[tokio::test]
async fn stream_read_during_nats_outage_returns_503_with_retry_after() {
    let mut app = spawn_app().await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    app.server.stop();

    let url = app.url("/v1/streams/ORDERS");
    eventually(
        "GET stream to answer 503",
        Duration::from_secs(20),
        || async { (status_of(&app.http, &url).await == Some(503)).then_some(()) },
    )
    .await;
    let response = app.http.get(&url).send().await.unwrap();
    assert!(
        response.headers().contains_key("retry-after"),
        "{:?}",
        response.headers()
    );
    problem(response, 503, "jetstream_unavailable").await;
}

#[tokio::test]
async fn unknown_route_returns_404_route_not_found() {
    let app = spawn_app().await;

    let response = app
        .http
        .get(app.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();

    let body = problem(response, 404, "route_not_found").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("/v1/nothing-here"),
        "{body}"
    );
}

#[tokio::test]
async fn wrong_method_returns_405_method_not_allowed() {
    let app = spawn_app().await;

    let response = app
        .http
        .delete(app.url("/v1/publish"))
        .send()
        .await
        .unwrap();

    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    problem(response, 405, "method_not_allowed").await;
    assert!(
        allow.as_deref().is_some_and(|a| a.contains("POST")),
        "405 must list the allowed methods: {allow:?}"
    );
}

#[tokio::test]
async fn request_id_is_generated_when_absent() {
    let app = spawn_app().await;

    let first = app.http.get(app.url("/healthz")).send().await.unwrap();
    let second = app.http.get(app.url("/healthz")).send().await.unwrap();

    let id = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .expect("x-request-id generated")
            .to_str()
            .unwrap()
            .to_owned()
    };
    let (first, second) = (id(&first), id(&second));
    assert!(!first.is_empty());
    assert_ne!(first, second, "each request gets its own id");
}

#[tokio::test]
async fn request_id_sent_by_the_client_is_echoed() {
    let app = spawn_app().await;

    let response = app
        .http
        .get(app.url("/v1/streams/NOPE"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();

    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");
    problem(response, 404, "stream_not_found").await;
}

#[tokio::test]
async fn served_openapi_equals_the_committed_document() {
    let app = spawn_app().await;

    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();

    let served = json(response, 200).await;
    assert!(
        served == committed_openapi(),
        "openapi/openapi.json is out of date with the served document: run `make openapi` and \
         commit the result"
    );
}

#[tokio::test]
async fn openapi_operations_have_ids_and_problem_json_errors() {
    let app = spawn_app().await;

    let document = json(
        app.http.get(app.url("/openapi.json")).send().await.unwrap(),
        200,
    )
    .await;

    let paths = document["paths"].as_object().expect("paths");
    assert!(!paths.is_empty());
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            operations += 1;
            let what = format!("{method} {path}");
            assert!(
                operation["operationId"]
                    .as_str()
                    .is_some_and(|id| !id.is_empty()),
                "{what} has no operationId"
            );
            // Liveness and metrics answer whenever the process runs: no error responses.
            if path == "/healthz" || path == "/metrics" {
                continue;
            }
            let responses = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{what} has no responses"));
            let has_problem = responses.iter().any(|(status, response)| {
                (status.starts_with('4') || status.starts_with('5'))
                    && response["content"]
                        .get("application/problem+json")
                        .is_some()
            });
            assert!(
                has_problem,
                "{what} lists no 4xx/5xx application/problem+json response"
            );
        }
    }
    assert!(operations >= 12, "only {operations} operations documented");
}

#[tokio::test]
async fn docs_serve_swagger_ui_html() {
    let app = spawn_app().await;

    for path in ["/docs/", "/docs"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();

        assert_eq!(response.status().as_u16(), 200, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        let body = response.text().await.unwrap();
        assert!(
            body.to_lowercase().contains("swagger"),
            "{path} is not Swagger UI: {body}"
        );
    }
}

#[tokio::test]
async fn console_serves_html_with_content_security_policy() {
    let app = spawn_app().await;

    let response = app.http.get(app.url("/")).send().await.unwrap();

    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{headers:?}"
    );
    let csp = headers
        .get("content-security-policy")
        .expect("Content-Security-Policy header")
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let body = response.text().await.unwrap();
    assert!(body.to_lowercase().contains("<html"), "not HTML: {body}");
}
