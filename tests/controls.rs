//! Controls and records at run time:
//!
//! - the debounced button against a table of level/time sequences (bounces ignored, short
//!   vs long press, a button held at start-up), the save button, the LED patterns, the
//!   stdin commands;
//! - a mocked pin driving the real pipeline on the bundled recording with a capturing
//!   sink: a short press freezes (the sink gets the `Frozen` state and the same frame again
//!   and again, exactly the saved frame composed in that state), a long press saves a
//!   complete record and the sink shows `Saved`; a full disk (injected ENOSPC, and a real
//!   64 KiB tmpfs where one can be mounted) shows `DiskFull` and leaves no partial record;
//! - the `dermcam run` binary under a fake systemd: `READY=1`, `STATUS=`, `WATCHDOG=1`,
//!   a save from standard input, then SIGTERM: `STOPPING=1` and exit code 0.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::repo;
use dermcam::app::infer::{InferOptions, Inferrer};
use dermcam::capture::fault::{FaultConfig, FaultInjector};
use dermcam::capture::recording::{Recording, ReplayOptions};
use dermcam::capture::v4l2::{Backoff, Steady, SuperviseOptions, Supervised};
use dermcam::capture::FrameSource;
use dermcam::compose::{Composer, Rates, ScreenState};
use dermcam::controls::{
    parse_command, run_controls, Action, Button, ButtonInput, ButtonRole, ButtonTiming, ControlBus,
    LedMode, PinControls, PinLabel, StatusLed,
};
use dermcam::display::{DisplayError, FrameSink};
use dermcam::frame::RgbFrame;
use dermcam::heatmap::ColorMapKind;
use dermcam::model::Model;
use dermcam::pipeline::run::{
    run_pipeline_with, Counters, RecordSetup, RunOptions, Services, STILL_SCREEN_REFRESH,
};
use dermcam::pipeline::{Analysis, Analyzer};
use dermcam::record::{
    Fault, RecordLimits, RecordStore, CAM_FILE, FRAME_FILE, OVERLAY_FILE, RECORD_FILE,
};
use embedded_hal::digital::{ErrorType, InputPin, OutputPin};

// ---------------------------------------------------------------------------------------
// The debouncer, as a pure state machine.

const TIMING: ButtonTiming = ButtonTiming {
    debounce: Duration::from_millis(30),
    long_press: Duration::from_millis(1500),
};

/// Feeds a button a level every millisecond for `until_ms`, the level being given by
/// `pressed_during` (half-open intervals in ms); returns the actions with their times.
fn drive(role: ButtonRole, pressed_during: &[(u64, u64)], until_ms: u64) -> Vec<(u64, Action)> {
    let t0 = Instant::now();
    let mut b = Button::new(role, TIMING);
    let mut out = Vec::new();
    for ms in 0..=until_ms {
        let level = pressed_during.iter().any(|&(a, z)| (a..z).contains(&ms));
        if let Some(action) = b.update(level, t0 + Duration::from_millis(ms)) {
            out.push((ms, action));
        }
    }
    out
}

/// One row: what, role, pressed intervals (ms), expected (ms, action).
type Case = (
    &'static str,
    ButtonRole,
    Vec<(u64, u64)>,
    Vec<(u64, Action)>,
);

#[test]
fn debouncer_table() {
    use Action::{Save, ToggleFreeze};
    use ButtonRole::{FreezeAndSave, Save as SaveButton};
    // (what, role, pressed intervals, expected (ms, action)); debounce 30 ms, long 1500 ms.
    // A level counts once it has held 30 ms: a press at 100 is seen at 130, a release at
    // 400 at 430 (where the short press fires); a long press fires at start + 1500.
    let table: Vec<Case> = vec![
        ("nothing", FreezeAndSave, vec![], vec![]),
        (
            "clean short press",
            FreezeAndSave,
            vec![(100, 400)],
            vec![(430, ToggleFreeze)],
        ),
        (
            "bouncing contacts on press and release",
            FreezeAndSave,
            vec![(100, 103), (105, 107), (110, 400), (404, 406), (409, 411)],
            // The press is stable from 110 (seen at 140); the last bounce ends at 411.
            vec![(441, ToggleFreeze)],
        ),
        (
            "glitch shorter than the debounce time",
            FreezeAndSave,
            vec![(100, 125), (300, 320)],
            vec![],
        ),
        (
            "long press fires while held, once, and not again on release",
            FreezeAndSave,
            vec![(100, 2500)],
            vec![(1600, Save)],
        ),
        (
            "just under the long press is a short press",
            FreezeAndSave,
            vec![(100, 1590)],
            vec![(1620, ToggleFreeze)],
        ),
        (
            "two short presses",
            FreezeAndSave,
            vec![(100, 200), (500, 600)],
            vec![(230, ToggleFreeze), (630, ToggleFreeze)],
        ),
        (
            "held at start-up: ignored until released and pressed again",
            FreezeAndSave,
            vec![(0, 2000), (2500, 2600)],
            vec![(2630, ToggleFreeze)],
        ),
        (
            "save button: every press saves, on press",
            SaveButton,
            vec![(100, 300), (302, 304), (1000, 4000)],
            vec![(130, Save), (1030, Save)],
        ),
    ];
    for (what, role, pressed, expected) in table {
        assert_eq!(drive(role, &pressed, 5000), expected, "{what}");
    }
}

