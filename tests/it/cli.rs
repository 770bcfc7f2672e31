//! Black-box tests of the real `jetway` binary: help, bad configuration, `jetway openapi`,
//! start-up before NATS, and a clean exit on SIGTERM.

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use crate::harness::{NatsServer, eventually, json, problem};

/// How long a command that should end by itself may take.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

/// The binary, with no `JETWAY_*` variables inherited from the developer's environment.
fn jetway() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jetway"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("JETWAY_") {
            command.env_remove(name);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs the binary to completion, failing the test if it does not end within the deadline.
async fn run(args: &[&str]) -> Output {
    let child = jetway().args(args).spawn().expect("spawn jetway");
    tokio::time::timeout(EXIT_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("jetway {args:?} did not exit within {EXIT_DEADLINE:?}"))
        .expect("wait for jetway")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn committed_openapi() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read openapi/openapi.json"))
        .expect("JSON")
}

#[tokio::test]
async fn help_exits_0_and_lists_every_flag_and_env_name() {
    let output = run(&["--help"]).await;

    assert!(output.status.success(), "status {:?}", output.status);
    let help = text(&output.stdout);
    for flag in [
        "--listen",
        "--nats-url",
        "--nats-creds",
        "--nats-user",
        "--nats-password",
        "--nats-token",
        "--nats-tls-ca",
        "--config",
        "--no-auth",
        "JETWAY_LISTEN",
        "JETWAY_NATS_URL",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[tokio::test]
async fn missing_config_file_exits_non_zero_naming_the_file() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("absent-jetway.toml");

    let output = run(&["--config", path.to_str().unwrap()]).await;

    assert!(!output.status.success(), "status {:?}", output.status);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("absent-jetway.toml"), "{stderr}");
}

#[tokio::test]
async fn config_file_with_unknown_key_exits_non_zero_naming_the_key() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("jetway.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\nnats_urll = [\"nats://127.0.0.1:4222\"]\n",
    )
    .unwrap();

    let output = run(&["--config", path.to_str().unwrap()]).await;

    assert!(!output.status.success(), "status {:?}", output.status);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("nats_urll"), "{stderr}");
}

#[tokio::test]
async fn config_file_stream_with_unknown_field_exits_non_zero_naming_the_field() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("jetway.toml");
    std::fs::write(
        &path,
        "[[streams]]\nname = \"ORDERS\"\nsubjects = [\"orders.>\"]\nmax_mesages = 5\n",
    )
    .unwrap();

    let output = run(&["--config", path.to_str().unwrap()]).await;

    assert!(!output.status.success(), "status {:?}", output.status);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("max_mesages"), "{stderr}");
    assert!(stderr.contains("ORDERS"), "{stderr}");
}

#[tokio::test]
async fn nats_user_without_password_exits_non_zero_naming_the_missing_flag() {
    let output = run(&["--no-auth", "--nats-user", "alice"]).await;

    assert!(!output.status.success(), "status {:?}", output.status);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--nats-password"), "{stderr}");
}

#[tokio::test]
async fn openapi_subcommand_prints_the_committed_document() {
    let output = run(&["openapi"]).await;

    assert!(
        output.status.success(),
        "status {:?}: {}",
        output.status,
        text(&output.stderr)
    );
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert!(
        printed == committed_openapi(),
        "`jetway openapi` differs from openapi/openapi.json: run `make openapi` and commit the result"
    );
}

/// Sends SIGTERM to the child and asserts that it exits 0 within 10 s.
async fn terminate(child: tokio::process::Child) {
    let pid = child.id().expect("pid of a running child");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("jetway exits within 10s of SIGTERM")
        .expect("wait for jetway");
    assert!(
        output.status.success(),
        "status {:?}; stderr: {}",
        output.status,
        text(&output.stderr)
    );
}

/// The `Retry-After` header of a response, which every 503 carries.
fn retry_after(response: &reqwest::Response) -> u64 {
    let value = response
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("{} without Retry-After", response.status()));
    value
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds")
}

#[tokio::test]
async fn binary_started_before_nats_answers_503_until_nats_starts_then_stores_publishes() {
    // A server that is down: its port is known and nothing listens on it.
    let mut server = NatsServer::start().await;
    server.stop();
    let listen = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("jetway.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"{listen}\"\nnats_url = [\"{}\"]\nno-auth = true\n\n\
             [[streams]]\nname = \"ORDERS\"\nsubjects = [\"orders.>\"]\n",
            server.url()
        ),
    )
    .unwrap();
    let mut child = jetway()
        .args(["--config", path.to_str().unwrap()])
        .spawn()
        .expect("spawn jetway");
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    let publish = |body: &'static str| {
        http.post(format!("{base}/v1/publish/orders.new"))
            .header("Idempotency-Key", body)
            .body(body)
            .send()
    };

    let health = eventually(
        "jetway to serve /healthz",
        Duration::from_secs(15),
        || async {
            let response = http.get(format!("{base}/healthz")).send().await.ok()?;
            (response.status().as_u16() == 200).then_some(())?;
            response.json::<serde_json::Value>().await.ok()
        },
    )
    .await;
    assert_eq!(health, serde_json::json!({"status": "ok"}));

    let response = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert!(retry_after(&response) > 0);
    let body = problem(response, 503, "jetstream_unavailable").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("not connected to NATS at {} yet", server.url())),
        "{detail}"
    );
    assert!(
        detail.contains("declared streams not yet ensured: ORDERS"),
        "{detail}"
    );

    let response = publish("early").await.unwrap();
    assert!(retry_after(&response) > 0);
    problem(response, 503, "jetstream_unavailable").await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "jetway exited while NATS was down"
    );

    server.restart().await;

    eventually("readyz to answer 200", Duration::from_secs(30), || async {
        let response = http.get(format!("{base}/readyz")).send().await.ok()?;
        (response.status().as_u16() == 200).then_some(())
    })
    .await;
    let stored = json(publish("late").await.unwrap(), 201).await;
    assert_eq!(stored["stream"], "ORDERS");
    let seq = stored["seq"].as_u64().unwrap();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let message = async_nats::jetstream::new(nats)
        .get_stream("ORDERS")
        .await
        .expect("the declared stream exists")
        .get_raw_message(seq)
        .await
        .expect("the publish is stored");
    assert_eq!(message.subject.as_str(), "orders.new");
    assert_eq!(message.payload.as_ref(), b"late");
    assert!(child.try_wait().unwrap().is_none(), "jetway exited");

    terminate(child).await;
}

