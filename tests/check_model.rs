//! `dermcam check-model` on every model the repository ships: each must load, match its
//! sha256, expose its target layer and logits, and have a head the Grad-CAM engine supports.

mod common;

use common::repo;
use dermcam::app::check::check_model;

fn shipped_manifests() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in ["models/test", "models/efficientnet-lite0-ham10000"] {
        let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_shipped_model_passes_check_model() {
    let manifests = shipped_manifests();
    assert!(
        manifests.len() >= 2,
        "expected the shipped manifests, found {manifests:?}"
    );
    for m in manifests {
        let report = check_model(&m).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
        assert_eq!(report.labels.len(), 7, "{}", m.display());
        assert!(
            report
                .head_ops
                .iter()
                .any(|o| o == "GlobalAveragePool" || o == "ReduceMean"),
            "{}: head {:?}",
            m.display(),
            report.head_ops
        );
        assert_eq!(report.target_shape.len(), 4, "{}", m.display());
        let quantised = !report.quantised_ops.is_empty();
        assert_eq!(
            report.precision.as_deref() == Some("int8"),
            quantised,
            "{}: declared precision {:?} but quantised ops {:?}",
            m.display(),
            report.precision,
            report.quantised_ops
        );
    }
}

#[test]
fn the_default_model_is_shipped_and_usable() {
    let m = repo().join(dermcam::config::DEFAULT_MANIFEST);
    check_model(&m).unwrap_or_else(|e| panic!("default model {}: {e}", m.display()));
    let board = dermcam::config::Config::load(Some(&repo().join("boards/desktop.toml")), None)
        .expect("desktop board");
    check_model(&board.model.manifest).expect("the desktop board's model");
}
