//! The API contract as SDK users meet it: the OpenAPI document is lint-clean (`redocly lint`,
//! `openapi-spec-validator`), a publish never stores a wildcard Content-Type, and clients
//! generated from the document (Python: openapi-python-client; TypeScript: openapi-typescript +
//! openapi-fetch, type-checked by `tsc`) run the committed `examples/` against a real gateway
//! with authentication on, without a single generator warning; schemathesis, with every check
//! and auth on, finds no server error and no mismatch with the document. The tools come from
//! `scripts/install-tools.sh sdk` (make test runs it); the generated code goes to a temporary
//! directory.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use jetway::config::Config;
use serde_json::Value;

use crate::harness::{
    LOAD_GATE, TestApp, installed_tool, json, repo_root, run_jetway, spawn_app_with,
};

const SECRET: &str = "sdk-test-secret-0123456789abcdef0123456789abcdef";

/// Runs a command to completion within `timeout`, without blocking the runtime.
async fn run(mut command: tokio::process::Command, what: &str, timeout: Duration) -> Output {
    command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    match tokio::time::timeout(timeout, command.output()).await {
        Ok(output) => output.unwrap_or_else(|e| panic!("cannot run {what}: {e}")),
        Err(_) => panic!("{what} did not finish within {timeout:?}"),
    }
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `python3` with a pip `--target` directory of `.tools/` on its path.
fn python(tool: &str) -> tokio::process::Command {
    let dir = installed_tool(tool, "sdk");
    let mut command = tokio::process::Command::new("python3");
    command
        .env("PYTHONPATH", &dir)
        .env("PATH", path_with(&dir.join("bin")));
    command
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("PATH")
}

fn node_sdk_bin(name: &str) -> PathBuf {
    installed_tool(&format!("node-sdk/node_modules/.bin/{name}"), "sdk")
}

/// A gateway with authentication on, and a token minted by `jetway token` that may do anything.
async fn gateway_with_auth() -> (TestApp, String) {
    let app = spawn_app_with(|c: &mut Config| {
        c.no_auth = false;
        c.jwt_secret = vec![SECRET.to_owned()];
        // The push examples' host: listed by name, it is not resolved at creation.
        c.push_allow = vec!["hooks.example.com".to_owned()];
    })
    .await;
    let (code, token, stderr) = run_jetway(
        &[
            "token",
            "--secret",
            SECRET,
            "--admin",
            "--read",
            "*",
            "--publish",
            ">",
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    (app, token.trim().to_owned())
}

fn assert_summary(output: &Output, stream: &str) {
    let report = text(output);
    assert!(output.status.success(), "{report}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON summary ({e}): {report}"));
    assert_eq!(summary["stream"], stream, "{report}");
    assert_eq!(summary["seq"], 1, "{report}");
    assert_eq!(summary["duplicate"], true, "{report}");
    assert_eq!(summary["precondition"], "precondition_failed", "{report}");
    assert_eq!(summary["batch_stored"], 2, "{report}");
    assert_eq!(summary["fetched"], 3, "{report}");
    assert_eq!(summary["acked"], 3, "{report}");
    assert_eq!(summary["raw_bytes_equal"], true, "{report}");
    assert_eq!(
        summary["raw_content_type"], "application/octet-stream",
        "{report}"
    );
}

#[tokio::test]
async fn openapi_document_is_lint_clean() {
    let _alone = LOAD_GATE.alone();
    let document = repo_root().join("openapi/openapi.json");

    let mut redocly = tokio::process::Command::new(node_sdk_bin("redocly"));
    redocly
        .args(["lint", "--format=json"])
        .arg(&document)
        .current_dir(repo_root());
    let lint = run(redocly, "redocly lint", Duration::from_secs(120)).await;
    let validator = run(
        {
            let mut c = python("openapi-spec-validator");
            c.args(["-m", "openapi_spec_validator"]).arg(&document);
            c
        },
        "openapi-spec-validator",
        Duration::from_secs(120),
    )
    .await;

    let report: Value = serde_json::from_slice(&lint.stdout)
        .unwrap_or_else(|e| panic!("redocly printed no JSON report ({e}): {}", text(&lint)));
    assert_eq!(report["totals"]["errors"], 0, "{}", text(&lint));
    assert_eq!(report["totals"]["warnings"], 0, "{}", text(&lint));
    assert!(validator.status.success(), "{}", text(&validator));
    assert!(
        String::from_utf8_lossy(&validator.stdout).contains("OK"),
        "{}",
        text(&validator)
    );
}

#[tokio::test]
async fn publish_with_a_wildcard_content_type_stores_none() {
    let app = spawn_app_with(|_| {}).await;
    app.create_stream("ORDERS", &["orders.>"]).await;

    for (index, content_type) in ["*/*", "text/*", "*/*; q=0.8"].into_iter().enumerate() {
        let response = app
            .http
            .post(app.url("/v1/publish/orders.new"))
            .header("content-type", content_type)
            .body(format!("payload {index}"))
            .send()
            .await
            .unwrap();
        json(response, 201).await;
    }
    let typed = app
        .http
        .post(app.url("/v1/publish/orders.new"))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 255])
        .send()
        .await
        .unwrap();
    json(typed, 201).await;

    let stored = app.stored("ORDERS").await;
    assert_eq!(stored.len(), 4);
    for message in &stored[..3] {
        assert!(
            message.headers.get("Content-Type").is_none(),
            "seq {}: {:?}",
            message.sequence,
            message.headers
        );
    }
    assert_eq!(
        stored[3]
            .headers
            .get("Content-Type")
            .map(|v| v.as_str().to_owned()),
        Some("application/octet-stream".to_owned())
    );
    assert_eq!(stored[3].payload.as_ref(), [0u8, 255]);
}

