//! `zccache [--strict-paths=MODE] <compiler> args…`: the path every compile takes.

use crate::client::Endpoint;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use zccache_compiler::strict_paths::{self, Dialect, Mode};
use zccache_compiler::{
    answerable_rustc_query, detect_tool, is_rustc_probe, rsp, QueryInput, ToolKind,
};
use zccache_core::Config;
use zccache_protocol::{CompileRequest, Request, Response};

/// The variable that turns strict path validation on (see `zccache_compiler::strict_paths`).
const STRICT_PATHS_ENV: &str = "ZCCACHE_STRICT_PATHS";

/// `--strict-paths=MODE` or `--strict-paths MODE`, given before the compiler.
pub fn is_strict_paths_flag(word: &str) -> bool {
    word == "--strict-paths" || word.starts_with("--strict-paths=")
}

/// Runs one compile through the daemon, or directly when the daemon can't help. `args` is the
/// whole command line: `zccache [--strict-paths=MODE] <compiler> args…`.
pub fn main(args: &[OsString]) -> i32 {
    let (strict_flag, args_at) = match strict_paths_flag(args) {
        Ok(flag) => flag,
        Err(message) => {
            eprintln!("zccache: {message}");
            return 2;
        }
    };
    let Some(compiler_arg) = args.get(args_at) else {
        eprintln!("zccache: --strict-paths needs a compiler and its arguments after it");
        return 2;
    };
    let compiler_args = &args[args_at + 1..];
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(_) => return exec(Path::new(compiler_arg), compiler_arg, compiler_args),
    };
    let Some((compiler, shadowed)) = resolve_compiler(compiler_arg, &cwd) else {
        eprintln!(
            "zccache: compiler {:?} not found in PATH",
            compiler_arg.to_string_lossy()
        );
        return 127;
    };
    // The compiler sees the name the build used as its argv[0] (it prints it, and gcc finds
    // its own installation through it) unless that name leads back to zccache on PATH.
    let compiler_arg = if shadowed {
        compiler.as_os_str()
    } else {
        compiler_arg
    };
    let config = Config::from_process();
    if matches!(&config, Ok(config) if config.disabled) {
        return exec(&compiler, compiler_arg, compiler_args);
    }
    // Before the daemon is asked: the check holds when the daemon is unreachable too.
    if let Some(dialect) = Dialect::of(&compiler) {
        if let Err(code) = check_strict_paths(strict_flag, dialect, args, args_at, &cwd) {
            return code;
        }
    }
    let Ok(config) = config else {
        return exec(&compiler, compiler_arg, compiler_args);
    };
    let tool = detect_tool(&compiler);
    if is_probe(tool, compiler_args) && !daemon_answers(tool, compiler_args) {
        // `--help`, stdin input, a query about a target file: nothing to cache.
        return exec(&compiler, compiler_arg, compiler_args);
    }
    let request = Request::Compile(compile_request(&compiler, compiler_arg, compiler_args, cwd));
    let Ok(frame) = zccache_ipc::encode_request(&request) else {
        return exec(&compiler, compiler_arg, compiler_args);
    };
    let mut endpoint = Endpoint::new(&config);
    if tool == Some(ToolKind::GccLike) {
        endpoint = endpoint.identifying(&compiler);
    }
    let Ok((mut connection, mut reply)) = endpoint.call_encoded::<Response>(&frame) else {
        return exec(&compiler, compiler_arg, compiler_args);
    };
    // A rustc miss sends its stderr as rustc writes it (cargo acts on it at once).
    let mut streamed = Vec::new();
    while let Ok(Response::Progress { stderr }) = &reply {
        let _ = std::io::stderr().write_all(stderr);
        streamed.extend_from_slice(stderr);
        reply = connection.next_reply();
        if reply.is_err() {
            endpoint.await_compilers_of(&connection);
        }
    }
    match reply {
        Ok(Response::Compiled(reply)) => {
            let _ = std::io::stdout().write_all(&reply.stdout);
            let _ = std::io::stderr().write_all(&reply.stderr);
            reply.exit_code
        }
        Ok(Response::Answered {
            exit_code,
            stdout,
            stderr,
        }) => {
            let _ = std::io::stdout().write_all(&stdout);
            let _ = std::io::stderr().write_all(&stderr);
            exit_code
        }
        // Not cacheable, a daemon error, or a lost connection: the compiler runs here.
        _ if streamed.is_empty() => exec(&compiler, compiler_arg, compiler_args),
        _ => rerun_after(&compiler, compiler_arg, compiler_args, &streamed),
    }
}

/// The mode `--strict-paths` gives, if it leads the arguments, and where the compiler's name
/// is: `Err` with a message for a value that is not a mode.
fn strict_paths_flag(args: &[OsString]) -> Result<(Option<Mode>, usize), String> {
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else {
        return Ok((None, 1));
    };
    let (value, args_at) = if first == "--strict-paths" {
        let Some(value) = args.get(2) else {
            return Err("--strict-paths needs a mode: off, consistent or absolute".into());
        };
        (value.to_string_lossy(), 3)
    } else if let Some(value) = first.strip_prefix("--strict-paths=") {
        (value.into(), 2)
    } else {
        return Ok((None, 1));
    };
    match Mode::parse(&value) {
        Some(mode) => Ok((Some(mode), args_at)),
        None => Err(format!(
            "--strict-paths={value:?} is not a mode (off, consistent or absolute)"
        )),
    }
}

