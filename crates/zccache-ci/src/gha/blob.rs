//! The archive's trip to and from the blob store behind the cache service: Azure Blob Storage
//! addressed by the signed (SAS) URLs the service hands out. Uploads go in blocks (Put Block,
//! then Put Block List) a few at a time; downloads in ranges, a few at a time, into their place
//! in the file.

use super::service::{agent, backoff, transient};
use super::GhaError;
use base64::Engine;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Bytes per uploaded block and per downloaded range.
pub const CHUNK: u64 = 32 << 20;

/// Blocks or ranges in flight at once.
const PARALLEL: usize = 4;

/// Attempts per block or range.
const ATTEMPTS: u32 = 4;

/// The Azure Storage REST version spoken.
const X_MS_VERSION: &str = "2020-10-02";

/// Appends `query` to a signed URL, which already has its `?sv=…&sig=…`.
fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

/// Percent-encodes a base64 block id for a query string.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'+' => "%2B".to_string(),
            b'/' => "%2F".to_string(),
            b'=' => "%3D".to_string(),
            _ => (b as char).to_string(),
        })
        .collect()
}

/// The id of block `index`: base64 of a fixed-width name, as Azure wants every id of a blob the
/// same length.
fn block_id(index: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("zccache-block-{index:08}"))
}

/// Runs `job(i)` for `i` in `0..count` on up to [`PARALLEL`] threads; the first error wins.
fn in_parallel(
    count: usize,
    job: impl Fn(usize) -> Result<(), GhaError> + Sync,
) -> Result<(), GhaError> {
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<GhaError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL.min(count) {
            scope.spawn(|| loop {
                if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                if let Err(e) = job(i) {
                    if let Ok(mut slot) = failed.lock() {
                        slot.get_or_insert(e);
                    }
                    return;
                }
            });
        }
    });
    match failed.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Sends one request built by `send`, again after a broken connection or a 5xx/429; returns
/// the final response's status and body.
fn with_retries(
    what: &str,
    send: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<ureq::http::Response<ureq::Body>, GhaError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= ATTEMPTS;
        match send() {
            Ok(response) => {
                let status = response.status().as_u16();
                if (status == 429 || status >= 500) && !last {
                    std::thread::sleep(backoff(attempt));
                    continue;
                }
                if !(200..300).contains(&status) {
                    let mut response = response;
                    let body = response.body_mut().read_to_string().unwrap_or_default();
                    return Err(GhaError::Storage(format!(
                        "{what}: HTTP {status} {}",
                        azure_error_code(&body)
                    )));
                }
                return Ok(response);
            }
            Err(e) if !last && transient(&e) => std::thread::sleep(backoff(attempt)),
            Err(e) => return Err(GhaError::Storage(format!("{what}: {e}"))),
        }
    }
}

/// The `<Code>` of an Azure error body, or nothing.
fn azure_error_code(body: &str) -> &str {
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code)
        .unwrap_or("")
}

/// Uploads `path` to the signed `url` as a block blob; returns its size.
pub fn upload(url: &str, path: &Path) -> Result<u64, GhaError> {
    let file = File::open(path).map_err(|e| GhaError::io(path, e))?;
    let size = file.metadata().map_err(|e| GhaError::io(path, e))?.len();
    let agent = agent(Duration::from_secs(600));
    let blocks = size.div_ceil(CHUNK).max(1) as usize;
    in_parallel(blocks, |i| {
        let start = i as u64 * CHUNK;
        let len = CHUNK.min(size - start) as usize;
        let mut data = vec![0u8; len];
        zccache_platform::fs::read_exact_at(&file, &mut data, start)
            .map_err(|e| GhaError::io(path, e))?;
        let block_url = with_query(
            url,
            &format!("comp=block&blockid={}", query_escape(&block_id(i))),
        );
        with_retries(&format!("uploading block {i} of {blocks}"), || {
            agent
                .put(&block_url)
                .header("x-ms-version", X_MS_VERSION)
                .header("Content-Type", "application/octet-stream")
                .send(&data[..])
        })
        .map(drop)
    })?;
    let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for i in 0..blocks {
        list.push_str(&format!("<Latest>{}</Latest>", block_id(i)));
    }
    list.push_str("</BlockList>");
    with_retries("committing the block list", || {
        agent
            .put(&with_query(url, "comp=blocklist"))
            .header("x-ms-version", X_MS_VERSION)
            .header("Content-Type", "application/xml")
            .header("x-ms-blob-content-type", "application/octet-stream")
            .send(list.as_bytes())
    })?;
    Ok(size)
}