#[test]
fn sparse_samples_still_debounce() {
    // A poller that samples every 20 ms: the press is seen at the second pressed sample.
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut b = Button::new(ButtonRole::FreezeAndSave, TIMING);
    assert_eq!(b.update(false, at(0)), None);
    assert_eq!(b.update(true, at(20)), None);
    assert!(!b.is_pressed());
    assert_eq!(b.update(true, at(40)), None, "20 ms < debounce");
    assert_eq!(b.update(true, at(60)), None);
    assert!(b.is_pressed(), "held 40 ms");
    assert_eq!(b.update(false, at(80)), None);
    assert_eq!(b.update(false, at(120)), Some(Action::ToggleFreeze));
}

#[test]
fn led_patterns() {
    let ms = Duration::from_millis;
    for t in [0, 100, 249, 250, 999, 60_000] {
        assert!(LedMode::Ready.level(ms(t)), "ready is steady on");
        assert!(!LedMode::Off.level(ms(t)));
    }
    let working: Vec<bool> = [0, 249, 250, 499, 500]
        .map(|t| LedMode::Working.level(ms(t)))
        .into();
    assert_eq!(working, [true, true, false, false, true]);
    let error: Vec<bool> = [0, 82, 83, 165, 166]
        .map(|t| LedMode::Error.level(ms(t)))
        .into();
    assert_eq!(error, [true, true, false, false, true]);
}

#[test]
fn stdin_commands() {
    assert_eq!(parse_command("f\n"), Some(Action::ToggleFreeze));
    assert_eq!(parse_command("  S "), Some(Action::Save));
    assert_eq!(parse_command("quit"), Some(Action::Quit));
    assert_eq!(parse_command("x"), None);
    assert_eq!(parse_command(""), None);
}

// ---------------------------------------------------------------------------------------
// Mock pins.

/// A pin whose level the test sets (input) or reads back (output, with every write kept).
#[derive(Clone, Default)]
struct MockPin {
    level: Arc<AtomicBool>,
    writes: Arc<Mutex<Vec<bool>>>,
}

impl MockPin {
    fn set(&self, high: bool) {
        self.level.store(high, Ordering::SeqCst);
    }
    fn writes(&self) -> Vec<bool> {
        self.writes.lock().expect("writes").clone()
    }
}

impl ErrorType for MockPin {
    type Error = Infallible;
}

impl InputPin for MockPin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.level.load(Ordering::SeqCst))
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.level.load(Ordering::SeqCst))
    }
}

impl OutputPin for MockPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.writes.lock().expect("writes").push(false);
        self.set(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.writes.lock().expect("writes").push(true);
        self.set(true);
        Ok(())
    }
}

fn label(line: u32, role: &'static str) -> PinLabel {
    PinLabel {
        chip: PathBuf::from("/dev/gpiochip0"),
        line,
        role,
    }
}

#[test]
fn pin_label_names_chip_line_and_role() {
    assert_eq!(
        label(17, "button").to_string(),
        "/dev/gpiochip0 line 17 (button)"
    );
}

