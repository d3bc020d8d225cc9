//! Downloading archives from nginx and extracting them, including hostile archives.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{list, Nginx};
use zccache_download::{download, DownloadError, DownloadRequest};

const TOOL: &[u8] = b"#!/bin/sh\necho tool\n";
const README: &[u8] = b"hello from the archive\n";

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h
}

/// Appends an entry with a raw name (and link name), bypassing the tar crate's own
/// path checks so hostile names can be built.
fn raw_entry(
    b: &mut tar::Builder<impl Write>,
    kind: tar::EntryType,
    name: &str,
    link: Option<&str>,
    data: &[u8],
) {
    let mut h = header(kind, data.len() as u64, 0o644);
    let old = h.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// A well-formed tar: a directory, an executable, a data file and an in-tree symlink.
fn good_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = header(tar::EntryType::Directory, 0, 0o755);
    b.append_data(&mut dir, "pkg/bin/", &[][..]).unwrap();
    let mut tool = header(tar::EntryType::Regular, TOOL.len() as u64, 0o755);
    b.append_data(&mut tool, "pkg/bin/tool", TOOL).unwrap();
    let mut readme = header(tar::EntryType::Regular, README.len() as u64, 0o644);
    b.append_data(&mut readme, "pkg/share/readme.txt", README)
        .unwrap();
    let mut link = header(tar::EntryType::Symlink, 0, 0o777);
    b.append_link(&mut link, "pkg/bin/readme", "../share/readme.txt")
        .unwrap();
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zst(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

fn good_zip() -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.add_directory("pkg/bin/", opts.unix_permissions(0o755))
        .unwrap();
    z.start_file("pkg/bin/tool", opts.unix_permissions(0o755))
        .unwrap();
    z.write_all(TOOL).unwrap();
    z.start_file("pkg/share/readme.txt", opts.unix_permissions(0o644))
        .unwrap();
    z.write_all(README).unwrap();
    z.add_symlink("pkg/bin/readme", "../share/readme.txt", opts)
        .unwrap();
    z.finish().unwrap().into_inner()
}

fn fetch(server: &Nginx, name: &str, data: &[u8], base: &Path) -> Result<PathBuf, DownloadError> {
    server.put(name, data);
    let target = base.join("extracted").join(name);
    let mut request = DownloadRequest::new(server.url(name), base.join("downloads").join(name));
    request.unarchive = Some(target.clone());
    let done = download(&request, None)?;
    assert_eq!(done.unarchived_to.as_deref(), Some(target.as_path()));
    Ok(target)
}

fn check_good_tree(root: &Path) {
    assert_eq!(list(root), vec!["pkg"]);
    let tool = root.join("pkg/bin/tool");
    assert_eq!(std::fs::read(&tool).unwrap(), TOOL);
    assert_ne!(
        std::fs::metadata(&tool).unwrap().permissions().mode() & 0o111,
        0
    );
    let readme = root.join("pkg/share/readme.txt");
    assert_eq!(std::fs::read(&readme).unwrap(), README);
    assert_eq!(
        std::fs::metadata(&readme).unwrap().permissions().mode() & 0o111,
        0
    );
    let link = root.join("pkg/bin/readme");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&link).unwrap(), README);
}

#[test]
fn extracts_all_supported_formats() {
    let server = Nginx::start();
    let base = tempfile::tempdir().unwrap();
    let tar = good_tar();
    let archives: Vec<(&str, Vec<u8>)> = vec![
        ("pkg.tar", tar.clone()),
        ("pkg.tar.gz", gz(&tar)),
        ("pkg.tgz", gz(&tar)),
        ("pkg.tar.xz", xz(&tar)),
        ("pkg.tar.zst", zst(&tar)),
        ("pkg.zip", good_zip()),
    ];
    for (name, data) in &archives {
        let target =
            fetch(&server, name, data, base.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_good_tree(&target);
    }
    // Only the extracted trees remain: no staging directories.
    let mut expected: Vec<String> = archives.iter().map(|(n, _)| n.to_string()).collect();
    expected.sort();
    assert_eq!(list(&base.path().join("extracted")), expected);
}

#[test]
fn extraction_replaces_an_existing_directory() {
    let server = Nginx::start();
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("extracted/pkg.tar.gz");
    std::fs::create_dir_all(target.join("stale")).unwrap();
    std::fs::write(target.join("stale/file"), b"old").unwrap();

    fetch(&server, "pkg.tar.gz", &gz(&good_tar()), base.path()).unwrap();

    check_good_tree(&target);
    assert_eq!(list(&base.path().join("extracted")), vec!["pkg.tar.gz"]);
}

/// Every hostile archive must fail with an unsafe-entry error, leave no target and no
/// staging directory, and write nothing outside.
fn assert_refused(server: &Nginx, name: &str, data: &[u8], base: &Path, outside: &[PathBuf]) {
    let err = fetch(server, name, data, base).unwrap_err();
    assert!(
        matches!(err, DownloadError::UnsafeArchiveEntry { .. }),
        "{name}: expected a refusal, got {err}"
    );
    assert_eq!(
        list(&base.join("extracted")),
        Vec::<String>::new(),
        "{name}"
    );
    for path in outside {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{name}: {} was written",
            path.display()
        );
    }
}

