//! `zccache download`: the blocking front of the download daemon (`zccache-download`, beside
//! the client), against Python's http.server on 127.0.0.1.

use crate::remote::{free_port, wait_for};
use crate::sandbox::*;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// `python3 -m http.server` serving `dir`, stopped on drop.
struct FileServer {
    child: Child,
    port: u16,
}

impl FileServer {
    fn serve(dir: &Path) -> FileServer {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        wait_for(port);
        FileServer { child, port }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops the sandbox's download daemon when the test ends.
struct DownloadDaemon<'a>(&'a Sandbox);

impl Drop for DownloadDaemon<'_> {
    fn drop(&mut self) {
        let exe = Path::new(ZCCACHE).with_file_name("zccache-download");
        let _ = Command::new(exe)
            .args(["daemon", "stop"])
            .env("ZCCACHE_CACHE_DIR", &self.0.cache)
            .output();
    }
}

fn lines(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn download_prints_path_and_sha256_unpacks_and_reuses_what_it_published() {
    let sb = Sandbox::new();
    let _daemon = DownloadDaemon(&sb);
    sb.write("www/tool/bin/run", "#!/bin/sh\necho tool\n");
    let made = Command::new("tar")
        .args(["czf", "tool.tar.gz", "tool"])
        .current_dir(sb.path("www"))
        .status()
        .unwrap();
    assert!(made.success());
    let server = FileServer::serve(&sb.path("www"));
    let url = server.url("tool.tar.gz");
    let sha = sha256_of(&sb.path("www/tool.tar.gz"));

    // The seeds' form: the URL first, --unarchive, --sha256, --multipart-parts.
    let out = sb.run(&[
        "download",
        &url,
        "--unarchive",
        "unpacked",
        "--sha256",
        &sha,
        "--multipart-parts",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = lines(&out);
    assert!(text.contains("status: downloaded"), "{text}");
    assert!(text.contains(&format!("sha256: {sha}")), "{text}");
    assert!(
        text.contains(&format!("expanded: {}", sb.path("unpacked").display())),
        "{text}"
    );
    let cached_at = text
        .lines()
        .find_map(|l| l.strip_prefix("path: "))
        .unwrap()
        .to_string();
    assert!(
        Path::new(&cached_at).starts_with(sb.cache.join("download")),
        "{cached_at}"
    );
    assert_eq!(
        sb.read_string("unpacked/tool/bin/run"),
        "#!/bin/sh\necho tool\n"
    );

    // zccache 1.15's form: the path positional, --url; then the same again is cached.
    let args = ["download", "dl/tool.tar.gz", "--url", url.as_str()];
    let first = sb.run(&args);
    assert!(first.status.success());
    assert!(lines(&first).contains("status: downloaded"));
    assert_eq!(sha256_of(&sb.path("dl/tool.tar.gz")), sha);
    let again = sb.run(&args);
    assert!(
        lines(&again).contains("status: cached"),
        "{}",
        lines(&again)
    );

    let json = sb.run(&[
        "download",
        "dl/tool.tar.gz",
        "--url",
        url.as_str(),
        "--json",
    ]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["status"], "cached");
    assert_eq!(value["sha256"], sha.as_str());
}

#[test]
fn download_failures_exit_1_and_leave_nothing() {
    let sb = Sandbox::new();
    let _daemon = DownloadDaemon(&sb);
    sb.write("www/f.bin", "payload");
    let server = FileServer::serve(&sb.path("www"));
    let wrong = "a".repeat(64);
    let out = sb.run(&[
        "download",
        &server.url("f.bin"),
        "f.bin",
        "--sha256",
        &wrong,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256 mismatch"));
    assert!(!sb.path("f.bin").exists());

    let out = sb.run(&["download", &server.url("none.bin"), "none.bin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    let out = sb.run(&["download"]);
    assert_eq!(out.status.code(), Some(2));
}
