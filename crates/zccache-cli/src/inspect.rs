//! `zccache inspect`: ask the daemon what it would do with a compile, and why.

use crate::client::Endpoint;
use crate::commands::{line, request};
use crate::wrapper::{compile_request, resolve_compiler};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use zccache_protocol::{InspectReport, Request, Response};

pub fn main(endpoint: &Endpoint, command: &[OsString], json: bool) -> i32 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let message = match command {
        [one] if is_source_file(&cwd.join(one)) => {
            // Folded lexically, as the daemon records sources.
            let path = zccache_core::paths::absolute(&cwd, Path::new(one));
            Request::InspectSource {
                path: path.as_os_str().as_encoded_bytes().to_vec(),
            }
        }
        [name, args @ ..] => {
            let Some((compiler, _)) = resolve_compiler(name, &cwd) else {
                eprintln!(
                    "zccache: inspect: compiler {:?} not found in PATH",
                    name.to_string_lossy()
                );
                return 2;
            };
            Request::Inspect(compile_request(&compiler, name, args, cwd))
        }
        [] => {
            eprintln!("zccache: inspect needs a compile command or a source file");
            return 2;
        }
    };
    let reports = match request(endpoint, true, &message) {
        Ok(Response::Inspected(reports)) => reports,
        Ok(Response::Error(message)) => {
            eprintln!("zccache: inspect: {message}");
            return 1;
        }
        Ok(other) => {
            eprintln!("zccache: unexpected reply {other:?}");
            return 1;
        }
        Err(e) => {
            eprintln!("zccache: inspect: the daemon is unreachable: {e}");
            return 1;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string(&reports).unwrap_or_else(|_| "[]".into())
        );
    } else {
        for (i, report) in reports.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", render(report));
        }
    }
    0
}

/// A single argument that names an existing file other than an executable (a compiler).
fn is_source_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file()) && !zccache_platform::process::runnable(path)
}

fn render(r: &InspectReport) -> String {
    let mut out = String::new();
    if !r.source.is_empty() {
        line(&mut out, "source", r.source.clone());
    }
    line(&mut out, "call", r.argv.join(" "));
    line(&mut out, "in", r.cwd.clone());
    line(&mut out, "verdict", r.verdict.clone());
    if let Some(reason) = &r.not_cacheable {
        line(&mut out, "why", reason.clone());
        return out;
    }
    for (i, change) in r.changes.iter().enumerate() {
        line(&mut out, if i == 0 { "why" } else { "" }, change.clone());
    }
    line(&mut out, "key", r.key.clone());
    out.push_str("key parts\n");
    let mut unset = Vec::new();
    for (label, value) in &r.parts {
        match label.strip_prefix("env ") {
            Some(name) if value == "(unset)" => unset.push(name),
            _ => line(&mut out, &format!("  {label}"), value.clone()),
        }
    }
    if !unset.is_empty() {
        line(&mut out, "  env (unset)", unset.join(" "));
    }
    out
}
