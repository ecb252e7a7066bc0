//! Displays as configured: `[display]` keys for png/null/fbdev/drm and their errors, the
//! output size each sink asks the composer for, and device errors that name the device.
//! (Pixel packing, fbdev/DRM uapi layouts and the scaler are unit-tested in their modules;
//! the real devices are exercised in the HIL VM.)

mod common;

use std::path::PathBuf;

use dermcam::app::run::open_sink;
use dermcam::config::{Config, DisplayKind};

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, "test.toml").map_err(|e| e.to_string())
}

#[test]
fn display_kinds_and_their_defaults() {
    let c = parse("[display]\nkind = \"fbdev\"\n").expect("fbdev");
    assert_eq!(c.display.kind, DisplayKind::Fbdev);
    assert_eq!(c.display.device_path(), PathBuf::from("/dev/fb0"));
    assert_eq!(c.display.tty, "/dev/tty0");
    let c = parse("[display]\nkind = \"drm\"\n").expect("drm");
    assert_eq!(c.display.device_path(), PathBuf::from("/dev/dri/card0"));
    let c = parse("[display]\nkind = \"drm\"\ndevice = \"/dev/dri/card1\"\ntty = \"none\"\n")
        .expect("drm card1");
    assert_eq!(c.display.device_path(), PathBuf::from("/dev/dri/card1"));
    assert_eq!(c.display.tty, "none");
    let c = parse("[display]\nkind = \"null\"\nwidth = 320\nheight = 240\n").expect("null");
    assert_eq!((c.display.width, c.display.height), (Some(320), Some(240)));
    let c = parse("").expect("defaults");
    assert_eq!((c.display.width, c.display.height), (None, None));
}

#[test]
fn bad_display_keys_are_named() {
    for (text, expect) in [
        (
            "[display]\nkind = \"fbdev\"\nwidth = 320\nheight = 240\n",
            "`display.width` is set, but a fbdev display has its own size",
        ),
        (
            "[display]\nkind = \"png\"\nwidth = 320\n",
            "`display.height` is missing; set both width and height, or neither",
        ),
        (
            "[display]\nkind = \"png\"\nwidth = 8\nheight = 240\n",
            "`display.width` is 8; must be within 16..=8192",
        ),
        (
            "[display]\nkind = \"png\"\ndevice = \"/dev/fb0\"\n",
            "`display.device` is set, but kind = \"png\" has no device",
        ),
        (
            "[display]\nkind = \"fbdev\"\ndevice = \"\"\n",
            "`display.device` is empty",
        ),
        ("[display]\nkind = \"vga\"\n", "unknown variant `vga`"),
        (
            "[display]\nkind = \"drm\"\nconnector = 1\n",
            "unknown field `connector`",
        ),
    ] {
        let e = parse(text).expect_err(text);
        assert!(e.contains(expect), "{text:?}: {e}");
    }
}

#[test]
fn sinks_report_the_size_the_composer_draws_at() {
    let dir = common::temp_dir("display-sized");
    let text = format!(
        "[display]\nkind = \"png\"\ndir = {:?}\nwidth = 320\nheight = 240\n",
        dir.path().display().to_string()
    );
    let sink = open_sink(&parse(&text).expect("png")).expect("png sink");
    assert_eq!(sink.output_size(), Some((320, 240)));
    let sink = open_sink(&parse("[display]\nkind = \"null\"\n").expect("null")).expect("null");
    assert_eq!(sink.output_size(), None);
}

#[test]
fn device_errors_name_the_device_and_the_problem() {
    let e = open_sink(
        &parse("[display]\nkind = \"fbdev\"\ndevice = \"/nonexistent/fb3\"\ntty = \"none\"\n")
            .expect("cfg"),
    )
    .err()
    .expect("no device")
    .to_string();
    assert!(
        e.starts_with("/nonexistent/fb3: cannot open the framebuffer"),
        "{e}"
    );
    // A file that is not a framebuffer: the first ioctl is refused, and says so.
    let f = tempfile::NamedTempFile::new().expect("temp");
    let path = f.path().display().to_string();
    let text = format!("[display]\nkind = \"fbdev\"\ndevice = {path:?}\ntty = \"none\"\n");
    let e = open_sink(&parse(&text).expect("cfg"))
        .err()
        .expect("not a framebuffer")
        .to_string();
    assert!(
        e.starts_with(&format!("{path}: FBIOGET_VSCREENINFO failed")),
        "{e}"
    );
    let text = format!("[display]\nkind = \"drm\"\ndevice = {path:?}\ntty = \"none\"\n");
    let e = open_sink(&parse(&text).expect("cfg"))
        .err()
        .expect("not a DRM device")
        .to_string();
    assert!(
        e.starts_with(&format!("{path}: DRM_IOCTL_MODE_GETRESOURCES failed")),
        "{e}"
    );
}

/// Cost of composing a 640x480 frame onto displays of several sizes and of packing it for a
/// framebuffer (medians printed; no assertion on time). Run with
/// `cargo test --release --test display -- --ignored --nocapture`.
#[test]
#[ignore]
fn compose_and_pack_cost_report() {
    use dermcam::compose::{Composer, Rates};
    use dermcam::display::pack::{Layout, PixelFormat};
    use dermcam::frame::RgbFrame;
    use dermcam::model::Label;
    use dermcam::pipeline::Analysis;
    use dermcam::preprocess::centre_square_crop;
    use std::time::Instant;
    let labels: Vec<Label> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|id| Label {
            id: id.to_string(),
            name: format!("class {id}"),
        })
        .collect();
    let composer = Composer::new(labels, 0.45, 0.5);
    let mut frame = RgbFrame::new(640, 480);
    for (i, v) in frame.data_mut().iter_mut().enumerate() {
        *v = (i * 7 % 251) as u8;
    }
    let mut a = Analysis::new(7, 7, 7, centre_square_crop(640, 480, 1.0));
    a.probabilities[2] = 0.8;
    a.class = 2;
    let median = |f: &mut dyn FnMut()| {
        let mut t: Vec<f64> = (0..40)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    for (w, h) in [(640, 480), (320, 240), (800, 480), (1280, 800)] {
        composer.prepare(640, 480, w, h);
        let mut out = RgbFrame::new(w, h);
        let c = median(&mut || {
            composer
                .compose(&frame, Some(&a), Rates::default(), &mut out)
                .expect("compose");
        });
        let layout = Layout {
            width: w,
            height: h,
            stride: w as usize * 4 + 64,
            offset: 0,
            format: PixelFormat::XRGB8888,
        };
        let mut buf = vec![0u8; layout.stride * h as usize];
        let p = median(&mut || layout.pack(out.data(), &mut buf).expect("pack"));
        let l565 = Layout {
            stride: w as usize * 2,
            format: PixelFormat::RGB565,
            ..layout
        };
        let p565 = median(&mut || l565.pack(out.data(), &mut buf).expect("pack"));
        eprintln!(
            "640x480 -> {w}x{h}: compose {c:.2} ms, pack XRGB8888 {p:.2} ms, RGB565 {p565:.2} ms"
        );
    }
}
