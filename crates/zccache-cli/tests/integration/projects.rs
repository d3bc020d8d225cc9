//! Whole builds through the wrapper: make and CMake + Ninja.

use crate::sandbox::*;
use std::process::Command;

/// A C project of 11 translation units built by a Makefile with `-MMD -MP`.
pub fn c_project(sb: &Sandbox) {
    sb.write_old(
        "proj/include/shapes.h",
        "#pragma once\nint area(int w, int h);\nint perimeter(int w, int h);\n",
    );
    sb.write_old("proj/include/version.h", "#define VERSION \"1.0\"\n");
    sb.write_old(
        "proj/src/area.c",
        "#include \"shapes.h\"\nint area(int w, int h) { return w * h; }\n",
    );
    sb.write_old(
        "proj/src/perimeter.c",
        "#include \"shapes.h\"\nint perimeter(int w, int h) { return 2 * (w + h); }\n",
    );
    sb.write_old(
        "proj/src/main.c",
        "#include <stdio.h>\n#include \"shapes.h\"\n#include \"version.h\"\n\
         int main(void) { printf(\"%s %d %d\\n\", VERSION, area(3, 4), perimeter(3, 4)); return 0; }\n",
    );
    for i in 0..8 {
        sb.write_old(
            &format!("proj/src/extra{i}.c"),
            &format!("#include <string.h>\n#include \"shapes.h\"\nint extra{i}(void) {{ return (int)strlen(\"{i}\") + area({i}, 2); }}\n"),
        );
    }
    sb.write_old(
        "proj/Makefile",
        "SRCS := $(wildcard src/*.c)\nOBJS := $(SRCS:src/%.c=build/%.o)\n\
         CFLAGS := -O2 -Wall -Iinclude -MMD -MP\n\
         build/app: $(OBJS)\n\t$(CC) $(OBJS) -o $@\n\
         build/%.o: src/%.c | build\n\t$(CC) $(CFLAGS) -c $< -o $@\n\
         build:\n\tmkdir -p build\n\
         clean:\n\trm -rf build\n\
         -include $(OBJS:.o=.d)\n",
    );
}

fn make(sb: &Sandbox, target: &str) {
    make_env(sb, target, &[]);
}

/// `make -j2 target` in the project with `CC=zccache gcc` and extra environment variables.
pub fn make_env(sb: &Sandbox, target: &str, env: &[(&str, &str)]) {
    sb.settle_writes();
    let cc = format!("{ZCCACHE} gcc");
    let out = Command::new("make")
        .args(["-j2", target, &format!("CC={cc}")])
        .env("ZCCACHE_CACHE_DIR", &sb.cache)
        .envs(env.iter().copied())
        .current_dir(sb.path("proj"))
        .output()
        .unwrap();
    assert_success(&out, &["make", target]);
}

