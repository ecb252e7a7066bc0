//! Configuration a user writes: board files, config files over them, and `dermcam run`
//! driven by both. Unknown keys and bad values are errors naming the key and the file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{repo, temp_dir};
use dermcam::app::run::load_config;
use dermcam::config::{find_board, Config, ConfigError, DisplayKind, SourceKind};

fn desktop() -> PathBuf {
    repo().join("boards/desktop.toml")
}

/// Writes `text` as `cfg.toml` in `dir`.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("cfg.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// Loads the desktop board with `text` as the config file over it; returns the error.
fn load_err(text: &str) -> (ConfigError, String, PathBuf) {
    let dir = temp_dir("config-err");
    let cfg = write_config(dir.path(), text);
    let e = Config::load(Some(&desktop()), Some(&cfg)).expect_err("the config must be refused");
    let msg = e.to_string();
    (e, msg, cfg)
}

#[test]
fn desktop_board_loads_and_its_paths_exist() {
    let cfg = Config::load(Some(&desktop()), None).expect("desktop board");
    assert_eq!(cfg.board.name, "desktop");
    assert_eq!(cfg.source.kind, SourceKind::Recording);
    assert!(cfg.source.realtime);
    assert!(!cfg.source.looped);
    assert_eq!(cfg.display.kind, DisplayKind::Png);
    assert_eq!(cfg.display.every, 15);
    assert_eq!(cfg.heatmap.opacity, 0.45);
    assert_eq!(cfg.pipeline.frame_slots, 5);
    // Paths are relative to the folder holding boards/, i.e. the repository.
    assert!(cfg.source.path.is_file(), "{}", cfg.source.path.display());
    assert!(
        cfg.model.manifest.is_file(),
        "{}",
        cfg.model.manifest.display()
    );
    assert_eq!(
        cfg.source.path.canonicalize().unwrap(),
        repo()
            .join("recordings/lesion-mjpeg.dcrec")
            .canonicalize()
            .unwrap()
    );
    assert_eq!(
        cfg.model.manifest.canonicalize().unwrap(),
        repo()
            .join("models/efficientnet-lite0-ham10000/model-f32.toml")
            .canonicalize()
            .unwrap()
    );
    assert!(
        cfg.display.dir.starts_with(repo()),
        "{}",
        cfg.display.dir.display()
    );
    assert!(cfg.display.dir.ends_with("out/run"));

    // By name, as `dermcam run --board desktop` finds it (tests run in the repository).
    let by_name = load_config(Some("desktop"), None).expect("board by name");
    assert!(
        by_name.source.path.is_file(),
        "{}",
        by_name.source.path.display()
    );
    assert!(by_name.model.manifest.is_file());
    assert_eq!(by_name.board.name, "desktop");
    assert_eq!(by_name.heatmap, cfg.heatmap);
}

#[test]
fn unknown_key_is_named() {
    let (e, msg, cfg) = load_err("[heatmap]\nopasity = 0.3\n");
    assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
    assert!(msg.contains("opasity"), "{msg}");
    assert!(
        msg.contains(&cfg.display().to_string()),
        "the file is named: {msg}"
    );

    let e = Config::parse("[heatmap]\nopasity = 0.3\n", "inline.toml").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("opasity") && msg.contains("inline.toml"),
        "{msg}"
    );
}

#[test]
fn unknown_section_is_named() {
    let (e, msg, _) = load_err("[displya]\ndir = \"x\"\n");
    assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
    assert!(msg.contains("displya"), "{msg}");
}

#[test]
fn invalid_toml_is_reported_with_the_file() {
    let (e, msg, cfg) = load_err("[heatmap\nopacity = 0.3\n");
    assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
    assert!(msg.contains(&cfg.display().to_string()), "{msg}");
}

#[test]
fn bad_values_name_the_dotted_key() {
    let cases = [
        ("[heatmap]\nopacity = 1.5\n", "heatmap.opacity", "1.5"),
        ("[heatmap]\nopacity = -0.1\n", "heatmap.opacity", "-0.1"),
        (
            "[heatmap]\ncolormap = \"rainbow\"\n",
            "heatmap.colormap",
            "rainbow",
        ),
        (
            "[preprocess]\ncrop_fraction = 0.0\n",
            "preprocess.crop_fraction",
            "0",
        ),
        ("[pipeline]\nframe_slots = 2\n", "pipeline.frame_slots", "2"),
        ("[pipeline]\nframe_slots = 9\n", "pipeline.frame_slots", "9"),
        (
            "[overlay]\nlow_confidence = 2.0\n",
            "overlay.low_confidence",
            "2",
        ),
        ("[display]\nevery = 0\n", "display.every", "0"),
        (
            "[model]\nsmoothing_seconds = -0.5\n",
            "model.smoothing_seconds",
            "-0.5",
        ),
        (
            "[model]\nsmoothing_seconds = 60.0\n",
            "model.smoothing_seconds",
            "60",
        ),
    ];
    for (text, key, value) in cases {
        let (e, msg, cfg) = load_err(text);
        assert!(
            matches!(&e, ConfigError::Value { key: k, .. } if *k == key),
            "{text}: {e:?}"
        );
        assert!(msg.contains(&format!("`{key}`")), "{text}: {msg}");
        assert!(msg.contains(value), "{text}: the bad value is shown: {msg}");
        assert!(msg.contains(&cfg.display().to_string()), "{text}: {msg}");
    }
}

