//! gcc/clang/emcc link command lines: objects and libraries in, one program or library out.
//!
//! A link is cacheable when the cache can know every file it reads. For gcc and clang the
//! linker itself reports them (`--dependency-file`); for emcc, whose wasm-ld cannot, the inputs
//! are the files named on the command line and the `-l` libraries found on `-L` paths. Calls
//! that also compile sources, or that read files the cache cannot see, are refused.

use crate::NotCacheable;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A cacheable link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInvocation {
    /// The program or library written (`a.out` when no `-o` was given).
    pub output: PathBuf,
    /// Files named on the command line: objects, archives, shared libraries, linker scripts,
    /// and (emcc) JavaScript libraries, pre/post scripts and shell files.
    pub inputs: Vec<PathBuf>,
    /// `-L` directories as written, in order.
    pub lib_dirs: Vec<PathBuf>,
    /// `-l` names as written.
    pub libs: Vec<String>,
    /// `-static`: only archives satisfy `-l`.
    pub static_only: bool,
    /// Files the linker writes besides the output because the command line asks for them
    /// (`-Wl,-Map=prog.map`).
    pub extra_outputs: Vec<PathBuf>,
}

/// Extensions of sources: a call that has any compiles them before linking.
const SOURCE_EXTENSIONS: &[&str] = &[
    "c", "cc", "cpp", "cxx", "c++", "C", "cp", "CPP", "m", "mm", "M", "i", "ii", "s", "S", "sx",
    "f", "f90", "F", "for", "go", "d", "ads", "adb",
];

/// emcc options whose value names a file read by the link.
const EMCC_FILE_OPTIONS: &[&str] = &[
    "--js-library",
    "--pre-js",
    "--post-js",
    "--extern-pre-js",
    "--extern-post-js",
    "--shell-file",
];

/// emcc options that read whole directories or files the cache cannot see.
const EMCC_REFUSED: &[(&str, &str)] = &[
    ("--preload-file", "emcc_packaged_files"),
    ("--embed-file", "emcc_packaged_files"),
    ("--exclude-file", "emcc_packaged_files"),
    ("--use-preload-cache", "emcc_packaged_files"),
    ("--emrun", "emcc_runtime_option"),
    ("--cpuprofiler", "emcc_runtime_option"),
    ("--memoryprofiler", "emcc_runtime_option"),
    ("--threadprofiler", "emcc_runtime_option"),
    ("--closure-args", "emcc_closure_args"),
];

/// Driver options that take a separate value, besides those handled below.
const SEPARATE_VALUE: &[&str] = &[
    "-T",
    "-u",
    "-e",
    "-z",
    "-Xlinker",
    "-target",
    "-arch",
    "--sysroot",
    "-gcc-toolchain",
];

/// Options that make the call a query or something other than a link to the output.
const REFUSED_PREFIXES: &[(&str, &str)] = &[
    ("-v", "verbose"),
    ("-###", "verbose"),
    ("--verbose", "verbose"),
    ("-print-", "compiler_query"),
    ("--print-", "compiler_query"),
    ("-dump", "compiler_query"),
    ("--version", "compiler_query"),
    ("--help", "compiler_query"),
    ("-save-temps", "save_temps"),
    ("--save-temps", "save_temps"),
    ("-B", "compiler_prefix"),
    ("-specs", "compiler_config"),
    ("--specs", "compiler_config"),
    ("--config", "compiler_config"),
    ("-fplugin", "compiler_plugin"),
];

fn refuse(reason: &'static str, detail: impl Into<String>) -> NotCacheable {
    NotCacheable {
        reason,
        detail: detail.into(),
    }
}

