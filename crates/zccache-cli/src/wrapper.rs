//! `zccache <compiler> args…`: the path every compile takes.

use crate::client::Endpoint;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use zccache_compiler::{answerable_rustc_query, detect_tool, is_rustc_probe, QueryInput, ToolKind};
use zccache_core::Config;
use zccache_protocol::{CompileRequest, Request, Response};

/// Runs one compile through the daemon, or directly when the daemon can't help.
pub fn main(args: &[OsString]) -> i32 {
    let compiler_arg = &args[1];
    let compiler_args = &args[2..];
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
    let config = match Config::from_process() {
        Ok(config) if !config.disabled => config,
        _ => return exec(&compiler, compiler_arg, compiler_args),
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

/// Runs the compiler here after the daemon went away in the middle of a compile whose stderr
/// was partly printed: what the rerun repeats of it is not printed twice (cargo must not see
/// rustc's metadata notice twice).
fn rerun_after(compiler: &Path, name: &OsStr, args: &[OsString], printed: &[u8]) -> i32 {
    let output = Command::new(compiler)
        .arg0(name)
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
    argv.push(name.as_bytes().to_vec());
    argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    CompileRequest {
        argv,
        program: compiler.as_os_str().as_bytes().to_vec(),
        cwd: cwd.into_os_string().into_vec(),
        env: std::env::vars_os()
            .map(|(k, v)| (k.into_vec(), v.into_vec()))
            .collect(),
        client_pid: std::process::id(),
        stderr_is_tty: stderr_is_colour_terminal(),
        exec: None,
    }
}

/// What gcc and clang check before colouring diagnostics on their own: a terminal that is not
/// `TERM=dumb`.
fn stderr_is_colour_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(2) } == 1;
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
        Some(QueryInput::Stdin) => stdin_is_dev_null(),
        None => false,
    }
}

/// Whether this process's stdin is `/dev/null` (what cargo gives its probes).
fn stdin_is_dev_null() -> bool {
    let (Ok(stdin), Ok(null)) = (
        std::fs::metadata("/dev/stdin"),
        std::fs::metadata("/dev/null"),
    ) else {
        return false;
    };
    use std::os::unix::fs::FileTypeExt;
    stdin.file_type().is_char_device() && stdin.rdev() == null.rdev()
}

/// Replaces this process with the compiler: same stdio, exit code, signals, and argv\[0\] (the
/// name the build used, which compilers print in their messages) as a direct call.
pub(crate) fn exec(compiler: &Path, name: &OsStr, args: &[OsString]) -> i32 {
    let error = Command::new(compiler).arg0(name).args(args).exec();
    eprintln!("zccache: cannot run {}: {error}", compiler.display());
    127
}

/// The compiler to run: a path as given (made absolute), or the first match on PATH that is not
/// zccache itself (so `zccache` installed as `gcc` earlier on PATH does not call itself). The
/// flag says whether a zccache entry on PATH was skipped.
pub(crate) fn resolve_compiler(name: &OsStr, cwd: &Path) -> Option<(PathBuf, bool)> {
    if name.as_bytes().contains(&b'/') {
        let path = Path::new(name);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            cwd.join(path)
        };
        return Some((path, false));
    }
    // zccache itself, by (device, inode): one stat per candidate instead of resolving every
    // symlink of every path on the hit path.
    let own = std::env::current_exe()
        .and_then(std::fs::metadata)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let path_var = std::env::var_os("PATH")?;
    let mut shadowed = false;
    for dir in std::env::split_paths(&path_var).filter(|d| !d.as_os_str().is_empty()) {
        let dir = if dir.is_absolute() {
            dir
        } else {
            cwd.join(dir)
        };
        let candidate = dir.join(name);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if !(meta.is_file() && meta.permissions().mode() & 0o111 != 0) {
            continue;
        }
        if own == Some((meta.dev(), meta.ino())) {
            shadowed = true;
            continue;
        }
        return Some((candidate, shadowed));
    }
    None
}
