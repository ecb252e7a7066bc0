//! `dermcam record`: capture raw frames from a source (a camera in the field) into a
//! recording (`.dcrec`, docs/formats.md) that replays anywhere with `dermcam run` or
//! `dermcam bench --source`.
//!
//! The file appears atomically: frames go to a hidden temporary file beside the target,
//! which is synced and renamed over `--out` only when the recording is complete; on an error
//! the temporary file is removed and no partial recording is left under the target name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::capture::recording::{RecordingError, RecordingWriter};
use crate::capture::{CaptureError, FrameFormat, FrameSource, Poll};

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// After this many frames.
    Frames(u64),
    /// After this much capture time.
    Duration(Duration),
}

/// Errors of `record`.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The source failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] RecordingError),
    /// Renaming the finished file failed.
    #[error("cannot move {from} to {to}: {source}")]
    Rename {
        /// Temporary file.
        from: PathBuf,
        /// Target.
        to: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Nothing was captured.
    #[error("no frames were captured from {source_name}: nothing written to {out}")]
    NoFrames {
        /// Source description.
        source_name: String,
        /// Target.
        out: PathBuf,
    },
}

/// What was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    /// The recording.
    pub path: PathBuf,
    /// Stream format.
    pub format: FrameFormat,
    /// Frames written.
    pub frames: u32,
    /// Frames written with the driver's error flag.
    pub flagged: u32,
    /// Packed frames shorter than `stride x height`, not written (a recording must not
    /// hold them).
    pub skipped_short: u32,
    /// Timestamp of the last frame written.
    pub duration: Duration,
}

/// The hidden temporary file next to `out`.
pub fn temp_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recording.dcrec".into());
    out.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Records `source` into `out` until `limit`, the source's end, or `stop`.
/// `fps` is the nominal rate written into the header (`(num, den)`, frames per second as a
/// fraction; `(0, 0)` = derive it from the timestamps when replaying).
pub fn record(
    source: &mut dyn FrameSource,
    out: &Path,
    limit: Limit,
    fps: (u32, u32),
    stop: &AtomicBool,
) -> Result<RecordSummary, RecordError> {
    let tmp = temp_path(out);
    let result = record_into(source, &tmp, limit, fps, stop);
    match result {
        Ok(mut summary) => {
            if summary.frames == 0 {
                let _ = std::fs::remove_file(&tmp);
                return Err(RecordError::NoFrames {
                    source_name: source.describe().to_string(),
                    out: out.to_path_buf(),
                });
            }
            std::fs::rename(&tmp, out).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                RecordError::Rename {
                    from: tmp.clone(),
                    to: out.to_path_buf(),
                    source: e,
                }
            })?;
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Make the rename itself durable.
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            summary.path = out.to_path_buf();
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn record_into(
    source: &mut dyn FrameSource,
    tmp: &Path,
    limit: Limit,
    fps: (u32, u32),
    stop: &AtomicBool,
) -> Result<RecordSummary, RecordError> {
    let format = source.format();
    let mut writer = RecordingWriter::create(tmp, format, fps.0, fps.1)?;
    let min_len = format.packed_len();
    let mut frames = 0u32;
    let mut flagged = 0u32;
    let mut skipped_short = 0u32;
    let mut first_ts: Option<Duration> = None;
    let mut last_ts = Duration::ZERO;
    let mut write_error: Option<RecordingError> = None;
    let started = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match limit {
            Limit::Frames(n) if frames as u64 >= n => break,
            Limit::Duration(d) if started.elapsed() >= d => break,
            _ => {}
        }
        let now = Instant::now();
        let poll = source.poll_frame(now, &mut |raw| {
            if write_error.is_some() {
                return;
            }
            if min_len.is_some_and(|m| raw.data.len() < m) {
                skipped_short += 1;
                return;
            }
            let base = *first_ts.get_or_insert(raw.timestamp);
            let ts = raw.timestamp.saturating_sub(base);
            match writer.write_frame(frames, ts, raw.error_flag, raw.data) {
                Ok(()) => {
                    frames += 1;
                    flagged += u32::from(raw.error_flag);
                    last_ts = ts;
                }
                Err(e) => write_error = Some(e),
            }
        })?;
        if let Some(e) = write_error.take() {
            return Err(e.into());
        }
        match poll {
            Poll::Frame => {}
            Poll::Wait(until) => crate::capture::sleep_toward(until, Duration::from_millis(50)),
            Poll::End => break,
        }
    }
    writer.finish()?;
    Ok(RecordSummary {
        path: tmp.to_path_buf(),
        format,
        frames,
        flagged,
        skipped_short,
        duration: last_ts,
    })
}
