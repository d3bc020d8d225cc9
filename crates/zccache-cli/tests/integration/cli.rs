//! The subcommands.

use crate::sandbox::*;

#[test]
fn version_start_status_clear_stop() {
    let sb = Sandbox::new();
    let version = sb.ok(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("zccache "));
    let status = sb.ok(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("not running"));
    sb.ok(&["start"]);
    assert_eq!(sb.daemon_processes().len(), 1);
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    sb.ok(&["gcc", "-c", "m.c"]);
    sb.ok(&["gcc", "-c", "m.c"]);
    let text = String::from_utf8(sb.ok(&["status"]).stdout).unwrap();
    for needle in [
        "pid",
        "uptime",
        "cache root",
        "hit rate",
        "50.0 %",
        "time saved",
        "artifacts",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    let json = sb.status();
    assert_eq!(json["artifact_count"], 1);
    assert!(json["artifact_bytes"].as_u64().unwrap() > 0);
    assert_eq!(json["cache_root"], sb.cache.to_string_lossy().as_ref());
    sb.ok(&["clear"]);
    assert_eq!(sb.status()["artifact_count"], 0);
    sb.ok(&["gcc", "-c", "m.c"]);
    assert_eq!(sb.hits(), 1, "cleared cache must miss");
    sb.ok(&["stop"]);
    assert!(sb.daemon_processes().is_empty());
    let status = sb.ok(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("not running"));
}

#[test]
fn compiler_is_found_on_path_and_missing_one_is_reported() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    let out = sb.run(&["no-such-compiler-xyz", "-c", "m.c"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn zccache_named_as_the_compiler_on_path_does_not_call_itself() {
    // A directory early on PATH holds zccache under the name gcc: resolving "gcc" must skip it.
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("shim")).unwrap();
    std::os::unix::fs::symlink(ZCCACHE, sb.path("shim/gcc")).unwrap();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    let path = format!(
        "{}:{}",
        sb.path("shim").display(),
        std::env::var("PATH").unwrap()
    );
    sb.ok_env(&[("PATH", path)], &["gcc", "-c", "m.c"]);
    assert!(sb.path("m.o").exists());
}

#[test]
fn disabled_runs_the_compiler_directly() {
    let sb = Sandbox::new();
    sb.write_old("m.c", "int m(void) { return 0; }\n");
    sb.ok_env(&[("ZCCACHE_DISABLE", "1")], &["gcc", "-c", "m.c"]);
    assert!(sb.path("m.o").exists());
    assert!(sb.daemon_processes().is_empty());
}
