//! Recordings (`.dcrec`): raw camera frames with their format and timestamps, replayed as a
//! [`FrameSource`]. The format is documented in `docs/formats.md`.
//!
//! Opening a recording reads its header and indexes every frame record (offset, length,
//! timestamp), so a truncated or corrupt file is reported at once with the frame and byte
//! offset, and replay reads each payload into one buffer allocated at open.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CaptureError, FrameFormat, FrameSource, PixelFormat, Poll, RawFrame};

/// File magic.
pub const MAGIC: [u8; 8] = *b"DCAMREC\0";
/// Frame record magic.
pub const FRAME_MAGIC: [u8; 4] = *b"FRAM";
/// Header length.
pub const HEADER_LEN: usize = 64;
/// Frame record header length.
pub const FRAME_HEADER_LEN: usize = 24;
/// Largest frame payload accepted (64 MiB), so a corrupt length cannot exhaust memory.
pub const MAX_FRAME_LEN: usize = 64 << 20;

/// Errors of recordings.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// I/O on the file failed.
    #[error("recording {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The header is not a dermcam recording header.
    #[error("recording {path}: {problem}")]
    Header {
        /// File.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A frame record is damaged.
    #[error("recording {path}: frame {index} at byte {offset}: {problem}")]
    Frame {
        /// File.
        path: PathBuf,
        /// Frame index.
        index: usize,
        /// Byte offset of the frame record.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
    /// The file ends inside a frame record.
    #[error("recording {path} is truncated: frame {index} at byte {offset} needs {needed} bytes but the file has {available} left ({complete} complete frames before it)")]
    Truncated {
        /// File.
        path: PathBuf,
        /// Frame index.
        index: usize,
        /// Byte offset of the frame record.
        offset: u64,
        /// Bytes the record needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
        /// Complete frames before it.
        complete: usize,
    },
    /// The recording has no frames.
    #[error("recording {path} has no frames")]
    Empty {
        /// File.
        path: PathBuf,
    },
}

/// One indexed frame record.
#[derive(Debug, Clone, Copy)]
struct FrameEntry {
    payload_offset: u64,
    len: u32,
    sequence: u32,
    timestamp_us: u64,
    flags: u32,
}

/// How to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayOptions {
    /// Replay at the recorded timestamps (else as fast as possible).
    pub realtime: bool,
    /// Start again at the end.
    pub looped: bool,
}

/// The header of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingHeader {
    /// Stream format.
    pub format: FrameFormat,
    /// Frames declared (0 = unknown).
    pub frame_count: u32,
    /// Nominal frame rate numerator.
    pub fps_num: u32,
    /// Nominal frame rate denominator.
    pub fps_den: u32,
}

/// A recording opened for replay.
#[derive(Debug)]
pub struct Recording {
    path: PathBuf,
    describe: String,
    file: File,
    header: RecordingHeader,
    frames: Vec<FrameEntry>,
    buffer: Vec<u8>,
    options: ReplayOptions,
    next: usize,
    /// Completed passes (for looping).
    pass: u64,
    /// Instant of timestamp 0 of the current pass.
    start: Option<Instant>,
    pass_duration: Duration,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RecordingError + '_ {
    move |source| RecordingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parses a 64-byte header.
pub fn parse_header(path: &Path, b: &[u8]) -> Result<(RecordingHeader, usize), RecordingError> {
    let bad = |problem: String| RecordingError::Header {
        path: path.to_path_buf(),
        problem,
    };
    if b.len() < HEADER_LEN {
        return Err(bad(format!(
            "file is {} bytes, shorter than the {HEADER_LEN}-byte header: not a dermcam recording",
            b.len()
        )));
    }
    if b[..8] != MAGIC {
        return Err(bad(format!(
            "bad magic {:?}: not a dermcam recording (expected \"DCAMREC\\0\")",
            String::from_utf8_lossy(&b[..8])
        )));
    }
    let version = u16_at(b, 8);
    if version != 1 {
        return Err(bad(format!(
            "version {version} is not supported (this dermcam reads version 1)"
        )));
    }
    let header_len = u16_at(b, 10) as usize;
    if header_len < HEADER_LEN {
        return Err(bad(format!(
            "header_len {header_len} is below {HEADER_LEN}"
        )));
    }
    let fourcc = [b[12], b[13], b[14], b[15]];
    let pixel = PixelFormat::from_fourcc(fourcc).ok_or_else(|| {
        bad(format!(
            "pixel format {:?} is not supported (YUYV, MJPG, RGB3)",
            String::from_utf8_lossy(&fourcc)
        ))
    })?;
    let width = u32_at(b, 16);
    let height = u32_at(b, 20);
    let stride = u32_at(b, 24);
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(bad(format!("frame size {width}x{height} is not plausible")));
    }
    if let Some(bpp) = pixel.bytes_per_pixel() {
        if (stride as usize) < width as usize * bpp {
            return Err(bad(format!(
                "stride {stride} is less than width {width} x {bpp} bytes for {pixel}"
            )));
        }
    }
    if pixel == PixelFormat::Yuyv && width % 2 != 0 {
        return Err(bad(format!("YUYV width {width} is odd")));
    }
    let fps_num = u32_at(b, 32);
    let fps_den = u32_at(b, 36);
    Ok((
        RecordingHeader {
            format: FrameFormat {
                pixel,
                width,
                height,
                stride,
            },
            frame_count: u32_at(b, 28),
            fps_num,
            fps_den,
        },
        header_len,
    ))
}

