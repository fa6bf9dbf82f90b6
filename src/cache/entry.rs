//! The on-disk form of one cache entry: a header line naming the format,
//! the entry's kind and key, the payload's length and SHA-256, then the
//! payload. Reading checks all of it, so a truncated, damaged or foreign
//! file, or a whole entry copied under another key's name, is told apart
//! from a good one and never used.

use sha2::{Digest, Sha256};

/// Bumped when the envelope changes; entries of another format are
/// foreign and are ignored.
const FORMAT: &str = "tierjit-cache-2";

/// Why a file could not be read as an entry of the expected kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Another format, kind or key (an older tierjit's entry, another
    /// key's entry copied or linked here, or not an entry at all).
    Foreign,
    /// Shorter than its header says.
    Truncated,
    /// The payload does not hash to its recorded SHA-256.
    Checksum,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Damage::Foreign => "not an entry of this tierjit's format",
            Damage::Truncated => "truncated",
            Damage::Checksum => "checksum mismatch",
        })
    }
}

/// The file's bytes for `payload` as the entry of `kind` under `key`.
pub fn encode(kind: &str, key: &str, payload: &[u8]) -> Vec<u8> {
    let mut file = format!(
        "{FORMAT} {kind} {key} {} {}\n",
        payload.len(),
        hex(&Sha256::digest(payload))
    )
    .into_bytes();
    file.extend_from_slice(payload);
    file
}

/// The payload of `file`, if it is a whole, undamaged entry of `kind`
/// under `key`.
pub fn decode<'a>(kind: &str, key: &str, file: &'a [u8]) -> Result<&'a [u8], Damage> {
    let end = file
        .iter()
        .take(256)
        .position(|&b| b == b'\n')
        .ok_or(Damage::Foreign)?;
    let header = std::str::from_utf8(&file[..end]).map_err(|_| Damage::Foreign)?;
    let mut words = header.split(' ');
    if words.next() != Some(FORMAT) || words.next() != Some(kind) || words.next() != Some(key) {
        return Err(Damage::Foreign);
    }
    let length: usize = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or(Damage::Foreign)?;
    let digest = words.next().ok_or(Damage::Foreign)?;
    let payload = &file[end + 1..];
    match payload.len().cmp(&length) {
        std::cmp::Ordering::Less => return Err(Damage::Truncated),
        // Bytes past the recorded end: not what was written.
        std::cmp::Ordering::Greater => return Err(Damage::Checksum),
        std::cmp::Ordering::Equal => {}
    }
    if hex(&Sha256::digest(payload)) != digest {
        return Err(Damage::Checksum);
    }
    Ok(payload)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_entry_reads_back_and_any_damage_is_named() {
        let file = encode("c", "k1", b"payload\n\nwith lines");
        assert_eq!(decode("c", "k1", &file), Ok(&b"payload\n\nwith lines"[..]));
        assert_eq!(
            decode("o", "k1", &file),
            Err(Damage::Foreign),
            "another kind"
        );
        assert_eq!(
            decode("c", "k2", &file),
            Err(Damage::Foreign),
            "another key"
        );
        assert_eq!(
            decode("c", "k1", &file[..file.len() - 1]),
            Err(Damage::Truncated)
        );
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode("c", "k1", &flipped), Err(Damage::Checksum));
        let mut longer = file.clone();
        longer.push(b'x');
        assert_eq!(decode("c", "k1", &longer), Err(Damage::Checksum));
        assert_eq!(decode("c", "k1", b""), Err(Damage::Foreign));
        assert_eq!(decode("c", "k1", b"\x7fELF\x02\x01"), Err(Damage::Foreign));
        let older = [b"tierjit-frontend-2\n".as_slice(), b"x"].concat();
        assert_eq!(decode("c", "k1", &older), Err(Damage::Foreign));
    }
}
