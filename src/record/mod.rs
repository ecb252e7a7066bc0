//! Screening records: what the clinician saved, one folder per record.
//!
//! A record folder (named by its UTC timestamp and a short sequence, e.g.
//! `20261204T221530Z-0001`) holds the original frame (`frame.png`, lossless), the composed
//! overlay (`overlay.png`), the Grad-CAM grid (`cam.json`) and `record.json`, the record's
//! manifest: all probabilities, the top class, the model and its sha256, the dermcam
//! version, board, device id, timestamp and the sha256 of every other file.
//!
//! Writes are atomic: everything goes into a hidden `.tmp-<name>` folder in the same
//! directory, each file is fsynced, then the folder is renamed to its final name and the
//! parent directory fsynced. A crash mid-write leaves only a `.tmp-*` folder, which
//! [`RecordStore::open`] deletes. Retention removes the oldest records first, also through
//! a hidden name, so a crash during removal never leaves a visible half record.
//!
//! A record is a screening aid, not a diagnosis.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use image::ImageEncoder;

use crate::frame::RgbFrame;
use crate::model::manifest::sha256_hex;
use crate::model::Manifest;
use crate::pipeline::Analysis;

/// The notice every record carries.
pub const NOTICE: &str = "screening aid, not a diagnosis";
/// The value of `format` in `record.json`.
pub const FORMAT: &str = "dermcam-record/1";
/// Prefix of hidden, incomplete folders (removed on open).
pub const TMP_PREFIX: &str = ".tmp-";
/// The original frame's file name.
pub const FRAME_FILE: &str = "frame.png";
/// The overlay's file name.
pub const OVERLAY_FILE: &str = "overlay.png";
/// The Grad-CAM grid's file name.
pub const CAM_FILE: &str = "cam.json";
/// The record manifest's file name.
pub const RECORD_FILE: &str = "record.json";

/// Errors saving or managing records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The disk (or quota) is full; nothing of the record was kept.
    #[error("cannot save screening record in {dir}: the disk is full{}", needed_bytes.map(|n| format!(" (the record needs {n} bytes)")).unwrap_or_default())]
    DiskFull {
        /// The records directory.
        dir: PathBuf,
        /// Bytes the record needed, when known.
        needed_bytes: Option<u64>,
    },
    /// Any other I/O error.
    #[error("screening records: cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A frame could not be encoded as PNG.
    #[error("screening records: cannot encode {path} as PNG: {reason}")]
    Encode {
        /// The file being produced.
        path: PathBuf,
        /// Encoder message.
        reason: String,
    },
    /// The analysis does not fit the model manifest (class counts differ).
    #[error("screening record: the analysis has {probabilities} probabilities (class {class}) but model {model} has {labels} labels")]
    Mismatch {
        /// Probabilities in the analysis.
        probabilities: usize,
        /// The CAM class.
        class: usize,
        /// Labels of the manifest.
        labels: usize,
        /// Model name.
        model: String,
    },
    /// The timestamp is before 1970.
    #[error("screening record: timestamp is before 1970-01-01")]
    Timestamp,
}

/// Whether an I/O error means "no space left" (ENOSPC or a quota).
pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || e.raw_os_error() == Some(libc::ENOSPC)
        || e.raw_os_error() == Some(libc::EDQUOT)
}

/// Retention limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordLimits {
    /// Most records kept.
    pub max_records: Option<usize>,
    /// Most bytes kept (sum of the records' file sizes).
    pub max_bytes: Option<u64>,
}

/// What a record is made of.
#[derive(Debug, Clone, Copy)]
pub struct RecordInput<'a> {
    /// The original frame (saved losslessly).
    pub frame: &'a RgbFrame,
    /// The composed frame with the heatmap overlay.
    pub overlay: &'a RgbFrame,
    /// The analysis of `frame`.
    pub analysis: &'a Analysis,
    /// The model's manifest.
    pub manifest: &'a Manifest,
    /// dermcam's version (`env!("CARGO_PKG_VERSION")`).
    pub dermcam_version: &'a str,
    /// Board name.
    pub board: &'a str,
    /// Device id.
    pub device_id: &'a str,
    /// When the record was taken.
    pub timestamp: SystemTime,
}

/// A record that was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRecord {
    /// Folder name.
    pub name: String,
    /// Folder path.
    pub path: PathBuf,
    /// Bytes of its files.
    pub bytes: u64,
    /// Records removed by retention after this save (oldest first).
    pub removed: Vec<String>,
}

/// A fault injected into the next save (tests only).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Writing the n-th file (0-based) fails with ENOSPC after part of it is written.
    EnospcOnFile(usize),
}

