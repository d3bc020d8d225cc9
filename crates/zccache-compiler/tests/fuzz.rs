//! Argument fuzzing: whatever a build passes, parsing decides (cacheable, several units, or
//! not cacheable with a reason) and never panics. Arguments are drawn from real flags, their
//! joined and separate values, odd bytes, and response-file references.

use proptest::prelude::*;
use std::ffi::OsString;
use std::path::Path;
use zccache_compiler::{depfile, parse_depinfo, parse_gcc, parse_rustc, rsp, Parsed, ParsedRust};

const GCC_WORDS: &[&str] = &[
    "-c",
    "-o",
    "-S",
    "-E",
    "-M",
    "-MM",
    "-MD",
    "-MMD",
    "-MF",
    "-MT",
    "-MQ",
    "-MP",
    "-g",
    "-O2",
    "-I",
    "-Iinc",
    "-isystem",
    "-include",
    "-D",
    "-DX=1",
    "-U",
    "-x",
    "c++",
    "c",
    "-std=c++17",
    "-fPIC",
    "-Wall",
    "-Werror",
    "-march=native",
    "-fdiagnostics-color=always",
    "--sysroot",
    "-Xclang",
    "-Xpreprocessor",
    "-save-temps",
    "-fprofile-generate",
    "-",
    "a.c",
    "b.cpp",
    "c.S",
    "x.o",
    "lib.a",
    "-lfoo",
    "-L",
    "@args.rsp",
    "@",
    "-o-",
    "--",
    "-gsplit-dwarf",
    "-arch",
    "-target",
    "-MJ",
    "-fmodules",
    "-include-pch",
    "-coverage",
    "-pipe",
    "-v",
    "--version",
];

const RUSTC_WORDS: &[&str] = &[
    "--crate-name",
    "x",
    "--edition",
    "2021",
    "--crate-type",
    "lib",
    "bin",
    "proc-macro",
    "--emit=dep-info,metadata,link",
    "--emit",
    "metadata",
    "-C",
    "opt-level=2",
    "link-arg=-s",
    "--out-dir",
    "out",
    "-o",
    "src/lib.rs",
    "src/main.rs",
    "--extern",
    "serde=libserde.rlib",
    "-L",
    "dependency=deps",
    "-l",
    "static=foo",
    "--cfg",
    "feature=\"a\"",
    "--cap-lints",
    "allow",
    "-",
    "-vV",
    "--print",
    "cfg",
    "--json=diagnostic-rendered-ansi",
    "--test",
    "-Zunstable-options",
    "--target",
    "x86_64-unknown-linux-gnu",
    "@argfile",
];

fn arg(words: &'static [&'static str]) -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => prop::sample::select(words).prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(zccache_platform::os_str::os_string_from_bytes),
        1 => (prop::sample::select(words), "[a-z0-9=/.,_-]{0,8}")
            .prop_map(|(w, tail)| OsString::from(format!("{w}{tail}"))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn gcc_parsing_never_panics(args in prop::collection::vec(arg(GCC_WORDS), 0..24)) {
        for compiler in ["/usr/bin/gcc", "/usr/bin/clang++", "cc"] {
            match parse_gcc(Path::new(compiler), &args) {
                Parsed::NotCacheable(nc) => prop_assert!(!nc.reason.is_empty()),
                Parsed::Cacheable(_) | Parsed::Multi(_) => {}
            }
        }
    }

    #[test]
    fn rustc_parsing_never_panics(args in prop::collection::vec(arg(RUSTC_WORDS), 0..24)) {
        match parse_rustc(&args) {
            ParsedRust::NotCacheable(nc) => prop_assert!(!nc.reason.is_empty()),
            ParsedRust::Cacheable(_) | ParsedRust::Probe => {}
        }
    }

    #[test]
    fn response_files_never_panic(
        args in prop::collection::vec(arg(GCC_WORDS), 0..8),
        contents in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..4),
    ) {
        // Every response file reads as one of the generated contents, and may name itself.
        let mut reads = 0usize;
        let mut read = |_: &Path| {
            reads += 1;
            let mut body = contents[reads % contents.len()].clone();
            if reads.is_multiple_of(3) {
                body.extend_from_slice(b" @args.rsp");
            }
            Ok(body)
        };
        let _ = rsp::expand(&args, Path::new("/w"), &mut read);
        for body in &contents {
            let tokens = rsp::tokenize(body);
            // Quoting each token and reading it back gives the token.
            for token in tokens {
                prop_assert_eq!(rsp::tokenize(&rsp::quote(&token)), vec![token.clone()]);
            }
        }
    }

    #[test]
    fn depfile_and_depinfo_parsing_never_panic(text in "[ -~\\n\\t\\\\:$]{0,300}") {
        let _ = depfile::parse(&text);
        let _ = parse_depinfo(&text);
    }
}
