//! zccache-compiler: which tool an argv calls, and what the call means.
//!
//! Pure functions, no I/O: [`detect_tool`] recognizes a compiler from its path, [`parse_gcc`]
//! turns a gcc/clang argument list into a [`Parsed`] value — a cacheable
//! [`CompileInvocation`] or the reason it is not cacheable — and [`depfile`] reads and writes
//! Make dependency files the way each compiler family does, and [`strict_paths`] checks how
//! include-path flags are spelled (`--strict-paths`). The daemon decides what to do with
//! the result; this crate never runs anything and never touches the store.

pub mod analysis;
mod archive;
pub mod depfile;
mod gcc;
mod link;
pub mod rsp;
mod rustc;
pub mod strict_paths;

pub use archive::{parse_ar, ArInvocation};
pub use gcc::{parse_gcc, CompileInvocation, DepMode, IncludeDirs, Language, MultiCompile};
pub use link::{is_sidecar_of, library_file_names, parse_link, LinkInvocation};
pub use rustc::{
    answerable_rustc_query, depinfo_verbatim, is_rustc_probe, parse_depinfo, parse_rustc,
    ParsedRust, QueryInput, RustDepInfo, RustInvocation,
};

use std::path::Path;

/// Tools zccache knows how to cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// gcc, g++, cc, c++, clang, clang++ and their versioned or cross-prefixed names.
    GccLike,
    /// rustc (cargo calls it by absolute path).
    Rustc,
    /// clippy-driver, called by cargo as `clippy-driver <rustc> args…`.
    ClippyDriver,
    /// clang-tidy: diagnostics per translation unit.
    ClangTidy,
    /// include-what-you-use (also installed as `iwyu`).
    Iwyu,
    /// rustfmt: `--check` reports and formatting runs.
    Rustfmt,
    /// ar, llvm-ar, gcc-ar, emar: static libraries built from objects.
    Ar,
}

/// The compiler family decides details such as the depfile layout. It is learned from the
/// compiler's `--version` output, since `cc` may be either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Gcc,
    Clang,
}

/// Recognizes a tool from the file name it was called by (`x86_64-linux-gnu-gcc-12`,
/// `clang++-14`, `cc`, ...). Anything else is not ours to cache.
pub fn detect_tool(path: &Path) -> Option<ToolKind> {
    let name = path.file_name()?.to_str()?;
    let name = name.strip_suffix(".exe").unwrap_or(name);
    if name == "rustc" || name.starts_with("rustc-") {
        return Some(ToolKind::Rustc);
    }
    if name == "clippy-driver" {
        return Some(ToolKind::ClippyDriver);
    }
    if name == "rustfmt" {
        return Some(ToolKind::Rustfmt);
    }
    // Strip a version suffix ("-12", "-14.0") and a cross prefix ("x86_64-linux-gnu-").
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    let base = trimmed.strip_suffix('-').unwrap_or(trimmed);
    match base {
        "clang-tidy" => return Some(ToolKind::ClangTidy),
        "include-what-you-use" | "iwyu" => return Some(ToolKind::Iwyu),
        _ => {}
    }
    let base = base.rsplit('-').next().unwrap_or(base);
    if matches!(base, "ar" | "emar") {
        return Some(ToolKind::Ar);
    }
    matches!(
        base,
        "gcc" | "g++" | "cc" | "c++" | "clang" | "clang++" | "emcc" | "em++"
    )
    .then_some(ToolKind::GccLike)
}

/// The reason an invocation is passed through, in the fixed vocabulary shown by `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCacheable {
    /// Stable identifier counted in statistics (`link`, `multiple_sources`, ...).
    pub reason: &'static str,
    /// The argument that decided it, for logs.
    pub detail: String,
}

/// What a gcc/clang argument list means for the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Cacheable(Box<CompileInvocation>),
    /// Several sources compiled in one call.
    Multi(MultiCompile),
    NotCacheable(NotCacheable),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names() {
        let check = |name: &str, expected: bool| {
            assert_eq!(detect_tool(Path::new(name)).is_some(), expected, "{name}");
        };
        for name in [
            "gcc",
            "/usr/bin/g++",
            "cc",
            "c++",
            "clang",
            "clang++",
            "clang-14",
            "clang++-14",
            "gcc-12",
            "x86_64-linux-gnu-gcc-12",
            "x86_64-linux-gnu-g++",
            "/opt/cross/bin/arm-none-eabi-gcc",
            "emcc",
            "/usr/bin/em++",
        ] {
            check(name, true);
        }
        assert_eq!(
            detect_tool(Path::new("/r/bin/rustc")),
            Some(ToolKind::Rustc)
        );
        assert_eq!(
            detect_tool(Path::new("/r/bin/clippy-driver")),
            Some(ToolKind::ClippyDriver)
        );
        for (name, kind) in [
            ("clang-tidy", ToolKind::ClangTidy),
            ("/usr/lib/llvm-14/bin/clang-tidy", ToolKind::ClangTidy),
            ("clang-tidy-14", ToolKind::ClangTidy),
            ("include-what-you-use", ToolKind::Iwyu),
            ("/usr/bin/iwyu", ToolKind::Iwyu),
            ("rustfmt", ToolKind::Rustfmt),
            ("ar", ToolKind::Ar),
            ("/usr/bin/gcc-ar", ToolKind::Ar),
            ("llvm-ar-14", ToolKind::Ar),
            ("x86_64-linux-gnu-ar", ToolKind::Ar),
            ("emar", ToolKind::Ar),
            ("/home/u/.cargo/bin/rustfmt", ToolKind::Rustfmt),
        ] {
            assert_eq!(detect_tool(Path::new(name)), Some(kind), "{name}");
        }
        for name in [
            "ld",
            "rustdoc",
            "clang-format",
            "tar",
            "jar",
            "python3",
            "",
            "/",
            "ccache",
        ] {
            check(name, false);
        }
    }
}