#[test]
fn mock_pins_drive_the_bus_and_the_led() {
    let (button, led) = (MockPin::default(), MockPin::default());
    let mut controls = PinControls {
        button: Some(ButtonInput::new(
            button.clone(),
            label(17, "button"),
            ButtonRole::FreezeAndSave,
            TIMING,
        )),
        save: None,
        led: Some(StatusLed::new(led.clone(), label(22, "led"))),
    };
    let bus = ControlBus::new();
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    bus.set_led_mode(LedMode::Ready);
    controls.poll(&bus, at(0)).expect("poll");
    button.set(true);
    for ms in [10, 50, 100] {
        controls.poll(&bus, at(ms)).expect("poll");
    }
    button.set(false);
    for ms in [110, 150] {
        controls.poll(&bus, at(ms)).expect("poll");
    }
    assert_eq!((bus.toggles(), bus.saves()), (1, 0));
    assert_eq!(led.writes(), [true], "ready: lit once, never rewritten");
    bus.set_led_mode(LedMode::Error);
    for ms in [200, 250, 290, 300] {
        controls.poll(&bus, at(ms)).expect("poll");
    }
    // Error starts lit at 200, off at 283..366: samples 250 (on), 290 (off), 300 (off).
    assert_eq!(led.writes(), [true, false]);
}

// ---------------------------------------------------------------------------------------
// The real pipeline, driven by a mocked pin.

/// What the capturing sink saw of one composed frame.
#[derive(Clone)]
struct Seen {
    state: ScreenState,
    hash: u64,
    sequence: u64,
    probabilities: Option<Vec<f32>>,
}

#[derive(Default)]
struct Log {
    seen: Vec<Seen>,
    /// The last frame shown in the `Frozen` state.
    frozen: Option<RgbFrame>,
}

/// Records the state (from the bus), a hash of the pixels and the analysis of every frame.
struct CapturingSink {
    bus: Arc<ControlBus>,
    log: Arc<Mutex<Log>>,
}

impl FrameSink for CapturingSink {
    fn show(
        &mut self,
        frame: &RgbFrame,
        analysis: Option<&Analysis>,
        _index: u64,
    ) -> Result<(), DisplayError> {
        let mut h = DefaultHasher::new();
        frame.data().hash(&mut h);
        let state = self.bus.screen_state();
        let mut log = self.log.lock().expect("log");
        if state == ScreenState::Frozen {
            log.frozen = Some(frame.clone());
        }
        log.seen.push(Seen {
            state,
            hash: h.finish(),
            sequence: frame.sequence,
            probabilities: analysis.map(|a| a.probabilities.clone()),
        });
        Ok(())
    }

    fn describe(&self) -> String {
        "capturing sink".into()
    }
}

const PIPE_TIMING: ButtonTiming = ButtonTiming {
    debounce: Duration::from_millis(20),
    long_press: Duration::from_millis(1000),
};

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn visible(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    v.sort();
    v
}

/// A harness: the pipeline on the looping bundled recording with the tiny model, a
/// capturing sink, a mocked button polled by the real controls loop, records in `dir`.
struct Harness {
    button: MockPin,
    bus: Arc<ControlBus>,
    log: Arc<Mutex<Log>>,
    labels: Vec<dermcam::model::Label>,
}

impl Harness {
    fn seen(&self) -> Vec<Seen> {
        self.log.lock().expect("log").seen.clone()
    }

    fn press(&self, hold: Duration) {
        self.button.set(true);
        std::thread::sleep(hold);
        self.button.set(false);
    }

    fn count(&self, state: ScreenState) -> usize {
        self.seen().iter().filter(|s| s.state == state).count()
    }
}

fn recording() -> Recording {
    Recording::open(
        &repo().join("recordings/lesion-mjpeg.dcrec"),
        ReplayOptions {
            realtime: true,
            looped: true,
        },
    )
    .expect("recording")
}

/// Runs `script` against the pipeline on the looping recording with records in `records`
/// (a store opened there, given to `prepare` first), then stops the pipeline.
fn with_pipeline(
    records: &Path,
    prepare: impl FnOnce(&mut RecordStore),
    script: impl FnOnce(&Harness),
) {
    with_source(&mut recording(), records, prepare, script)
}

