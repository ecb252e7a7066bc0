//! Zero heap allocations per frame in dermcam's own frame path, proved with a counting
//! global allocator.
//!
//! - The threaded loop (capture → convert → pool hand-over → preprocess → model → Grad-CAM →
//!   heatmap → blend → overlay drawing → sink) runs ≥ 500 composed frames after warm-up on
//!   YUYV, RGB24 and MJPEG recordings; every allocation on any thread in that window is
//!   counted. dermcam's bucket must be exactly 0. tract's run and the MJPEG decoder are
//!   charged to their own buckets and reported (not zero: tract allocates its outputs per
//!   run; zune-jpeg allocates per decode).
//! - A single-threaded pass attributes allocations to each stage and asserts each of
//!   dermcam's stages makes none.

mod common;

use std::sync::atomic::AtomicBool;

use common::repo;
use dermcam::alloc_count::{self, Bucket, CountingAlloc, Counts};
use dermcam::capture::recording::{Recording, ReplayOptions};
use dermcam::capture::{FrameSource, Poll};
use dermcam::compose::{Composer, Rates};
use dermcam::convert::Converter;
use dermcam::display::{DisplayError, FrameSink};
use dermcam::frame::RgbFrame;
use dermcam::heatmap::ColorMapKind;
use dermcam::model::Model;
use dermcam::pipeline::run::{run_pipeline, Counters, RunOptions};
use dermcam::pipeline::{Analysis, Analyzer, Stage, StageProbe};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The counters are process-wide: tests in this binary run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const WARMUP: u64 = 50;
const MEASURED: u64 = 500;

/// A sink that snapshots the allocation counters at the start and end of the measured window.
struct WindowSink {
    start: Option<Counts>,
    end: Option<Counts>,
    frames: u64,
    /// The display size (`None`: the camera frame's).
    size: Option<(u32, u32)>,
}

impl FrameSink for WindowSink {
    fn show(&mut self, _: &RgbFrame, _: Option<&Analysis>, index: u64) -> Result<(), DisplayError> {
        if index == WARMUP {
            self.start = Some(alloc_count::snapshot());
        }
        if index == WARMUP + MEASURED {
            self.end = Some(alloc_count::snapshot());
        }
        self.frames += 1;
        Ok(())
    }

    fn describe(&self) -> String {
        "window sink".into()
    }

    fn output_size(&self) -> Option<(u32, u32)> {
        self.size
    }
}

fn analyzer_for(source: &Recording) -> (Analyzer, Composer) {
    let model = Model::load(&repo().join("models/test/tiny-f32.toml")).expect("model");
    let labels = model.manifest().labels.clone();
    let f = source.header().format;
    let mut analyzer =
        Analyzer::new(model, f.width, f.height, 1.0, ColorMapKind::Jet, None).expect("analyzer");
    // As `dermcam run` configures it by default: the probabilities averaged over frames.
    analyzer.set_smoothing(Some(std::time::Duration::from_millis(200)));
    (analyzer, Composer::new(labels, 0.45, 0.5))
}

fn threaded_window(recording: &str, size: Option<(u32, u32)>) -> (Counts, u64) {
    let mut source = Recording::open(
        &repo().join(recording),
        ReplayOptions {
            realtime: false,
            looped: true,
        },
    )
    .expect("recording");
    let (mut analyzer, composer) = analyzer_for(&source);
    let mut sink = WindowSink {
        start: None,
        end: None,
        frames: 0,
        size,
    };
    let counters = Counters::default();
    let stop = AtomicBool::new(false);
    let options = RunOptions {
        frame_slots: 5,
        max_frames: None,
        status_every: std::time::Duration::from_secs(3600),
        ..RunOptions::default()
    };
    // Stop as soon as the window is measured.
    let summary = std::thread::scope(|s| {
        let h = s.spawn(|| {
            run_pipeline(
                &mut source,
                &mut analyzer,
                &composer,
                &mut sink,
                options,
                &counters,
                &stop,
            )
        });
        while counters.snapshot().composed <= WARMUP + MEASURED + 1 && !h.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        h.join().expect("join")
    })
    .expect("run");
    let (start, end) = (
        sink.start.expect("window start"),
        sink.end.expect("window end"),
    );
    assert!(summary.counters.composed > WARMUP + MEASURED);
    assert_eq!(summary.counters.corrupt, 0);
    (end.since(&start), summary.counters.analysed)
}

fn assert_threaded_zero(recording: &str, expect_decoder: bool) {
    assert_threaded_zero_at(recording, expect_decoder, None);
}

fn assert_threaded_zero_at(recording: &str, expect_decoder: bool, size: Option<(u32, u32)>) {
    let _serial = serial();
    let (d, analysed) = threaded_window(recording, size);
    eprintln!(
        "{recording}: over {MEASURED} composed frames: frame path {} allocations (dermcam, whole process {}), tract {} ({} analyses in the run), decoder {}",
        d.frame_path,
        d.get(Bucket::Dermcam),
        d.get(Bucket::Tract),
        analysed,
        d.get(Bucket::Decoder)
    );
    // Counted on the pipeline's capture, inference and compose threads only: the test
    // harness's own threads (reporting another test that just finished) allocate too.
    assert_eq!(
        d.frame_path, 0,
        "{recording}: dermcam's frame path allocated {} times ({} bytes) in {MEASURED} frames",
        d.frame_path, d.frame_path_bytes
    );
    assert!(
        d.get(Bucket::Tract) > 0,
        "tract's run must be counted (counter works)"
    );
    if !expect_decoder {
        assert_eq!(d.get(Bucket::Decoder), 0);
    }
}

