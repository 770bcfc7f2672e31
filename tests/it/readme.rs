//! README's "API by example" runs as printed: every `sh` block of that section, in order, in one
//! `bash` (so a variable one block sets, such as the fetched messages whose ack ids a later
//! block acks, is there for the next), against a fresh gateway configured like `make dev`
//! (`scripts/dev.toml`'s `ORDERS` stream, auth off). The blocks reach it through `$JETWAY`.
//!
//! A block followed directly by an output block is checked against it:
//! - ```` ```http ````: the status line, each header shown (by name; its value too), and the body
//!   (JSON: see below; anything else exactly);
//! - ```` ```json ````: a sequence of JSON values and `HTTP <status>` lines (`curl -w`);
//! - ```` ```text ````: line by line, exactly; a line with a JSON object in it compares the text
//!   before the object exactly and the object as JSON.
//!
//! JSON shown is compared as a subset: every field shown must be there with the value shown,
//! arrays element by element; fields left out are not checked. Times and ack ids differ on every
//! run: for those fields only the type is compared. A block whose output the README does not
//! show must print nothing, and nothing may go to stderr.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{repo_root, spawn_app_with};

/// Fields whose value differs on every run (for these only the JSON type is compared).
const VOLATILE_FIELDS: [&str; 7] = [
    "time",
    "first_time",
    "last_time",
    "created",
    "ack_id",
    "secret",
    "pause_remaining",
];
/// Response headers whose value differs on every run.
const VOLATILE_HEADERS: [&str; 2] = ["jetway-time", "date"];
/// Separates the output of consecutive blocks.
const MARKER: &str = "@@readme-block";

/// A shell block of the section and the output shown after it, if any.
struct Example {
    /// Line of the block's opening fence in README.md (1-based), for messages.
    line: usize,
    script: String,
    shown: Option<(String, String)>,
}

/// The shell blocks of the `## API by example` section, in order.
fn examples(readme: &str) -> Vec<Example> {
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "## API by example")
        .expect("README has an '## API by example' section");
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |i| start + 1 + i);
    // (opening line, info string, body) of every fenced block of the section.
    let mut blocks: Vec<(usize, String, String, usize)> = Vec::new();
    let mut i = start;
    while i < end {
        if let Some(info) = lines[i].strip_prefix("```") {
            let open = i;
            let mut body = String::new();
            i += 1;
            while i < end && lines[i] != "```" {
                body.push_str(lines[i]);
                body.push('\n');
                i += 1;
            }
            assert!(i < end, "README.md:{}: unclosed code block", open + 1);
            blocks.push((open, info.trim().to_owned(), body, i));
        }
        i += 1;
    }
    let mut examples = Vec::new();
    for (index, (open, info, body, close)) in blocks.iter().enumerate() {
        if info != "sh" {
            continue;
        }
        // The output block, if the next block follows right after this one.
        let shown = blocks.get(index + 1).and_then(|(next, info, body, _)| {
            let adjacent = lines[close + 1..*next].iter().all(|l| l.trim().is_empty());
            (adjacent && ["http", "json", "text"].contains(&info.as_str()))
                .then(|| (info.clone(), body.clone()))
        });
        examples.push(Example {
            line: open + 1,
            script: body.clone(),
            shown,
        });
    }
    examples
}

/// One bash script running every block, each preceded by a marker line.
fn script(examples: &[Example]) -> String {
    let mut script = String::from("set -u\n");
    for (index, example) in examples.iter().enumerate() {
        script.push_str(&format!("printf '\\n{MARKER} %d\\n' {index}\n"));
        script.push_str(&example.script);
    }
    script.push_str(&format!("printf '\\n{MARKER} end\\n'\n"));
    script
}

/// The output of each block, split at the markers.
fn outputs(stdout: &str, count: usize) -> Vec<String> {
    let separator = format!("\n{MARKER} ");
    let mut parts = stdout.split(separator.as_str());
    let before = parts.next().unwrap_or_default();
    assert!(before.is_empty(), "output before the first block: {before}");
    let mut outputs = Vec::new();
    for part in parts {
        let (label, output) = part.split_once('\n').unwrap_or((part, ""));
        if label == "end" {
            break;
        }
        assert_eq!(label, outputs.len().to_string(), "blocks out of order");
        outputs.push(output.to_owned());
    }
    assert_eq!(
        outputs.len(),
        count,
        "not every block ran (the script stopped early): {stdout}"
    );
    outputs
}