#[test]
fn make_project_cold_clean_warm() {
    let sb = Sandbox::new();
    c_project(&sb);
    make(&sb, "build/app");
    let run = sb.bare("proj", &["./build/app"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "1.0 12 14\n");
    // 11 objects and the link.
    assert_eq!((sb.hits(), sb.misses()), (0, 12));
    let cold_objects: Vec<Vec<u8>> = (0..8)
        .map(|i| sb.read(&format!("proj/build/extra{i}.o")))
        .collect();
    let cold_dep = sb.read_string("proj/build/main.d");
    make(&sb, "clean");
    make(&sb, "build/app");
    assert_eq!(
        (sb.hits(), sb.misses()),
        (12, 12),
        "warm build must be all hits, the link included"
    );
    let run = sb.bare("proj", &["./build/app"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "1.0 12 14\n");
    for (i, cold) in cold_objects.iter().enumerate() {
        assert_eq!(&sb.read(&format!("proj/build/extra{i}.o")), cold);
    }
    assert_eq!(sb.read_string("proj/build/main.d"), cold_dep);
    // Nothing to do now: make sees the restored objects as up to date.
    let out = Command::new("make")
        .args(["-q", "build/app"])
        .current_dir(sb.path("proj"))
        .status()
        .unwrap();
    assert!(out.success(), "make -q says the warm build is out of date");
    // An edit to a header rebuilds its includers with the new value.
    std::thread::sleep(std::time::Duration::from_millis(20));
    sb.write("proj/include/version.h", "#define VERSION \"2.0\"\n");
    make(&sb, "build/app");
    let run = sb.bare("proj", &["./build/app"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "2.0 12 14\n");
}

fn cmake_project(sb: &Sandbox) {
    sb.write_old(
        "cm/CMakeLists.txt",
        "cmake_minimum_required(VERSION 3.16)\nproject(demo CXX)\nset(CMAKE_CXX_STANDARD 17)\n\
         add_library(geom STATIC src/geom.cpp src/names.cpp)\ntarget_include_directories(geom PUBLIC include)\n\
         add_executable(demo src/main.cpp)\ntarget_link_libraries(demo geom)\n",
    );
    sb.write_old(
        "cm/include/geom.hpp",
        "#pragma once\n#include <string>\nint square(int);\nstd::string name(int);\n",
    );
    sb.write_old(
        "cm/src/geom.cpp",
        "#include \"geom.hpp\"\nint square(int x) { return x * x; }\n",
    );
    sb.write_old(
        "cm/src/names.cpp",
        "#include \"geom.hpp\"\n#include <vector>\nstd::string name(int i) { std::vector<std::string> n{\"zero\",\"one\",\"two\"}; return n.at(i); }\n",
    );
    sb.write_old(
        "cm/src/main.cpp",
        "#include <iostream>\n#include \"geom.hpp\"\nint main() { std::cout << name(2) << ' ' << square(7) << std::endl; }\n",
    );
}

fn cmake_build(sb: &Sandbox, build: &str) {
    sb.settle_writes();
    let configure = Command::new("cmake")
        .args([
            "-G",
            "Ninja",
            "-S",
            "cm",
            "-B",
            build,
            "-DCMAKE_CXX_COMPILER=clang++",
        ])
        .arg(format!("-DCMAKE_CXX_COMPILER_LAUNCHER={ZCCACHE}"))
        .arg(format!("-DCMAKE_CXX_LINKER_LAUNCHER={ZCCACHE}"))
        .env("ZCCACHE_CACHE_DIR", &sb.cache)
        .current_dir(&sb.work)
        .output()
        .unwrap();
    assert_success(&configure, &["cmake configure"]);
    let out = Command::new("cmake")
        .args(["--build", build])
        .env("ZCCACHE_CACHE_DIR", &sb.cache)
        .current_dir(&sb.work)
        .output()
        .unwrap();
    assert_success(&out, &["cmake --build"]);
}

#[test]
fn cmake_ninja_project_cold_clean_warm() {
    let sb = Sandbox::new();
    cmake_project(&sb);
    cmake_build(&sb, "build");
    let run = sb.bare(".", &["build/demo"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "two 49\n");
    let cold_misses = sb.misses();
    assert!(
        cold_misses >= 4,
        "3 translation units and the link: {cold_misses}"
    );
    let hits_before = sb.hits();
    let clean = Command::new("ninja")
        .args(["-C", "build", "clean"])
        .current_dir(&sb.work)
        .output()
        .unwrap();
    assert_success(&clean, &["ninja clean"]);
    cmake_build(&sb, "build");
    assert_eq!(
        sb.hits() - hits_before,
        4,
        "every translation unit and the link are hits"
    );
    assert_eq!(sb.misses(), cold_misses);
    let run = sb.bare(".", &["build/demo"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "two 49\n");
    // Ninja has nothing left to do after a warm build.
    let again = Command::new("ninja")
        .args(["-C", "build", "-n", "-d", "explain"])
        .current_dir(&sb.work)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("no work to do"),
        "{}{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    // A fresh build directory elsewhere: also served from the cache (no -g in the default build).
    cmake_build(&sb, "build2");
    assert_eq!(sb.hits() - hits_before, 8);
    let run = sb.bare(".", &["build2/demo"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "two 49\n");
}