#[test]
fn mistyped_values_name_the_key() {
    // An integer where a fraction is expected is still a bad value (or a type error) that
    // names the key, never a silent default.
    for (text, key) in [
        ("[preprocess]\ncrop_fraction = 0\n", "crop_fraction"),
        ("[heatmap]\nopacity = \"high\"\n", "opacity"),
        ("[source]\nkind = \"camera\"\n", "kind"),
        ("[pipeline]\nframe_slots = -1\n", "frame_slots"),
    ] {
        let (_, msg, _) = load_err(text);
        assert!(msg.contains(key), "{text}: {msg}");
    }
}

#[test]
fn config_file_overrides_the_board_and_resolves_its_own_paths() {
    let dir = temp_dir("config-merge");
    let cfg_path = write_config(
        dir.path(),
        "[heatmap]\nopacity = 0.3\n\n[display]\ndir = \"overlays\"\n\n[source]\nrealtime = false\n",
    );
    let cfg = Config::load(Some(&desktop()), Some(&cfg_path)).expect("merged");
    // Overridden.
    assert_eq!(cfg.heatmap.opacity, 0.3);
    assert!(!cfg.source.realtime);
    assert_eq!(cfg.display.dir, dir.path().join("overlays"));
    // Kept from the board, key by key within a section.
    assert_eq!(cfg.heatmap.colormap, "jet");
    assert_eq!(cfg.display.every, 15);
    assert_eq!(cfg.display.kind, DisplayKind::Png);
    assert_eq!(cfg.board.name, "desktop");
    assert!(cfg.source.path.is_file(), "{}", cfg.source.path.display());
    assert!(cfg.source.path.ends_with("recordings/lesion-mjpeg.dcrec"));
    assert!(cfg
        .model
        .manifest
        .ends_with("models/efficientnet-lite0-ham10000/model-f32.toml"));

    // The same through `load_config`, and a config file alone gets the defaults under it.
    let via = load_config(Some("desktop"), Some(&cfg_path)).expect("load_config");
    assert_eq!(via.heatmap.opacity, 0.3);
    assert_eq!(via.display.dir, dir.path().join("overlays"));
    let alone = load_config(None, Some(&cfg_path)).expect("config alone");
    assert_eq!(alone.display.dir, dir.path().join("overlays"));
    assert_eq!(alone.pipeline.frame_slots, 5);
    assert_eq!(alone.board.name, "");
}

#[test]
fn unknown_board_lists_the_available_ones() {
    let e = find_board("nope").unwrap_err();
    match &e {
        ConfigError::NoBoard {
            name, available, ..
        } => {
            assert_eq!(name, "nope");
            assert!(available.iter().any(|b| b == "desktop"), "{available:?}");
        }
        other => panic!("expected NoBoard, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("\"nope\""), "{msg}");
    assert!(
        msg.contains("\"desktop\""),
        "available boards are listed: {msg}"
    );
    assert!(
        msg.contains("boards/nope.toml"),
        "the paths tried are listed: {msg}"
    );

    let e = load_config(Some("nope"), None).unwrap_err();
    assert!(e.to_string().contains("desktop"), "{e}");

    let e = find_board("/no/such/board.toml").unwrap_err();
    assert!(e.to_string().contains("/no/such/board.toml"), "{e}");
}

#[test]
fn run_cli_with_board_and_config_writes_png_overlays() {
    let dir = temp_dir("run-cli");
    let cfg_path = write_config(
        dir.path(),
        "[display]\ndir = \"out\"\n\n[source]\nrealtime = false\n",
    );
    let out_dir = dir.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_dermcam"))
        .current_dir(repo())
        .env_remove("DERMCAM_DATA_DIR")
        .env("RUST_LOG", "info")
        .args(["run", "--board", "desktop", "--frames", "20", "--config"])
        .arg(&cfg_path)
        .output()
        .expect("run dermcam");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dermcam run failed:\n{stderr}");
    assert!(stderr.contains("done:"), "{stderr}");
    assert!(
        stderr.contains(&out_dir.display().to_string()),
        "the output folder is logged: {stderr}"
    );

    let latest = out_dir.join("latest.png");
    let img = image::open(&latest).unwrap_or_else(|e| panic!("{}: {e}", latest.display()));
    assert_eq!((img.width(), img.height()), (640, 480));
    let frames: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .expect("out dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("frame-") && n.ends_with(".png"))
        })
        .collect();
    assert!(
        !frames.is_empty(),
        "no frame-*.png in {}",
        out_dir.display()
    );
    assert!(out_dir.join("frame-000000.png").is_file());
    for f in &frames {
        let img = image::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!((img.width(), img.height()), (640, 480), "{}", f.display());
    }
    // No temporary files are left behind.
    assert!(
        std::fs::read_dir(&out_dir).expect("out dir").all(|e| !e
            .expect("entry")
            .path()
            .to_string_lossy()
            .ends_with(".tmp")),
        "a .png.tmp was left in {}",
        out_dir.display()
    );
}