/// Strict path validation for a call whose compiler takes include-path flags: the mode from
/// `--strict-paths`, else from `ZCCACHE_STRICT_PATHS`. With both unset this is one lookup in
/// the environment, with no allocation and no system call. Response files are expanded first,
/// as the compiler would (with the daemon's `rsp` code). `Err` holds the exit code when the
/// call must not run: a violation, or a value that is not a mode.
fn check_strict_paths(
    flag: Option<Mode>,
    dialect: Dialect,
    args: &[OsString],
    args_at: usize,
    cwd: &Path,
) -> Result<(), i32> {
    let mode = match flag {
        Some(mode) => mode,
        None => match std::env::var_os(STRICT_PATHS_ENV) {
            None => return Ok(()),
            Some(value) => match value.to_str().and_then(Mode::parse) {
                Some(mode) => mode,
                None => {
                    eprintln!(
                        "zccache: {STRICT_PATHS_ENV}={:?} is not a mode (off, 0, consistent, \
                         absolute or 1)",
                        value.to_string_lossy()
                    );
                    return Err(2);
                }
            },
        },
    };
    if mode == Mode::Off {
        return Ok(());
    }
    let compiler_args = &args[args_at + 1..];
    let expanded = rsp::expand(compiler_args, cwd, &mut |path| std::fs::read(path));
    let checked = expanded.as_ref().map_or(compiler_args, |e| &e.args[..]);
    let Err(violation) = strict_paths::check(mode, dialect, checked) else {
        return Ok(());
    };
    let command: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
    eprintln!(
        "zccache: strict paths ({}): {violation}; the compiler was not run. Command: {}",
        mode.as_str(),
        command.join(" ")
    );
    Err(2)
}

/// `arg` as a shell would need it written: bare when it holds only unremarkable characters,
/// else in single quotes.
fn shell_word(arg: &OsStr) -> String {
    let text = arg.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=+,@%^".contains(&b));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Runs the compiler here after the daemon went away in the middle of a compile whose stderr
/// was partly printed: what the rerun repeats of it is not printed twice (cargo must not see
/// rustc's metadata notice twice).
fn rerun_after(compiler: &Path, name: &OsStr, args: &[OsString], printed: &[u8]) -> i32 {
    let mut command = Command::new(compiler);
    zccache_platform::process::set_arg0(&mut command, name);
    let output = command
        .args(args)
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::piped())
        .output();
    match output {
        Ok(output) => {
            let rest = output
                .stderr
                .strip_prefix(printed)
                .unwrap_or(&output.stderr);
            let _ = std::io::stderr().write_all(rest);
            zccache_core::exit_code(&output.status)
        }
        Err(error) => {
            eprintln!("zccache: cannot run {}: {error}", compiler.display());
            127
        }
    }
}

/// The request for `name args…` (`compiler` resolved) run in `cwd` with this process's
/// environment.
pub(crate) fn compile_request(
    compiler: &Path,
    name: &OsStr,
    args: &[OsString],
    cwd: PathBuf,
) -> CompileRequest {
    let mut argv = Vec::with_capacity(args.len() + 1);
    argv.push(name.as_encoded_bytes().to_vec());
    argv.extend(args.iter().map(|a| a.as_encoded_bytes().to_vec()));
    CompileRequest {
        argv,
        program: compiler.as_os_str().as_encoded_bytes().to_vec(),
        cwd: cwd.into_os_string().into_encoded_bytes(),
        env: std::env::vars_os()
            .map(|(k, v)| (k.into_encoded_bytes(), v.into_encoded_bytes()))
            .collect(),
        client_pid: std::process::id(),
        stderr_is_tty: stderr_is_colour_terminal(),
        exec: None,
    }
}

/// What gcc and clang check before colouring diagnostics on their own: a terminal that is not
/// `TERM=dumb`.
fn stderr_is_colour_terminal() -> bool {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    tty && std::env::var_os("TERM").is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// A rustc (or clippy-driver) call that only queries the compiler.
fn is_probe(tool: Option<ToolKind>, args: &[OsString]) -> bool {
    match tool {
        Some(ToolKind::Rustc) => is_rustc_probe(args),
        Some(ToolKind::ClippyDriver) => args.len() < 2 || is_rustc_probe(&args[1..]),
        _ => false,
    }
}

/// A rustc query the daemon may answer from memory (cargo's `rustc -vV` and `--print` probe):
/// only when what rustc would read from stdin is known to be empty, and its stderr is not a
/// terminal (cargo pipes both).
fn daemon_answers(tool: Option<ToolKind>, args: &[OsString]) -> bool {
    // On a terminal rustc colours its warnings; the daemon captures them through a pipe.
    if tool != Some(ToolKind::Rustc) || stderr_is_colour_terminal() {
        return false;
    }
    match answerable_rustc_query(args) {
        Some(QueryInput::None) => true,
        Some(QueryInput::Stdin) => zccache_platform::process::stdin_is_null_device(),
        None => false,
    }
}

/// Replaces this process with the compiler: same stdio, exit code, signals, and argv\[0\] (the
/// name the build used, which compilers print in their messages) as a direct call.
pub(crate) fn exec(compiler: &Path, name: &OsStr, args: &[OsString]) -> i32 {
    let mut command = Command::new(compiler);
    zccache_platform::process::set_arg0(&mut command, name);
    let error = zccache_platform::process::exec_replace(command.args(args));
    eprintln!("zccache: cannot run {}: {error}", compiler.display());
    127
}

/// The compiler to run: a path as given (made absolute), or the first match on PATH that is not
/// zccache itself (so `zccache` installed as `gcc` earlier on PATH does not call itself). The
/// flag says whether a zccache entry on PATH was skipped.
pub(crate) fn resolve_compiler(name: &OsStr, cwd: &Path) -> Option<(PathBuf, bool)> {
    zccache_platform::process::resolve_program_skipping_self(name, cwd)
}