/// A directory of screening records.
#[derive(Debug)]
pub struct RecordStore {
    dir: PathBuf,
    limits: RecordLimits,
    sequence: u32,
    cleaned: usize,
    fault: Option<Fault>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RecordError + 'a {
    move |source| RecordError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl RecordStore {
    /// Opens (creating if needed, mode 0700) the records directory `dir` and deletes
    /// leftover `.tmp-*` folders of interrupted saves or removals.
    pub fn open(dir: impl AsRef<Path>, limits: RecordLimits) -> Result<Self, RecordError> {
        let dir = dir.as_ref().to_path_buf();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create directory", &dir))?;
        let mut cleaned = 0;
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let path = entry.path();
                let r = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                r.map_err(io_err("remove leftover", &path))?;
                cleaned += 1;
            }
        }
        if cleaned > 0 {
            sync_dir(&dir)?;
            log::warn!(
                "removed {cleaned} incomplete screening record(s) in {}",
                dir.display()
            );
        }
        Ok(RecordStore {
            dir,
            limits,
            sequence: 0,
            cleaned,
            fault: None,
        })
    }

    /// The records directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The retention limits.
    pub fn limits(&self) -> RecordLimits {
        self.limits
    }

    /// How many leftover `.tmp-*` entries [`RecordStore::open`] deleted.
    pub fn cleaned(&self) -> usize {
        self.cleaned
    }

    /// Injects a fault into the next save (tests only).
    #[doc(hidden)]
    pub fn inject_fault(&mut self, fault: Fault) {
        self.fault = Some(fault);
    }

    /// The complete records (visible folders), oldest first.
    pub fn list(&self) -> Result<Vec<String>, RecordError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))? {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if parse_name(&name).is_some()
                && entry
                    .file_type()
                    .map_err(io_err("inspect", &entry.path()))?
                    .is_dir()
            {
                names.push(name);
            }
        }
        names.sort_by_key(|n| parse_name(n));
        Ok(names)
    }

    /// Saves a record atomically, then applies the retention limits.
    ///
    /// On any error nothing of the record remains; a full disk gives
    /// [`RecordError::DiskFull`].
    pub fn save(&mut self, input: &RecordInput<'_>) -> Result<SavedRecord, RecordError> {
        let fault = self.fault.take();
        let m = input.manifest;
        let a = input.analysis;
        if a.probabilities.len() != m.labels.len() || a.class >= m.labels.len() {
            return Err(RecordError::Mismatch {
                probabilities: a.probabilities.len(),
                class: a.class,
                labels: m.labels.len(),
                model: m.name.clone(),
            });
        }
        let since = input
            .timestamp
            .duration_since(UNIX_EPOCH)
            .map_err(|_| RecordError::Timestamp)?;
        let (stamp, rfc3339) = format_utc(since.as_secs(), since.subsec_millis());

        // Everything is encoded in memory first, so the size is known before writing.
        let frame_png = encode_png(&self.dir.join(FRAME_FILE), input.frame)?;
        let overlay_png = encode_png(&self.dir.join(OVERLAY_FILE), input.overlay)?;
        let cam_json = to_json(&serde_json::json!({
            "height": a.cam_height,
            "width": a.cam_width,
            "raw_max": a.cam_raw_max,
            "values": a.cam,
        }));
        let record_json = to_json(&record_manifest(
            input,
            &rfc3339,
            [
                (FRAME_FILE, &frame_png[..]),
                (OVERLAY_FILE, &overlay_png[..]),
                (CAM_FILE, &cam_json[..]),
            ],
        ));
        let files: [(&str, &[u8]); 4] = [
            (FRAME_FILE, &frame_png),
            (OVERLAY_FILE, &overlay_png),
            (CAM_FILE, &cam_json),
            (RECORD_FILE, &record_json),
        ];
        let bytes: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();

        // A free name (a restart within the same second must not collide).
        let name = loop {
            self.sequence = self.sequence % 9999 + 1;
            let name = format!("{stamp}-{:04}", self.sequence);
            if !self.dir.join(&name).exists()
                && !self.dir.join(format!("{TMP_PREFIX}{name}")).exists()
            {
                break name;
            }
        };
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}"));
        let path = self.dir.join(&name);
        if let Err(e) = self.write_folder(&tmp, &path, &files, fault) {
            let _ = fs::remove_dir_all(&tmp);
            let _ = sync_dir(&self.dir);
            return Err(match e {
                RecordError::Io { source, .. } if is_disk_full(&source) => RecordError::DiskFull {
                    dir: self.dir.clone(),
                    needed_bytes: Some(bytes),
                },
                e => e,
            });
        }
        let removed = self.enforce_limits(&name)?;
        log::info!("saved screening record {} ({bytes} bytes)", path.display());
        Ok(SavedRecord {
            name,
            path,
            bytes,
            removed,
        })
    }

    fn write_folder(
        &self,
        tmp: &Path,
        path: &Path,
        files: &[(&str, &[u8])],
        fault: Option<Fault>,
    ) -> Result<(), RecordError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(tmp)
            .map_err(io_err("create directory", tmp))?;
        // The umask may have narrowed the mode; make it exactly 0700.
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o700))
            .map_err(io_err("set permissions of", tmp))?;
        for (i, (file, bytes)) in files.iter().enumerate() {
            let p = tmp.join(file);
            let fail = fault == Some(Fault::EnospcOnFile(i));
            write_file(&p, bytes, fail).map_err(io_err("write", &p))?;
        }
        sync_dir(tmp)?;
        fs::rename(tmp, path).map_err(io_err("rename into place", path))?;
        sync_dir(&self.dir)
    }

    /// Removes the oldest records while over a limit (never the one just saved).
    fn enforce_limits(&self, keep: &str) -> Result<Vec<String>, RecordError> {
        let mut removed = Vec::new();
        if self.limits.max_records.is_none() && self.limits.max_bytes.is_none() {
            return Ok(removed);
        }
        let names = self.list()?;
        let mut sizes = Vec::with_capacity(names.len());
        for n in &names {
            sizes.push(folder_bytes(&self.dir.join(n))?);
        }
        let mut count = names.len();
        let mut total: u64 = sizes.iter().sum();
        for (n, size) in names.iter().zip(&sizes) {
            let over_count = self.limits.max_records.is_some_and(|m| count > m);
            let over_bytes = self.limits.max_bytes.is_some_and(|m| total > m);
            if !(over_count || over_bytes) || n == keep {
                break;
            }
            // Hide it first: a crash while deleting leaves only a `.tmp-*` folder.
            let from = self.dir.join(n);
            let hidden = self.dir.join(format!("{TMP_PREFIX}rm-{n}"));
            fs::rename(&from, &hidden).map_err(io_err("hide old record", &from))?;
            sync_dir(&self.dir)?;
            fs::remove_dir_all(&hidden).map_err(io_err("remove old record", &hidden))?;
            log::info!("removed old screening record {n} (retention)");
            count -= 1;
            total -= size;
            removed.push(n.clone());
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }
}

