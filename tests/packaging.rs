//! What the Debian package installs must work together: every board file parses and names a
//! model that exists; the default /etc/dermcam/config.toml (debian/config.toml) parses over
//! every board, and its absolute /usr/share/dermcam paths point at files the package ships;
//! /etc/default/dermcam names a board that exists. (scripts/build-deb.sh checks the built
//! .deb itself; this catches a config key renamed in src/config.rs before a device does.)

mod common;

use std::path::{Path, PathBuf};

use common::repo;
use dermcam::config::Config;

/// `boards/*.toml`, sorted.
fn boards() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("boards"))
        .expect("boards/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    assert!(v.len() >= 2, "boards/ has {} files", v.len());
    v
}

/// Where a packaged absolute path comes from in the repository.
fn packaged_source(p: &Path) -> PathBuf {
    let rest = p
        .strip_prefix("/usr/share/dermcam")
        .unwrap_or_else(|_| panic!("{} is not under /usr/share/dermcam", p.display()));
    repo().join(rest)
}

#[test]
fn every_board_parses_and_its_model_exists() {
    for b in boards() {
        let cfg = Config::load(Some(&b), None).unwrap_or_else(|e| panic!("{}: {e}", b.display()));
        assert!(
            cfg.model.manifest.is_file(),
            "{}: model manifest {} does not exist",
            b.display(),
            cfg.model.manifest.display()
        );
        let stem = b.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(cfg.board.name, stem, "{}: [board] name", b.display());
    }
}

#[test]
fn packaged_default_config_parses_over_every_board() {
    let config = repo().join("debian/config.toml");
    for b in boards() {
        let cfg = Config::load(Some(&b), Some(&config))
            .unwrap_or_else(|e| panic!("{} + {}: {e}", b.display(), config.display()));
        assert!(
            cfg.model.manifest.is_absolute(),
            "{}",
            cfg.model.manifest.display()
        );
        let src = packaged_source(&cfg.model.manifest);
        assert!(
            src.is_file(),
            "debian/config.toml's model {} is not shipped ({} missing)",
            cfg.model.manifest.display(),
            src.display()
        );
        assert!(
            cfg.display.dir.starts_with("/var/lib/dermcam"),
            "PNG output {} must be under /var/lib/dermcam, the service's only writable place",
            cfg.display.dir.display()
        );
        assert!(
            cfg.records.dir.starts_with("/var/lib/dermcam"),
            "records {} must be under /var/lib/dermcam, the service's only writable place",
            cfg.records.dir.display()
        );
    }
}

#[test]
fn default_board_of_the_service_exists() {
    let text = std::fs::read_to_string(repo().join("debian/default")).expect("debian/default");
    let board = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("DERMCAM_BOARD="))
        .expect("debian/default sets DERMCAM_BOARD");
    assert!(
        repo()
            .join("boards")
            .join(format!("{board}.toml"))
            .is_file(),
        "debian/default: DERMCAM_BOARD={board} is not in boards/"
    );
    let unit = std::fs::read_to_string(repo().join("systemd/dermcam.service")).expect("unit");
    assert!(
        unit.contains(&format!("Environment=DERMCAM_BOARD={board}")),
        "the unit's default board and debian/default's differ"
    );
}
