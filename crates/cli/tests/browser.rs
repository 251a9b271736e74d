//! The pages in a real browser: runs `browser/` (node's test runner, playwright-core driving
//! Debian's chromium, axe-core) against this build's `candor`. Skipped, with a notice, where
//! chromium or the npm packages are not installed (`.ci/run` installs both).

use std::path::Path;
use std::process::Command;

#[test]
fn pages_work_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() || !root.join("node_modules/playwright-core").exists() {
        eprintln!(
            "note: browser tests skipped: install chromium (apt-get install chromium) and \
             run `npm ci` in browser/"
        );
        return;
    }
    let out = Command::new("npm")
        .arg("test")
        .current_dir(&root)
        .env("CANDOR_BIN", env!("CARGO_BIN_EXE_candor"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("npm runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser tests failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("# fail 0"), "{report}");
}
