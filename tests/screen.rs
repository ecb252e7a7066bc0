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
            let golden = match image::open(&path) {
                Ok(g) => g.to_rgb8(),
                Err(e) => {
                    failures.push(format!(
                        "{}: {e} (run with DERMCAM_BLESS=1 to write it)",
                        path.display()
                    ));
                    continue;
                }
            };
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

/// Composes a `fw x fh` camera frame onto a `dw x dh` display.
fn render_fitted(fw: u32, fh: u32, dw: u32, dh: u32, state: ScreenState) -> RgbFrame {
    let composer = Composer::new(labels(), 0.45, 0.5);
    composer.prepare(fw, fh, dw, dh);
    let frame = synthetic_frame(fw, fh);
    let a = analysis(fw, fh, 0.72);
    let mut out = RgbFrame::new(dw, dh);
    composer
        .compose_with_state(
            &frame,
            Some(&a),
            Rates {
                display_fps: 30.0,
                inference_fps: 8.0,
            },
            state,
            &mut out,
        )
        .expect("compose");
    out
}

/// Camera 640x480 on displays of other sizes: pixel-exact goldens (written with
/// `DERMCAM_BLESS=1`).
#[test]
fn fitted_displays_match_their_golden_pngs() {
    let bless = std::env::var("DERMCAM_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for (dw, dh) in [(320, 240), (800, 480), (1280, 800)] {
        let out = render_fitted(640, 480, dw, dh, ScreenState::Live);
        let path = repo().join(format!(
            "tests/golden/screen/fitted-640x480-on-{dw}x{dh}.png"
        ));
        if bless {
            image::RgbImage::from_raw(dw, dh, out.data().to_vec())
                .expect("image")
                .save(&path)
                .expect("write golden");
            continue;
        }
        match image::open(&path) {
            Ok(g) if g.to_rgb8().as_raw() == out.data() => {}
            Ok(_) => {
                let actual = path.with_extension("actual.png");
                let _ = image::RgbImage::from_raw(dw, dh, out.data().to_vec())
                    .expect("image")
                    .save(&actual);
                failures.push(format!(
                    "{} differs (actual in {})",
                    path.display(),
                    actual.display()
                ));
            }
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Float triangle-filter resampling (support scaled when reducing), evaluated directly per
/// output pixel: an independent reference for the composer's table-driven scaler.
fn naive_resample(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f64> {
    let taps = |inn: usize, out: usize, o: usize| -> Vec<(usize, f64)> {
        let scale = inn as f64 / out as f64;
        let support = scale.max(1.0);
        let c = (o as f64 + 0.5) * scale;
        let raw: Vec<(usize, f64)> = (0..inn)
            .map(|i| (i, (1.0 - ((i as f64 + 0.5 - c) / support).abs()).max(0.0)))
            .filter(|&(_, w)| w > 0.0)
            .collect();
        let sum: f64 = raw.iter().map(|t| t.1).sum();
        raw.into_iter().map(|(i, w)| (i, w / sum)).collect()
    };
    let cols: Vec<_> = (0..dw).map(|o| taps(sw, dw, o)).collect();
    let mut out = vec![0.0; dw * dh * 3];
    for oy in 0..dh {
        let rows = taps(sh, dh, oy);
        for (ox, col) in cols.iter().enumerate() {
            for c in 0..3 {
                let mut v = 0.0;
                for &(iy, a) in &rows {
                    for &(ix, b) in col {
                        v += a * b * f64::from(src[(iy * sw + ix) * 3 + c]);
                    }
                }
                out[(oy * dw + ox) * 3 + c] = v;
            }
        }
    }
    out
}

/// Away from the overlay, the fitted screen is the camera frame with the heatmap blended at
/// camera resolution, resampled into the fit rectangle, with black bars around it.
#[test]
fn fitted_picture_is_the_blended_frame_resampled_with_black_bars() {
    use dermcam::compose::scale::Fit;
    let (fw, fh) = (640u32, 480u32);
    let frame = synthetic_frame(fw, fh);
    let a = analysis(fw, fh, 0.72);
    let mut blended = frame.clone();
    let stride = blended.stride();
    dermcam::heatmap::blend_into(blended.data_mut(), stride, a.crop, &a.heat_rgb, 0.45)
        .expect("blend");
    for (dw, dh) in [(320u32, 240u32), (1280, 800), (800, 480), (480, 640)] {
        let out = render_fitted(fw, fh, dw, dh, ScreenState::Live);
        let fit = Fit::new(fw, fh, dw, dh);
        let r = fit.rect;
        let reference = naive_resample(
            blended.data(),
            fw as usize,
            fh as usize,
            r.width as usize,
            r.height as usize,
        );
        // A window in the middle of the picture, clear of the bands, panel and crop outline.
        let (cx, cy) = (r.width / 2, r.height / 2);
        let (hw, hh) = (r.width / 8, r.height / 8);
        let mut worst = 0.0f64;
        for y in cy - hh..cy + hh {
            for x in cx - hw..cx + hw {
                for c in 0..3 {
                    let got =
                        out.data()[((r.y + y) as usize * dw as usize + (r.x + x) as usize) * 3 + c];
                    let want = reference[(y as usize * r.width as usize + x as usize) * 3 + c];
                    worst = worst.max((f64::from(got) - want).abs());
                }
            }
        }
        assert!(worst <= 1.0, "{dw}x{dh}: off by {worst:.2} grey levels");
        // Bars: the middle rows of the side bars (or middle columns of the top/bottom bars)
        // are black; the picture itself is not.
        let px = |x: u32, y: u32| {
            let i = (y as usize * dw as usize + x as usize) * 3;
            [out.data()[i], out.data()[i + 1], out.data()[i + 2]]
        };
        if r.x > 0 {
            for y in dh / 3..dh / 2 {
                assert_eq!(px(dw - 1 - r.x / 2, y), [0, 0, 0], "{dw}x{dh} right bar");
            }
        }
        if r.y > 60 {
            // Below the top band, above the picture.
            assert_eq!(px(dw / 2, r.y - 10), [0, 0, 0], "{dw}x{dh} top bar");
        }
        assert_ne!(px(r.x + r.width / 2, r.y + r.height / 2), [0, 0, 0]);
    }
}

/// The overlay is drawn at the display's resolution: on a 320x240 panel fed 640x480 frames,
/// the text (pure white pixels) of the disclaimer band and the top line are exactly where a
/// native 320x240 screen has them, not a halved 640x480 overlay.
#[test]
fn overlay_text_is_drawn_at_display_resolution() {
    for (dw, dh) in [(320u32, 240u32), (1280, 800)] {
        let fitted = render_fitted(640, 480, dw, dh, ScreenState::Live);
        let native = render(dw, dh, ScreenState::Live);
        let white = |f: &RgbFrame, y: u32| -> Vec<u32> {
            (0..dw)
                .filter(|&x| {
                    let i = (y as usize * dw as usize + x as usize) * 3;
                    f.data()[i..i + 3] == [255, 255, 255]
                })
                .collect()
        };
        let mut text_rows = 0;
        for y in (0..30).chain(dh - 25..dh) {
            let (a, b) = (white(&fitted, y), white(&native, y));
            assert_eq!(a, b, "{dw}x{dh} row {y}");
            text_rows += usize::from(!a.is_empty());
        }
        assert!(text_rows > 10, "{dw}x{dh}: only {text_rows} rows hold text");
    }
}

/// Composing at another size than the frame also works without `prepare` (the tables are
/// built on the first frame) and gives the same picture.
#[test]
fn prepare_is_optional_and_changes_nothing() {
    let composer = Composer::new(labels(), 0.45, 0.5);
    let frame = synthetic_frame(640, 480);
    let a = analysis(640, 480, 0.72);
    let mut out = RgbFrame::new(320, 240);
    let rates = Rates {
        display_fps: 30.0,
        inference_fps: 8.0,
    };
    composer
        .compose(&frame, Some(&a), rates, &mut out)
        .expect("compose");
    assert_eq!(
        out.data(),
        render_fitted(640, 480, 320, 240, ScreenState::Live).data()
    );
    // And a second geometry with the same composer.
    let mut big = RgbFrame::new(1280, 800);
    composer
        .compose(&frame, Some(&a), rates, &mut big)
        .expect("compose");
    assert_eq!(
        big.data(),
        render_fitted(640, 480, 1280, 800, ScreenState::Live).data()
    );
}