/// [`with_pipeline`] on any source.
fn with_source(
    source: &mut dyn FrameSource,
    records: &Path,
    prepare: impl FnOnce(&mut RecordStore),
    script: impl FnOnce(&Harness),
) {
    let model = Model::load(&repo().join("models/test/tiny-f32.toml")).expect("model");
    let manifest = model.manifest().clone();
    let f = source.format();
    let mut analyzer =
        Analyzer::new(model, f.width, f.height, 1.0, ColorMapKind::Jet, None).expect("analyzer");
    // As `dermcam run` does by default: the screen shows probabilities averaged over frames.
    analyzer.set_smoothing(Some(Duration::from_millis(200)));
    let composer = Composer::new(manifest.labels.clone(), 0.45, 0.5);
    let bus = Arc::new(ControlBus::new());
    let log = Arc::new(Mutex::new(Log::default()));
    let mut sink = CapturingSink {
        bus: Arc::clone(&bus),
        log: Arc::clone(&log),
    };
    let mut store = RecordStore::open(records, RecordLimits::default()).expect("store");
    prepare(&mut store);
    let button = MockPin::default();
    let harness = Harness {
        button: button.clone(),
        bus: Arc::clone(&bus),
        log,
        labels: manifest.labels.clone(),
    };
    let counters = Counters::default();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let controls = PinControls::<MockPin, MockPin> {
            button: Some(ButtonInput::new(
                button,
                label(17, "button"),
                ButtonRole::FreezeAndSave,
                PIPE_TIMING,
            )),
            save: None,
            led: None,
        };
        let stop = &stop;
        let bus_ref = &*bus;
        s.spawn(move || run_controls(controls, bus_ref, stop, Duration::from_millis(2)));
        let pipeline = s.spawn(|| {
            run_pipeline_with(
                source,
                &mut analyzer,
                &composer,
                &mut sink,
                RunOptions {
                    status_every: Duration::from_secs(3600),
                    ..RunOptions::default()
                },
                &counters,
                stop,
                Services {
                    controls: Some(&bus),
                    records: Some(RecordSetup {
                        store: &mut store,
                        manifest: &manifest,
                        board: "test-board",
                        device_id: "test-device",
                    }),
                    result_for: Duration::from_millis(1500),
                    ..Services::default()
                },
            )
        });
        let _stop_on_panic = common::StopOnDrop(stop);
        wait_for("the first analysed frames", || {
            counters.snapshot().analysed >= 3 && counters.snapshot().composed >= 5
        });
        script(&harness);
        stop.store(true, Ordering::SeqCst);
        pipeline.join().expect("join").expect("pipeline");
    });
}