/// Parses the arguments (without argv\[0\]) of a gcc/clang/emcc call that links. `emcc` selects
/// emscripten's extra options.
pub fn parse_link(args: &[OsString], emcc: bool) -> Result<LinkInvocation, NotCacheable> {
    let mut link = LinkInvocation {
        output: PathBuf::from(if emcc { "a.out.js" } else { "a.out" }),
        inputs: Vec::new(),
        lib_dirs: Vec::new(),
        libs: Vec::new(),
        static_only: false,
        extra_outputs: Vec::new(),
    };
    let mut i = 0;
    let mut linker_options: Vec<String> = Vec::new();
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(text) = arg.to_str() else {
            return Err(refuse("unsupported_flag", arg.to_string_lossy()));
        };
        let mut value = |flag: &str| -> Result<String, NotCacheable> {
            if text.len() > flag.len() {
                let rest = &text[flag.len()..];
                Ok(rest.strip_prefix('=').unwrap_or(rest).to_string())
            } else {
                let next = args
                    .get(i)
                    .ok_or_else(|| refuse("missing_argument", text))?;
                i += 1;
                next.to_str()
                    .map(str::to_string)
                    .ok_or_else(|| refuse("unsupported_flag", next.to_string_lossy()))
            }
        };
        if text.starts_with('@') {
            return Err(refuse("response_file", text));
        }
        if text == "-" {
            return Err(refuse("stdin_input", text));
        }
        if !text.starts_with('-') {
            let path = PathBuf::from(text);
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if SOURCE_EXTENSIONS.contains(&ext) {
                return Err(refuse("compile_and_link", text));
            }
            link.inputs.push(path);
            continue;
        }
        for (prefix, reason) in REFUSED_PREFIXES {
            let exact_only = matches!(*prefix, "-v" | "-###" | "-B");
            let hit = if exact_only {
                text == *prefix || (*prefix == "-B" && text.starts_with("-B"))
            } else {
                text.starts_with(prefix)
            };
            if hit {
                return Err(refuse(reason, text));
            }
        }
        match text {
            "-c" | "-S" | "-E" | "-M" | "-MM" | "-fsyntax-only" => {
                return Err(refuse("not_a_link", text));
            }
            "-static" => link.static_only = true,
            "-x" => return Err(refuse("compile_and_link", text)),
            _ => {}
        }
        if text == "-o" || (text.starts_with("-o") && !text.starts_with("-o=")) {
            link.output = PathBuf::from(value("-o")?);
            continue;
        }
        if text.starts_with("-L") {
            link.lib_dirs.push(PathBuf::from(value("-L")?));
            continue;
        }
        if text.starts_with("-l") {
            link.libs.push(value("-l")?);
            continue;
        }
        if let Some(options) = text.strip_prefix("-Wl,") {
            linker_options.extend(options.split(',').map(str::to_string));
            continue;
        }
        if text == "-Xlinker" {
            linker_options.push(value("-Xlinker")?);
            continue;
        }
        if SEPARATE_VALUE.contains(&text) {
            value(text)?;
            continue;
        }
        if emcc {
            if let Some((_, reason)) = EMCC_REFUSED.iter().find(|(p, _)| text.starts_with(p)) {
                return Err(refuse(reason, text));
            }
            if let Some(flag) = EMCC_FILE_OPTIONS.iter().find(|f| text.starts_with(**f)) {
                link.inputs.push(PathBuf::from(value(flag)?));
                continue;
            }
            // `-sEXPORTED_FUNCTIONS=@list.txt` reads a file; `-s X=@f` likewise.
            if text.starts_with("-s") && text.contains("=@") {
                return Err(refuse("emcc_settings_file", text));
            }
            if text == "-s" {
                let setting = value("-s")?;
                if setting.contains("=@") {
                    return Err(refuse("emcc_settings_file", setting));
                }
                continue;
            }
            if text.starts_with("--") && !text.contains('=') && takes_emcc_value(text) {
                value(text)?;
            }
        }
    }
    // Linker options that read or write files the cache must know about.
    let mut j = 0;
    while j < linker_options.len() {
        let option = linker_options[j].as_str();
        j += 1;
        if option == "--dependency-file" || option.starts_with("--dependency-file=") {
            return Err(refuse("link_depfile", option));
        }
        if option == "-Map" || option == "--Map" {
            match linker_options.get(j) {
                Some(path) => link.extra_outputs.push(PathBuf::from(path)),
                None => return Err(refuse("missing_argument", option)),
            }
            j += 1;
        } else if let Some(path) = option
            .strip_prefix("-Map=")
            .or_else(|| option.strip_prefix("--Map="))
        {
            link.extra_outputs.push(PathBuf::from(path));
        } else if option.starts_with("--plugin") || option.starts_with("-plugin") {
            return Err(refuse("linker_plugin", option));
        }
    }
    if link.inputs.is_empty() && link.libs.is_empty() {
        return Err(refuse("no_input", ""));
    }
    if link.output == Path::new("-") || link.output == Path::new("/dev/null") {
        return Err(refuse(
            "output_to_stdout",
            link.output.display().to_string(),
        ));
    }
    if link.inputs.iter().any(|p| p == &link.output) {
        return Err(refuse("output_is_input", link.output.display().to_string()));
    }
    Ok(link)
}

