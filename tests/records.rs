//! Screening records: atomic folders, permissions, hashes, retention, crash safety and a
//! full disk.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dermcam::frame::RgbFrame;
use dermcam::model::manifest::sha256_hex;
use dermcam::model::Manifest;
use dermcam::pipeline::Analysis;
use dermcam::preprocess::CropRect;
use dermcam::record::{
    format_utc, Fault, RecordError, RecordInput, RecordLimits, RecordStore, CAM_FILE, FRAME_FILE,
    NOTICE, OVERLAY_FILE, RECORD_FILE,
};

const CHILD_ENV: &str = "DERMCAM_RECORDS_CHILD_DIR";

fn manifest() -> Manifest {
    Manifest::load(&common::repo().join("models/test/tiny-f32.toml")).expect("manifest")
}

fn frame(width: u32, height: u32, seed: u32) -> RgbFrame {
    let mut f = RgbFrame::new(width, height);
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for b in f.data_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x >> 24) as u8;
    }
    f.sequence = seed as u64;
    f
}

fn analysis() -> Analysis {
    let crop = CropRect {
        x: 8,
        y: 0,
        width: 48,
        height: 48,
    };
    let mut a = Analysis::new(7, 5, 5, crop);
    a.probabilities = vec![0.05, 0.1, 0.02, 0.03, 0.6, 0.15, 0.05];
    // This frame alone (the shown probabilities are averaged over frames).
    a.frame_probabilities = vec![0.1, 0.1, 0.02, 0.03, 0.4, 0.3, 0.05];
    a.class = 5;
    for (i, v) in a.cam.iter_mut().enumerate() {
        *v = i as f32 / 24.0;
    }
    a.cam_raw_max = 3.5;
    a
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Saves one record of `w x h` frames at `secs`.
fn save(
    store: &mut RecordStore,
    m: &Manifest,
    w: u32,
    h: u32,
    secs: u64,
) -> Result<dermcam::record::SavedRecord, RecordError> {
    let (f, o, a) = (
        frame(w, h, secs as u32),
        frame(w, h, !secs as u32),
        analysis(),
    );
    store.save(&RecordInput {
        frame: &f,
        overlay: &o,
        analysis: &a,
        manifest: m,
        dermcam_version: env!("CARGO_PKG_VERSION"),
        board: "desktop",
        device_id: "test-device-1",
        timestamp: at(secs),
    })
}

fn decode(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("decode {}: {e}", path.display()))
        .to_rgb8()
}

/// Asserts a record folder is complete: all files, hashes match, PNGs and JSON readable.
fn check_record(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(RECORD_FILE))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let rec: serde_json::Value = serde_json::from_str(&text).expect("record.json parses");
    let files = rec["files"].as_object().expect("files");
    assert_eq!(files.len(), 3);
    for name in [FRAME_FILE, OVERLAY_FILE, CAM_FILE] {
        let bytes = std::fs::read(dir.join(name)).expect("file present");
        assert_eq!(
            files[name].as_str(),
            Some(sha256_hex(&bytes).as_str()),
            "{name} hash in {}",
            dir.display()
        );
    }
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    names.sort();
    assert_eq!(names, [CAM_FILE, FRAME_FILE, OVERLAY_FILE, RECORD_FILE]);
    let w = rec["frame"]["width"].as_u64().expect("width") as u32;
    assert_eq!(decode(&dir.join(FRAME_FILE)).width(), w);
    decode(&dir.join(OVERLAY_FILE));
    let cam: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(CAM_FILE)).expect("cam")).expect("cam");
    assert_eq!(cam["values"].as_array().expect("values").len(), 25);
    rec
}

fn visible(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    v.sort();
    v
}

#[test]
fn timestamps_format_as_utc() {
    assert_eq!(
        format_utc(0, 0),
        ("19700101T000000Z".into(), "1970-01-01T00:00:00.000Z".into())
    );
    // 2026-12-04T22:15:30Z; 2024-02-29 (leap day).
    assert_eq!(format_utc(1_796_422_530, 7).1, "2026-12-04T22:15:30.007Z");
    assert_eq!(format_utc(1_709_164_800, 0).0, "20240229T000000Z");
}