#[test]
fn mocked_button_freezes_and_saves_through_the_real_pipeline() {
    let tmp = common::temp_dir("controls-pipeline");
    let records = tmp.path().join("records");
    with_pipeline(
        &records,
        |_| {},
        |h| {
            assert_eq!(h.bus.screen_state(), ScreenState::Live);
            // Short press: frozen.
            h.press(Duration::from_millis(120));
            wait_for("Frozen frames", || h.count(ScreenState::Frozen) >= 3);
            // While frozen the unchanged screen is redrawn every STILL_SCREEN_REFRESH, not
            // for every camera frame (15 a second here): at most one redraw per period.
            let (t0, c0) = (Instant::now(), h.count(ScreenState::Frozen));
            wait_for("Frozen redraws", || h.count(ScreenState::Frozen) >= c0 + 6);
            let redraws = h.count(ScreenState::Frozen) - c0;
            let periods = t0.elapsed().as_secs_f64() / STILL_SCREEN_REFRESH.as_secs_f64();
            assert!(
                redraws as f64 <= periods + 2.0,
                "{redraws} frozen redraws in {periods:.1} refresh periods"
            );
            let seen = h.seen();
            let frozen: Vec<&Seen> = seen
                .iter()
                .filter(|s| s.state == ScreenState::Frozen)
                .collect();
            assert!(
                frozen.windows(2).all(|w| w[0].hash == w[1].hash
                    && w[0].sequence == w[1].sequence
                    && w[0].probabilities == w[1].probabilities),
                "a frozen screen shows the very same frame and analysis every time"
            );
            let live_before: Vec<&Seen> = seen
                .iter()
                .take_while(|s| s.state != ScreenState::Frozen)
                .collect();
            assert!(
                live_before.windows(2).any(|w| w[0].hash != w[1].hash),
                "the live screen changed before the freeze"
            );
            let frozen_seq = frozen[0].sequence;
            let frozen_probs = frozen[0].probabilities.clone().expect("analysis shown");

            // Long press: a record of the frozen frame, and the Saved state.
            h.press(Duration::from_millis(1600));
            wait_for("Saved", || h.count(ScreenState::Saved) >= 1);
            let names = visible(&records);
            assert_eq!(names.len(), 1, "one record: {names:?}");
            let dir = records.join(&names[0]);
            assert_eq!(
                visible(&dir),
                [CAM_FILE, FRAME_FILE, OVERLAY_FILE, RECORD_FILE]
            );
            let rec: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join(RECORD_FILE)).expect("read"))
                    .expect("record.json");
            assert_eq!(rec["frame"]["sequence"].as_u64(), Some(frozen_seq));
            assert_eq!(rec["board"], "test-board");
            assert_eq!(rec["device_id"], "test-device");
            for (l, p) in h.labels.iter().zip(&frozen_probs) {
                let saved = rec["probabilities"][&l.id].as_f64().expect("probability");
                assert!((saved - *p as f64).abs() < 1e-6, "{}: {saved} vs {p}", l.id);
            }
            // The frame's own probabilities, as `dermcam infer` computes them from the saved
            // frame: the record can be checked without the frames before it.
            let model = Model::load(&repo().join("models/test/tiny-f32.toml")).expect("model");
            let mut inferrer = Inferrer::new(model, InferOptions::default()).expect("inferrer");
            let again = inferrer
                .infer(&dir.join(FRAME_FILE))
                .expect("infer frame.png");
            for (id, p) in &again.probabilities {
                let own = rec["frame_probabilities"][id]
                    .as_f64()
                    .expect("frame probability");
                assert!(
                    (own - f64::from(*p)).abs() < 1e-6,
                    "{id}: record {own}, infer {p}"
                );
            }
            // The frozen screen is exactly the saved frame and analysis composed in the
            // Frozen state (an independent composition from the record's files).
            let frame_png = image::open(dir.join(FRAME_FILE))
                .expect("frame.png")
                .to_rgb8();
            let mut saved_frame = RgbFrame::new(frame_png.width(), frame_png.height());
            saved_frame.data_mut().copy_from_slice(frame_png.as_raw());
            let cam: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join(CAM_FILE)).expect("cam"))
                    .expect("cam.json");
            assert_eq!(
                cam["values"].as_array().expect("values").len(),
                rec["cam"]["width"].as_u64().expect("w") as usize
                    * rec["cam"]["height"].as_u64().expect("h") as usize
            );
            let shown = h
                .log
                .lock()
                .expect("log")
                .frozen
                .clone()
                .expect("frozen frame");
            let mut h2 = DefaultHasher::new();
            shown.data().hash(&mut h2);
            assert_eq!(h2.finish(), frozen[0].hash);
            assert_eq!(shown.sequence, frozen_seq);
            // The frozen frame's pixels outside the overlay bands equal the saved frame's
            // blended with the heatmap; the record's overlay.png is that same composition in
            // the Live state, so the two differ only where the badge is drawn.
            let overlay = image::open(dir.join(OVERLAY_FILE))
                .expect("overlay")
                .to_rgb8();
            let differing = overlay
                .as_raw()
                .chunks_exact(3)
                .zip(shown.data().chunks_exact(3))
                .filter(|(a, b)| a != b)
                .count();
            let total = (shown.width() * shown.height()) as usize;
            assert!(
                differing > 0 && differing < total / 20,
                "frozen screen vs saved overlay: {differing} of {total} pixels differ (the FROZEN badge only)"
            );

            // The Saved banner goes away and the screen is frozen again; a short press goes
            // live again.
            wait_for("Frozen after Saved", || {
                h.seen()
                    .last()
                    .is_some_and(|s| s.state == ScreenState::Frozen)
                    && h.count(ScreenState::Saved) > 0
            });
            h.press(Duration::from_millis(120));
            wait_for("Live again", || {
                let seen = h.seen();
                let n = seen.len();
                n > 3 && seen[n - 3..].iter().all(|s| s.state == ScreenState::Live)
            });
        },
    );
}

#[test]
fn a_lost_camera_shows_no_camera_until_it_is_back() {
    let tmp = common::temp_dir("controls-nocamera");
    // Disconnects now and then; each keeps the camera away for 6 reconnect attempts, 60 to
    // 120 ms apart: long enough for the no-camera screen (redrawn every 500 ms at least once).
    let faults = FaultConfig {
        seed: 7,
        disconnect: 0.01,
        disconnect_polls: 6,
        ..FaultConfig::default()
    };
    let options = SuperviseOptions {
        reconnect: Backoff {
            initial: Duration::from_millis(60),
            max: Duration::from_millis(120),
        },
        ..SuperviseOptions::default()
    };
    let mut source = Supervised::new(FaultInjector::new(Steady(recording()), faults), options);
    with_source(
        &mut source,
        &tmp.path().join("records"),
        |_| {},
        |h| {
            wait_for("NoCamera after live frames, then live again", || {
                let seen = h.seen();
                let first_live = seen.iter().position(|s| s.state == ScreenState::Live);
                let no_camera = first_live.and_then(|i| {
                    seen[i..]
                        .iter()
                        .position(|s| s.state == ScreenState::NoCamera)
                        .map(|j| i + j)
                });
                no_camera.is_some_and(|k| seen[k..].iter().any(|s| s.state == ScreenState::Live))
            });
            let seen = h.seen();
            let blank = seen
                .iter()
                .find(|s| s.state == ScreenState::NoCamera)
                .expect("no camera");
            assert!(
                blank.probabilities.is_none(),
                "no analysis without a camera"
            );
        },
    );
}

