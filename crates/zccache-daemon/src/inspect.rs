//! `zccache inspect`: what the cache would do with a call, and why a miss misses.
//!
//! The front ends compute a call's key with every part labelled ([`Probe`]); nothing is run,
//! delivered or stored. A key with a stored entry whose inputs still match is a hit. A key with
//! entries that no longer match names the headers (or environment) that changed. A new key is
//! compared with the parts recorded when the same source was last stored, which names the
//! argument, variable, compiler or source that changed.

use crate::pipeline::Call;
use crate::Daemon;
use std::path::PathBuf;
use zccache_artifact::ManifestEntry;
use zccache_compiler::{detect_tool, ToolKind};
use zccache_core::paths::absolute;
use zccache_core::{hex, Hash};
use zccache_protocol::{CompileRequest, InspectReport, Response};

/// One source's key and its labelled parts.
pub(crate) struct Probe {
    pub source: PathBuf,
    pub key: Hash,
    pub parts: Vec<(String, String)>,
}

/// Parts whose value is a digest: a change is named, not shown.
const DIGEST_LABELS: &[&str] = &[
    "compiler identity",
    "rustc identity",
    "linker identity",
    "cpu (-march=native)",
];

impl Daemon {
    /// Explains `request` without running it.
    pub(crate) fn inspect(&self, request: CompileRequest) -> Response {
        let Some(call) = Call::decode(request) else {
            return Response::Error("empty argv".into());
        };
        // Results still being stored count as stored.
        self.pending.wait_all();
        let probes = match detect_tool(&call.compiler) {
            Some(ToolKind::GccLike) => self.probe_cc(&call),
            Some(ToolKind::Rustc) => self.probe_rust(&call, false),
            Some(ToolKind::ClippyDriver) => self.probe_rust(&call, true),
            Some(ToolKind::ClangTidy | ToolKind::Iwyu | ToolKind::Rustfmt | ToolKind::Ar) => {
                Err("not_inspectable (inspect explains compilers' keys only)".into())
            }
            None => Err("unsupported_tool".into()),
        };
        let base = InspectReport {
            argv: std::iter::once(&call.name)
                .chain(&call.args)
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            cwd: call.cwd.display().to_string(),
            ..InspectReport::default()
        };
        match probes {
            Err(reason) => Response::Inspected(vec![InspectReport {
                verdict: "not cacheable".into(),
                not_cacheable: Some(reason),
                ..base
            }]),
            Ok(probes) => Response::Inspected(
                probes
                    .into_iter()
                    .map(|probe| self.explain(&call, probe, base.clone()))
                    .collect(),
            ),
        }
    }