/// JSON kinds, for volatile fields.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Compares what README shows with what came, as described in the module documentation.
fn match_json(shown: &Value, actual: &Value, path: &str, errors: &mut Vec<String>) {
    match (shown, actual) {
        (Value::Object(shown), Value::Object(actual)) => {
            for (key, value) in shown {
                let at = format!("{path}.{key}");
                match actual.get(key) {
                    None => errors.push(format!("{at}: shown as {value}, missing")),
                    Some(got) if VOLATILE_FIELDS.contains(&key.as_str()) => {
                        if kind(got) != kind(value) {
                            errors.push(format!("{at}: shown as a {}, got {got}", kind(value)));
                        }
                    }
                    Some(got) => match_json(value, got, &at, errors),
                }
            }
        }
        (Value::Array(shown), Value::Array(actual)) if shown.len() == actual.len() => {
            for (index, (value, got)) in shown.iter().zip(actual).enumerate() {
                match_json(value, got, &format!("{path}[{index}]"), errors);
            }
        }
        _ if shown == actual => {}
        _ => errors.push(format!("{path}: shown {shown}, got {actual}")),
    }
}

/// A `json` output: JSON values and `HTTP <status>` lines.
#[derive(Debug)]
enum Token {
    Json(Value),
    Status(String),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if rest.starts_with("HTTP ") {
            let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
            tokens.push(Token::Status(line.trim().to_owned()));
            rest = after.trim_start();
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                tokens.push(Token::Json(value));
                rest = rest[stream.byte_offset()..].trim_start();
            }
            Some(Err(err)) => return Err(format!("not JSON ({err}): {rest}")),
            None => break,
        }
    }
    Ok(tokens)
}

fn check_json(shown: &str, actual: &str, errors: &mut Vec<String>) {
    let shown = match tokens(shown) {
        Ok(tokens) => tokens,
        Err(err) => return errors.push(format!("README's output block: {err}")),
    };
    let actual = match tokens(actual) {
        Ok(tokens) => tokens,
        Err(err) => return errors.push(format!("the answer: {err}")),
    };
    if shown.len() != actual.len() {
        errors.push(format!(
            "README shows {} values, the block printed {}",
            shown.len(),
            actual.len()
        ));
        return;
    }
    for (index, pair) in shown.iter().zip(&actual).enumerate() {
        match pair {
            (Token::Json(shown), Token::Json(actual)) => {
                match_json(shown, actual, &format!("value {index}"), errors);
            }
            (Token::Status(shown), Token::Status(actual)) if shown == actual => {}
            (shown, actual) => {
                errors.push(format!("value {index}: shown {shown:?}, got {actual:?}"))
            }
        }
    }
}

