//! Bad input a user can hand dermcam: corrupt camera frames, damaged recordings, files that
//! are not images, broken model manifests.
//!
//! Each must give a typed error whose message names the file / field / frame and what is
//! wrong, and nothing good may be lost: a run over a recording with corrupt frames completes
//! and counts exactly the corrupt ones, and `infer` on a list with a bad file still answers
//! for the good ones.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::{repo, temp_dir};
use dermcam::app::bench::{bench, parse_size, BenchOptions};
use dermcam::app::infer::{InferError, InferOptions, Inferrer};
use dermcam::capture::recording::{
    Recording, RecordingError, RecordingWriter, ReplayOptions, FRAME_HEADER_LEN, HEADER_LEN,
};
use dermcam::capture::stills::{load_rgb, StillsError};
use dermcam::capture::{FrameFormat, FrameSource, PixelFormat, Poll, RawFrame};
use dermcam::compose::Composer;
use dermcam::convert::{ConvertError, Converter, JpegDecoderChoice, MjpegFault};
use dermcam::display::{DisplayError, FrameSink};
use dermcam::frame::RgbFrame;
use dermcam::heatmap::ColorMapKind;
use dermcam::model::head::HeadError;
use dermcam::model::{Manifest, ManifestError, Model, ModelError};
use dermcam::pipeline::run::{run_pipeline, Counters, RunOptions};
use dermcam::pipeline::{Analysis, Analyzer};

const MJPEG: &str = "recordings/lesion-mjpeg.dcrec";
const YUYV: &str = "recordings/lesion-yuyv.dcrec";
const TINY_F32: &str = "models/test/tiny-f32.toml";
const GOOD_STILL: &str = "recordings/stills/lesion-a.jpg";

/// One frame read back from a recording.
struct Frame {
    sequence: u64,
    timestamp: Duration,
    data: Vec<u8>,
}

/// The first `n` frames of a bundled recording, and its format.
fn read_frames(rel: &str, n: usize) -> (FrameFormat, Vec<Frame>) {
    let mut rec = Recording::open(&repo().join(rel), ReplayOptions::default()).expect("open");
    let format = rec.format();
    let mut frames = Vec::new();
    while frames.len() < n {
        let poll = rec
            .poll_frame(Instant::now(), &mut |raw: RawFrame<'_>| {
                frames.push(Frame {
                    sequence: raw.sequence,
                    timestamp: raw.timestamp,
                    data: raw.data.to_vec(),
                })
            })
            .expect("poll");
        assert_eq!(poll, Poll::Frame, "{rel} has at least {n} frames");
    }
    (format, frames)
}

// ---------------------------------------------------------------------------------------
// Corrupt MJPEG frames in a run
// ---------------------------------------------------------------------------------------

/// Records which frames the analyses shown were computed on.
#[derive(Default)]
struct SeqSink {
    shown: u64,
    analysed_sequences: Vec<u64>,
}