#[test]
fn threaded_loop_allocates_nothing_per_frame_yuyv() {
    assert_threaded_zero("recordings/lesion-yuyv.dcrec", false);
}

/// The composer fits the 640x480 frames into a display of another size (scaling, bars,
/// overlay at display resolution): still nothing allocated per frame.
#[test]
fn threaded_loop_allocates_nothing_per_frame_on_a_1280x800_display() {
    assert_threaded_zero_at("recordings/lesion-yuyv.dcrec", false, Some((1280, 800)));
}

#[test]
fn threaded_loop_allocates_nothing_per_frame_rgb24() {
    assert_threaded_zero("recordings/lesion-rgb24.dcrec", false);
}

#[test]
fn threaded_loop_allocates_nothing_per_frame_mjpeg_decoder_reported_apart() {
    assert_threaded_zero("recordings/lesion-mjpeg.dcrec", true);
}

/// Snapshots counters around each stage.
struct AllocProbe {
    open: Option<u64>,
    per_stage: [u64; 6],
    record: bool,
}

impl StageProbe for AllocProbe {
    fn begin(&mut self, _: Stage) {
        self.open = Some(alloc_count::thread_dermcam_allocations());
    }
    fn end(&mut self, stage: Stage) {
        let now = alloc_count::thread_dermcam_allocations();
        if let (true, Some(open)) = (self.record, self.open.take()) {
            let i = Stage::ALL.iter().position(|s| *s == stage).expect("stage");
            self.per_stage[i] += now - open;
        }
    }
}

fn per_stage(recording: &str, size: Option<(u32, u32)>) -> [u64; 6] {
    let mut source = Recording::open(
        &repo().join(recording),
        ReplayOptions {
            realtime: false,
            looped: true,
        },
    )
    .expect("recording");
    let (mut analyzer, composer) = analyzer_for(&source);
    let f = source.header().format;
    let mut converter = Converter::new(f).expect("converter");
    let mut rgb = RgbFrame::new(f.width, f.height);
    let (ow, oh) = size.unwrap_or((f.width, f.height));
    composer.prepare(f.width, f.height, ow, oh);
    let mut out = RgbFrame::new(ow, oh);
    let mut analysis = analyzer.new_analysis();
    let mut probe = AllocProbe {
        open: None,
        per_stage: [0; 6],
        record: false,
    };
    for i in 0..(WARMUP + MEASURED) {
        probe.record = i >= WARMUP;
        let mut ok = false;
        let poll = source
            .poll_frame(std::time::Instant::now(), &mut |raw| {
                probe.begin(Stage::Convert);
                ok = converter.convert(&raw, &mut rgb).is_ok();
                probe.end(Stage::Convert);
            })
            .expect("poll");
        assert_eq!(poll, Poll::Frame);
        assert!(ok, "frame {i} converts");
        analyzer
            .analyze(&rgb, &mut analysis, &mut probe)
            .expect("analyze");
        probe.begin(Stage::Compose);
        composer
            .compose(&rgb, Some(&analysis), Rates::default(), &mut out)
            .expect("compose");
        probe.end(Stage::Compose);
    }
    probe.per_stage
}

fn assert_stages_zero(rec: &str) {
    assert_stages_zero_at(rec, None);
}

fn assert_stages_zero_at(rec: &str, size: Option<(u32, u32)>) {
    let _serial = serial();
    let counts = per_stage(rec, size);
    for (stage, n) in Stage::ALL.iter().zip(counts) {
        assert_eq!(
            n,
            0,
            "{rec}: stage {} allocated {n} times in {MEASURED} frames",
            stage.name()
        );
    }
}

#[test]
fn every_stage_allocates_nothing_yuyv() {
    assert_stages_zero("recordings/lesion-yuyv.dcrec");
}

#[test]
fn every_stage_allocates_nothing_on_320x240_and_800x480_displays() {
    assert_stages_zero_at("recordings/lesion-rgb24.dcrec", Some((320, 240)));
    assert_stages_zero_at("recordings/lesion-rgb24.dcrec", Some((800, 480)));
}

#[test]
fn every_stage_allocates_nothing_rgb24() {
    assert_stages_zero("recordings/lesion-rgb24.dcrec");
}

#[test]
fn every_stage_allocates_nothing_mjpeg() {
    assert_stages_zero("recordings/lesion-mjpeg.dcrec");
}

#[test]
fn the_frame_path_counter_counts_only_inside_frame_path() {
    let _serial = serial();
    let before = alloc_count::snapshot();
    let outside = std::hint::black_box(vec![1u8; 17]);
    let inside = alloc_count::frame_path(|| std::hint::black_box(vec![2u8; 23]));
    let d = alloc_count::snapshot().since(&before);
    assert_eq!((d.frame_path, d.frame_path_bytes), (1, 23));
    assert!(d.get(Bucket::Dermcam) >= 2, "both are dermcam's: {d:?}");
    drop((outside, inside));
}