fn check_http(shown: &str, actual: &str, errors: &mut Vec<String>) {
    let actual = actual.replace("\r\n", "\n");
    let (shown_head, shown_body) = shown.split_once("\n\n").unwrap_or((shown, ""));
    let (actual_head, actual_body) = actual.split_once("\n\n").unwrap_or((&actual, ""));
    let mut shown_lines = shown_head.lines();
    let mut actual_lines = actual_head.lines();
    let (status, got) = (shown_lines.next(), actual_lines.next());
    if status != got {
        errors.push(format!("status line: shown {status:?}, got {got:?}"));
    }
    let headers: Vec<(String, String)> = actual_lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    for line in shown_lines {
        let Some((name, value)) = line.split_once(':') else {
            errors.push(format!("README's header line has no ':': {line}"));
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match headers.iter().find(|(n, _)| *n == name) {
            None => errors.push(format!("header {name}: shown, missing")),
            Some(_) if VOLATILE_HEADERS.contains(&name.as_str()) => {}
            Some((_, got)) if got == value => {}
            Some((_, got)) => errors.push(format!("header {name}: shown {value:?}, got {got:?}")),
        }
    }
    let shown_body = shown_body.trim();
    match serde_json::from_str::<Value>(shown_body) {
        Ok(shown) => match serde_json::from_str::<Value>(actual_body.trim()) {
            Ok(actual) => match_json(&shown, &actual, "body", errors),
            Err(err) => errors.push(format!("body is not JSON ({err}): {actual_body}")),
        },
        Err(_) if shown_body == actual_body.trim() => {}
        Err(_) => errors.push(format!("body: shown {shown_body:?}, got {actual_body:?}")),
    }
}

fn check_text(shown: &str, actual: &str, errors: &mut Vec<String>) {
    let shown: Vec<&str> = shown.trim_end().lines().collect();
    let actual: Vec<&str> = actual.trim_end().lines().collect();
    if shown.len() != actual.len() {
        errors.push(format!(
            "README shows {} lines, the block printed {}",
            shown.len(),
            actual.len()
        ));
        return;
    }
    for (index, (shown, got)) in shown.iter().zip(&actual).enumerate() {
        match (shown.split_once('{'), got.split_once('{')) {
            (Some((prefix, json)), Some((got_prefix, got_json))) if prefix == got_prefix => {
                let parse = |text: &str| serde_json::from_str::<Value>(&format!("{{{text}"));
                match (parse(json), parse(got_json)) {
                    (Ok(shown), Ok(got)) => {
                        match_json(&shown, &got, &format!("line {}", index + 1), errors);
                    }
                    _ => errors.push(format!("line {}: not JSON: {shown} / {got}", index + 1)),
                }
            }
            _ if shown == got => {}
            _ => errors.push(format!("line {}: shown {shown:?}, got {got:?}", index + 1)),
        }
    }
}

#[tokio::test]
async fn readme_api_by_example_runs_as_printed() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let examples = examples(&readme);
    assert!(
        examples.len() >= 20,
        "only {} shell blocks found in README's 'API by example'",
        examples.len()
    );
    let dev_toml = repo_root().join("scripts/dev.toml").into_os_string();
    let dev = jetway::config::Cli::load(["jetway".into(), "--config".into(), dev_toml])
        .expect("scripts/dev.toml loads");
    assert!(
        dev.config.streams.iter().any(|s| s.name == "ORDERS"),
        "scripts/dev.toml declares ORDERS"
    );
    let app = spawn_app_with(|c| {
        c.streams = dev.config.streams;
        c.push_allow = dev.config.push_allow;
        c.push_allow_http = dev.config.push_allow_http;
        // The SSE example reads up to the caught_up marker; curl then ends at its next write,
        // a keep-alive comment (every 15 s with make dev's configuration).
        c.sse_keepalive = Duration::from_secs(1);
    })
    .await;
    assert!(
        std::process::Command::new("jq")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "jq not found: run scripts/install-tools.sh sdk (make test does)"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let mut bash = tokio::process::Command::new("bash");
    bash.arg("-c")
        .arg(script(&examples))
        .env("JETWAY", app.url(""))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), bash.output())
        .await
        .expect("README's examples did not finish within 120 s")
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "bash exited with {:?}; stderr:\n{stderr}\nstdout:\n{stdout}",
        output.status.code()
    );

    let mut report = Vec::new();
    for (example, actual) in examples.iter().zip(outputs(&stdout, examples.len())) {
        let mut errors = Vec::new();
        match &example.shown {
            None if actual.trim().is_empty() => {}
            None => errors.push("printed output that README does not show".to_owned()),
            Some((kind, shown)) => match kind.as_str() {
                "http" => check_http(shown, &actual, &mut errors),
                "json" => check_json(shown, &actual, &mut errors),
                _ => check_text(shown, &actual, &mut errors),
            },
        }
        if !errors.is_empty() {
            report.push(format!(
                "README.md:{}:\n{}\n  {}\n--- printed:\n{}",
                example.line,
                example.script.trim_end(),
                errors.join("\n  "),
                actual.trim_end()
            ));
        }
    }
    assert!(
        report.is_empty(),
        "README's examples differ from the answers:\n\n{}",
        report.join("\n\n")
    );
}

#[test]
fn the_checks_can_fail() {
    let mut errors = Vec::new();
    check_json(
        r#"{"seq": 1, "time": "t"}"#,
        r#"{"seq": 2, "time": 5}"#,
        &mut errors,
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    errors.clear();
    check_json(
        "{\"a\": 1}\nHTTP 201",
        "{\"a\": 1, \"b\": 2}\nHTTP 200\n",
        &mut errors,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.clear();
    check_http(
        "HTTP/1.1 201 Created\nlocation: /x\n\n{\"seq\": 1}",
        "HTTP/1.1 201 Created\r\nlocation: /y\r\n\r\n{\"seq\": 1}",
        &mut errors,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.clear();
    check_text(
        "id: 9\ndata: {\"seq\": 9}",
        "id: 9\ndata: {\"seq\":10}\n",
        &mut errors,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
}