#[tokio::test]
async fn generated_python_client_runs_the_example_with_auth_on() {
    let _alone = LOAD_GATE.alone();
    let (app, token) = gateway_with_auth().await;
    let out = tempfile::tempdir().expect("temp dir");
    let package = out.path().join("jetway_client");

    let generate = run(
        {
            let mut c = python("openapi-python-client");
            c.args(["-m", "openapi_python_client", "generate", "--meta", "none"])
                .arg("--path")
                .arg(repo_root().join("openapi/openapi.json"))
                .arg("--output-path")
                .arg(&package)
                .arg("--config")
                .arg(repo_root().join("examples/python/openapi-python-client.yaml"));
            c
        },
        "openapi-python-client generate",
        Duration::from_secs(120),
    )
    .await;
    assert!(generate.status.success(), "{}", text(&generate));
    let said = text(&generate);
    assert!(!said.contains("WARNING"), "the generator warned: {said}");

    let example = run(
        {
            let mut c = python("openapi-python-client");
            let mut path = vec![out.path().to_path_buf()];
            path.push(installed_tool("openapi-python-client", "sdk"));
            c.env("PYTHONPATH", std::env::join_paths(path).unwrap())
                .env("JETWAY_URL", app.url(""))
                .env("JETWAY_TOKEN", &token)
                .env("JETWAY_STREAM", "SDK_PY")
                .arg(repo_root().join("examples/python/example.py"));
            c
        },
        "examples/python/example.py",
        Duration::from_secs(60),
    )
    .await;

    assert_summary(&example, "SDK_PY");
    let stored = app.stored("SDK_PY").await;
    assert_eq!(stored[0].payload.as_ref(), (0..=255u8).collect::<Vec<u8>>());
}