#[test]
fn hostile_archives_are_refused() {
    let server = Nginx::start();
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let unique = format!("zccache-download-evil-{}", std::process::id());
    // Absolute symlinks point at `outside` (in the temp dir, not /etc): a broken check can
    // never write into the machine's own directories.
    let link_target = outside.to_str().unwrap().to_string();
    let etc_file = outside.join(&unique);
    // "extracted/../evil" and the staging dir's "../evil" both land here.
    let parent_evil = base.path().join("evil");
    let extracted_evil = base.path().join("extracted/evil");
    let absolute = outside.join("absolute-evil");
    let watched = [
        parent_evil.clone(),
        extracted_evil.clone(),
        absolute.clone(),
        etc_file.clone(),
    ];

    // `../evil`, after a harmless file so a partial extraction would be visible.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, tar::EntryType::Regular, "ok.txt", None, b"fine");
    raw_entry(&mut b, tar::EntryType::Regular, "../evil", None, b"evil");
    assert_refused(
        &server,
        "dotdot.tar.gz",
        &gz(&b.into_inner().unwrap()),
        base.path(),
        &watched,
    );

    // An absolute path.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, tar::EntryType::Regular, "ok.txt", None, b"fine");
    raw_entry(
        &mut b,
        tar::EntryType::Regular,
        absolute.to_str().unwrap(),
        None,
        b"evil",
    );
    assert_refused(
        &server,
        "absolute.tar.xz",
        &xz(&b.into_inner().unwrap()),
        base.path(),
        &watched,
    );

    // An absolute symlink out of the tree, then a file through it.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(
        &mut b,
        tar::EntryType::Symlink,
        "etc",
        Some(&link_target),
        b"",
    );
    raw_entry(
        &mut b,
        tar::EntryType::Regular,
        &format!("etc/{unique}"),
        None,
        b"evil",
    );
    assert_refused(
        &server,
        "symlink-etc.tar.zst",
        &zst(&b.into_inner().unwrap()),
        base.path(),
        &watched,
    );

    // A relative symlink climbing out of the tree, then a file through it.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(
        &mut b,
        tar::EntryType::Symlink,
        "up",
        Some("../outside"),
        b"",
    );
    raw_entry(
        &mut b,
        tar::EntryType::Regular,
        "up/absolute-evil",
        None,
        b"evil",
    );
    assert_refused(
        &server,
        "symlink-up.tar",
        &b.into_inner().unwrap(),
        base.path(),
        &watched,
    );

    // An in-tree symlink is allowed, but writing through it is not.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, tar::EntryType::Directory, "real/", None, b"");
    raw_entry(&mut b, tar::EntryType::Symlink, "alias", Some("real"), b"");
    raw_entry(
        &mut b,
        tar::EntryType::Regular,
        "alias/file",
        None,
        b"through",
    );
    assert_refused(
        &server,
        "through-link.tar",
        &b.into_inner().unwrap(),
        base.path(),
        &watched,
    );

    // A hardlink to a file outside the tree.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(
        &mut b,
        tar::EntryType::Link,
        "passwd",
        Some("../../../../../etc/passwd"),
        b"",
    );
    assert_refused(
        &server,
        "hardlink.tar.gz",
        &gz(&b.into_inner().unwrap()),
        base.path(),
        &watched,
    );

    // Zip with `../evil` and with an absolute path.
    for (name, entry) in [
        ("dotdot.zip", "../evil".to_string()),
        ("absolute.zip", absolute.to_str().unwrap().to_string()),
    ] {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("ok.txt", opts).unwrap();
        z.write_all(b"fine").unwrap();
        z.start_file(entry, opts).unwrap();
        z.write_all(b"evil").unwrap();
        let data = z.finish().unwrap().into_inner();
        assert_refused(&server, name, &data, base.path(), &watched);
    }

    // Zip with an absolute symlink out of the tree followed by a file under it.
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    z.add_symlink("etc", &link_target, opts).unwrap();
    z.start_file(format!("etc/{unique}"), opts).unwrap();
    z.write_all(b"evil").unwrap();
    let data = z.finish().unwrap().into_inner();
    assert_refused(&server, "symlink-etc.zip", &data, base.path(), &watched);

    assert_eq!(list(&outside), Vec::<String>::new());
}
