//! Probabilities averaged over frames (`[model] smoothing_seconds`): what the screen shows is
//! the moving average of the frames' own probabilities, computed here the obvious way in f64;
//! the shown class is its argmax, and the heatmap explains that class on the current frame,
//! exactly as an unsmoothed analyzer told to explain that class computes it.

mod common;

use std::time::Duration;

use common::repo;
use dermcam::app::run::build_analyzer;
use dermcam::config::Config;
use dermcam::frame::RgbFrame;
use dermcam::heatmap::ColorMapKind;
use dermcam::model::{argmax, Model};
use dermcam::pipeline::{Analyzer, NoProbe};

const TINY: &str = "models/test/tiny-f32.toml";
const W: u32 = 96;
const H: u32 = 64;

fn analyzer(target: Option<&str>) -> Analyzer {
    let model = Model::load(&repo().join(TINY)).expect("model");
    Analyzer::new(model, W, H, 1.0, ColorMapKind::Jet, target).expect("analyzer")
}

/// A deterministic pseudo-random frame.
fn noise(seed: u64) -> RgbFrame {
    let mut f = RgbFrame::new(W, H);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for b in f.data_mut() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (x >> 56) as u8;
    }
    f
}

#[test]
fn shown_probabilities_are_the_moving_average_and_the_heatmap_explains_the_shown_class() {
    let mut plain = analyzer(None);
    let mut a = plain.new_analysis();
    // Two frames the model tells apart (different top classes), to alternate between: the
    // flicker smoothing is for.
    let mut tops = Vec::new();
    for seed in 0..64 {
        let f = noise(seed);
        plain.analyze(&f, &mut a, &mut NoProbe).expect("analyze");
        tops.push((seed, a.class, a.probabilities.clone()));
    }
    let (s0, c0, _) = tops[0].clone();
    let (s1, _, _) = tops
        .iter()
        .find(|(_, c, _)| *c != c0)
        .cloned()
        .expect("two noise frames with different top classes");

    let tau = 0.2f64;
    let mut smooth = analyzer(None);
    smooth.set_smoothing(Some(Duration::from_secs_f64(tau)));
    let mut shown = smooth.new_analysis();
    let mut own = plain.new_analysis();
    let mut want: Option<Vec<f64>> = None;
    let mut last_t = 0.0f64;
    let mut differed = 0;
    // Camera-like intervals, one long gap (a freeze), and a timestamp going back (a new stream).
    let times_ms = [0u64, 67, 133, 200, 267, 333, 3333, 3400, 3467, 50, 117, 183];
    for (i, &t_ms) in times_ms.iter().enumerate() {
        let mut f = noise(if i % 3 == 2 { s0 } else { s1 });
        f.sequence = i as u64;
        f.timestamp = Duration::from_millis(t_ms);
        smooth
            .analyze(&f, &mut shown, &mut NoProbe)
            .expect("smoothed");
        plain.analyze(&f, &mut own, &mut NoProbe).expect("plain");
        assert_eq!(
            shown.frame_probabilities, own.probabilities,
            "frame {i}: own probabilities"
        );
        let t = t_ms as f64 / 1000.0;
        let p: Vec<f64> = own.probabilities.iter().map(|&v| f64::from(v)).collect();
        want = Some(match want {
            Some(prev) if t > last_t => {
                let w = 1.0 - (-(t - last_t) / tau).exp();
                prev.iter()
                    .zip(&p)
                    .map(|(s, x)| w * x + (1.0 - w) * s)
                    .collect()
            }
            _ => p,
        });
        last_t = t;
        let want = want.as_ref().expect("set");
        for (k, (got, w)) in shown.probabilities.iter().zip(want).enumerate() {
            assert!(
                (f64::from(*got) - w).abs() < 1e-5,
                "frame {i} class {k}: shown {got}, moving average {w}"
            );
        }
        assert_eq!(shown.class, argmax(&shown.probabilities), "frame {i}");
        if shown.class != own.class {
            differed += 1;
        }
        // The heatmap explains the shown class on this frame.
        let id = smooth.model().manifest().labels[shown.class].id.clone();
        let mut explain = analyzer(Some(&id));
        let mut e = explain.new_analysis();
        explain.analyze(&f, &mut e, &mut NoProbe).expect("targeted");
        assert_eq!(shown.cam, e.cam, "frame {i}: Grad-CAM of class {id}");
        assert_eq!(
            shown.heat_rgb, e.heat_rgb,
            "frame {i}: heatmap of class {id}"
        );
    }
    assert!(
        differed > 0,
        "the average held a class the single frame did not (else this test shows nothing)"
    );
}

#[test]
fn run_smooths_camera_and_recording_sources_as_configured_but_never_stills() {
    let tiny = repo().join(TINY);
    let analyzer_for = |source: &str, model: &str| {
        let text = format!(
            "[source]\n{source}\n[model]\nmanifest = {:?}\n{model}\n",
            tiny.display()
        );
        let config = Config::parse(&text, "test.toml").expect("config");
        config.validate("test.toml").expect("valid");
        build_analyzer(&config, W, H).expect("analyzer").smoothing()
    };
    let recording = "kind = \"recording\"\npath = \"recordings/lesion-mjpeg.dcrec\"";
    let stills = "kind = \"stills\"\npath = \"recordings/stills\"";
    let camera = "kind = \"v4l2\"";
    let tau = Some(Duration::from_millis(200));
    assert_eq!(analyzer_for(recording, ""), tau, "the default");
    assert_eq!(analyzer_for(camera, ""), tau);
    assert_eq!(
        analyzer_for(camera, "smoothing_seconds = 0.5"),
        Some(Duration::from_millis(500))
    );
    assert_eq!(analyzer_for(camera, "smoothing_seconds = 0"), None);
    assert_eq!(
        analyzer_for(stills, ""),
        None,
        "separate images are never averaged"
    );
}
