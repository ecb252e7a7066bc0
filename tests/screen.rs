//! Screen tests: every [`ScreenState`] rendered at 320x240 (SPI panel) and 800x480 (DSI)
//! from a deterministic synthetic frame and a fixed analysis, compared pixel-exact with the
//! golden PNGs in `tests/golden/screen/`. `DERMCAM_BLESS=1` (re)writes the goldens instead.

mod common;

use std::path::PathBuf;

use common::repo;
use dermcam::compose::{Composer, Rates, ScreenState};
use dermcam::frame::RgbFrame;
use dermcam::heatmap::{ColorLut, ColorMapKind};
use dermcam::model::Label;
use dermcam::pipeline::Analysis;
use dermcam::preprocess::centre_square_crop;

const SIZES: [(u32, u32); 2] = [(320, 240), (800, 480)];

fn labels() -> Vec<Label> {
    [
        ("akiec", "Actinic keratosis / intraepithelial carcinoma"),
        ("bcc", "Basal cell carcinoma"),
        ("bkl", "Benign keratosis-like lesion"),
        ("df", "Dermatofibroma"),
        ("mel", "Melanoma"),
        ("nv", "Melanocytic nevus"),
        ("vasc", "Vascular lesion"),
    ]
    .into_iter()
    .map(|(id, name)| Label {
        id: id.into(),
        name: name.into(),
    })
    .collect()
}

/// Skin-toned background with a dark, slightly irregular lesion in the middle; flat regions
/// so the goldens stay small.
fn synthetic_frame(w: u32, h: u32) -> RgbFrame {
    let mut f = RgbFrame::new(w, h);
    let (cx, cy) = (w as f32 * 0.52, h as f32 * 0.5);
    let r = h as f32 * 0.22;
    let stride = f.stride();
    let data = f.data_mut();
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - cx, (y as f32 - cy) * 1.2);
            let d = (dx * dx + dy * dy).sqrt();
            let wobble = 1.0 + 0.12 * ((dx.atan2(dy)) * 5.0).sin();
            let px = if d < r * 0.45 * wobble {
                [70, 40, 30]
            } else if d < r * wobble {
                [120, 75, 55]
            } else {
                // A gentle banded skin gradient (steps of 8 px).
                let band = ((y / 8) % 4) as u8;
                [215 - band * 3, 170 - band * 3, 145 - band * 2]
            };
            let i = y as usize * stride + x as usize * 3;
            data[i..i + 3].copy_from_slice(&px);
        }
    }
    f
}

/// A fixed analysis: the heat is a quantised radial bump over the lesion.
fn analysis(w: u32, h: u32, top: f32) -> Analysis {
    let crop = centre_square_crop(w, h, 1.0);
    let mut a = Analysis::new(7, 7, 7, crop);
    let rest = [0.04f32, 0.09, 0.02, 0.0, 0.10, 0.01];
    let rest_sum: f32 = rest.iter().sum();
    // "mel" is the top class; the others share the remainder in fixed ratios.
    let mut k = 0;
    for i in 0..7 {
        if i == 4 {
            a.probabilities[i] = top;
        } else {
            a.probabilities[i] = if rest_sum > 0.0 {
                [0.30, 0.25, 0.15, 0.05, 0.20, 0.05][k] * (1.0 - top)
            } else {
                0.0
            };
            k += 1;
        }
    }
    a.class = 4;
    let lut = ColorLut::new(ColorMapKind::Jet);
    let side = crop.width as usize;
    for y in 0..side {
        for x in 0..side {
            let dx = x as f32 / side as f32 - 0.55;
            let dy = y as f32 / side as f32 - 0.5;
            let v = (1.0 - (dx * dx + dy * dy).sqrt() / 0.5).clamp(0.0, 1.0);
            let v = (v * 8.0).floor() / 8.0;
            let c = lut.color(v);
            let i = (y * side + x) * 3;
            a.heat_rgb[i..i + 3].copy_from_slice(&c);
        }
    }
    a
}

fn render(w: u32, h: u32, state: ScreenState) -> RgbFrame {
    let composer = Composer::new(labels(), 0.45, 0.5);
    let frame = synthetic_frame(w, h);
    // Low confidence is automatic: the `Live` state with a result below the threshold.
    let (top, shown_state) = match state {
        ScreenState::LowConfidence => (0.38, ScreenState::Live),
        s => (0.72, s),
    };
    let a = analysis(w, h, top);
    let mut out = RgbFrame::new(w, h);
    composer
        .compose_with_state(
            &frame,
            Some(&a),
            Rates {
                display_fps: 30.0,
                inference_fps: 8.0,
            },
            shown_state,
            &mut out,
        )
        .expect("compose");
    out
}

fn golden_path(w: u32, h: u32, state: ScreenState) -> PathBuf {
    repo().join(format!("tests/golden/screen/{}-{w}x{h}.png", state.name()))
}

#[test]
fn every_state_matches_its_golden_png() {
    let bless = std::env::var("DERMCAM_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for (w, h) in SIZES {
        for state in ScreenState::ALL {
            let out = render(w, h, state);
            let path = golden_path(w, h, state);
            if bless {
                image::RgbImage::from_raw(w, h, out.data().to_vec())
                    .expect("image")
                    .save(&path)
                    .expect("write golden");
                continue;
            }
            let golden = image::open(&path)
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: {e} (run with DERMCAM_BLESS=1 to write it)",
                        path.display()
                    )
                })
                .to_rgb8();
            assert_eq!(golden.dimensions(), (w, h), "{}", path.display());
            let differing = golden
                .as_raw()
                .chunks_exact(3)
                .zip(out.data().chunks_exact(3))
                .filter(|(a, b)| a != b)
                .count();
            if differing > 0 {
                let actual = path.with_extension("actual.png");
                let _ = image::RgbImage::from_raw(w, h, out.data().to_vec())
                    .expect("image")
                    .save(&actual);
                failures.push(format!(
                    "{}: {differing} pixels differ (actual written to {})",
                    path.display(),
                    actual.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The states must look different from each other (a badge or banner per state).
#[test]
fn states_are_distinguishable() {
    for (w, h) in SIZES.into_iter().chain([(1280, 800)]) {
        let renders: Vec<_> = ScreenState::ALL
            .iter()
            .map(|&s| render(w, h, s).data().to_vec())
            .collect();
        for i in 0..renders.len() {
            for j in i + 1..renders.len() {
                assert_ne!(
                    renders[i],
                    renders[j],
                    "{w}x{h}: {:?} and {:?} look the same",
                    ScreenState::ALL[i],
                    ScreenState::ALL[j]
                );
            }
        }
    }
}

/// `compose` is the `Live` state.
#[test]
fn compose_is_the_live_state() {
    let (w, h) = (320, 240);
    let composer = Composer::new(labels(), 0.45, 0.5);
    let frame = synthetic_frame(w, h);
    let a = analysis(w, h, 0.72);
    let rates = Rates {
        display_fps: 30.0,
        inference_fps: 8.0,
    };
    let mut out = RgbFrame::new(w, h);
    composer
        .compose(&frame, Some(&a), rates, &mut out)
        .expect("compose");
    assert_eq!(out.data(), render(w, h, ScreenState::Live).data());
}