#[test]
fn injected_disk_full_shows_the_error_and_leaves_no_partial_record() {
    let tmp = common::temp_dir("controls-enospc");
    let records = tmp.path().join("records");
    with_pipeline(
        &records,
        |store| store.inject_fault(Fault::EnospcOnFile(2)),
        |h| {
            // Long press while live: the next analysed frame is saved.
            h.press(Duration::from_millis(1600));
            wait_for("DiskFull", || h.count(ScreenState::DiskFull) >= 1);
            assert_eq!(h.count(ScreenState::Saved), 0);
            assert!(visible(&records).is_empty(), "{:?}", visible(&records));
        },
    );
}

/// A real full disk: a 64 KiB tmpfs (needs root and mount; skipped otherwise).
#[test]
fn full_tmpfs_shows_disk_full_and_leaves_no_partial_record() {
    let tmp = common::temp_dir("controls-tmpfs");
    let Some(tmpfs) = common::Tmpfs::mount(tmp.path(), "64k") else {
        return;
    };
    let mnt = &tmpfs.path;
    with_pipeline(
        mnt,
        |_| {},
        |h| {
            h.press(Duration::from_millis(1600));
            wait_for("DiskFull", || h.count(ScreenState::DiskFull) >= 1);
            assert_eq!(h.count(ScreenState::Saved), 0);
            assert!(visible(mnt).is_empty(), "{:?}", visible(mnt));
        },
    );
}

// ---------------------------------------------------------------------------------------
// The binary under a fake systemd.

#[test]
fn dermcam_run_notifies_systemd_saves_from_stdin_and_stops_on_sigterm() {
    let tmp = common::temp_dir("controls-notify");
    let socket_path = tmp.path().join("notify.sock");
    let listener = UnixDatagram::bind(&socket_path).expect("bind");
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let records = tmp.path().join("records");
    let config = tmp.path().join("dermcam.toml");
    std::fs::write(
        &config,
        format!(
            "[board]\nname = \"test\"\n\n[source]\nkind = \"recording\"\npath = {:?}\nrealtime = true\nloop = true\n\n[model]\nmanifest = {:?}\n\n[display]\nkind = \"null\"\n\n[records]\ndir = {:?}\ndevice_id = \"notify-test\"\n",
            repo().join("recordings/lesion-mjpeg.dcrec"),
            repo().join("models/test/tiny-f32.toml"),
            records,
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dermcam"))
        .args(["run", "--controls", "stdin", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dermcam run");
    let mut messages: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut receive = |messages: &mut Vec<String>| {
        if let Ok(n) = listener.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    };
    let start = Instant::now();
    let has = |messages: &[String], prefix: &str| {
        messages
            .iter()
            .any(|m| m.lines().any(|l| l.starts_with(prefix)))
    };
    while !(has(&messages, "READY=1") && has(&messages, "WATCHDOG=1") && has(&messages, "STATUS="))
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no READY/WATCHDOG/STATUS from dermcam run: {messages:?}"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "dermcam run exited early"
        );
        receive(&mut messages);
    }
    // A save from standard input.
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"s\n")
        .expect("write s");
    let start = Instant::now();
    while finished_records(&records).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no record saved"
        );
        receive(&mut messages);
    }
    // A record gets its name only once complete (atomic rename of its `.tmp-*` folder).
    let names = finished_records(&records);
    assert_eq!(names.len(), 1);
    assert_eq!(
        visible(&records.join(&names[0])),
        [CAM_FILE, FRAME_FILE, OVERLAY_FILE, RECORD_FILE]
    );

    // SAFETY: kill(2) on the pid of our own child.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(r, 0);
    let start = Instant::now();
    let status = loop {
        receive(&mut messages);
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "dermcam run did not stop on SIGTERM"
        );
    };
    while listener
        .recv(&mut buf)
        .map(|n| messages.push(String::from_utf8_lossy(&buf[..n]).into_owned()))
        .is_ok()
    {}
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{stderr}"
    );
    assert!(has(&messages, "STOPPING=1"), "{messages:?}");
    assert!(
        stderr.contains("done:"),
        "final status line; stderr:\n{stderr}"
    );
    assert!(stderr.contains("1 records saved"), "stderr:\n{stderr}");
    let status_line = messages
        .iter()
        .flat_map(|m| m.lines())
        .find(|l| l.starts_with("STATUS="))
        .expect("status");
    assert!(status_line.contains("composed"), "{status_line}");
    assert!(
        !visible_or_empty(&records)
            .iter()
            .any(|n| n.starts_with('.')),
        "no partial record"
    );
}

