"""Generated projects shared by perf.sh's tiers and scripts/checkouts.py: a C project (CMake +
Ninja, Debug: -g) and a cargo workspace, in a git repository with a sibling worktree."""
import os
import subprocess


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def git(cwd, *args):
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def c_project(root, units=40):
    """`units` sources of 40 math functions each, and a main that prints their sum and its
    own path (`__FILE__`: a path that must come out right in each worktree)."""
    write(os.path.join(root, "CMakeLists.txt"),
          "cmake_minimum_required(VERSION 3.16)\nproject(demo C)\nfile(GLOB SRCS src/*.c)\n"
          "add_executable(demo ${SRCS})\ntarget_include_directories(demo PRIVATE include)\ntarget_link_libraries(demo m)\n")
    write(os.path.join(root, "include", "common.h"), "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <math.h>\n")
    calls = []
    for i in range(units):
        body = "\n".join(f"static double f{i}_{j}(double x) {{ return sin(x * {j}) + cos(x / ({j} + 1.0)) + (double)strlen(\"{i}{j}\"); }}" for j in range(40))
        write(os.path.join(root, "src", f"u{i}.c"),
              f'#include "common.h"\n{body}\ndouble u{i}(double x) {{ double s = 0; '
              + "".join(f"s += f{i}_{j}(x); " for j in range(40)) + "return s; }\n")
        calls.append(f"u{i}(1.0)")
    write(os.path.join(root, "src", "main.c"),
          '#include "common.h"\n' + "".join(f"double u{i}(double);\n" for i in range(units))
          + 'int main(void) { double s = 0; ' + "".join(f"s += {c}; " for c in calls) + 'printf("%f %s\\n", s, __FILE__); return 0; }\n')


def rust_project(root, crates=6):
    """A chain of `crates` library crates of 60 functions each, and a binary."""
    names = [f"c{i}" for i in range(crates)]
    write(os.path.join(root, "Cargo.toml"), '[workspace]\nresolver = "2"\nmembers = ["app", ' + ", ".join(f'"{c}"' for c in names) + "]\n")
    for i, c in enumerate(names):
        dep = f'\n[dependencies]\n{names[i-1]} = {{ path = "../{names[i-1]}" }}\n' if i else ""
        write(os.path.join(root, c, "Cargo.toml"), f'[package]\nname = "{c}"\nversion = "0.1.0"\nedition = "2021"\n{dep}')
        uses = f"{names[i-1]}::value() + " if i else ""
        fns = "\n".join(f"pub fn g{j}(x: u64) -> u64 {{ (0..x).map(|v| v.wrapping_mul({j} + 1) ^ (v >> 3)).sum() }}" for j in range(60))
        write(os.path.join(root, c, "src", "lib.rs"), f"{fns}\npub fn value() -> u64 {{ {uses}g1(10) }}\n")
    write(os.path.join(root, "app", "Cargo.toml"),
          f'[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n{names[-1]} = {{ path = "../{names[-1]}" }}\n')
    write(os.path.join(root, "app", "src", "main.rs"), f'fn main() {{ println!("{{}}", {names[-1]}::value()); }}\n')


def repo_with_worktree(base, make):
    """`make(repo)` committed in `base/repo`, and `base/sibling` a `git worktree` of it."""
    repo, sibling = os.path.join(base, "repo"), os.path.join(base, "sibling")
    make(repo)
    write(os.path.join(repo, ".gitignore"), "build/\ntarget/\n")
    git(repo, "init", "-q", ".")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    git(repo, "worktree", "add", "-q", "../sibling")
    return repo, sibling


def generated_workspace(root, crates=10):
    """perf.sh's Rust workload: a chain of `crates` path crates and a binary, no dependency."""
    members = [f"c{i}" for i in range(crates)] + ["app"]
    write(os.path.join(root, "Cargo.toml"), '[workspace]\nresolver = "2"\nmembers = [' + ", ".join(f'"{m}"' for m in members) + "]\n")
    for i in range(crates):
        dep = f'c{i-1} = {{ path = "../c{i-1}" }}\n' if i else ""
        write(os.path.join(root, f"c{i}/Cargo.toml"), f'[package]\nname = "c{i}"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\n{dep}')
        prev = f"c{i-1}::value() + " if i else ""
        fns = "".join(f"pub fn helper{j}(v: &[u64]) -> u64 {{ v.iter().map(|x| x * {j}).sum() }}\n" for j in range(20))
        write(os.path.join(root, f"c{i}/src/lib.rs"), f"pub fn value() -> u64 {{ {prev}{i} }}\n{fns}")
    write(os.path.join(root, "app/Cargo.toml"), f'[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\nc{crates-1} = {{ path = "../c{crates-1}" }}\n')
    write(os.path.join(root, "app/src/main.rs"), f"fn main() {{ println!(\"{{}}\", c{crates-1}::value()); }}\n")
