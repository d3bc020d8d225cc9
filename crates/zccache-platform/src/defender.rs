//! Windows Defender's real-time scan exclusions for the cache root.
//!
//! Defender inspects every file written before the write returns; a cache writes many. The
//! exclusion list is read and changed through PowerShell's `Get-MpPreference`,
//! `Add-MpPreference` and `Remove-MpPreference` (the Defender module), which is what an
//! administrator would type; changing it needs an elevated process. Elsewhere there is
//! nothing to do, and every function says so without running anything.

use std::path::Path;
use std::process::Command;

/// Whether this system has Defender to ask.
pub const APPLIES: bool = cfg!(windows);

/// What the commands print on systems without Defender.
pub const NOT_WINDOWS: &str = "Defender exclusion is Windows-only.";

/// Whether `root` is on Defender's exclusion list, as far as this process may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// `root` or a directory above it is excluded (the entry that covers it).
    Excluded(String),
    NotExcluded,
    /// The list could not be read (not elevated on a Defender that hides it from users).
    Unknown(String),
}

/// Reads Defender's exclusion list and says whether it covers `root`.
pub fn check(root: &Path) -> Result<Exclusion, String> {
    let script = "$p = Get-MpPreference -ErrorAction Stop; \
                  if ($p.ExclusionPath) { $p.ExclusionPath | ForEach-Object { \"path:$_\" } }";
    let out = powershell(script)?;
    let entries: Vec<&str> = out
        .lines()
        .filter_map(|line| line.trim().strip_prefix("path:"))
        .collect();
    if let Some(hidden) = entries.iter().find(|e| e.starts_with("N/A")) {
        return Ok(Exclusion::Unknown(hidden.to_string()));
    }
    Ok(covering(root, &entries)
        .map(|entry| Exclusion::Excluded(entry.to_string()))
        .unwrap_or(Exclusion::NotExcluded))
}

/// Adds `root` to the exclusion list (an elevated process only).
pub fn add(root: &Path) -> Result<(), String> {
    require_elevation("add")?;
    powershell(&format!(
        "Add-MpPreference -ExclusionPath {} -ErrorAction Stop",
        quote(root)
    ))
    .map(drop)
}

/// Removes `root` from the exclusion list (an elevated process only).
pub fn remove(root: &Path) -> Result<(), String> {
    require_elevation("remove")?;
    powershell(&format!(
        "Remove-MpPreference -ExclusionPath {} -ErrorAction Stop",
        quote(root)
    ))
    .map(drop)
}

/// The exclusion entry that covers `root` (the same directory or one above it), compared as
/// Windows compares paths: without regard to ASCII case, `/` as `\`, a trailing `\` ignored.
pub fn covering<'a>(root: &Path, entries: &[&'a str]) -> Option<&'a str> {
    let norm = |text: &str| {
        let mut s = text.replace('/', "\\").to_ascii_lowercase();
        if let Some(rest) = s.strip_prefix(r"\\?\") {
            s = rest.to_string();
        }
        while s.ends_with('\\') && s.len() > 3 {
            s.pop();
        }
        s
    };
    let root = norm(&root.to_string_lossy());
    entries.iter().copied().find(|entry| {
        let entry = norm(entry);
        !entry.is_empty()
            && (root == entry
                || root
                    .strip_prefix(&entry)
                    .is_some_and(|rest| rest.starts_with('\\') || entry.ends_with('\\')))
    })
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "''"))
}

fn require_elevation(what: &str) -> Result<(), String> {
    let script = "([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)";
    match powershell(script)?.trim() {
        "True" => Ok(()),
        _ => Err(format!(
            "changing Defender's exclusions needs administrator rights: run `zccache defender-exclusions {what}` from an elevated PowerShell or an Administrator command prompt"
        )),
    }
}

/// The line a script prints last, so that a PowerShell that ran nothing (Wine ships a stub
/// that exits 0 silently) is not taken for an empty answer.
const DONE: &str = "zccache-script-done";

/// Runs a PowerShell script and returns its standard output; an error names what failed.
fn powershell(script: &str) -> Result<String, String> {
    if !cfg!(windows) {
        return Err(NOT_WINDOWS.to_string());
    }
    let script = format!("{script}; '{DONE}'");
    let output = Command::new("powershell.exe")
        .args(["-NoProfile", "-NonInteractive", "-Command", &script])
        .output()
        .map_err(|e| format!("cannot run powershell.exe: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!(
            "powershell.exe exited with {}: {}",
            crate::process::exit_code(&output.status),
            first.trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !stdout.lines().any(|line| line.trim() == DONE) {
        return Err(
            "powershell.exe gave no answer (a PowerShell without the Defender module?)".into(),
        );
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_covers_its_directory_and_everything_below_it() {
        let root = Path::new(r"C:\Users\me\.zccache");
        let covers = |entries: &[&str]| covering(root, entries).map(str::to_string);
        assert_eq!(
            covers(&[r"c:\users\ME\.zccache\"]),
            Some(r"c:\users\ME\.zccache\".into())
        );
        assert_eq!(
            covers(&[r"D:\x", r"C:\Users\me"]),
            Some(r"C:\Users\me".into())
        );
        assert_eq!(covers(&[r"C:\"]), Some(r"C:\".into()));
        assert_eq!(
            covers(&["C:/Users/me/.zccache"]),
            Some("C:/Users/me/.zccache".into())
        );
        assert_eq!(covers(&[r"C:\Users\me\.zccache-other"]), None);
        assert_eq!(covers(&[r"C:\Users\me\.zccache\sub"]), None);
        assert_eq!(covers(&[]), None);
    }

    #[cfg(not(windows))]
    #[test]
    fn elsewhere_nothing_is_run() {
        assert_eq!(check(Path::new("/r")), Err(NOT_WINDOWS.to_string()));
        assert_eq!(add(Path::new("/r")), Err(NOT_WINDOWS.to_string()));
    }
}
