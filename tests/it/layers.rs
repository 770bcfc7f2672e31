//! The module layering (docs/ARCHITECTURE.md, "Layers"): `scripts/check-layers.py` passes on
//! `src/` and names each kind of violation on a crate that has them.

use std::path::Path;
use std::process::{Command, Output};

fn check(src: &Path) -> Output {
    Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-layers.py"))
        .arg(src)
        .output()
        .expect("run python3 scripts/check-layers.py")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn the_crate_keeps_transports_apart_and_has_no_import_cycle() {
    let output = check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("layering holds"),
        "{}",
        text(&output)
    );
}

#[test]
fn transport_to_transport_imports_core_to_transport_imports_and_cycles_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    let write = |path: &str, body: &str| {
        let file = src.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, body).expect("write");
    };
    write(
        "lib.rs",
        "pub mod http; pub mod ws; pub mod ops; pub mod auth; pub mod state;\n",
    );
    // Mentions in comments and strings are not imports.
    write(
        "http/mod.rs",
        "// crate::sse is not named here\nuse crate::ws::frames::Frame;\nconst S: &str = \"crate::sse\";\n",
    );
    write(
        "ws/mod.rs",
        "pub mod frames;\nuse crate::{ops, state::AppState};\n",
    );
    write("ws/frames.rs", "pub struct Frame;\n");
    write("ops/mod.rs", "use crate::http::Thing;\n");
    write("auth.rs", "use crate::state::AppState;\n");
    write("state.rs", "pub struct AppState(crate::auth::Keys);\n");

    let output = check(src);
    let report = text(&output);

    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("transport http imports transport ws"),
        "{report}"
    );
    assert!(report.contains("ops imports transport http"), "{report}");
    assert!(
        report.contains("import cycle between auth, state"),
        "{report}"
    );
    assert!(
        !report.contains("sse"),
        "comments and strings counted: {report}"
    );
}
