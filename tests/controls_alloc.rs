//! Freeze, save and unfreeze allocate nothing on dermcam's frame path: the counting
//! allocator over a window in which the screen is frozen, a record is saved (the record
//! thread encodes and writes in the output bucket, but copying the snapshot into its
//! buffers must not allocate) and the screen goes live again.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::repo;
use dermcam::alloc_count::{self, Bucket, CountingAlloc};
use dermcam::capture::recording::{Recording, ReplayOptions};
use dermcam::compose::{Composer, ScreenState};
use dermcam::controls::{Action, ControlBus};
use dermcam::display::{DisplayError, FrameSink};
use dermcam::frame::RgbFrame;
use dermcam::heatmap::ColorMapKind;
use dermcam::model::Model;
use dermcam::pipeline::run::{run_pipeline_with, Counters, RecordSetup, RunOptions, Services};
use dermcam::pipeline::{Analysis, Analyzer};
use dermcam::record::{RecordLimits, RecordStore};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Counts frames per state with atomics only (the sink must not allocate either).
struct StateSink<'a> {
    bus: &'a ControlBus,
    per_state: &'a [AtomicU64; 8],
}

impl FrameSink for StateSink<'_> {
    fn show(&mut self, _: &RgbFrame, _: Option<&Analysis>, _: u64) -> Result<(), DisplayError> {
        let state = self.bus.screen_state();
        if let Some(i) = ScreenState::ALL.iter().position(|s| *s == state) {
            self.per_state[i].fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "state sink".into()
    }
}

fn index(state: ScreenState) -> usize {
    ScreenState::ALL
        .iter()
        .position(|s| *s == state)
        .expect("state")
}

/// Waits without allocating (the test thread is counted too).
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > Duration::from_secs(120) {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn freeze_save_unfreeze_allocate_nothing_on_the_frame_path() {
    let tmp = common::temp_dir("controls-alloc");
    let mut source = Recording::open(
        &repo().join("recordings/lesion-mjpeg.dcrec"),
        ReplayOptions {
            realtime: false,
            looped: true,
        },
    )
    .expect("recording");
    let model = Model::load(&repo().join("models/test/tiny-f32.toml")).expect("model");
    let manifest = model.manifest().clone();
    let f = source.header().format;
    let mut analyzer =
        Analyzer::new(model, f.width, f.height, 1.0, ColorMapKind::Jet, None).expect("analyzer");
    let composer = Composer::new(manifest.labels.clone(), 0.45, 0.5);
    let bus = ControlBus::new();
    let per_state: [AtomicU64; 8] = Default::default();
    let mut sink = StateSink {
        bus: &bus,
        per_state: &per_state,
    };
    let mut store = RecordStore::open(tmp.path(), RecordLimits::default()).expect("store");
    let counters = Counters::default();
    let stop = AtomicBool::new(false);
    let n = |s: ScreenState| per_state[index(s)].load(Ordering::SeqCst);
    let window = std::thread::scope(|s| {
        let pipeline = s.spawn(|| {
            run_pipeline_with(
                &mut source,
                &mut analyzer,
                &composer,
                &mut sink,
                RunOptions {
                    status_every: Duration::from_secs(3600),
                    ..RunOptions::default()
                },
                &counters,
                &stop,
                Services {
                    controls: Some(&bus),
                    records: Some(RecordSetup {
                        store: &mut store,
                        manifest: &manifest,
                        board: "alloc-test",
                        device_id: "alloc-test",
                    }),
                    result_for: Duration::from_millis(300),
                    ..Services::default()
                },
            )
        });
        let _stop_on_panic = common::StopOnDrop(&stop);
        // Warm up live, then freeze once and unfreeze, so every path has run once.
        wait_until("warm-up", || counters.composed.load(Ordering::SeqCst) >= 60);
        bus.send(Action::ToggleFreeze);
        wait_until("first freeze", || n(ScreenState::Frozen) >= 2);
        bus.send(Action::ToggleFreeze);
        wait_until("live again", || {
            bus.screen_state() != ScreenState::Frozen
                && counters.composed.load(Ordering::SeqCst) >= 100
        });

        let start = alloc_count::snapshot();
        let live = n(ScreenState::Live) + n(ScreenState::LowConfidence);
        let frozen_before = n(ScreenState::Frozen);
        bus.send(Action::ToggleFreeze);
        // The frozen screen is drawn when it changes, then every STILL_SCREEN_REFRESH:
        // three draws take in both, and the Saved state is drawn once.
        wait_until("frozen", || n(ScreenState::Frozen) >= frozen_before + 3);
        bus.send(Action::Save);
        wait_until("saved", || n(ScreenState::Saved) >= 1);
        wait_until("frozen after saved", || {
            bus.screen_state() == ScreenState::Frozen
        });
        bus.send(Action::ToggleFreeze);
        wait_until("live after unfreeze", || {
            n(ScreenState::Live) + n(ScreenState::LowConfidence) >= live + 30
        });
        let end = alloc_count::snapshot();
        stop.store(true, Ordering::SeqCst);
        pipeline.join().expect("join").expect("pipeline");
        end.since(&start)
    });
    assert_eq!(counters.snapshot().saved, 1, "the record was saved");
    eprintln!(
        "freeze/save/unfreeze window: dermcam {} allocations, output {} (record thread, logs)",
        window.get(Bucket::Dermcam),
        window.get(Bucket::Output)
    );
    assert!(
        window.get(Bucket::Output) > 0,
        "the record was encoded in the output bucket (the counter works)"
    );
    assert_eq!(
        window.get(Bucket::Dermcam),
        0,
        "dermcam's frame path allocated {} times ({} bytes) while freezing, saving, unfreezing",
        window.get(Bucket::Dermcam),
        window.bytes[Bucket::Dermcam as usize]
    );
}