    /// Explains the last recorded compile of `path` (absolute) as it would run now.
    pub(crate) fn inspect_source(&self, path: &[u8]) -> Response {
        let Some(store) = self.store() else {
            return Response::Error("the cache store is unavailable".into());
        };
        let shown = String::from_utf8_lossy(path);
        // The build may have named the file through a symlink, or the caller may have.
        let canonical = std::fs::canonicalize(zccache_platform::os_str::os_str_from_bytes(path))
            .map(|p| p.into_os_string().into_encoded_bytes())
            .unwrap_or_default();
        let mut records = Vec::new();
        for candidate in [path, canonical.as_slice()] {
            match store.source_records(candidate) {
                Ok(found) if !found.is_empty() => {
                    records = found;
                    break;
                }
                Ok(_) => {}
                Err(e) => return Response::Error(format!("reading the index: {e}")),
            }
        }
        let Some(last) = records.first() else {
            return Response::Error(format!(
                "no compile of {shown} is recorded in this cache (it was not compiled through \
                 zccache since the cache was created or cleared)"
            ));
        };
        let request = CompileRequest {
            argv: last.argv.clone(),
            program: last.program.clone(),
            cwd: last.cwd.clone(),
            env: last.env.clone(),
            client_pid: 0,
            stderr_is_tty: false,
            exec: None,
        };
        match self.inspect(request) {
            Response::Inspected(reports) => Response::Inspected(
                reports
                    .into_iter()
                    .filter(|r| {
                        r.not_cacheable.is_some()
                            || r.source.as_bytes() == path
                            || r.source.as_bytes() == canonical
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    fn explain(&self, call: &Call, probe: Probe, base: InspectReport) -> InspectReport {
        let mut report = InspectReport {
            source: probe.source.display().to_string(),
            verdict: "miss".into(),
            key: hex(&probe.key),
            parts: probe.parts,
            ..base
        };
        let Some(store) = self.store() else {
            report.changes = vec!["the cache store is unavailable".into()];
            return report;
        };
        if let Ok(Some(manifest)) = store.manifest(&probe.key) {
            let mut closest: Option<Vec<String>> = None;
            for entry in &manifest.entries {
                let changes = self.entry_changes(entry, call);
                if changes.is_empty() {
                    report.verdict = "hit".into();
                    return report;
                }
                if closest.as_ref().is_none_or(|c| changes.len() < c.len()) {
                    closest = Some(changes);
                }
            }
            report.changes = closest.unwrap_or_default();
            return report;
        }
        let source = probe.source.as_os_str().as_encoded_bytes();
        let records = store.source_records(source).unwrap_or_default();
        report.changes = match records
            .iter()
            .map(|record| diff_parts(&record.parts, &report.parts))
            .min_by_key(Vec::len)
        {
            None => vec!["no earlier compile of this source is in the cache".into()],
            Some(changes) if changes.is_empty() => {
                vec!["the result for this key was evicted, or the cache was cleared".into()]
            }
            Some(changes) => changes,
        };
        report
    }

    /// Why a stored entry would not be served now: its inputs that changed.
    fn entry_changes(&self, entry: &ManifestEntry, call: &Call) -> Vec<String> {
        let noun = match detect_tool(&call.compiler) {
            Some(ToolKind::GccLike) => "header",
            _ => "input file",
        };
        let mut changes = Vec::new();
        let deps: Vec<PathBuf> = entry
            .deps
            .iter()
            .map(|d| PathBuf::from(zccache_platform::os_str::os_str_from_bytes(&d.path)))
            .collect();
        for (dep, written) in entry.deps.iter().zip(&deps) {
            match self.fs.digest(&absolute(&call.cwd, written)) {
                Ok(digest) if digest.hash == dep.hash => {}
                Ok(_) => changes.push(format!("{noun} {} changed", written.display())),
                Err(_) => changes.push(format!("{noun} {} is gone", written.display())),
            }
        }
        for var in &entry.env {
            let name = String::from_utf8_lossy(&var.name);
            let now = call.env_var(&name).map(|v| v.as_encoded_bytes().to_vec());
            if now != var.value {
                let show = |v: &Option<Vec<u8>>| match v {
                    Some(v) => String::from_utf8_lossy(v).into_owned(),
                    None => "(unset)".into(),
                };
                changes.push(format!(
                    "env {name} changed: {} -> {}",
                    show(&var.value),
                    show(&now)
                ));
            }
        }
        if let Some(check) = &entry.shadow {
            let listings = crate::search::Listings::default();
            if !crate::search::no_shadowing(
                check,
                &call.cwd,
                &crate::search::Uncached,
                &|| deps.clone(),
                &|_| None,
                &listings,
            ) {
                changes.push(format!(
                    "a {noun} added to the include path would now be found before one it used"
                ));
            }
        }
        changes
    }
}

/// A refusal's reason, with its detail when there is one.
pub(crate) fn not_cacheable(reason: &str, detail: &str) -> String {
    if detail.is_empty() {
        reason.to_string()
    } else {
        format!("{reason} ({detail})")
    }
}

/// What differs between the parts of an earlier key (`old`) and a new one, in words.
pub(crate) fn diff_parts(old: &[(String, String)], new: &[(String, String)]) -> Vec<String> {
    let mut changes = Vec::new();
    let arguments = |parts: &[(String, String)]| -> Vec<String> {
        parts
            .iter()
            .filter(|(label, _)| label == "argument")
            .map(|(_, value)| value.clone())
            .collect()
    };
    let (old_args, new_args) = (arguments(old), arguments(new));
    if old_args != new_args {
        let mut removed = old_args.clone();
        let mut added = Vec::new();
        for arg in &new_args {
            match removed.iter().position(|a| a == arg) {
                Some(at) => {
                    removed.remove(at);
                }
                None => added.push(arg.clone()),
            }
        }
        if added.is_empty() && removed.is_empty() {
            changes.push("argument order changed".into());
        }
        changes.extend(describe_arguments("added", &added, &new_args));
        changes.extend(describe_arguments("removed", &removed, &old_args));
    }
    let singles = |parts: &[(String, String)]| -> Vec<(String, String)> {
        parts
            .iter()
            .filter(|(label, _)| label != "argument")
            .cloned()
            .collect()
    };
    let (old_singles, new_singles) = (singles(old), singles(new));
    let value_in =
        |list: &[(String, String)], label: &str| list.iter().find(|(l, _)| l == label).cloned();
    for (label, value) in &new_singles {
        match value_in(&old_singles, label) {
            None => changes.push(format!("{label} added: {value}")),
            Some((_, was)) if &was != value => changes.push(describe(label, &was, value)),
            Some(_) => {}
        }
    }
    for (label, was) in &old_singles {
        if value_in(&new_singles, label).is_none() {
            changes.push(format!("{label} removed (was {was})"));
        }
    }
    changes
}

/// Options whose value is a separate argument in the key (`-D V=1`).
const SEPARATE_VALUE: &[&str] = &[
    "-D",
    "-U",
    "-I",
    "-include",
    "-imacros",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-iprefix",
    "-x",
    "-o",
    "-MF",
    "-MT",
    "-MQ",
    "-target",
    "--target",
    "-arch",
    "-Xclang",
    "-Xpreprocessor",
    "-Xassembler",
    "-Xlinker",
    "--cfg",
    "--cap-lints",
    "-C",
    "--crate-type",
    "--crate-name",
    "--edition",
    "--extern",
    "-L",
    "-l",
    "--emit",
    "--check-cfg",
];

/// `argument added: -D V=2` for each of `changed` (found in `args`); an option whose value
/// is shown with it is not listed again on its own.
fn describe_arguments(what: &str, changed: &[String], args: &[String]) -> Vec<String> {
    let shown: Vec<String> = changed.iter().map(|a| with_flag(args, a)).collect();
    shown
        .iter()
        .filter(|one| {
            !(SEPARATE_VALUE.contains(&one.as_str())
                && shown
                    .iter()
                    .any(|other| other.starts_with(&format!("{one} "))))
        })
        .map(|one| format!("argument {what}: {one}"))
        .collect()
}

/// `value` with the option it belongs to, when it is the value of a separate-value option in
/// `args` (`V=1` → `-D V=1`).
fn with_flag(args: &[String], value: &str) -> String {
    let owner = args
        .windows(2)
        .find(|pair| pair[1] == value && SEPARATE_VALUE.contains(&pair[0].as_str()));
    match owner {
        Some(pair) => format!("{} {value}", pair[0]),
        None => value.to_string(),
    }
}

fn describe(label: &str, was: &str, now: &str) -> String {
    let digest = DIGEST_LABELS.contains(&label)
        || label.starts_with("extern ")
        || label.starts_with("native library ");
    match label {
        "source" => "source content changed".into(),
        "compiler identity" => "compiler changed (another binary or version)".into(),
        _ if digest => format!("{label} changed"),
        _ => format!("{label} changed: {was} -> {now}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(l, v)| (l.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn changed_arguments_are_named() {
        let old = parts(&[
            ("argument", "-c"),
            ("argument", "-DV=1"),
            ("argument", "-O2"),
        ]);
        let new = parts(&[
            ("argument", "-c"),
            ("argument", "-DV=2"),
            ("argument", "-O2"),
        ]);
        assert_eq!(
            diff_parts(&old, &new),
            ["argument added: -DV=2", "argument removed: -DV=1"]
        );
        let reordered = parts(&[
            ("argument", "-O2"),
            ("argument", "-c"),
            ("argument", "-DV=1"),
        ]);
        assert_eq!(diff_parts(&old, &reordered), ["argument order changed"]);
        let old = parts(&[("argument", "-D"), ("argument", "V=1"), ("argument", "-c")]);
        let new = parts(&[("argument", "-D"), ("argument", "V=2"), ("argument", "-c")]);
        assert_eq!(
            diff_parts(&old, &new),
            ["argument added: -D V=2", "argument removed: -D V=1"]
        );
        let old = parts(&[("argument", "-C"), ("argument", "opt-level=0")]);
        let mut new = old.clone();
        new.extend(parts(&[("argument", "-C"), ("argument", "opt-level=1")]));
        assert_eq!(diff_parts(&old, &new), ["argument added: -C opt-level=1"]);
        assert!(diff_parts(&old, &old).is_empty());
    }

    #[test]
    fn changed_env_compiler_and_source_are_named() {
        let old = parts(&[
            ("compiler identity", "aaaa"),
            ("env CPATH", "(unset)"),
            ("cwd (-g)", "/a"),
            ("source", "1111"),
        ]);
        let new = parts(&[
            ("compiler identity", "bbbb"),
            ("env CPATH", "/inc"),
            ("source", "2222"),
            ("extern serde", "3333"),
        ]);
        assert_eq!(
            diff_parts(&old, &new),
            [
                "compiler changed (another binary or version)",
                "env CPATH changed: (unset) -> /inc",
                "source content changed",
                "extern serde added: 3333",
                "cwd (-g) removed (was /a)",
            ]
        );
    }
}