#[test]
fn save_writes_a_complete_private_record() {
    let tmp = common::temp_dir("records-save");
    let m = manifest();
    let mut store = RecordStore::open(tmp.path(), RecordLimits::default()).expect("open");
    assert_eq!(store.cleaned(), 0);
    let saved = save(&mut store, &m, 64, 48, 1_796_422_530).expect("save");
    assert_eq!(saved.name, "20261204T221530Z-0001");
    assert_eq!(visible(tmp.path()), std::slice::from_ref(&saved.name));
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&saved.path), 0o700);
    for f in [FRAME_FILE, OVERLAY_FILE, CAM_FILE, RECORD_FILE] {
        assert_eq!(mode(&saved.path.join(f)), 0o600, "{f}");
    }

    let rec = check_record(&saved.path);
    assert_eq!(rec["notice"], NOTICE);
    assert_eq!(rec["timestamp"], "2026-12-04T22:15:30.000Z");
    assert_eq!(rec["board"], "desktop");
    assert_eq!(rec["device_id"], "test-device-1");
    assert_eq!(rec["dermcam_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(rec["model"]["name"], m.name.as_str());
    assert_eq!(rec["model"]["sha256"], m.sha256.as_str());
    let probs = rec["probabilities"].as_object().expect("probabilities");
    assert_eq!(probs.len(), 7);
    let own = rec["frame_probabilities"]
        .as_object()
        .expect("frame_probabilities");
    assert_eq!(own.len(), 7);
    let a = analysis();
    for ((l, p), q) in m
        .labels
        .iter()
        .zip(&a.probabilities)
        .zip(&a.frame_probabilities)
    {
        assert!((probs[&l.id].as_f64().expect("p") - *p as f64).abs() < 1e-6);
        assert!((own[&l.id].as_f64().expect("p") - *q as f64).abs() < 1e-6);
    }
    assert_eq!(rec["top_class"]["id"], m.labels[4].id.as_str());
    assert_eq!(rec["top_class"]["name"], m.labels[4].name.as_str());
    assert_eq!(rec["cam_class"]["id"], m.labels[5].id.as_str());
    assert_eq!(rec["crop"]["x"], 8);
    assert_eq!(rec["crop"]["width"], 48);

    // Lossless: the PNGs decode to the very pixels saved.
    let (f, o) = (
        frame(64, 48, 1_796_422_530),
        frame(64, 48, !1_796_422_530u64 as u32),
    );
    assert_eq!(decode(&saved.path.join(FRAME_FILE)).as_raw(), f.data());
    assert_eq!(decode(&saved.path.join(OVERLAY_FILE)).as_raw(), o.data());
    let cam: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved.path.join(CAM_FILE)).expect("cam"))
            .expect("cam json");
    assert_eq!(
        (cam["width"].as_u64(), cam["height"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(common::f32s(&cam["values"]), analysis().cam);

    // Same second: the sequence tells records apart.
    let second = save(&mut store, &m, 64, 48, 1_796_422_530).expect("save");
    assert_eq!(second.name, "20261204T221530Z-0002");
    // A store reopened in the same second does not collide.
    let mut again = RecordStore::open(tmp.path(), RecordLimits::default()).expect("open");
    let third = save(&mut again, &m, 64, 48, 1_796_422_530).expect("save");
    assert_eq!(third.name, "20261204T221530Z-0003");
}

#[test]
fn retention_by_count_removes_the_oldest() {
    let tmp = common::temp_dir("records-count");
    let m = manifest();
    let limits = RecordLimits {
        max_records: Some(3),
        max_bytes: None,
    };
    let mut store = RecordStore::open(tmp.path(), limits).expect("open");
    let mut names = Vec::new();
    for i in 0..5 {
        let s = save(&mut store, &m, 32, 32, 1_000_000 + i).expect("save");
        names.push(s.name);
    }
    assert_eq!(store.list().expect("list"), names[2..]);
    assert_eq!(visible(tmp.path()), names[2..]);
}

#[test]
fn retention_by_bytes_removes_the_oldest() {
    let tmp = common::temp_dir("records-bytes");
    let m = manifest();
    let mut probe =
        RecordStore::open(tmp.path().join("probe"), RecordLimits::default()).expect("open");
    let one = save(&mut probe, &m, 32, 32, 1_000_000).expect("save").bytes;
    // Room for two records and a half.
    let limits = RecordLimits {
        max_records: None,
        max_bytes: Some(one * 5 / 2),
    };
    let dir = tmp.path().join("store");
    let mut store = RecordStore::open(&dir, limits).expect("open");
    let mut names: Vec<String> = Vec::new();
    for i in 0..4 {
        let s = save(&mut store, &m, 32, 32, 2_000_000 + i).expect("save");
        if i == 2 {
            assert_eq!(s.removed, [names[0].clone()]);
        }
        names.push(s.name);
    }
    assert_eq!(visible(&dir), names[2..]);
}

#[test]
fn open_cleans_leftover_temp_folders() {
    let tmp = common::temp_dir("records-clean");
    let m = manifest();
    let mut store = RecordStore::open(tmp.path(), RecordLimits::default()).expect("open");
    let kept = save(&mut store, &m, 16, 16, 1_000).expect("save").name;
    for n in [
        ".tmp-20261204T221530Z-0001",
        ".tmp-rm-19700101T000000Z-0001",
    ] {
        std::fs::create_dir(tmp.path().join(n)).expect("mkdir");
        std::fs::write(tmp.path().join(n).join(FRAME_FILE), b"half").expect("write");
    }
    let store = RecordStore::open(tmp.path(), RecordLimits::default()).expect("reopen");
    assert_eq!(store.cleaned(), 2);
    assert_eq!(visible(tmp.path()), [kept]);
}

#[test]
fn injected_enospc_gives_disk_full_and_no_partial_record() {
    let tmp = common::temp_dir("records-enospc");
    let m = manifest();
    let mut store = RecordStore::open(tmp.path(), RecordLimits::default()).expect("open");
    let kept = save(&mut store, &m, 16, 16, 1_000).expect("save").name;
    for file in 0..4 {
        store.inject_fault(Fault::EnospcOnFile(file));
        match save(&mut store, &m, 16, 16, 2_000) {
            Err(RecordError::DiskFull { dir, needed_bytes }) => {
                assert_eq!(dir, tmp.path());
                assert!(needed_bytes.is_some_and(|n| n > 0));
            }
            other => panic!("expected DiskFull, got {other:?}"),
        }
        assert_eq!(
            visible(tmp.path()),
            std::slice::from_ref(&kept),
            "fault on file {file}"
        );
    }
    let e = RecordError::DiskFull {
        dir: tmp.path().into(),
        needed_bytes: Some(10),
    };
    assert!(e.to_string().contains("disk is full"), "{e}");
}

/// A real full disk: a 64 KiB tmpfs (needs root and mount; skipped otherwise).
#[test]
fn full_tmpfs_gives_disk_full_and_no_partial_record() {
    let tmp = common::temp_dir("records-tmpfs");
    let Some(tmpfs) = common::Tmpfs::mount(tmp.path(), "64k") else {
        return;
    };
    let mnt = &tmpfs.path;
    let m = manifest();
    let mut store = RecordStore::open(mnt, RecordLimits::default()).expect("open");
    let small = save(&mut store, &m, 16, 16, 1_000).expect("a small record fits");
    // Noise does not compress: 200x200 RGB is ~120 KB per PNG.
    match save(&mut store, &m, 200, 200, 2_000) {
        Err(RecordError::DiskFull { dir, needed_bytes }) => {
            assert_eq!(&dir, mnt);
            assert!(needed_bytes.is_some_and(|n| n > 64 * 1024));
        }
        other => panic!("expected DiskFull, got {other:?}"),
    }
    assert_eq!(visible(mnt), std::slice::from_ref(&small.name));
    check_record(&small.path);
}

/// Child mode of the kill -9 test: saves records in a loop until killed.
#[test]
fn kill9_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let m = manifest();
    let limits = RecordLimits {
        max_records: Some(4),
        max_bytes: None,
    };
    let mut store = RecordStore::open(&dir, limits).expect("open");
    let (f, o, a) = (frame(320, 240, 1), frame(320, 240, 2), analysis());
    let start = SystemTime::now();
    loop {
        store
            .save(&RecordInput {
                frame: &f,
                overlay: &o,
                analysis: &a,
                manifest: &m,
                dermcam_version: env!("CARGO_PKG_VERSION"),
                board: "desktop",
                device_id: "kill9",
                timestamp: start,
            })
            .expect("save");
    }
}

#[test]
fn kill9_never_leaves_a_partial_record() {
    let tmp = common::temp_dir("records-kill9");
    let exe = std::env::current_exe().expect("current exe");
    let began = Instant::now();
    let mut rng = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 | 1)
        .unwrap_or(0x9e37_79b9);
    let mut cleaned = 0;
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args(["--exact", "kill9_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(20 + rng % 200));
        // SAFETY: kill(2) on the pid of our own child.
        let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(r, 0, "kill round {round}");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "the child must die by the signal");

        let store = RecordStore::open(tmp.path(), RecordLimits::default()).expect("open");
        cleaned += store.cleaned();
        for name in visible(tmp.path()) {
            assert!(!name.starts_with('.'), "open left {name}");
            check_record(&tmp.path().join(&name));
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "kill -9 test too slow"
        );
    }
    assert!(
        !visible(tmp.path()).is_empty(),
        "the children never completed a record"
    );
    eprintln!(
        "kill -9: 20 rounds in {:?}, {cleaned} interrupted saves cleaned",
        began.elapsed()
    );
}
