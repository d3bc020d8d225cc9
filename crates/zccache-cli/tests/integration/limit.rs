//! The size limit: a build that overflows it stays correct, the store ends under it, and
//! recently used entries survive.

use crate::sandbox::*;

#[test]
fn store_stays_under_its_limit_and_keeps_recent_entries() {
    let sb = Sandbox::new();
    let count = 40;
    for i in 0..count {
        // Objects of a few KiB each; 40 of them overflow a 48 KiB limit several times over.
        let body: String = (0..40)
            .map(|j| format!("int f{i}_{j}(int x) {{ return x * {j} + {i}; }}\n"))
            .collect();
        sb.write_old(&format!("s{i}.c"), &body);
    }
    let limit = 48 * 1024;
    let compile = |i: usize| {
        let (source, object) = (format!("s{i}.c"), format!("s{i}.o"));
        sb.ok_env(
            &[("ZCCACHE_MAX_SIZE", limit.to_string())],
            &["gcc", "-c", &source, "-o", &object],
        );
    };
    settle();
    for i in 0..count {
        compile(i);
        // Keep the first source recently used all along.
        if i % 5 == 4 {
            compile(0);
        }
    }
    let status = sb.status();
    let bytes = status["artifact_bytes"].as_u64().unwrap();
    assert_eq!(status["max_size"].as_u64().unwrap(), limit);
    assert!(status["evictions"].as_u64().unwrap() > 0, "{status}");
    assert!(
        bytes <= limit,
        "store holds {bytes} bytes over a {limit} limit"
    );
    // The recently used entry survived; the oldest untouched one did not.
    let hits = sb.hits();
    compile(0);
    assert_eq!(
        sb.hits(),
        hits + 1,
        "recently used entry must survive eviction"
    );
    compile(1);
    assert_eq!(sb.hits(), hits + 1, "least recently used entry was evicted");
    // Every object is still correct.
    for i in [0usize, 1, count - 1] {
        compile(i);
        let bare = sb.bare(".", &["gcc", "-c", &format!("s{i}.c"), "-o", "bare.o"]);
        assert_success(&bare, &["bare"]);
        assert_eq!(sb.read(&format!("s{i}.o")), sb.read("bare.o"), "s{i}.o");
    }
    // The blob files on disk agree with the accounting.
    let mut on_disk = 0;
    for dir in std::fs::read_dir(sb.cache.join("artifacts"))
        .unwrap()
        .flatten()
    {
        for blob in std::fs::read_dir(dir.path()).unwrap().flatten() {
            on_disk += blob.metadata().unwrap().len();
        }
    }
    assert_eq!(on_disk, sb.status()["artifact_bytes"].as_u64().unwrap());
}

#[test]
fn clear_during_a_parallel_build_breaks_nothing() {
    use crate::projects::{c_project, make_env};
    let sb = Sandbox::new();
    c_project(&sb);
    sb.ok(&["start"]);
    settle();
    std::thread::scope(|scope| {
        let build = scope.spawn(|| {
            for _ in 0..3 {
                make_env(&sb, "clean", &[]);
                make_env(&sb, "build/app", &[]);
            }
        });
        while !build.is_finished() {
            sb.ok(&["clear"]);
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        build.join().unwrap();
    });
    let run = sb.bare("proj", &["./build/app"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "1.0 12 14\n");
    // What the store holds after the clears is served correctly.
    sb.ok(&["clear"]);
    make_env(&sb, "clean", &[]);
    make_env(&sb, "build/app", &[]);
    let cold = sb.read("proj/build/main.o");
    make_env(&sb, "clean", &[]);
    let hits = sb.hits();
    make_env(&sb, "build/app", &[]);
    assert_eq!(sb.hits(), hits + 12, "11 objects and the link");
    assert_eq!(sb.read("proj/build/main.o"), cold);
    let run = sb.bare("proj", &["./build/app"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "1.0 12 14\n");
}
