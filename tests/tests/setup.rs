//! `make` set-up on a machine without Redis: the install step must run (as
//! root here; through sudo for a sudo user) and succeed. Redis is hidden
//! from `PATH` (every other command stays reachable), so the Makefile takes
//! its install branch for real: `apt-get update` and `apt-get install`.

use std::path::Path;
use std::process::Command;

use portero_integration::workspace_root;

/// A directory of links to every command on `PATH` but Redis's.
fn path_without_redis(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    for entry_dir in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&entry_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("redis-") {
                continue;
            }
            let link = dir.join(&name);
            if !link.exists() {
                let _ = std::os::unix::fs::symlink(entry.path(), link);
            }
        }
    }
    dir.display().to_string()
}

#[test]
fn make_setup_installs_redis_on_a_machine_without_it() {
    let dir = std::env::temp_dir().join(format!("portero-no-redis-{}", std::process::id()));
    let path = path_without_redis(&dir);
    let hidden = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .env("PATH", &path)
        .status()
        .unwrap();
    assert!(!hidden.success(), "redis-server is hidden from PATH");
    let out = Command::new("make")
        .arg("-C")
        .arg(workspace_root())
        .arg("setup")
        .env("PATH", &path)
        .output()
        .expect("make");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "make setup failed:\n{text}");
    assert!(
        text.contains("installing redis-server"),
        "the install branch ran:\n{text}"
    );
    assert!(Path::new("/usr/bin/redis-server").exists());
}
