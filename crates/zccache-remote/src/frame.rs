//! How an entry travels: `ZCR1`, the raw length (u64 LE), the BLAKE3 of the raw bytes, then
//! the bytes compressed with zstd. Whatever comes back from a remote is checked against all of
//! it before it is used: a changed or truncated entry is refused, never served.

const MAGIC: &[u8; 4] = b"ZCR1";
const HEADER: usize = 4 + 8 + 32;

/// Entries larger than this are neither uploaded nor accepted (a corrupt length could otherwise
/// ask for any amount of memory).
pub const MAX_ENTRY: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not an entry of this format (or of another version).
    Foreign,
    /// Shorter than its header says, or it does not decompress.
    Truncated,
    /// The content is not what its digest says.
    Mismatch,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameError::Foreign => "not a zccache entry",
            FrameError::Truncated => "truncated or undecodable",
            FrameError::Mismatch => "content does not match its digest",
        })
    }
}

/// Frames `raw` for upload.
pub fn encode(raw: &[u8]) -> Vec<u8> {
    let compressed = zstd::bulk::compress(raw, 3).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER + compressed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(raw).as_bytes());
    out.extend_from_slice(&compressed);
    out
}

/// The raw bytes of a framed entry, checked.
pub fn decode(framed: &[u8]) -> Result<Vec<u8>, FrameError> {
    if framed.len() < HEADER || &framed[..4] != MAGIC {
        return Err(if framed.len() >= 4 && &framed[..4] == MAGIC {
            FrameError::Truncated
        } else {
            FrameError::Foreign
        });
    }
    let len = u64::from_le_bytes(framed[4..12].try_into().expect("8 bytes"));
    if len > MAX_ENTRY {
        return Err(FrameError::Foreign);
    }
    let digest: [u8; 32] = framed[12..44].try_into().expect("32 bytes");
    let raw = zstd::bulk::decompress(&framed[HEADER..], len as usize)
        .map_err(|_| FrameError::Truncated)?;
    if raw.len() as u64 != len {
        return Err(FrameError::Truncated);
    }
    if *blake3::hash(&raw).as_bytes() != digest {
        return Err(FrameError::Mismatch);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_any_damage_is_refused() {
        let raw: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let framed = encode(&raw);
        assert!(framed.len() < raw.len() / 2, "compressed");
        assert_eq!(decode(&framed).unwrap(), raw);
        // Truncated anywhere.
        for cut in [0, 3, 20, HEADER, framed.len() / 2, framed.len() - 1] {
            assert!(decode(&framed[..cut]).is_err(), "cut at {cut}");
        }
        // A byte changed in the digest, the length or the payload.
        for at in [13, 5, framed.len() - 10] {
            let mut bad = framed.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad).is_err(), "changed at {at}");
        }
        assert_eq!(
            decode(b"hello, not an entry at all, sorry"),
            Err(FrameError::Foreign)
        );
        assert_eq!(decode(&encode(b"")).unwrap(), b"");
    }
}