/// Downloads the blob at the signed `url` into `dest` (created or truncated); returns its
/// size. The first range tells the size; the rest are fetched in parallel.
pub fn download(url: &str, dest: &Path) -> Result<u64, GhaError> {
    let agent = agent(Duration::from_secs(600));
    let file = File::create(dest).map_err(|e| GhaError::io(dest, e))?;
    let fetch = |start: u64, end: u64| {
        with_retries(&format!("downloading bytes {start}-{end}"), || {
            agent
                .get(url)
                .header("x-ms-version", X_MS_VERSION)
                .header("x-ms-range", &format!("bytes={start}-{end}"))
                .header("Range", &format!("bytes={start}-{end}"))
                .call()
        })
    };
    let write_body = |response: ureq::http::Response<ureq::Body>, start: u64| {
        let mut reader = response.into_body().into_reader();
        let mut offset = start;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut reader, &mut buf)
                .map_err(|e| GhaError::Storage(format!("downloading at byte {offset}: {e}")))?;
            if n == 0 {
                return Ok::<u64, GhaError>(offset - start);
            }
            zccache_platform::fs::write_all_at(&file, &buf[..n], offset)
                .map_err(|e| GhaError::io(dest, e))?;
            offset += n as u64;
        }
    };
    let first = fetch(0, CHUNK - 1)?;
    let total = match (first.status().as_u16(), content_range_total(&first)) {
        // A server that ignores ranges sends everything at once.
        (200, _) => return write_body(first, 0),
        (_, Some(total)) => total,
        (status, None) => {
            return Err(GhaError::Storage(format!(
                "download: HTTP {status} without a Content-Range total"
            )))
        }
    };
    let got = write_body(first, 0)?;
    if got != CHUNK.min(total) {
        return Err(GhaError::Storage(format!(
            "download: first range gave {got} bytes, expected {}",
            CHUNK.min(total)
        )));
    }
    let ranges = total.div_ceil(CHUNK) as usize;
    in_parallel(ranges.saturating_sub(1), |i| {
        let start = (i as u64 + 1) * CHUNK;
        let end = (start + CHUNK).min(total) - 1;
        let got = write_body(fetch(start, end)?, start)?;
        if got != end - start + 1 {
            return Err(GhaError::Storage(format!(
                "download: range {start}-{end} gave {got} bytes"
            )));
        }
        Ok(())
    })?;
    file.set_len(total).map_err(|e| GhaError::io(dest, e))?;
    Ok(total)
}

/// The total of a `Content-Range: bytes a-b/total` header.
fn content_range_total(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    response
        .headers()
        .get("content-range")?
        .to_str()
        .ok()?
        .rsplit_once('/')?
        .1
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_one_length_and_escape_for_a_query() {
        let ids: Vec<String> = [0, 9, 10, 12345].iter().map(|&i| block_id(i)).collect();
        assert!(ids.iter().all(|id| id.len() == ids[0].len()));
        assert_eq!(query_escape("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(
            with_query("http://h/a/b?sv=1&sig=x", "comp=block"),
            "http://h/a/b?sv=1&sig=x&comp=block"
        );
        assert_eq!(
            azure_error_code("<Error><Code>AuthenticationFailed</Code></Error>"),
            "AuthenticationFailed"
        );
    }
}