/// Builds `record.json`.
fn record_manifest(
    input: &RecordInput<'_>,
    rfc3339: &str,
    files: [(&str, &[u8]); 3],
) -> serde_json::Value {
    let m = input.manifest;
    let a = input.analysis;
    let by_label = |values: &[f32]| {
        let mut map = serde_json::Map::new();
        for (l, p) in m.labels.iter().zip(values) {
            map.insert(l.id.clone(), serde_json::json!(p));
        }
        map
    };
    let probabilities = by_label(&a.probabilities);
    let frame_probabilities = by_label(&a.frame_probabilities);
    let top = a
        .probabilities
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(y.1))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let mut hashes = serde_json::Map::new();
    for (name, bytes) in files {
        hashes.insert(name.to_string(), serde_json::json!(sha256_hex(bytes)));
    }
    serde_json::json!({
        "format": FORMAT,
        "notice": NOTICE,
        "timestamp": rfc3339,
        "dermcam_version": input.dermcam_version,
        "board": input.board,
        "device_id": input.device_id,
        "model": {
            "name": m.name,
            "version": m.version,
            "sha256": m.sha256,
            "precision": m.precision,
        },
        "labels": m.labels.iter().map(|l| serde_json::json!({"id": l.id, "name": l.name})).collect::<Vec<_>>(),
        "probabilities": probabilities,
        "frame_probabilities": frame_probabilities,
        "top_class": {
            "id": m.labels[top].id,
            "name": m.labels[top].name,
            "probability": a.probabilities[top],
        },
        "cam_class": {
            "id": m.labels[a.class].id,
            "name": m.labels[a.class].name,
        },
        "cam": { "file": CAM_FILE, "width": a.cam_width, "height": a.cam_height },
        "crop": { "x": a.crop.x, "y": a.crop.y, "width": a.crop.width, "height": a.crop.height },
        "frame": {
            "width": input.frame.width(),
            "height": input.frame.height(),
            "sequence": input.frame.sequence,
        },
        "files": hashes,
    })
}

fn to_json(v: &serde_json::Value) -> Vec<u8> {
    // Serialising a `Value` into memory cannot fail.
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

fn encode_png(path: &Path, frame: &RgbFrame) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            frame.data(),
            frame.width(),
            frame.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| RecordError::Encode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// Writes a new file with mode 0600 and fsyncs it. `fail` simulates ENOSPC half-way.
fn write_file(path: &Path, bytes: &[u8], fail: bool) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    if fail {
        f.write_all(&bytes[..bytes.len() / 2])?;
        return Err(io::Error::from_raw_os_error(libc::ENOSPC));
    }
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> Result<(), RecordError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn folder_bytes(dir: &Path) -> Result<u64, RecordError> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        total += entry
            .metadata()
            .map_err(io_err("inspect", &entry.path()))?
            .len();
    }
    Ok(total)
}

/// Parses a record folder name `YYYYMMDDTHHMMSSZ-NNNN` into a sort key.
pub fn parse_name(name: &str) -> Option<(String, u32)> {
    let (stamp, seq) = name.split_once('-')?;
    let b = stamp.as_bytes();
    let ok = b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    if !ok || seq.is_empty() || !seq.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((stamp.to_string(), seq.parse().ok()?))
}

/// Formats seconds (and milliseconds) since the Unix epoch as the folder stamp
/// `YYYYMMDDTHHMMSSZ` and as RFC 3339 UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_utc(secs: u64, millis: u32) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}Z"),
    )
}