#[tokio::test]
async fn binary_that_never_reached_nats_exits_0_on_sigterm() {
    let listen = format!("127.0.0.1:{}", free_port());
    let child = jetway()
        .args([
            "--no-auth",
            "--listen",
            &listen,
            "--nats-url",
            &format!("nats://127.0.0.1:{}", free_port()),
        ])
        .spawn()
        .expect("spawn jetway");
    let http = reqwest::Client::new();
    eventually(
        "jetway to answer /readyz",
        Duration::from_secs(15),
        || async {
            let response = http
                .get(format!("http://{listen}/readyz"))
                .send()
                .await
                .ok()?;
            (response.status().as_u16() == 503).then_some(())
        },
    )
    .await;

    terminate(child).await;
}

#[tokio::test]
async fn unreadable_nats_credentials_file_exits_non_zero_naming_the_file() {
    let dir = tempfile::TempDir::new().unwrap();
    let creds = dir.path().join("absent-jetway.creds");

    let output = run(&[
        "--no-auth",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--nats-url",
        &format!("nats://127.0.0.1:{}", free_port()),
        "--nats-creds",
        creds.to_str().unwrap(),
    ])
    .await;

    assert!(!output.status.success(), "status {:?}", output.status);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("credentials"), "{stderr}");
    assert!(stderr.contains("absent-jetway.creds"), "{stderr}");
}

#[tokio::test]
async fn nats_tls_ca_file_without_a_certificate_exits_non_zero_naming_the_file() {
    let dir = tempfile::TempDir::new().unwrap();
    let ca = dir.path().join("not-a-ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();

    let output = run(&[
        "--no-auth",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--nats-url",
        &format!("nats://127.0.0.1:{}", free_port()),
        "--nats-tls-ca",
        ca.to_str().unwrap(),
    ])
    .await;

    assert!(!output.status.success(), "status {:?}", output.status);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("not-a-ca.pem"), "{stderr}");
}

#[tokio::test]
async fn no_client_auth_keys_exits_non_zero_even_while_nats_is_unreachable() {
    let output = run(&[
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--nats-url",
        &format!("nats://127.0.0.1:{}", free_port()),
    ])
    .await;

    assert!(!output.status.success(), "status {:?}", output.status);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--jwt-secret"), "{stderr}");
    assert!(stderr.contains("--no-auth"), "{stderr}");
}

#[tokio::test]
async fn binary_serves_healthz_and_exits_0_on_sigterm() {
    let server = NatsServer::start().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let child = jetway()
        .args([
            "--no-auth",
            "--listen",
            &listen,
            "--nats-url",
            &server.url(),
        ])
        .spawn()
        .expect("spawn jetway");
    let http = reqwest::Client::new();
    let health = format!("http://{listen}/healthz");

    let body = eventually(
        "jetway to serve /healthz",
        Duration::from_secs(15),
        || async {
            let response = http.get(&health).send().await.ok()?;
            (response.status().as_u16() == 200).then_some(())?;
            response.json::<serde_json::Value>().await.ok()
        },
    )
    .await;
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    terminate(child).await;
    assert!(
        http.get(&health).send().await.is_err(),
        "still serving after exit"
    );
}

#[tokio::test]
async fn binary_configured_by_file_creates_declared_stream_and_serves_it() {
    let server = NatsServer::start().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("jetway.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"{listen}\"\nnats_url = [\"{}\"]\nno-auth = true\n\n\
             [[streams]]\nname = \"ORDERS\"\nsubjects = [\"orders.>\"]\nmax_age = \"72h\"\n",
            server.url()
        ),
    )
    .unwrap();
    let child = jetway()
        .args(["--config", path.to_str().unwrap()])
        .spawn()
        .expect("spawn jetway");
    let http = reqwest::Client::new();
    let url = format!("http://{listen}/v1/streams/ORDERS");

    let body = eventually(
        "jetway to serve the declared stream",
        Duration::from_secs(15),
        || async {
            let response = http.get(&url).send().await.ok()?;
            (response.status().as_u16() == 200).then_some(())?;
            response.json::<serde_json::Value>().await.ok()
        },
    )
    .await;

    assert_eq!(body["config"]["subjects"], serde_json::json!(["orders.>"]));
    assert_eq!(body["config"]["max_age"], "72h");
    let nats = async_nats::connect(server.url()).await.unwrap();
    let stored = async_nats::jetstream::new(nats)
        .get_stream("ORDERS")
        .await
        .unwrap();
    assert_eq!(
        stored.cached_info().config.max_age,
        Duration::from_secs(72 * 3600)
    );
    terminate(child).await;
}
