//! The backup file (`ledgerctl snapshot save`, `… restore`): a consistent copy of one replica's
//! state, with where in the log it stands, in a file that says what it is and checks itself.
//!
//! Layout, integers little endian:
//!
//! ```text
//! magic "LDGRBKUP" ‖ version u16 ‖ log_index u64 ‖ term u64 ‖ log_time_ms u64
//!   ‖ cluster_id (u16 length, UTF-8) ‖ digest [32] ‖ state (u64 length, snapshot bytes)
//!   ‖ BLAKE3 of everything before it [32]
//! ```
//!
//! `state` is the snapshot encoding of [`crate::AdmissionState`] and `digest` its
//! [`crate::StateDigest`] (the BLAKE3 of those bytes), as `Status` reports it at `log_index`.
//! The trailing checksum covers the whole file, so a truncated or corrupted copy is refused
//! before anything is decoded.

use std::fmt;

const MAGIC: [u8; 8] = *b"LDGRBKUP";
/// The backup layout this build writes.
pub const BACKUP_FORMAT_VERSION: u16 = 1;
const CHECKSUM_LEN: usize = 32;
const CLUSTER_ID_MAX: usize = 1024;

/// A backup's contents.
#[derive(Clone, PartialEq, Eq)]
pub struct Backup {
    /// The log index the state is at (every entry up to it applied).
    pub log_index: u64,
    /// The term of the entry at `log_index`.
    pub term: u64,
    /// The state's log time (the largest leader timestamp applied).
    pub log_time_ms: u64,
    /// The cluster it was saved from.
    pub cluster_id: String,
    /// The state's digest, as `Status` reports it at `log_index`.
    pub digest: [u8; 32],
    /// The state, in the snapshot encoding.
    pub state: Vec<u8>,
}

impl fmt::Debug for Backup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backup")
            .field("log_index", &self.log_index)
            .field("term", &self.term)
            .field("log_time_ms", &self.log_time_ms)
            .field("cluster_id", &self.cluster_id)
            .field("digest", &super::StateDigest(self.digest))
            .field("state_bytes", &self.state.len())
            .finish()
    }
}

/// Why a file is not a usable backup.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// It does not start like a backup file.
    #[error("not a backup file (it does not start with LDGRBKUP)")]
    NotABackup,
    /// Written by a newer build.
    #[error("backup format version {0} is newer than this build's ({BACKUP_FORMAT_VERSION}): use a newer ledgerctl")]
    NewerVersion(u16),
    /// Shorter than its own header says.
    #[error("the backup file is truncated: {have} bytes, its header says {want}")]
    Truncated {
        /// Bytes in the file.
        have: u64,
        /// Bytes it should have.
        want: u64,
    },
    /// The checksum over the file does not match.
    #[error("the backup file is corrupted: its checksum does not match its contents")]
    Corrupted,
    /// The header is malformed (checked before the checksum only where lengths are read).
    #[error("the backup file is malformed: {0}")]
    Malformed(&'static str),
}

/// The file's bytes.
pub fn encode(backup: &Backup) -> Vec<u8> {
    let id = backup.cluster_id.as_bytes();
    let id = &id[..id.len().min(CLUSTER_ID_MAX)];
    let mut out = Vec::with_capacity(backup.state.len() + 128);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&BACKUP_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&backup.log_index.to_le_bytes());
    out.extend_from_slice(&backup.term.to_le_bytes());
    out.extend_from_slice(&backup.log_time_ms.to_le_bytes());
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&backup.digest);
    out.extend_from_slice(&(backup.state.len() as u64).to_le_bytes());
    out.extend_from_slice(&backup.state);
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

/// Reads a backup file, checking its magic, version, length and checksum (in that order, so
/// that each refusal names what is wrong). The state itself is not decoded here.
pub fn decode(bytes: &[u8]) -> Result<Backup, BackupError> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(MAGIC.len()).ok() != Some(&MAGIC[..]) {
        return Err(BackupError::NotABackup);
    }
    let truncated = |want: u64| BackupError::Truncated {
        have: bytes.len() as u64,
        want,
    };
    let version = reader.u16().map_err(|_| truncated(10))?;
    if version > BACKUP_FORMAT_VERSION {
        return Err(BackupError::NewerVersion(version));
    }
    if version == 0 {
        return Err(BackupError::Malformed("version 0"));
    }
    let header = (|| {
        let log_index = reader.u64()?;
        let term = reader.u64()?;
        let log_time_ms = reader.u64()?;
        let id_len = reader.u16()? as usize;
        let id = reader.take(id_len)?.to_vec();
        let digest: [u8; 32] = reader.take(32)?.try_into().map_err(|_| ())?;
        let state_len = reader.u64()?;
        Ok::<_, ()>((log_index, term, log_time_ms, id, digest, state_len))
    })();
    let Ok((log_index, term, log_time_ms, id, digest, state_len)) = header else {
        return Err(truncated(reader.at as u64 + 8 + CHECKSUM_LEN as u64));
    };
    let want = (reader.at as u64)
        .saturating_add(state_len)
        .saturating_add(CHECKSUM_LEN as u64);
    if (bytes.len() as u64) < want {
        return Err(truncated(want));
    }
    if (bytes.len() as u64) > want {
        return Err(BackupError::Corrupted);
    }
    let body_end = bytes.len() - CHECKSUM_LEN;
    if blake3::hash(&bytes[..body_end]).as_bytes() != &bytes[body_end..] {
        return Err(BackupError::Corrupted);
    }
    let cluster_id =
        String::from_utf8(id).map_err(|_| BackupError::Malformed("cluster id not UTF-8"))?;
    Ok(Backup {
        log_index,
        term,
        log_time_ms,
        cluster_id,
        digest,
        state: bytes[reader.at..body_end].to_vec(),
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        let end = self.at.checked_add(n).ok_or(())?;
        let slice = self.bytes.get(self.at..end).ok_or(())?;
        self.at = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, ()> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| ())?,
        ))
    }

    fn u64(&mut self) -> Result<u64, ()> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| ())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Backup {
        Backup {
            log_index: 1234,
            term: 7,
            log_time_ms: 1_790_000_000_000,
            cluster_id: "prod-eu".into(),
            digest: [9; 32],
            state: b"snapshot bytes".to_vec(),
        }
    }

    #[test]
    fn a_backup_reads_back_as_written() {
        let bytes = encode(&sample());
        assert_eq!(decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_truncation_is_refused_as_truncated() {
        let bytes = encode(&sample());
        for len in 8..bytes.len() {
            match decode(&bytes[..len]) {
                Err(BackupError::Truncated { have, want }) => {
                    assert_eq!(have, len as u64);
                    assert!(want > have, "{len}: {want}");
                }
                other => panic!("{len} bytes: {other:?}"),
            }
        }
        assert_eq!(decode(&bytes[..3]), Err(BackupError::NotABackup));
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let bytes = encode(&sample());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(decode(&bad).is_err(), "byte {at} flipped went unnoticed");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(BackupError::Corrupted));
    }

    #[test]
    fn a_newer_version_is_named() {
        let mut bytes = encode(&sample());
        bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
        let error = decode(&bytes).unwrap_err();
        assert_eq!(error, BackupError::NewerVersion(2));
        assert!(error.to_string().contains("newer than this build's (1)"));
    }
}
