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

/// `portero-stack --help` says how to use it and starts nothing; a word it
/// does not know is refused with the same text; a setting that is not a
/// number is named instead of being quietly replaced by its default.
#[test]
fn portero_stack_help_starts_nothing() {
    let bin = workspace_root().join("target/release/portero-stack");
    let help = Command::new(&bin)
        .arg("--help")
        .output()
        .expect("portero-stack");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{text}");
    assert!(text.contains("usage: portero-stack") && text.contains("PORTERO_ACCESS_TTL"));
    let unknown = Command::new(&bin)
        .arg("--bogus")
        .output()
        .expect("portero-stack");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown argument"));
    let bad = Command::new(&bin)
        .env("PORTERO_ACCESS_TTL", "ten")
        .env("PORTERO_PORT", "1")
        .output()
        .expect("portero-stack");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("PORTERO_ACCESS_TTL"));
}