impl Recording {
    /// Opens and indexes a recording.
    pub fn open(path: &Path, options: ReplayOptions) -> Result<Self, RecordingError> {
        let mut file = File::open(path).map_err(io_err(path))?;
        let file_len = file.metadata().map_err(io_err(path))?.len();
        let mut head = [0u8; HEADER_LEN];
        let got = read_up_to(&mut file, &mut head).map_err(io_err(path))?;
        let (header, header_len) = parse_header(path, &head[..got])?;
        let mut offset = header_len as u64;
        let mut frames = Vec::new();
        let mut record = [0u8; FRAME_HEADER_LEN];
        let declared = header.frame_count as usize;
        let packed_len = header.format.packed_len();
        loop {
            if declared != 0 && frames.len() == declared {
                break;
            }
            if offset == file_len {
                if declared != 0 && frames.len() < declared {
                    return Err(RecordingError::Truncated {
                        path: path.to_path_buf(),
                        index: frames.len(),
                        offset,
                        needed: FRAME_HEADER_LEN as u64,
                        available: 0,
                        complete: frames.len(),
                    });
                }
                break;
            }
            let index = frames.len();
            let available = file_len - offset;
            if available < FRAME_HEADER_LEN as u64 {
                return Err(RecordingError::Truncated {
                    path: path.to_path_buf(),
                    index,
                    offset,
                    needed: FRAME_HEADER_LEN as u64,
                    available,
                    complete: index,
                });
            }
            file.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
            file.read_exact(&mut record).map_err(io_err(path))?;
            let frame_err = |problem: String| RecordingError::Frame {
                path: path.to_path_buf(),
                index,
                offset,
                problem,
            };
            if record[..4] != FRAME_MAGIC {
                return Err(frame_err(format!(
                    "bad frame magic {:?} (expected \"FRAM\"): the file is corrupt",
                    String::from_utf8_lossy(&record[..4])
                )));
            }
            let len = u32_at(&record, 16);
            if len as usize > MAX_FRAME_LEN {
                return Err(frame_err(format!("length {len} exceeds {MAX_FRAME_LEN}")));
            }
            if let Some(expected) = packed_len {
                if (len as usize) < expected {
                    return Err(frame_err(format!(
                        "payload is {len} bytes, a {} frame needs stride {} x height {} = {expected}",
                        header.format.pixel, header.format.stride, header.format.height
                    )));
                }
            }
            let needed = FRAME_HEADER_LEN as u64 + len as u64;
            if needed > available {
                return Err(RecordingError::Truncated {
                    path: path.to_path_buf(),
                    index,
                    offset,
                    needed,
                    available,
                    complete: index,
                });
            }
            frames.push(FrameEntry {
                payload_offset: offset + FRAME_HEADER_LEN as u64,
                len,
                sequence: u32_at(&record, 4),
                timestamp_us: u64_at(&record, 8),
                flags: u32_at(&record, 20),
            });
            offset += needed;
        }
        if frames.is_empty() {
            return Err(RecordingError::Empty {
                path: path.to_path_buf(),
            });
        }
        let max_len = frames.iter().map(|f| f.len as usize).max().unwrap_or(0);
        let last_ts = frames.last().map_or(0, |f| f.timestamp_us);
        let frame_period_us = if header.fps_num > 0 && header.fps_den > 0 {
            1_000_000u64 * header.fps_den as u64 / header.fps_num as u64
        } else if frames.len() > 1 {
            last_ts / (frames.len() as u64 - 1)
        } else {
            0
        };
        Ok(Recording {
            describe: format!(
                "recording {} ({} {}x{}, {} frames)",
                path.display(),
                header.format.pixel,
                header.format.width,
                header.format.height,
                frames.len()
            ),
            path: path.to_path_buf(),
            file,
            header,
            frames,
            buffer: vec![0u8; max_len],
            options,
            next: 0,
            pass: 0,
            start: None,
            pass_duration: Duration::from_micros(last_ts + frame_period_us),
        })
    }

