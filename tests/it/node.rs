//! Running the suite's Node.js scripts (`tests/asyncapi/`, `tests/browser/`): finding `node`, and
//! pointing module resolution at `.tools/node`, where `scripts/install-tools.sh` installs the npm
//! packages they use.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `node` from PATH.
pub fn node_bin() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "node not found on PATH: install Node.js (scripts/install-tools.sh asyncapi browser \
                 installs it from Debian's packages when missing; make test runs it)"
            )
        })
}

/// `node <script> <args>` run from the repository root, with `.tools/node/node_modules` on
/// NODE_PATH.
pub fn command(script: &str, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(node_bin());
    command
        .arg(repo().join(script))
        .args(args)
        .current_dir(repo())
        .env("NODE_PATH", repo().join(".tools/node/node_modules"));
    command
}

/// Runs a script to completion (for tests without a runtime).
pub fn run_blocking(script: &str, args: &[&str]) -> Output {
    command(script, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node {script}: {e}"))
}

/// Runs a script without blocking the runtime (the gateway under test runs on it), killing it
/// after `timeout`.
pub async fn run(script: &str, args: &[&str], timeout: Duration) -> Output {
    let mut command = tokio::process::Command::from(command(script, args));
    command.kill_on_drop(true);
    match tokio::time::timeout(timeout, command.output()).await {
        Ok(output) => output.unwrap_or_else(|e| panic!("cannot run node {script}: {e}")),
        Err(_) => panic!("node {script} did not finish within {timeout:?}"),
    }
}

/// The JSON a script printed on stdout; panics with its stderr when there is none.
pub fn stdout_json(script: &str, output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "node {script} (exit {:?}) printed no JSON report ({e})\nstdout:\n{stdout}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}
