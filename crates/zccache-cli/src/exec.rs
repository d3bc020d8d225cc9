//! `zccache exec [--input F]… [--output F]… [--env NAME]… -- TOOL ARGS…`: any deterministic
//! tool, cached by what the call declares. Like the wrapper, it parses nothing but its own
//! options and runs the tool directly whenever the daemon cannot help.

use crate::client::Endpoint;
use crate::wrapper::{compile_request, exec, resolve_compiler};
use std::ffi::OsString;
use std::io::Write;
use zccache_core::Config;
use zccache_protocol::{ExecSpec, Request, Response};

const USAGE: &str =
    "usage: zccache exec [--input FILE]... [--output FILE]... [--env NAME]... -- TOOL [ARGS...]

Runs TOOL through the cache. The result (stdout, stderr, exit code and the --output files) is
keyed by TOOL's binary, its arguments, the working directory, the content of every --input file
and the value of every --env variable; nothing else TOOL reads is noticed.";

/// Runs `zccache exec …` (`args` is the whole command line) and returns the exit code.
pub fn main(args: &[OsString]) -> i32 {
    let (spec, command) = match parse(&args[2..]) {
        Ok(Parsed::Run(spec, command)) => (spec, command),
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return 0;
        }
        Err(message) => {
            eprintln!("zccache exec: {message}\n\n{USAGE}");
            return 2;
        }
    };
    let (tool_arg, tool_args) = (&command[0], &command[1..]);
    let Ok(cwd) = std::env::current_dir() else {
        return exec(std::path::Path::new(tool_arg), tool_arg, tool_args);
    };
    let Some((tool, shadowed)) = resolve_compiler(tool_arg, &cwd) else {
        eprintln!(
            "zccache exec: {:?} not found in PATH",
            tool_arg.to_string_lossy()
        );
        return 127;
    };
    let name = if shadowed { tool.as_os_str() } else { tool_arg };
    let config = match Config::from_process() {
        Ok(config) if !config.disabled => config,
        _ => return exec(&tool, name, tool_args),
    };
    let mut request = compile_request(&tool, name, tool_args, cwd);
    request.exec = Some(spec);
    let frame = zccache_ipc::encode_request(&Request::Compile(request));
    match frame.and_then(|frame| Endpoint::new(&config).call_encoded::<Response>(&frame)) {
        Ok((_, Ok(Response::Compiled(reply)))) => {
            let _ = std::io::stdout().write_all(&reply.stdout);
            let _ = std::io::stderr().write_all(&reply.stderr);
            reply.exit_code
        }
        // Not cacheable, a daemon error, or a lost connection: the tool runs here.
        _ => exec(&tool, name, tool_args),
    }
}

#[derive(Debug, PartialEq)]
enum Parsed {
    /// The declarations, and the tool with its arguments (never empty).
    Run(ExecSpec, Vec<OsString>),
    Help,
}

/// Reads the options before `--`; the tool and its arguments follow it.
fn parse(args: &[OsString]) -> Result<Parsed, String> {
    let mut spec = ExecSpec::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_encoded_bytes();
        if arg == b"--" {
            let command = args[i + 1..].to_vec();
            if command.is_empty() {
                return Err("no tool after `--`".into());
            }
            return Ok(Parsed::Run(spec, command));
        }
        if arg == b"-h" || arg == b"--help" {
            return Ok(Parsed::Help);
        }
        let (name, joined) = match arg.iter().position(|&b| b == b'=') {
            Some(at) if arg.starts_with(b"--") => (&arg[..at], Some(arg[at + 1..].to_vec())),
            _ => (arg, None),
        };
        let list = match name {
            b"--input" => &mut spec.inputs,
            b"--output" => &mut spec.outputs,
            b"--env" => &mut spec.env,
            _ if arg.starts_with(b"-") => {
                return Err(format!("unknown option {:?}", args[i].to_string_lossy()))
            }
            _ => {
                return Err(format!(
                    "expected `--` before the tool {:?}",
                    args[i].to_string_lossy()
                ))
            }
        };
        let value = match joined {
            Some(value) => value,
            None => {
                i += 1;
                match args.get(i) {
                    Some(value) => value.clone().into_encoded_bytes(),
                    None => return Err(format!("{} needs a value", String::from_utf8_lossy(name))),
                }
            }
        };
        if value.is_empty() {
            return Err(format!("{} needs a value", String::from_utf8_lossy(name)));
        }
        list.push(value);
        i += 1;
    }
    Err("missing `--` and the tool to run".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn declarations_then_the_tool() {
        let parsed = parse(&args(&[
            "--input",
            "a.txt",
            "--output=b.gz",
            "--env",
            "LANG",
            "--input=c",
            "--",
            "gzip",
            "-n",
            "--",
            "a.txt",
        ]))
        .unwrap();
        let Parsed::Run(spec, command) = parsed else {
            panic!("not a run")
        };
        assert_eq!(spec.inputs, [b"a.txt".to_vec(), b"c".to_vec()]);
        assert_eq!(spec.outputs, [b"b.gz".to_vec()]);
        assert_eq!(spec.env, [b"LANG".to_vec()]);
        assert_eq!(command, args(&["gzip", "-n", "--", "a.txt"]));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["gzip", "a"][..],
            &["--input", "a"],
            &["--input"],
            &["--input", "a", "--"],
            &["--bogus", "--", "tool"],
            &["--output=", "--", "tool"],
            &[],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(parse(&args(&["--help"])), Ok(Parsed::Help));
    }
}