/// emcc long options that take their value as the next argument.
fn takes_emcc_value(text: &str) -> bool {
    matches!(
        text,
        "--closure"
            | "--minify"
            | "--js-opts"
            | "--llvm-opts"
            | "--llvm-lto"
            | "--em-config"
            | "--source-map-base"
            | "--profiling-funcs"
            | "--output_eol"
            | "--cache"
    )
}

/// The names a `-l` library may have, in the order the linker tries them in one directory.
/// `-l:file.a` names a file exactly.
pub fn library_file_names(name: &str, static_only: bool) -> Vec<String> {
    if let Some(exact) = name.strip_prefix(':') {
        return vec![exact.to_string()];
    }
    if static_only {
        vec![format!("lib{name}.a")]
    } else {
        vec![format!("lib{name}.so"), format!("lib{name}.a")]
    }
}

/// Whether `path` is a file a link would write besides `output`: in the same directory, and
/// named after it (`app.js` → `app.wasm`, `app.wasm.map`, `app.worker.js`).
pub fn is_sidecar_of(output: &Path, name: &Path) -> bool {
    let (Some(out_name), Some(name)) = (output.file_name(), name.file_name()) else {
        return false;
    };
    let out = out_name.as_encoded_bytes();
    let stem = out.split(|b| *b == b'.').next().unwrap_or(out);
    let name = name.as_encoded_bytes();
    name != out
        && !stem.is_empty()
        && name.len() > stem.len() + 1
        && name.starts_with(stem)
        && name[stem.len()] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn parse(line: &str) -> Result<LinkInvocation, &'static str> {
        parse_link(&args(line), false).map_err(|nc| nc.reason)
    }

    #[test]
    fn a_plain_link() {
        let link = parse("a.o b.o -o prog -L lib -Lother -lm -l z -Wl,-O1").unwrap();
        assert_eq!(link.output, PathBuf::from("prog"));
        assert_eq!(link.inputs, [PathBuf::from("a.o"), "b.o".into()]);
        assert_eq!(link.lib_dirs, [PathBuf::from("lib"), "other".into()]);
        assert_eq!(link.libs, ["m", "z"]);
        assert!(!link.static_only);
        assert!(link.extra_outputs.is_empty());
        assert_eq!(parse("main.o").unwrap().output, PathBuf::from("a.out"));
        assert_eq!(
            parse("-oprog main.o").unwrap().output,
            PathBuf::from("prog")
        );
    }

    #[test]
    fn shared_static_archives_and_scripts_are_inputs() {
        let link = parse("-shared -fPIC x.o libq.a -T script.ld -static -o libx.so").unwrap();
        assert_eq!(link.inputs, [PathBuf::from("x.o"), "libq.a".into()]);
        assert!(link.static_only);
        assert_eq!(link.output, PathBuf::from("libx.so"));
    }

    #[test]
    fn map_files_are_extra_outputs() {
        let link = parse("a.o -o p -Wl,-Map=p.map").unwrap();
        assert_eq!(link.extra_outputs, [PathBuf::from("p.map")]);
        let link = parse("a.o -o p -Xlinker -Map -Xlinker out.map").unwrap();
        assert_eq!(link.extra_outputs, [PathBuf::from("out.map")]);
        let link = parse("a.o -o p -Wl,--Map=q.map").unwrap();
        assert_eq!(link.extra_outputs, [PathBuf::from("q.map")]);
    }

    #[test]
    fn refusals() {
        for (line, reason) in [
            ("a.c -o a", "compile_and_link"),
            ("a.o x.cpp -o a", "compile_and_link"),
            ("-x c a -o a", "compile_and_link"),
            ("-c a.o", "not_a_link"),
            ("a.o -o a -v", "verbose"),
            ("a.o -o a -Wl,--dependency-file=a.d", "link_depfile"),
            ("a.o -o a -Xlinker --dependency-file=a.d", "link_depfile"),
            ("a.o -o a -Wl,-plugin,x.so", "linker_plugin"),
            ("@args.rsp", "response_file"),
            ("a.o -o -", "output_to_stdout"),
            ("-o a", "no_input"),
            ("a.o -o a.o", "output_is_input"),
            ("a.o -o a -Bprefix/", "compiler_prefix"),
            ("a.o -o a -print-search-dirs", "compiler_query"),
            ("a.o -o", "missing_argument"),
        ] {
            assert_eq!(parse(line).unwrap_err(), reason, "{line}");
        }
    }

    #[test]
    fn emcc_files_and_refusals() {
        let link = parse_link(
            &args("a.o -o app.js --js-library lib.js --pre-js=pre.js -sWASM=1 -s EXIT_RUNTIME=1"),
            true,
        )
        .unwrap();
        assert_eq!(
            link.inputs,
            [PathBuf::from("a.o"), "lib.js".into(), "pre.js".into()]
        );
        assert_eq!(
            parse_link(&args("a.o"), true).unwrap().output,
            PathBuf::from("a.out.js")
        );
        for (line, reason) in [
            ("a.o -o app.js --preload-file assets", "emcc_packaged_files"),
            ("a.o -o app.js --embed-file data.bin", "emcc_packaged_files"),
            (
                "a.o -o app.js -sEXPORTED_FUNCTIONS=@f.txt",
                "emcc_settings_file",
            ),
            (
                "a.o -o app.js -s EXPORTED_FUNCTIONS=@f.txt",
                "emcc_settings_file",
            ),
        ] {
            assert_eq!(
                parse_link(&args(line), true).unwrap_err().reason,
                reason,
                "{line}"
            );
        }
    }

    #[test]
    fn library_names() {
        assert_eq!(library_file_names("m", false), ["libm.so", "libm.a"]);
        assert_eq!(library_file_names("m", true), ["libm.a"]);
        assert_eq!(library_file_names(":libx.so.1", false), ["libx.so.1"]);
    }

    #[test]
    fn sidecars_share_the_output_stem() {
        let out = Path::new("web/app.js");
        assert!(is_sidecar_of(out, Path::new("web/app.wasm")));
        assert!(is_sidecar_of(out, Path::new("app.wasm.map")));
        assert!(is_sidecar_of(out, Path::new("app.worker.js")));
        assert!(!is_sidecar_of(out, Path::new("app.js")));
        assert!(!is_sidecar_of(out, Path::new("application.wasm")));
        assert!(!is_sidecar_of(out, Path::new("other.wasm")));
        assert!(!is_sidecar_of(Path::new("prog"), Path::new("prog")));
        assert!(is_sidecar_of(Path::new("prog"), Path::new("prog.map")));
    }
}
