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

/// The manifests the daemon keeps in memory stay within `ZCCACHE_MEMO_MB`, a build larger than
/// that still hits in full, and an entry whose manifest was dropped is checked against its
/// dependencies as before: an edited header makes it a miss with the new object.
#[test]
fn in_memory_manifests_stay_within_their_budget_and_dropped_ones_still_hit_correctly() {
    let sb = Sandbox::new();
    // 60 shared headers and one of its own per source: ~10 KB of manifest per entry, so 160
    // entries overflow a 1 MiB budget.
    let shared: String = (0..60)
        .map(|h| {
            sb.write_old(
                &format!("include/shared_header_{h}.h"),
                &format!(
                    "#pragma once\nstatic inline int shared{h}(int x) {{ return x + {h}; }}\n"
                ),
            );
            format!("#include \"shared_header_{h}.h\"\n")
        })
        .collect();
    let count = 160;
    for i in 0..count {
        sb.write_old(
            &format!("include/own_{i}.h"),
            &format!("#define OWN_{i} {i}\n"),
        );
        sb.write_old(
            &format!("unit_{i}.c"),
            &format!(
                "#include <stdio.h>\n{shared}#include \"own_{i}.h\"\n\
                 int unit{i}(int x) {{ return shared{}(x) + OWN_{i}; }}\n",
                i % 60
            ),
        );
    }
    let env = [("ZCCACHE_MEMO_MB", "1")];
    sb.ok_env(&env, &["start"]);
    settle();
    let compile = |i: usize| {
        let (source, object) = (format!("unit_{i}.c"), format!("unit_{i}.o"));
        sb.ok_env(&env, &["gcc", "-Iinclude", "-c", &source, "-o", &object]);
    };
    for i in 0..count {
        compile(i);
    }
    let cold: Vec<Vec<u8>> = (0..count)
        .map(|i| sb.read(&format!("unit_{i}.o")))
        .collect();
    let status = sb.status();
    let memos = &status["memos"];
    let budget = memos["manifest_budget"].as_u64().unwrap();
    assert_eq!(budget, 1 << 20, "{status}");
    assert!(
        memos["manifest_bytes"].as_u64().unwrap() <= budget,
        "{status}"
    );
    assert!(memos["manifests_dropped"].as_u64().unwrap() > 0, "{status}");
    assert!(
        memos["manifests"].as_u64().unwrap() < count as u64,
        "{status}"
    );
    assert!(status["resident_bytes"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(sb.misses(), count as u64);

    // Every entry hits, dropped from memory or not, with the same objects.
    for i in 0..count {
        std::fs::remove_file(sb.work.join(format!("unit_{i}.o"))).unwrap();
        compile(i);
    }
    assert_eq!(sb.hits(), count as u64, "{}", sb.status());
    for (i, object) in cold.iter().enumerate() {
        assert_eq!(&sb.read(&format!("unit_{i}.o")), object, "unit_{i}.o");
    }
    let memos = sb.status()["memos"].clone();
    assert!(
        memos["manifest_bytes"].as_u64().unwrap() <= budget,
        "{memos}"
    );

    // Unit 0's manifest was among the first dropped: an edit to its own header is still seen.
    sb.write("include/own_0.h", "#define OWN_0 1000\n");
    compile(0);
    assert_eq!(sb.misses(), count as u64 + 1);
    let bare = sb.bare(".", &["gcc", "-Iinclude", "-c", "unit_0.c", "-o", "bare.o"]);
    assert_success(&bare, &["bare"]);
    assert_eq!(sb.read("unit_0.o"), sb.read("bare.o"));
    assert_ne!(sb.read("unit_0.o"), cold[0]);
}
