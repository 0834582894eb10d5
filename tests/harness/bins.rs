//! Locating (and, when missing, building) the binaries under test.
//!
//! `scripts/test` builds the workspace binaries before the suite runs; a test
//! started on its own builds them once per process. Concurrent test processes
//! (nextest) may build at the same time: cargo's own lock serialises them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Serialises the build within one test process.
static BUILD: Mutex<()> = Mutex::new(());

/// The workspace root (the parent of this package's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` or `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        None => repo_root().join("target"),
    }
}

/// Path of the `gridwatch` binary, built if missing.
pub fn gridwatch_bin() -> PathBuf {
    ensure_built("gridwatch")
}

/// Path of the `firmware-sim` binary, built if missing.
pub fn firmware_sim_bin() -> PathBuf {
    ensure_built("firmware-sim")
}

fn ensure_built(name: &str) -> PathBuf {
    let path = target_dir()
        .join("debug")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        return path;
    }
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(repo_root())
            .args(["build", "-p", "gridwatch", "-p", "firmware-sim"])
            .status()
            .expect("run cargo build -p gridwatch -p firmware-sim");
        assert!(
            status.success(),
            "cargo build -p gridwatch -p firmware-sim failed: {status}"
        );
    }
    assert!(
        path.exists(),
        "{} still missing after cargo build",
        path.display()
    );
    path
}