#[tokio::test]
async fn generated_typescript_client_type_checks_and_runs_the_example_with_auth_on() {
    let _alone = LOAD_GATE.alone();
    let (app, token) = gateway_with_auth().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let examples = repo_root().join("examples/typescript");
    for file in ["example.ts", "tsconfig.json", "generate.mjs"] {
        std::fs::copy(examples.join(file), dir.path().join(file)).expect("copy example");
    }
    std::fs::write(dir.path().join("package.json"), r#"{"type": "module"}"#).unwrap();
    std::os::unix::fs::symlink(
        installed_tool("node-sdk/node_modules", "sdk"),
        dir.path().join("node_modules"),
    )
    .expect("link node_modules");
    let node = crate::node::node_bin();

    let generate = run(
        {
            let mut c = tokio::process::Command::new(&node);
            c.arg("generate.mjs")
                .arg(repo_root().join("openapi/openapi.json"))
                .arg("schema.d.ts")
                .current_dir(dir.path());
            c
        },
        "generate.mjs (openapi-typescript)",
        Duration::from_secs(120),
    )
    .await;
    assert!(generate.status.success(), "{}", text(&generate));
    assert!(
        generate.stdout.is_empty() && generate.stderr.is_empty(),
        "openapi-typescript said something: {}",
        text(&generate)
    );
    let tsc = run(
        {
            let mut c = tokio::process::Command::new(node_sdk_bin("tsc"));
            c.args(["-p", "."]).current_dir(dir.path());
            c
        },
        "tsc",
        Duration::from_secs(180),
    )
    .await;
    assert!(tsc.status.success(), "tsc: {}", text(&tsc));
    let example = run(
        {
            let mut c = tokio::process::Command::new(&node);
            c.arg("out/example.js")
                .current_dir(dir.path())
                .env("JETWAY_URL", app.url(""))
                .env("JETWAY_TOKEN", &token)
                .env("JETWAY_STREAM", "SDK_TS");
            c
        },
        "examples/typescript/example.ts",
        Duration::from_secs(60),
    )
    .await;

    assert_summary(&example, "SDK_TS");
    let stored = app.stored("SDK_TS").await;
    assert_eq!(stored[0].payload.as_ref(), (0..=255u8).collect::<Vec<u8>>());
}

/// A stream, a consumer and a bucket with the names the document's examples use (`ORDERS`,
/// `workers`, subjects `orders.…`, bucket `flags`, push subscription `orders-webhook`), so that generated requests reach real resources as well as missing ones.
async fn arrange_examples(app: &TestApp, token: &str) {
    let put = |path: &str, body: Value| {
        app.http
            .put(app.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let stream = serde_json::json!({
        "subjects": ["orders.>"], "allow_msg_ttl": true, "allow_atomic": true
    });
    json(put("/v1/streams/ORDERS", stream).await.unwrap(), 201).await;
    let published = app
        .http
        .post(app.url("/v1/publish/orders.new"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(r#"{"order_id":1}"#)
        .send()
        .await
        .unwrap();
    json(published, 201).await;
    json(
        put("/v1/kv/flags", serde_json::json!({"history": 5}))
            .await
            .unwrap(),
        201,
    )
    .await;
    let flag = app
        .http
        .put(app.url("/v1/kv/flags/keys/checkout.new_flow"))
        .bearer_auth(token)
        .body(r#"{"enabled":true}"#)
        .send()
        .await
        .unwrap();
    json(flag, 200).await;
    let consumer = serde_json::json!({"ack_wait": "30s"});
    json(
        put("/v1/streams/ORDERS/consumers/workers", consumer)
            .await
            .unwrap(),
        201,
    )
    .await;
    let push = serde_json::json!({"url": "https://hooks.example.com/orders"});
    json(
        put("/v1/streams/ORDERS/push/orders-webhook", push)
            .await
            .unwrap(),
        201,
    )
    .await;
}

/// schemathesis with every check (`tests/schemathesis.toml` says what is set apart, and why) on
/// every HTTP operation, with authentication on: no server error, no answer that the document
/// does not describe, no schema-valid request refused, no schema-invalid request accepted.
#[tokio::test]
async fn schemathesis_finds_nothing_with_every_check_and_auth_on() {
    let _alone = LOAD_GATE.alone();
    let (app, token) = gateway_with_auth().await;
    arrange_examples(&app, &token).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let junit = dir.path().join("junit.xml");

    let started = std::time::Instant::now();
    let output = run(
        {
            let mut c = python("schemathesis");
            c.args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
                .arg(repo_root().join("tests/schemathesis.toml"))
                .arg("run")
                .arg(app.url("/openapi.json"))
                .args(["--report", "junit", "--report-junit-path"])
                .arg(&junit)
                .env("JETWAY_TOKEN", &token)
                .current_dir(dir.path());
            c
        },
        "schemathesis",
        Duration::from_secs(240),
    )
    .await;
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let generated = stdout
        .lines()
        .find_map(|l| {
            let (count, _) = l.trim().split_once(" generated")?;
            count.parse::<u64>().ok()
        })
        .unwrap_or_else(|| panic!("no count of generated test cases: {report}"));
    assert!(generated > 100, "only {generated} test cases: {report}");
    eprintln!(
        "schemathesis: {generated} test cases, no failure, in {:?}",
        started.elapsed()
    );

    // The JUnit report says what ran: every HTTP operation, none failed.
    let junit = std::fs::read_to_string(&junit).unwrap_or_else(|e| panic!("{e}: {report}"));
    let operations = junit.matches("<testcase ").count();
    assert!(
        operations >= 15,
        "only {operations} operations tested: {report}"
    );
    assert!(!junit.contains("<failure"), "{junit}\n{report}");
}
