//! Grad-CAM fidelity against pytorch-grad-cam.
//!
//! The goldens in `tests/golden/gradcam/` were computed by `models/test/make_test_model.py`
//! with pytorch-grad-cam's `GradCAM` + `ClassifierOutputTarget` on fixed inputs. Here dermcam
//! runs the same ONNX models with tract on the same input tensors and must reproduce:
//! - the logits onnxruntime computed (tolerance 1e-4, relative to the largest logit);
//! - the normalised map at target-layer resolution (max abs difference <= 1e-4);
//! - the map upsampled to the input size (max abs difference <= 1e-3);
//! - for the int8 model, a Pearson correlation >= 0.98 with the f32 reference maps.

mod common;

use common::{f32s, json, max_abs_diff, pearson, repo};
use dermcam::gradcam::GradCam;
use dermcam::heatmap::{scale_min_max, Upsampler};
use dermcam::model::{argmax, Model};

const GRID_TOLERANCE: f32 = 1e-4;
const UPSAMPLED_TOLERANCE: f32 = 1e-3;
const LOGIT_TOLERANCE: f32 = 1e-4;
const INT8_MIN_PEARSON: f64 = 0.98;

fn manifest_for(onnx_rel: &str) -> std::path::PathBuf {
    repo().join(onnx_rel).with_extension("toml")
}

/// Upsamples and renormalises as pytorch-grad-cam does after `scale_cam_image`.
fn upsample_like_pytorch_grad_cam(
    cam: &[f32],
    w: usize,
    h: usize,
    ow: usize,
    oh: usize,
) -> Vec<f32> {
    let mut up = Upsampler::new(w, h, ow, oh).expect("upsampler");
    let mut out = vec![0f32; ow * oh];
    up.run(cam, &mut out).expect("upsample");
    for v in &mut out {
        *v = v.max(0.0);
    }
    scale_min_max(&mut out);
    out
}

struct CaseResult {
    grid: Vec<f32>,
    upsampled: Vec<f32>,
    class: usize,
}

fn run_case(model: &mut Model, input: &[f32], class: usize) -> CaseResult {
    model.input_mut().expect("input").copy_from_slice(input);
    model.run().expect("run");
    let mut cam = GradCam::new(model.head().clone());
    cam.compute(model.activations(), class).expect("gradcam");
    let (h, w) = (cam.height(), cam.width());
    let spec = model.manifest().tensor_spec();
    let upsampled =
        upsample_like_pytorch_grad_cam(cam.cam(), w, h, spec.width as usize, spec.height as usize);
    CaseResult {
        grid: cam.cam().to_vec(),
        upsampled,
        class,
    }
}

fn check_f32_golden(file: &str) {
    let g = json(format!("tests/golden/gradcam/{file}"));
    let model_rel = g["model"].as_str().expect("model");
    let mut model = Model::load(&manifest_for(model_rel)).expect("load model");
    let input = f32s(&g["input"]);
    let class = g["target_class"].as_u64().expect("class") as usize;
    let r = run_case(&mut model, &input, class);

    let ort = f32s(&g["logits_onnxruntime"]);
    let scale = ort.iter().fold(1f32, |m, v| m.max(v.abs()));
    let d = max_abs_diff(model.logits(), &ort);
    assert!(
        d <= LOGIT_TOLERANCE * scale,
        "{file}: logits differ from onnxruntime by {d}"
    );
    if g["target_is_argmax"].as_bool() == Some(true) {
        assert_eq!(argmax(model.logits()), r.class, "{file}: argmax class");
    }

    let grid = f32s(&g["cam_grid"]["values"]);
    assert_eq!(
        g["cam_grid"]["height"].as_u64(),
        Some(model.head().height as u64)
    );
    assert_eq!(
        g["cam_grid"]["width"].as_u64(),
        Some(model.head().width as u64)
    );
    let d = max_abs_diff(&r.grid, &grid);
    let du = max_abs_diff(&r.upsampled, &f32s(&g["cam_upsampled"]["values"]));
    eprintln!("{file}: grid max abs diff {d:.2e}, upsampled {du:.2e}");
    assert!(
        d <= GRID_TOLERANCE,
        "{file}: grid map differs from pytorch-grad-cam by {d}"
    );
    let up = f32s(&g["cam_upsampled"]["values"]);
    let d = max_abs_diff(&r.upsampled, &up);
    assert!(
        d <= UPSAMPLED_TOLERANCE,
        "{file}: upsampled map differs from pytorch-grad-cam by {d}"
    );
    // The map is not trivially flat: the comparison means something.
    let spread =
        grid.iter().fold(0f32, |m, v| m.max(*v)) - grid.iter().fold(1f32, |m, v| m.min(*v));
    assert!(spread > 0.5, "{file}: golden map is flat");
}

#[test]
fn tiny_f32_matches_pytorch_grad_cam_argmax() {
    for f in [
        "tiny-f32-synth0-argmax.json",
        "tiny-f32-synth1-argmax.json",
        "tiny-f32-synth2-argmax.json",
    ] {
        check_f32_golden(f);
    }
}

#[test]
fn tiny_f32_matches_pytorch_grad_cam_chosen_class() {
    check_f32_golden("tiny-f32-synth1-class1-bcc.json");
}

#[test]
fn mlp_head_backprop_matches_pytorch_grad_cam() {
    check_f32_golden("head-mlp-synth0-argmax.json");
    check_f32_golden("head-mlp-synth1-class4-mel.json");
}

#[test]
fn matmul_add_clip_head_backprop_matches_pytorch_grad_cam() {
    check_f32_golden("head-matmul-clip-synth0-argmax.json");
    check_f32_golden("head-matmul-clip-synth1-class4-mel.json");
}

#[test]
fn int8_map_correlates_with_f32_reference() {
    let mut model = Model::load(&repo().join("models/test/tiny-int8.toml")).expect("load int8");
    for i in 0..3 {
        let g = json(format!("tests/golden/gradcam/tiny-int8-synth{i}.json"));
        let reference = json(format!(
            "tests/golden/gradcam/{}",
            g["reference_case"].as_str().expect("reference_case")
        ));
        let input = f32s(&reference["input"]);
        let class = g["target_class"].as_u64().expect("class") as usize;
        let r = run_case(&mut model, &input, class);
        let ort = f32s(&g["logits_onnxruntime"]);
        let d = max_abs_diff(model.logits(), &ort);
        assert!(
            d <= 0.05,
            "int8 synth{i}: tract logits differ from onnxruntime int8 by {d}"
        );
        let p_grid = pearson(&r.grid, &f32s(&reference["cam_grid"]["values"]));
        let p_up = pearson(&r.upsampled, &f32s(&reference["cam_upsampled"]["values"]));
        eprintln!("int8 synth{i}: pearson grid {p_grid:.5}, upsampled {p_up:.5}");
        assert!(
            p_grid >= INT8_MIN_PEARSON,
            "int8 synth{i}: grid pearson {p_grid}"
        );
        assert!(
            p_up >= INT8_MIN_PEARSON,
            "int8 synth{i}: upsampled pearson {p_up}"
        );
    }
}
