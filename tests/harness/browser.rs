//! The headless Chromium the browser tests drive (Debian's `/usr/bin/chromium`
//! through playwright-core from `tests/browser/node_modules`).

use std::path::{Path, PathBuf};

/// `tests/browser`, where the scripts and their node_modules live.
pub fn browser_dir() -> PathBuf {
    crate::repo_root().join("tests/browser")
}

/// Why a browser test cannot run here, if it cannot.
pub fn browser_missing() -> Option<String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Some(
            "/usr/bin/chromium is missing (scripts/test installs Debian's chromium)".into(),
        );
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("node is missing (scripts/test installs Debian's nodejs)".into());
    }
    let dir = browser_dir();
    if !dir.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "{}/node_modules is missing: run `npm ci` there (scripts/test does)",
            dir.display()
        ));
    }
    None
}

/// True when the browser test named `test` must be skipped (said on stderr);
/// panics instead when `GW_REQUIRE_BROWSER` is set (scripts/test sets it once
/// Chromium is installed, so CI never skips silently).
pub fn skip_browser_test(test: &str) -> bool {
    match browser_missing() {
        None => false,
        Some(why) if std::env::var_os("GW_REQUIRE_BROWSER").is_some() => {
            panic!("browser test {test} cannot run: {why}")
        }
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            true
        }
    }
}

/// Where a browser test writes its screenshots: `tests/output/NAME/` (git-ignored).
pub fn output_dir(name: &str) -> PathBuf {
    let dir = crate::repo_root().join("tests/output").join(name);
    let _ = std::fs::create_dir_all(&dir);
    dir
}