    /// The header.
    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the recording has no frames (never true for an opened recording).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Nominal duration of one pass.
    pub fn duration(&self) -> Duration {
        self.pass_duration
    }

    /// Rewinds to the first frame.
    pub fn rewind(&mut self) {
        self.next = 0;
        self.pass = 0;
        self.start = None;
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut total = 0;
    while total < buf.len() {
        match file.read(&mut buf[total..])? {
            0 => break,
            n => total += n,
        }
    }
    Ok(total)
}

impl FrameSource for Recording {
    fn format(&self) -> FrameFormat {
        self.header.format
    }

    fn max_frame_len(&self) -> usize {
        self.buffer.len()
    }

    fn poll_frame(
        &mut self,
        now: Instant,
        consume: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<Poll, CaptureError> {
        if self.next == self.frames.len() {
            if !self.options.looped {
                return Ok(Poll::End);
            }
            self.next = 0;
            self.pass += 1;
        }
        let entry = self.frames[self.next];
        let timestamp = Duration::from_micros(entry.timestamp_us);
        if self.options.realtime {
            let start = *self.start.get_or_insert(now);
            let due = start + self.pass_duration * self.pass as u32 + timestamp;
            if now < due {
                return Ok(Poll::Wait(due));
            }
        }
        let len = entry.len as usize;
        let path = &self.path;
        self.file
            .seek(SeekFrom::Start(entry.payload_offset))
            .and_then(|_| self.file.read_exact(&mut self.buffer[..len]))
            .map_err(|source| RecordingError::Io {
                path: path.clone(),
                source,
            })?;
        let sequence = self.pass * self.frames.len() as u64 + self.next as u64;
        let frame_ts = self.pass_duration * self.pass as u32 + timestamp;
        self.next += 1;
        consume(RawFrame {
            format: self.header.format,
            sequence: if self.pass == 0 {
                entry.sequence as u64
            } else {
                sequence
            },
            timestamp: frame_ts,
            error_flag: entry.flags & 1 != 0,
            data: &self.buffer[..len],
        });
        Ok(Poll::Frame)
    }

    fn describe(&self) -> &str {
        &self.describe
    }
}

/// Writes a recording frame by frame (used by `dermcam record` and by tests).
#[derive(Debug)]
pub struct RecordingWriter {
    path: PathBuf,
    out: BufWriter<File>,
    format: FrameFormat,
    frames: u32,
}

impl RecordingWriter {
    /// Creates the file and writes the header (frame count 0 until [`RecordingWriter::finish`]).
    pub fn create(
        path: &Path,
        format: FrameFormat,
        fps_num: u32,
        fps_den: u32,
    ) -> Result<Self, RecordingError> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut out = BufWriter::new(file);
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&1u16.to_le_bytes());
        h[10..12].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        h[12..16].copy_from_slice(&format.pixel.fourcc());
        h[16..20].copy_from_slice(&format.width.to_le_bytes());
        h[20..24].copy_from_slice(&format.height.to_le_bytes());
        h[24..28].copy_from_slice(&format.stride.to_le_bytes());
        h[32..36].copy_from_slice(&fps_num.to_le_bytes());
        h[36..40].copy_from_slice(&fps_den.to_le_bytes());
        out.write_all(&h).map_err(io_err(path))?;
        Ok(RecordingWriter {
            path: path.to_path_buf(),
            out,
            format,
            frames: 0,
        })
    }

    /// Appends one frame.
    pub fn write_frame(
        &mut self,
        sequence: u32,
        timestamp: Duration,
        error_flag: bool,
        payload: &[u8],
    ) -> Result<(), RecordingError> {
        let mut r = [0u8; FRAME_HEADER_LEN];
        r[..4].copy_from_slice(&FRAME_MAGIC);
        r[4..8].copy_from_slice(&sequence.to_le_bytes());
        r[8..16].copy_from_slice(&(timestamp.as_micros() as u64).to_le_bytes());
        r[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        r[20..24].copy_from_slice(&u32::from(error_flag).to_le_bytes());
        self.out.write_all(&r).map_err(io_err(&self.path))?;
        self.out.write_all(payload).map_err(io_err(&self.path))?;
        self.frames += 1;
        Ok(())
    }

    /// The stream format being written.
    pub fn format(&self) -> FrameFormat {
        self.format
    }

    /// Writes the frame count into the header, flushes and syncs the file.
    pub fn finish(mut self) -> Result<u32, RecordingError> {
        let path = self.path.clone();
        self.out.flush().map_err(io_err(&path))?;
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| io_err(&path)(e.into_error()))?;
        file.seek(SeekFrom::Start(28)).map_err(io_err(&path))?;
        file.write_all(&self.frames.to_le_bytes())
            .map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        Ok(self.frames)
    }
}