fn visible_or_empty(dir: &Path) -> Vec<String> {
    if dir.is_dir() {
        visible(dir)
    } else {
        Vec::new()
    }
}

/// The records a user would see in `dir`: not the hidden `.tmp-*` folder of a save still
/// being written.
fn finished_records(dir: &Path) -> Vec<String> {
    let mut names = visible_or_empty(dir);
    names.retain(|n| !n.starts_with(dermcam::record::TMP_PREFIX));
    names
}

#[test]
fn composing_the_frozen_state_is_deterministic() {
    // The frozen screen is drawn without rates, so the same snapshot gives the same pixels.
    let labels = vec![dermcam::model::Label {
        id: "a".into(),
        name: "A".into(),
    }];
    let composer = Composer::new(labels, 0.45, 0.5);
    let frame = RgbFrame::new(64, 48);
    let crop = dermcam::preprocess::centre_square_crop(64, 48, 1.0);
    let mut a = Analysis::new(1, 2, 2, crop);
    a.probabilities[0] = 1.0;
    let (mut x, mut y) = (RgbFrame::new(64, 48), RgbFrame::new(64, 48));
    for out in [&mut x, &mut y] {
        composer
            .compose_with_state(&frame, Some(&a), Rates::default(), ScreenState::Frozen, out)
            .expect("compose");
    }
    assert_eq!(x.data(), y.data());
}

// ---------------------------------------------------------------------------------------
// `[controls]` and `[records]` configuration.

#[test]
fn desktop_board_has_working_controls_and_records_defaults() {
    let cfg = dermcam::config::Config::load(Some(&repo().join("boards/desktop.toml")), None)
        .expect("desktop board");
    assert!(!cfg.controls.uses_gpio(), "no GPIO on a desktop");
    assert!(!cfg.controls.stdin, "stdin controls only when asked");
    assert_eq!(cfg.controls.timing(), ButtonTiming::default());
    assert!(
        cfg.records.dir.ends_with("out/records"),
        "{:?}",
        cfg.records.dir
    );
    assert_eq!(cfg.records.limits().max_records, Some(200));
    let defaults = dermcam::config::Config::default();
    assert_eq!(defaults.records.dir, PathBuf::from("out/records"));
    assert_eq!(defaults.records.limits(), RecordLimits::default());
}

#[test]
fn controls_and_records_config_errors_name_the_key() {
    let err = |text: &str| {
        dermcam::config::Config::parse(text, "test.toml")
            .expect_err(text)
            .to_string()
    };
    let ok = dermcam::config::Config::parse(
        "[controls]\nbutton_line = 17\nsave_line = 27\nled_line = 22\nactive_low = false\nlong_press_ms = 800\ndebounce_ms = 10\n[records]\ndir = \"/var/lib/dermcam\"\nmax_count = 10\nmax_bytes = 1000000\ndevice_id = \"derm-01\"\n",
        "test.toml",
    )
    .expect("valid");
    assert_eq!(ok.controls.button_line, Some(17));
    assert!(ok.controls.uses_gpio());
    assert_eq!(
        ok.controls.timing(),
        ButtonTiming {
            debounce: Duration::from_millis(10),
            long_press: Duration::from_millis(800)
        }
    );
    assert_eq!(ok.records.limits().max_bytes, Some(1_000_000));
    for (text, key) in [
        ("[controls]\nlong_press_ms = 50\n", "controls.long_press_ms"),
        ("[controls]\ndebounce_ms = 900\n", "controls.debounce_ms"),
        (
            "[controls]\nlong_press_ms = 200\ndebounce_ms = 200\n",
            "controls.debounce_ms",
        ),
        (
            "[controls]\nbutton_line = 17\nled_line = 17\n",
            "controls.led_line",
        ),
        ("[records]\nmax_count = 0\n", "records.max_count"),
        ("[records]\nmax_bytes = 0\n", "records.max_bytes"),
        ("[records]\ndevice_id = \" \"\n", "records.device_id"),
        ("[controls]\nbutton = 17\n", "button"),
        ("[records]\nkeep = 3\n", "keep"),
    ] {
        let e = err(text);
        assert!(e.contains(key), "{text:?}: {e}");
    }
    // A line on another chip is another line.
    dermcam::config::Config::parse(
        "[controls]\nbutton_line = 17\nled_chip = \"/dev/gpiochip1\"\nled_line = 17\n",
        "test.toml",
    )
    .expect("same offset on another chip");
}

