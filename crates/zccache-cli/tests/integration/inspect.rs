//! `zccache inspect`: the verdict for a call and, for a miss, the part that changed.

use crate::sandbox::*;
use serde_json::Value;

/// `zccache inspect --json <args>`: the reports.
fn inspect(sb: &Sandbox, env: &[(&str, &str)], args: &[&str]) -> Vec<Value> {
    let mut all = vec!["inspect", "--json"];
    all.extend_from_slice(args);
    let out = sb.ok_env(env, &all);
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn changes(report: &Value) -> Vec<String> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn inspect_names_the_changed_flag_header_env_and_compiler() {
    let sb = Sandbox::new();
    sb.write_old("inc/config.h", "#define LEVEL 1\n");
    sb.write_old(
        "app.c",
        "#include \"config.h\"\nint level(void) { return LEVEL + V; }\n",
    );
    let call = ["gcc", "-Iinc", "-DV=1", "-O2", "-c", "app.c", "-o", "app.o"];
    sb.ok(&call);
    let object = sb.read("app.o");
    let before = (sb.hits(), sb.misses());

    let same = inspect(&sb, &[], &call);
    assert_eq!(same.len(), 1);
    assert_eq!(same[0]["verdict"], "hit", "{}", same[0]);
    assert!(same[0]["source"].as_str().unwrap().ends_with("/app.c"));
    let parts = same[0]["parts"].as_array().unwrap();
    assert!(parts.iter().any(|p| p[0] == "argument" && p[1] == "V=1"));
    assert!(parts.iter().any(|p| p[0] == "source"));

    let mut flag = call;
    flag[2] = "-DV=2";
    let report = &inspect(&sb, &[], &flag)[0];
    assert_eq!(report["verdict"], "miss");
    assert_eq!(
        changes(report),
        ["argument added: -D V=2", "argument removed: -D V=1"]
    );

    let report = &inspect(&sb, &[("CPATH", "/opt/include")], &call)[0];
    assert_eq!(
        changes(report),
        ["env CPATH changed: (unset) -> /opt/include"]
    );

    let mut other = call;
    other[0] = "clang";
    let report = &inspect(&sb, &[], &other)[0];
    let named = changes(report);
    assert!(
        named.contains(&"compiler changed (another binary or version)".to_string()),
        "{named:?}"
    );

    // A header edited (same size) is named, by the call and by the source file alone.
    sb.write("inc/config.h", "#define LEVEL 2\n");
    settle();
    let report = &inspect(&sb, &[], &call)[0];
    assert_eq!(report["verdict"], "miss");
    assert_eq!(changes(report), ["header inc/config.h changed"]);
    let by_source = inspect(&sb, &[], &["app.c"]);
    assert_eq!(by_source.len(), 1);
    assert_eq!(by_source[0]["argv"][0], "gcc");
    assert_eq!(changes(&by_source[0]), ["header inc/config.h changed"]);
    // The human form says the same.
    let text = sb.ok(&["inspect", "app.c"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("verdict") && text.contains("header inc/config.h changed"),
        "{text}"
    );

    // The source itself.
    sb.write("inc/config.h", "#define LEVEL 1\n");
    sb.write(
        "app.c",
        "#include \"config.h\"\nint level(void) { return LEVEL - V; }\n",
    );
    settle();
    assert_eq!(
        changes(&inspect(&sb, &[], &call)[0]),
        ["source content changed"]
    );

    // Inspecting ran nothing, stored nothing and left the object alone.
    assert_eq!((sb.hits(), sb.misses()), before);
    assert_eq!(sb.read("app.o"), object);
}

#[test]
fn inspect_reports_refusals_and_unknown_sources() {
    let sb = Sandbox::new();
    sb.write_old("main.c", "int main(void) { return 0; }\n");
    let report = &inspect(&sb, &[], &["gcc", "main.c", "-o", "main"])[0];
    assert_eq!(report["verdict"], "not cacheable");
    assert_eq!(report["not_cacheable"], "link");
    let report = &inspect(&sb, &[], &["gcc", "-c", "main.c"])[0];
    assert_eq!(report["verdict"], "miss");
    assert_eq!(
        changes(report),
        ["no earlier compile of this source is in the cache"]
    );
    let out = sb.run(&["inspect", "main.c"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no compile of"));
}

#[test]
fn inspect_explains_a_rustc_miss() {
    let sb = Sandbox::new();
    sb.write_old("src/lib.rs", "mod m;\npub fn f() -> u32 { m::g() }\n");
    sb.write_old("src/m.rs", "pub fn g() -> u32 { 1 }\n");
    std::fs::create_dir_all(sb.path("out")).unwrap();
    let rustc = real_rustc();
    let call = [
        rustc.as_str(),
        "--crate-name",
        "lib1",
        "--edition",
        "2021",
        "--crate-type",
        "lib",
        "--emit=dep-info,metadata,link",
        "-C",
        "opt-level=0",
        "src/lib.rs",
        "--out-dir",
        "out",
    ];
    sb.ok(&call);
    assert_eq!(inspect(&sb, &[], &call)[0]["verdict"], "hit");
    let mut optimized = call;
    optimized[9] = "opt-level=2";
    assert_eq!(
        changes(&inspect(&sb, &[], &optimized)[0]),
        [
            "argument added: -C opt-level=2",
            "argument removed: -C opt-level=0"
        ]
    );
    sb.write("src/m.rs", "pub fn g() -> u32 { 2 }\n");
    settle();
    assert_eq!(
        changes(&inspect(&sb, &[], &["src/lib.rs"])[0]),
        ["input file src/m.rs changed"]
    );
}
