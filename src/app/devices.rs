//! `dermcam devices`: the V4L2 cameras on this machine with their formats, sizes and rates.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::capture::negotiate::{Offered, Rates};
use crate::capture::v4l2::{probe, video_nodes, DeviceInfo, V4l2Error};

/// One `/dev/video*` node: described, or why not.
pub type Probed = Result<DeviceInfo, (PathBuf, V4l2Error)>;

/// Probes every `/dev/video*` node.
pub fn list() -> Vec<Probed> {
    video_nodes()
        .into_iter()
        .map(|p| probe(&p).map_err(|e| (p, e)))
        .collect()
}

fn rates_text(r: &Rates) -> String {
    match r {
        Rates::Discrete(list) if list.is_empty() => "rates not enumerated".into(),
        Rates::Discrete(list) => {
            let v: Vec<String> = list
                .iter()
                .map(|i| {
                    let f = i.fps();
                    if f.fract() == 0.0 {
                        format!("{f:.0}")
                    } else {
                        format!("{f:.2}")
                    }
                })
                .collect();
            format!("{} fps", v.join(", "))
        }
        Rates::Range { min, max } => format!("{:.2}..{:.2} fps", max.fps(), min.fps()),
    }
}

fn fourcc_text(c: [u8; 4]) -> String {
    String::from_utf8_lossy(&c).into_owned()
}

/// The human-readable report.
pub fn format_report(devices: &[Probed]) -> String {
    let mut out = String::new();
    if devices.is_empty() {
        out.push_str(
            "no cameras: there is no /dev/video* node on this machine\n\
             (is the dermatoscope plugged in? in a container, pass the device through; \
             `dermcam run` with a recording works without one)\n",
        );
        return out;
    }
    let mut cameras = 0;
    for d in devices {
        match d {
            Err((path, e)) => {
                let _ = writeln!(out, "{}: cannot be used: {e}", path.display());
            }
            Ok(info) => {
                let _ = writeln!(
                    out,
                    "{}: {} \"{}\" on {}{}",
                    info.path.display(),
                    info.driver,
                    info.card,
                    info.bus,
                    if info.is_capture {
                        ""
                    } else {
                        " (not a video capture node: metadata or output)"
                    }
                );
                for n in &info.stable_names {
                    let _ = writeln!(out, "  also {}", n.display());
                }
                if !info.is_capture {
                    continue;
                }
                cameras += 1;
                if info.offered.is_empty() {
                    let _ = writeln!(out, "  no formats enumerated");
                }
                let mut last: Option<[u8; 4]> = None;
                for o in &info.offered {
                    if last != Some(o.fourcc) {
                        let desc = info
                            .descriptions
                            .iter()
                            .find(|(c, _)| *c == o.fourcc)
                            .map(|(_, d)| d.as_str())
                            .unwrap_or("");
                        let support = match crate::capture::PixelFormat::from_fourcc(o.fourcc) {
                            Some(_) => "",
                            None => " [not supported by dermcam]",
                        };
                        let _ = writeln!(out, "  {} ({desc}){support}", fourcc_text(o.fourcc));
                        last = Some(o.fourcc);
                    }
                    let Offered {
                        width,
                        height,
                        rates,
                        ..
                    } = o;
                    let _ = writeln!(out, "    {width}x{height}  {}", rates_text(rates));
                }
            }
        }
    }
    if cameras == 0 {
        out.push_str("no video capture devices among these nodes\n");
    }
    out
}