impl FrameSink for SeqSink {
    fn show(&mut self, f: &RgbFrame, a: Option<&Analysis>, _: u64) -> Result<(), DisplayError> {
        assert_eq!((f.width(), f.height()), (640, 480));
        self.shown += 1;
        if let Some(a) = a {
            self.analysed_sequences.push(a.frame_sequence);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "sequence sink".into()
    }
}

const TOTAL: usize = 12;
const TRUNCATED: u64 = 3;
const GARBAGE: u64 = 5;
const FLAGGED: u64 = 7;

/// Frames 0..TOTAL of the MJPEG recording with frame 3 cut in half, frame 5 bit-flipped
/// (no longer a JPEG) and frame 7 flagged as erroneous by the driver.
fn write_corrupt_mjpeg(dir: &Path) -> PathBuf {
    let (format, frames) = read_frames(MJPEG, TOTAL);
    assert_eq!(format.pixel, PixelFormat::Mjpeg);
    let path = dir.join("corrupt-mjpeg.dcrec");
    let mut w = RecordingWriter::create(&path, format, 15, 1).expect("create");
    for f in &frames {
        let seq = f.sequence as u32;
        let mut data = f.data.clone();
        let mut flag = false;
        match f.sequence {
            TRUNCATED => data.truncate(data.len() / 2),
            GARBAGE => data.iter_mut().for_each(|b| *b ^= 0xFF),
            FLAGGED => flag = true,
            _ => {}
        }
        w.write_frame(seq, f.timestamp, flag, &data).expect("write");
    }
    assert_eq!(w.finish().expect("finish"), TOTAL as u32);
    path
}

/// The tiny model's analyzer for the 640x480 MJPEG frames, and a composer for its labels.
fn tiny_analyzer() -> (Analyzer, Composer) {
    let model = Model::load(&repo().join(TINY_F32)).expect("model");
    let labels = model.manifest().labels.clone();
    let analyzer = Analyzer::new(model, 640, 480, 1.0, ColorMapKind::Jet, None).expect("analyzer");
    (analyzer, Composer::new(labels, 0.45, 0.5))
}

#[test]
fn bench_skips_and_counts_corrupt_frames_and_composes_at_the_screen_size() {
    let dir = temp_dir("corrupt-bench");
    let path = write_corrupt_mjpeg(dir.path());
    let mut source = Recording::open(
        &path,
        ReplayOptions {
            realtime: false,
            looped: true,
        },
    )
    .expect("recording");
    let (mut analyzer, composer) = tiny_analyzer();
    // 9 good frames per pass of the 12: 18 measured frames are two passes, ending on the
    // last frame of the second, so exactly 2 x 3 bad frames were skipped.
    let report = bench(
        &mut source,
        &mut analyzer,
        &composer,
        BenchOptions {
            frames: 18,
            warmup: 0,
            jpeg: JpegDecoderChoice::Auto,
            output: Some((320, 240)),
        },
    )
    .expect("a bench over corrupt frames completes");
    assert_eq!(report.frames, 18);
    assert_eq!(report.corrupt_frames, 6, "{report:?}");
    assert_eq!(report.output, [320, 240]);
    assert_eq!(parse_size("800X480"), Ok((800, 480)));
    for bad in ["800", "800x", "x480", "0x480", "800x-1", "9000x480"] {
        let e = parse_size(bad).expect_err(bad);
        assert!(e.contains(bad), "the error names what was given: {e}");
    }
}

#[test]
fn run_over_corrupt_mjpeg_frames_skips_and_counts_exactly_them() {
    let dir = temp_dir("corrupt-run");
    let path = write_corrupt_mjpeg(dir.path());
    let mut source = Recording::open(
        &path,
        ReplayOptions {
            realtime: false,
            looped: false,
        },
    )
    .expect("the corrupt frames are valid records: the recording opens");
    assert_eq!(source.len(), TOTAL);
    let (mut analyzer, composer) = tiny_analyzer();
    let mut sink = SeqSink::default();
    let counters = Counters::default();
    let stop = AtomicBool::new(false);
    let options = RunOptions {
        frame_slots: 5,
        max_frames: None,
        status_every: Duration::from_secs(3600),
        ..RunOptions::default()
    };
    let summary = run_pipeline(
        &mut source,
        &mut analyzer,
        &composer,
        &mut sink,
        options,
        &counters,
        &stop,
    )
    .expect("a run with corrupt frames completes");
    let c = summary.counters;
    assert_eq!(c.captured, TOTAL as u64, "every frame is captured: {c:?}");
    assert_eq!(c.corrupt, 3, "exactly the 3 bad frames are corrupt: {c:?}");
    // 5 slots: newest + inference + compose leave capture a free slot, nothing is dropped.
    assert_eq!(c.dropped, 0, "no good frame is dropped: {c:?}");
    assert_eq!(c.analysis_errors, 0, "{c:?}");
    assert!(c.composed >= 1 && c.analysed >= 1, "{c:?}");
    // Each good frame is composed at most once, plus the final analysis shown once more when
    // the source ends (a slow machine — or qemu — composes every frame and then that one).
    assert!(
        c.composed <= c.captured - c.corrupt - c.dropped + 1,
        "only good frames are composed: {c:?}"
    );
    assert_eq!(sink.shown, c.composed);
    for s in &sink.analysed_sequences {
        assert!(
            ![TRUNCATED, GARBAGE, FLAGGED].contains(s),
            "an analysis of bad frame {s} was shown"
        );
    }
    // Newest wins, but every good frame is accounted for: analysed or counted as skipped.
    assert_eq!(
        c.analysed + c.skipped,
        TOTAL as u64 - 3,
        "every good frame is analysed or counted as skipped: {c:?}"
    );
}

#[test]
fn converter_errors_name_the_frame_and_the_fault() {
    let (format, frames) = read_frames(MJPEG, 1);
    let mut conv = Converter::new(format).expect("converter");
    let mut dst = RgbFrame::new(format.width, format.height);
    let good = &frames[0].data;
    let raw = |data, sequence| RawFrame {
        format,
        sequence,
        timestamp: Duration::ZERO,
        error_flag: false,
        data,
    };

    let half = &good[..good.len() / 2];
    let e = conv.convert(&raw(half, 42), &mut dst).unwrap_err();
    assert!(
        matches!(
            e,
            ConvertError::Mjpeg {
                sequence: 42,
                reason: MjpegFault::MissingEoi { .. }
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("frame 42"), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
    assert_eq!(
        dst.sequence, 0,
        "a failed frame leaves the metadata untouched"
    );

    let flipped: Vec<u8> = good.iter().map(|b| b ^ 0xFF).collect();
    let e = conv.convert(&raw(&flipped, 43), &mut dst).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, ConvertError::Mjpeg { sequence: 43, reason: MjpegFault::NotJpeg { len } } if len == good.len()),
        "{e:?}"
    );
    assert!(
        msg.contains("frame 43") && msg.contains("not a JPEG"),
        "{msg}"
    );

    // The converter still works after errors.
    conv.convert(&raw(good, 44), &mut dst)
        .expect("a good frame converts");
    assert_eq!(dst.sequence, 44);
}

// ---------------------------------------------------------------------------------------
// Damaged recordings
// ---------------------------------------------------------------------------------------

/// YUYV record size: 24-byte header + stride 704 x height 240.
const YUYV_RECORD: u64 = (FRAME_HEADER_LEN + 704 * 240) as u64;

#[test]
fn truncated_recording_names_file_frame_and_offset() {
    let dir = temp_dir("truncated");
    let bytes = std::fs::read(repo().join(YUYV)).expect("read");
    assert_eq!(bytes.len() as u64, HEADER_LEN as u64 + 30 * YUYV_RECORD);
    let path = dir.path().join("cut.dcrec");
    let frame_offset = HEADER_LEN as u64 + 10 * YUYV_RECORD;
    let cut = frame_offset + FRAME_HEADER_LEN as u64 + 1000;
    std::fs::write(&path, &bytes[..cut as usize]).expect("write");

    let e = Recording::open(&path, ReplayOptions::default()).unwrap_err();
    match &e {
        RecordingError::Truncated {
            path: p,
            index,
            offset,
            needed,
            available,
            complete,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*index, 10);
            assert_eq!(*offset, frame_offset);
            assert_eq!(*needed, YUYV_RECORD);
            assert_eq!(*available, cut - frame_offset);
            assert_eq!(*complete, 10);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
    assert!(msg.contains("frame 10"), "{msg}");
    assert!(msg.contains(&format!("byte {frame_offset}")), "{msg}");

    // Cut exactly between records: the header still declares 30 frames.
    std::fs::write(&path, &bytes[..frame_offset as usize]).expect("write");
    let e = Recording::open(&path, ReplayOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            RecordingError::Truncated {
                index: 10,
                available: 0,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains(&format!("byte {frame_offset}")),
        "{e}"
    );
}

#[test]
fn file_that_is_not_a_recording_is_refused_by_name() {
    let dir = temp_dir("not-dcrec");
    let png = dir.path().join("picture.dcrec");
    std::fs::copy(repo().join("tests/golden/images/synth-0.png"), &png).expect("copy");
    let e = Recording::open(&png, ReplayOptions::default()).unwrap_err();
    assert!(matches!(e, RecordingError::Header { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("not a dermcam recording"), "{msg}");
    assert!(msg.contains(&png.display().to_string()), "{msg}");
    assert!(msg.contains("bad magic"), "{msg}");

    let empty = dir.path().join("empty.dcrec");
    std::fs::write(&empty, b"").expect("write");
    let e = Recording::open(&empty, ReplayOptions::default()).unwrap_err();
    assert!(matches!(e, RecordingError::Header { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&empty.display().to_string()), "{msg}");
    assert!(msg.contains("0 bytes"), "{msg}");
    assert!(msg.contains("not a dermcam recording"), "{msg}");

    let missing = dir.path().join("missing.dcrec");
    let e = Recording::open(&missing, ReplayOptions::default()).unwrap_err();
    assert!(matches!(e, RecordingError::Io { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
}

#[test]
fn bad_frame_magic_in_the_middle_names_the_frame() {
    let dir = temp_dir("bad-fram");
    let mut bytes = std::fs::read(repo().join(YUYV)).expect("read");
    let offset = HEADER_LEN as u64 + 5 * YUYV_RECORD;
    assert_eq!(&bytes[offset as usize..offset as usize + 4], b"FRAM");
    bytes[offset as usize..offset as usize + 4].copy_from_slice(b"JUNK");
    let path = dir.path().join("bad-magic.dcrec");
    std::fs::write(&path, &bytes).expect("write");
    let e = Recording::open(&path, ReplayOptions::default()).unwrap_err();
    match &e {
        RecordingError::Frame {
            path: p,
            index,
            offset: o,
            ..
        } => {
            assert_eq!(p, &path);
            assert_eq!(*index, 5);
            assert_eq!(*o, offset);
        }
        other => panic!("expected Frame, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("frame 5"), "{msg}");
    assert!(msg.contains(&format!("byte {offset}")), "{msg}");
    assert!(msg.contains("JUNK") && msg.contains("FRAM"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Files that are not images
// ---------------------------------------------------------------------------------------

fn not_an_image(dir: &Path) -> PathBuf {
    let p = dir.join("notanimage.jpg");
    std::fs::write(&p, b"this is a text file, not a JPEG\n").expect("write");
    p
}

#[test]
fn not_an_image_is_refused_by_name_and_the_next_image_still_works() {
    let dir = temp_dir("notimage");
    let bad = not_an_image(dir.path());
    let e = load_rgb(&bad).unwrap_err();
    assert!(
        matches!(&e, StillsError::Decode { path, .. } if path == &bad),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&bad.display().to_string()), "{msg}");
    assert!(msg.contains("not a readable image"), "{msg}");

    let missing = dir.path().join("missing.png");
    let e = load_rgb(&missing).unwrap_err();
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );

    let model = Model::load(&repo().join(TINY_F32)).expect("model");
    let mut inferrer = Inferrer::new(model, InferOptions::default()).expect("inferrer");
    let e = inferrer.infer(&bad).unwrap_err();
    assert!(
        matches!(e, InferError::Image(StillsError::Decode { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains(&bad.display().to_string()), "{e}");
    let good = repo().join(GOOD_STILL);
    let r = inferrer.infer(&good).expect("a good image after a bad one");
    assert_eq!(r.path, good.display().to_string());
    assert_eq!(r.probabilities.len(), 7);
}

#[test]
fn infer_json_answers_for_good_images_and_names_the_bad_one() {
    let dir = temp_dir("infer-cli");
    let bad = not_an_image(dir.path());
    let good = repo().join(GOOD_STILL);
    let out_dir = dir.path().join("overlays");
    let out = Command::new(env!("CARGO_BIN_EXE_dermcam"))
        .current_dir(repo())
        .env("RUST_LOG", "error")
        .arg("infer")
        .arg("--json")
        .arg("--model")
        .arg(repo().join(TINY_F32))
        .arg("--out")
        .arg(&out_dir)
        .arg(&bad)
        .arg(&good)
        .output()
        .expect("run dermcam");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a bad image makes the exit code non-zero\n{stdout}\n{stderr}"
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 2, "one line per image:\n{stdout}");

    let err = &lines[0];
    assert_eq!(err["path"], bad.display().to_string());
    let text = err["error"].as_str().expect("error string");
    assert!(text.contains(&bad.display().to_string()), "{text}");
    assert!(text.contains("not a readable image"), "{text}");

    let ok = &lines[1];
    assert!(ok.get("error").is_none(), "{ok}");
    assert_eq!(ok["path"], good.display().to_string());
    let top = ok["top_class"].as_str().expect("top_class");
    let probs = ok["probabilities"].as_object().expect("probabilities");
    assert_eq!(probs.len(), 7);
    let sum: f64 = probs.values().map(|v| v.as_f64().expect("number")).sum();
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
    let top_p = ok["top_probability"].as_f64().expect("top_probability");
    assert!((probs[top].as_f64().expect("number") - top_p).abs() < 1e-6);
    assert!(probs.values().all(|v| v.as_f64().unwrap() <= top_p + 1e-9));
    let crop = &ok["crop"];
    for k in ["x", "y", "width", "height"] {
        assert!(crop[k].is_u64(), "crop.{k}: {crop}");
    }
    // A 640x480 still with crop fraction 1: the centred 480x480 square.
    assert_eq!(crop["width"], 480);
    assert_eq!(crop["height"], 480);
    assert_eq!(crop["x"], 80);
    let cam = &ok["cam"];
    let (h, w) = (
        cam["height"].as_u64().unwrap(),
        cam["width"].as_u64().unwrap(),
    );
    let values = cam["values"].as_array().expect("cam.values");
    assert!(h > 0 && w > 0);
    assert_eq!(values.len() as u64, h * w);
    let overlay = PathBuf::from(ok["overlay"].as_str().expect("overlay path"));
    assert!(overlay.starts_with(&out_dir), "{}", overlay.display());
    let img = image::open(&overlay).expect("overlay is an image");
    assert_eq!((img.width(), img.height()), (640, 480));
    assert!(
        !out_dir.join("notanimage-overlay.png").exists(),
        "no overlay for the bad file"
    );
}

// ---------------------------------------------------------------------------------------
// Broken model manifests
// ---------------------------------------------------------------------------------------

/// Writes a copy of `models/test/tiny-f32.toml` (model path made absolute) edited by `edit`.
fn manifest_variant(dir: &Path, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(TINY_F32)).expect("manifest");
    let model = repo().join("models/test/tiny-f32.onnx");
    let line = "model = \"tiny-f32.onnx\"";
    assert!(text.contains(line));
    let text = text.replace(line, &format!("model = {:?}", model.display().to_string()));
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit of {name} changed nothing");
    let path = dir.join(name);
    std::fs::write(&path, edited).expect("write manifest");
    path
}

fn load_err(path: &Path) -> ModelError {
    Model::load(path).expect_err("the manifest must be refused")
}

fn replace_once(text: String, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} in the manifest");
    text.replace(from, to)
}

#[test]
fn manifest_variant_without_faults_loads() {
    // The helper produces a usable manifest, so the failures below are the edits' doing.
    let dir = temp_dir("manifest-ok");
    let m = manifest_variant(dir.path(), "ok.toml", |t| {
        replace_once(t, "name = \"dermcam-tiny-test-f32\"", "name = \"variant\"")
    });
    let model = Model::load(&m).expect("an unbroken variant loads");
    assert_eq!(model.manifest().name, "variant");
}

#[test]
fn missing_model_file_is_named() {
    let dir = temp_dir("manifest-missing");
    let gone = dir.path().join("gone.onnx");
    let m = manifest_variant(dir.path(), "missing.toml", |t| {
        let abs = repo()
            .join("models/test/tiny-f32.onnx")
            .display()
            .to_string();
        replace_once(
            t,
            &format!("{abs:?}"),
            &format!("{:?}", gone.display().to_string()),
        )
    });
    let e = load_err(&m);
    match &e {
        ModelError::Manifest(ManifestError::ModelFile { path, manifest, .. }) => {
            assert_eq!(path, &gone);
            assert_eq!(manifest, &m);
        }
        other => panic!("expected ModelFile, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&gone.display().to_string()), "{msg}");
    assert!(msg.contains(&m.display().to_string()), "{msg}");
}

#[test]
fn wrong_sha256_names_both_hashes() {
    let dir = temp_dir("manifest-sha");
    let wrong = "0".repeat(64);
    let right = "6125390b7b55f37d4147838a38da055df0d6ed961abadd517516bdec762065e3";
    let m = manifest_variant(dir.path(), "sha.toml", |t| replace_once(t, right, &wrong));
    let e = load_err(&m);
    assert!(
        matches!(&e, ModelError::Manifest(ManifestError::Sha256Mismatch { expected, actual, .. })
            if expected == &wrong && actual == right),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&wrong) && msg.contains(right), "{msg}");
    assert!(msg.contains("tiny-f32.onnx"), "{msg}");

    // Not 64 hex digits: a field error naming `sha256`.
    let m = manifest_variant(dir.path(), "sha-short.toml", |t| {
        replace_once(t, right, "abc")
    });
    let e = Manifest::load(&m).unwrap_err();
    assert!(
        matches!(
            e,
            ManifestError::Field {
                field: "sha256",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("`sha256`"), "{e}");
}

#[test]
fn missing_target_layer_is_named() {
    let dir = temp_dir("manifest-target");
    let m = manifest_variant(dir.path(), "target.toml", |t| {
        replace_once(
            t,
            "target_layer = \"features\"",
            "target_layer = \"block9_out\"",
        )
    });
    let e = load_err(&m);
    assert!(
        matches!(&e, ModelError::Head { source: HeadError::MissingTargetLayer { name, .. }, .. } if name == "block9_out"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("\"block9_out\""), "{msg}");
    assert!(msg.contains("outputs.target_layer"), "{msg}");
}

#[test]
fn unsupported_head_op_is_named() {
    let m = repo().join("tests/fixtures/models/head-unsupported.toml");
    let e = load_err(&m);
    assert!(
        matches!(&e, ModelError::Head { source: HeadError::UnsupportedOp { op_type, .. }, .. } if op_type == "GlobalMaxPool"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("GlobalMaxPool"), "{msg}");
    assert!(msg.contains("not supported"), "{msg}");
}

#[test]
fn head_ops_differing_from_the_graph_name_head_ops() {
    let dir = temp_dir("manifest-head");
    let m = manifest_variant(dir.path(), "head.toml", |t| {
        replace_once(
            t,
            "ops = [\"GlobalAveragePool\", \"Flatten\", \"Gemm\"]",
            "ops = [\"GlobalAveragePool\", \"Gemm\"]",
        )
    });
    let e = load_err(&m);
    assert!(
        matches!(
            e,
            ModelError::Mismatch {
                field: "head.ops",
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("`head.ops`"), "{msg}");
    assert!(msg.contains("Flatten"), "the graph's ops are shown: {msg}");
}

#[test]
fn wrong_label_count_names_labels() {
    let dir = temp_dir("manifest-labels");
    let m = manifest_variant(dir.path(), "labels.toml", |t| {
        replace_once(
            t,
            "[[labels]]\nid = \"vasc\"\nname = \"Vascular lesion\"\n",
            "",
        )
    });
    let e = load_err(&m);
    assert!(
        matches!(
            e,
            ModelError::Mismatch {
                field: "labels",
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("`labels`"), "{msg}");
    assert!(msg.contains("lists 6 classes"), "{msg}");
    assert!(msg.contains("[1, 7]"), "the logits' shape is shown: {msg}");
}

#[test]
fn wrong_input_layout_names_the_input() {
    let dir = temp_dir("manifest-layout");
    let m = manifest_variant(dir.path(), "layout.toml", |t| {
        replace_once(t, "layout = \"NCHW\"", "layout = \"NHWC\"")
    });
    let e = load_err(&m);
    assert!(
        matches!(e, ModelError::Mismatch { field: "input", .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("`input`"), "{msg}");
    assert!(msg.contains("[1, 64, 64, 3]"), "{msg}");
    assert!(msg.contains("[1, 3, 64, 64]"), "{msg}");
}

/// The ONNX file declares its input as `1x3x64x64`; a manifest saying 65x65 describes
/// another tensor and must be refused, naming the input and both shapes.
#[test]

fn wrong_input_size_names_the_input() {
    let dir = temp_dir("manifest-input");
    let m = manifest_variant(dir.path(), "input.toml", |t| {
        replace_once(t, "width = 64\nheight = 64", "width = 65\nheight = 65")
    });
    let e = load_err(&m);
    let msg = e.to_string();
    assert!(
        matches!(e, ModelError::Mismatch { field: "input", .. }),
        "{e:?}"
    );
    assert!(msg.contains("`input`"), "{msg}");
    assert!(msg.contains("65"), "{msg}");
    assert!(msg.contains("64"), "{msg}");
}

#[test]
fn unknown_manifest_key_is_named() {
    let dir = temp_dir("manifest-key");
    let m = manifest_variant(dir.path(), "key.toml", |t| {
        replace_once(
            t,
            "layout = \"NCHW\"",
            "layout = \"NCHW\"\nlayuot = \"NHWC\"",
        )
    });
    let e = Manifest::load(&m).unwrap_err();
    assert!(matches!(e, ManifestError::Parse { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("layuot") && msg.contains(&m.display().to_string()),
        "{msg}"
    );
}

#[test]
fn check_model_cli_reports_good_and_bad_manifests() {
    let good = Command::new(env!("CARGO_BIN_EXE_dermcam"))
        .current_dir(repo())
        .arg("check-model")
        .arg(repo().join(TINY_F32))
        .output()
        .expect("run dermcam");
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(stdout.starts_with("OK: "), "{stdout}");
    assert!(
        stdout.contains("GlobalAveragePool -> Flatten -> Gemm"),
        "the head is printed: {stdout}"
    );
    assert!(stdout.contains("6125390b7b55f37d"), "{stdout}");

    let bad_manifest = repo().join("tests/fixtures/models/head-unsupported.toml");
    let bad = Command::new(env!("CARGO_BIN_EXE_dermcam"))
        .current_dir(repo())
        .arg("check-model")
        .arg(&bad_manifest)
        .output()
        .expect("run dermcam");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{stderr}");
    assert!(stderr.contains("NOT SUPPORTED"), "{stderr}");
    assert!(
        stderr.contains(&bad_manifest.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("GlobalMaxPool"), "{stderr}");
    assert!(bad.stdout.is_empty() || !String::from_utf8_lossy(&bad.stdout).contains("OK:"));
}

/// At the end of a finite source the analysis of the last frame must reach the display:
/// otherwise the final `latest.png` of `dermcam run` over stills shows the last image with
/// no heatmap, or with an older image's, depending on thread timing.
#[test]

fn last_analysis_of_a_finite_source_is_shown() {
    use dermcam::capture::stills::Stills;
    let (mut analyzer, composer) = tiny_analyzer();
    for run in 0..10 {
        let mut source =
            Stills::open(&repo().join("recordings/stills"), Duration::ZERO, false).expect("stills");
        let mut sink = SeqSink::default();
        let counters = Counters::default();
        let stop = AtomicBool::new(false);
        let s = run_pipeline(
            &mut source,
            &mut analyzer,
            &composer,
            &mut sink,
            RunOptions::default(),
            &counters,
            &stop,
        )
        .expect("run");
        assert_eq!(s.counters.captured, 3);
        assert_eq!(
            sink.analysed_sequences.last(),
            Some(&2),
            "run {run}: the last still's analysis was never shown: {:?}",
            s.counters
        );
    }
}