#[test]
fn a_missing_gpio_chip_is_an_error_naming_chip_line_and_role() {
    let e = dermcam::controls::open_input(Path::new("/dev/gpiochip-none"), 17, true, "button")
        .map(drop)
        .expect_err("no such chip");
    let text = e.to_string();
    assert!(
        text.starts_with("/dev/gpiochip-none line 17 (button): "),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// The watchdog rule in the real pipeline.

/// A sink that blocks inside `show` while `hold` is set (a stuck display or compose thread).
struct StuckSink<'a> {
    hold: &'a AtomicBool,
    stuck: &'a AtomicBool,
}

impl FrameSink for StuckSink<'_> {
    fn show(&mut self, _: &RgbFrame, _: Option<&Analysis>, _: u64) -> Result<(), DisplayError> {
        while self.hold.load(Ordering::SeqCst) {
            self.stuck.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stuck.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn describe(&self) -> String {
        "stuck sink".into()
    }
}

#[test]
fn a_stuck_compose_thread_stops_the_watchdog_pings() {
    let tmp = common::temp_dir("controls-watchdog");
    let socket_path = tmp.path().join("notify.sock");
    let listener = UnixDatagram::bind(&socket_path).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let drain = || {
        let mut buf = [0u8; 4096];
        let mut pings = 0;
        while let Ok(n) = listener.recv(&mut buf) {
            pings += String::from_utf8_lossy(&buf[..n])
                .lines()
                .filter(|l| *l == "WATCHDOG=1")
                .count();
        }
        pings
    };
    // WATCHDOG_USEC = 200 ms: a ping every 100 ms while the pipeline makes progress.
    let notifier =
        dermcam::service::Notifier::from_values(socket_path.to_str(), Some("200000"), None)
            .expect("notifier");
    let mut source = recording();
    let model = Model::load(&repo().join("models/test/tiny-f32.toml")).expect("model");
    let labels = model.manifest().labels.clone();
    let f = source.format();
    let mut analyzer =
        Analyzer::new(model, f.width, f.height, 1.0, ColorMapKind::Jet, None).expect("analyzer");
    let composer = Composer::new(labels, 0.45, 0.5);
    let (hold, stuck, stop) = (
        AtomicBool::new(false),
        AtomicBool::new(false),
        AtomicBool::new(false),
    );
    let mut sink = StuckSink {
        hold: &hold,
        stuck: &stuck,
    };
    let counters = Counters::default();
    std::thread::scope(|s| {
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
                    notifier: Some(&notifier),
                    ..Services::default()
                },
            )
        });
        let _stop_on_panic = common::StopOnDrop(&stop);
        let mut before = 0;
        wait_for("pings while frames are composed", || {
            before += drain();
            before >= 3
        });
        hold.store(true, Ordering::SeqCst);
        wait_for("the sink to block", || stuck.load(Ordering::SeqCst));
        // At most the period in which it blocked may still ping; give it 5 periods.
        std::thread::sleep(Duration::from_millis(500));
        drain();
        std::thread::sleep(Duration::from_millis(1000));
        let while_stuck = drain();
        assert_eq!(while_stuck, 0, "pings while the compose thread was stuck");
        hold.store(false, Ordering::SeqCst);
        let mut after = 0;
        wait_for("pings again once unstuck", || {
            after += drain();
            after >= 2
        });
        stop.store(true, Ordering::SeqCst);
        pipeline.join().expect("join").expect("pipeline");
    });
}
