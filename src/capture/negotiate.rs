//! Format negotiation: which of the formats a camera offers dermcam asks for.
//!
//! Pure logic over plain data (what `VIDIOC_ENUM_FMT` / `ENUM_FRAMESIZES` /
//! `ENUM_FRAMEINTERVALS` returned, and the board's preference), so it is unit-tested with
//! tables and needs no device.
//!
//! # The fallback order
//!
//! 1. **Formats**: the board's list in its order (e.g. `["MJPG", "YUYV"]`), then every other
//!    format dermcam can convert (MJPG, YUYV, RGB3, in that order) — a picture in a
//!    non-preferred format beats no picture; [`Choice::preferred`] says when that happened.
//!    NV12 and other formats are recognised but not supported (no converter yet): they are
//!    never chosen, and a camera offering only those is an error that names them.
//! 2. **Size**, tier by tier:
//!    1. the exact size asked for (the format order picks among formats offering it);
//!    2. the nearest larger size (at least as wide *and* as high): the format order first,
//!       then the smallest area, then the smallest width — the crop and resize downstream
//!       handle any size;
//!    3. the largest smaller size (largest area, then largest width, then the format order:
//!       here resolution matters more than format).
//!
//!    So `MJPG` at 1280x720 loses to `YUYV` at exactly 640x480 when 640x480 is asked for, and
//!    `MJPG` at 800x600 wins over `YUYV` at 1280x960 (both larger: `MJPG` is preferred).
//! 3. **Frame rate**, among the intervals offered for the chosen format and size: the exact
//!    rate; else the slowest rate faster than asked; else the fastest rate slower than asked.
//!    A continuous or stepwise range containing the rate gives the exact rate. When the
//!    driver enumerates no intervals the asked rate is requested as is (the driver adjusts
//!    it in `VIDIOC_S_PARM`).

use std::cmp::Ordering;
use std::fmt;

use super::PixelFormat;

/// A frame interval in seconds per frame, `num / den` (V4L2's `struct v4l2_fract`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    /// Numerator (seconds).
    pub num: u32,
    /// Denominator.
    pub den: u32,
}

impl Interval {
    /// The interval of `fps` frames per second.
    pub const fn from_fps(fps: u32) -> Self {
        Interval { num: 1, den: fps }
    }

    /// Frames per second (`den / num`; 0 for a degenerate interval).
    pub fn fps(self) -> f64 {
        if self.num == 0 {
            0.0
        } else {
            self.den as f64 / self.num as f64
        }
    }

    /// Exact comparison of the rates of two intervals (faster is greater).
    pub fn cmp_rate(self, other: Interval) -> Ordering {
        // den/num vs other.den/other.num, cross-multiplied in u64.
        (self.den as u64 * other.num as u64).cmp(&(other.den as u64 * self.num as u64))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fps = self.fps();
        if fps.fract() == 0.0 {
            write!(f, "{fps:.0} fps")
        } else {
            write!(f, "{fps:.2} fps")
        }
    }
}

/// The frame rates offered for one format and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rates {
    /// A list of intervals (`V4L2_FRMIVAL_TYPE_DISCRETE`).
    Discrete(Vec<Interval>),
    /// A range (`V4L2_FRMIVAL_TYPE_STEPWISE` / `CONTINUOUS`): `min` is the shortest interval
    /// (fastest rate), `max` the longest.
    Range {
        /// Shortest interval.
        min: Interval,
        /// Longest interval.
        max: Interval,
    },
}

/// One (format, size) the device offers, with its frame rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// The V4L2 fourcc.
    pub fourcc: [u8; 4],
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rates at this size.
    pub rates: Rates,
}

/// What the board asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preference {
    /// Pixel formats in order of preference.
    pub formats: Vec<PixelFormat>,
    /// Desired width.
    pub width: u32,
    /// Desired height.
    pub height: u32,
    /// Desired frames per second.
    pub fps: u32,
}

/// How the chosen size relates to the asked one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SizeMatch {
    /// The size asked for.
    Exact,
    /// The nearest larger size.
    Larger,
    /// The largest smaller size.
    Smaller,
}

/// How the chosen rate relates to the asked one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateMatch {
    /// The rate asked for (or the driver enumerates no rates and will adjust it).
    Exact,
    /// The slowest faster rate.
    Faster,
    /// The fastest slower rate.
    Slower,
}

/// The negotiated format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Pixel format.
    pub pixel: PixelFormat,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frame interval to set with `VIDIOC_S_PARM`.
    pub interval: Interval,
    /// How the size was found.
    pub size_match: SizeMatch,
    /// How the rate was found.
    pub rate_match: RateMatch,
    /// Whether the format is in the board's list (else a fallback format was used).
    pub preferred: bool,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}x{} at {} (size {:?}, rate {:?}{})",
            self.pixel,
            self.width,
            self.height,
            self.interval,
            self.size_match,
            self.rate_match,
            if self.preferred {
                ""
            } else {
                ", not a preferred format"
            }
        )
    }
}

/// Formats dermcam converts, in fallback order after the board's own list.
pub const SUPPORTED: [PixelFormat; 3] = [PixelFormat::Mjpeg, PixelFormat::Yuyv, PixelFormat::Rgb24];

/// Formats recognised but not converted yet (named in errors).
pub const KNOWN_UNSUPPORTED: [&str; 4] = ["NV12", "NV21", "YU12", "H264"];

/// Errors of negotiation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    /// The device enumerates no capture formats at all.
    #[error("the device offers no capture formats")]
    NothingOffered,
    /// Nothing offered can be converted.
    #[error("the device offers only {offered}, none of which dermcam can convert (supported: MJPG, YUYV, RGB3; NV12 is not supported yet)")]
    NoSupportedFormat {
        /// Offered fourccs, comma-separated.
        offered: String,
    },
    /// The asked size or rate is zero.
    #[error("asked for {width}x{height} at {fps} fps: width, height and fps must be positive")]
    BadRequest {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Rate.
        fps: u32,
    },
}

/// Parses a fourcc name from a board file ("MJPG", "YUYV", "RGB3"; "JPEG" means MJPG).
/// Known but unsupported formats give an error that says so.
pub fn parse_format(name: &str) -> Result<PixelFormat, String> {
    let bytes = name.as_bytes();
    if bytes.len() == 4 {
        if let Some(p) = PixelFormat::from_fourcc([bytes[0], bytes[1], bytes[2], bytes[3]]) {
            return Ok(p);
        }
    }
    if KNOWN_UNSUPPORTED.contains(&name) {
        Err(format!(
            "{name:?} is not supported yet (no converter); supported: \"MJPG\", \"YUYV\", \"RGB3\""
        ))
    } else {
        Err(format!(
            "{name:?} is not a pixel format dermcam knows; supported: \"MJPG\", \"YUYV\", \"RGB3\""
        ))
    }
}

fn fourcc_text(c: [u8; 4]) -> String {
    String::from_utf8_lossy(&c).into_owned()
}

/// The size tier of an offered size relative to the asked one, and a key ordering the sizes
/// within the tier (smaller key = better).
fn size_rank(o: &Offered, w: u32, h: u32) -> (SizeMatch, (u64, u32)) {
    let area = o.width as u64 * o.height as u64;
    if o.width == w && o.height == h {
        (SizeMatch::Exact, (0, 0))
    } else if o.width >= w && o.height >= h {
        (SizeMatch::Larger, (area, o.width))
    } else {
        (SizeMatch::Smaller, (u64::MAX - area, u32::MAX - o.width))
    }
}

/// Picks the frame interval for a rate.
pub fn choose_rate(rates: &Rates, fps: u32) -> (Interval, RateMatch) {
    let want = Interval::from_fps(fps);
    match rates {
        Rates::Discrete(list) if list.is_empty() => (want, RateMatch::Exact),
        Rates::Discrete(list) => {
            if let Some(i) = list.iter().find(|i| i.cmp_rate(want) == Ordering::Equal) {
                return (*i, RateMatch::Exact);
            }
            let faster = list
                .iter()
                .filter(|i| i.num != 0 && i.cmp_rate(want) == Ordering::Greater)
                .min_by(|a, b| a.cmp_rate(**b));
            if let Some(i) = faster {
                return (*i, RateMatch::Faster);
            }
            let slower = list
                .iter()
                .filter(|i| i.num != 0)
                .max_by(|a, b| a.cmp_rate(**b));
            match slower {
                Some(i) => (*i, RateMatch::Slower),
                None => (want, RateMatch::Exact),
            }
        }
        Rates::Range { min, max } => {
            // min = shortest interval = fastest rate.
            if want.cmp_rate(*min) == Ordering::Greater {
                (*min, RateMatch::Slower)
            } else if want.cmp_rate(*max) == Ordering::Less {
                (*max, RateMatch::Faster)
            } else {
                (want, RateMatch::Exact)
            }
        }
    }
}

/// Chooses a format, size and rate from what the device offers (see the module docs for the
/// order).
pub fn choose(offered: &[Offered], pref: &Preference) -> Result<Choice, NegotiateError> {
    if pref.width == 0 || pref.height == 0 || pref.fps == 0 {
        return Err(NegotiateError::BadRequest {
            width: pref.width,
            height: pref.height,
            fps: pref.fps,
        });
    }
    if offered.is_empty() {
        return Err(NegotiateError::NothingOffered);
    }
    // Format order: the board's, then the other supported ones.
    let mut order: Vec<PixelFormat> = Vec::new();
    for f in pref.formats.iter().chain(SUPPORTED.iter()) {
        if !order.contains(f) {
            order.push(*f);
        }
    }
    type Key = (SizeMatch, (u64, u32), (u64, u32));
    let mut best: Option<(Key, &Offered, PixelFormat)> = None;
    for o in offered {
        let Some(pixel) = PixelFormat::from_fourcc(o.fourcc) else {
            continue;
        };
        let Some(format_rank) = order.iter().position(|p| *p == pixel) else {
            continue;
        };
        let (tier, within) = size_rank(o, pref.width, pref.height);
        // Exact and larger sizes all serve: the format order decides, then the nearest size.
        // Smaller sizes lose detail: the largest wins, then the format order.
        let key = match tier {
            SizeMatch::Smaller => (tier, within, (format_rank as u64, 0)),
            _ => (tier, (format_rank as u64, 0), within),
        };
        if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
            best = Some((key, o, pixel));
        }
    }
    let Some(((size_match, _, _), o, pixel)) = best else {
        let mut names: Vec<String> = Vec::new();
        for o in offered {
            let n = fourcc_text(o.fourcc);
            if !names.contains(&n) {
                names.push(n);
            }
        }
        return Err(NegotiateError::NoSupportedFormat {
            offered: names.join(", "),
        });
    };
    let (interval, rate_match) = choose_rate(&o.rates, pref.fps);
    Ok(Choice {
        pixel,
        width: o.width,
        height: o.height,
        interval,
        size_match,
        rate_match,
        preferred: pref.formats.contains(&pixel),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(fourcc: &[u8; 4], w: u32, h: u32, fps: &[u32]) -> Offered {
        Offered {
            fourcc: *fourcc,
            width: w,
            height: h,
            rates: Rates::Discrete(fps.iter().map(|f| Interval::from_fps(*f)).collect()),
        }
    }

    fn pref(formats: &[PixelFormat], w: u32, h: u32, fps: u32) -> Preference {
        Preference {
            formats: formats.to_vec(),
            width: w,
            height: h,
            fps,
        }
    }

    use PixelFormat::{Mjpeg as M, Rgb24 as R, Yuyv as Y};

    /// A typical UVC dermatoscope: MJPEG at every size, YUYV only at small ones.
    fn uvc() -> Vec<Offered> {
        vec![
            d(b"MJPG", 1920, 1080, &[30, 15]),
            d(b"MJPG", 1280, 720, &[30, 15]),
            d(b"MJPG", 640, 480, &[30, 15]),
            d(b"YUYV", 640, 480, &[30, 15]),
            d(b"YUYV", 320, 240, &[30]),
        ]
    }

    #[test]
    fn table_of_fallbacks() {
        // (offered, preference) -> (format, w, h, size match, preferred)
        type Expected = (PixelFormat, u32, u32, SizeMatch, bool);
        let cases: Vec<(&str, Vec<Offered>, Preference, Expected)> = vec![
            (
                "exact, first preference",
                uvc(),
                pref(&[M, Y], 640, 480, 30),
                (M, 640, 480, SizeMatch::Exact, true),
            ),
            (
                "exact, second preference",
                uvc(),
                pref(&[Y, M], 640, 480, 30),
                (Y, 640, 480, SizeMatch::Exact, true),
            ),
            (
                "exact size beats format order",
                uvc(),
                pref(&[Y, M], 1280, 720, 30),
                (M, 1280, 720, SizeMatch::Exact, true),
            ),
            (
                "nearest larger",
                uvc(),
                pref(&[M], 800, 600, 30),
                (M, 1280, 720, SizeMatch::Larger, true),
            ),
            (
                "nearest larger prefers preferred format",
                vec![d(b"YUYV", 1024, 768, &[30]), d(b"MJPG", 1280, 960, &[30])],
                pref(&[M, Y], 800, 600, 30),
                (M, 1280, 960, SizeMatch::Larger, true),
            ),
            (
                "larger must cover both sides",
                vec![d(b"MJPG", 1920, 400, &[30]), d(b"MJPG", 1024, 768, &[30])],
                pref(&[M], 800, 600, 30),
                (M, 1024, 768, SizeMatch::Larger, true),
            ),
            (
                "largest smaller",
                uvc(),
                pref(&[M], 4000, 3000, 30),
                (M, 1920, 1080, SizeMatch::Smaller, true),
            ),
            (
                "largest smaller across formats",
                vec![d(b"YUYV", 320, 240, &[30]), d(b"YUYV", 640, 480, &[30])],
                pref(&[Y], 1280, 720, 30),
                (Y, 640, 480, SizeMatch::Smaller, true),
            ),
            (
                "non-preferred format as last resort",
                vec![d(b"YUYV", 640, 480, &[30])],
                pref(&[M], 640, 480, 30),
                (Y, 640, 480, SizeMatch::Exact, false),
            ),
            (
                "preferred larger beats fallback exact? no: exact tier first",
                vec![d(b"RGB3", 640, 480, &[30]), d(b"MJPG", 1280, 720, &[30])],
                pref(&[M], 640, 480, 30),
                (R, 640, 480, SizeMatch::Exact, false),
            ),
            (
                "NV12 skipped",
                vec![d(b"NV12", 640, 480, &[30]), d(b"YUYV", 640, 480, &[30])],
                pref(&[M, Y], 640, 480, 30),
                (Y, 640, 480, SizeMatch::Exact, true),
            ),
            (
                "JPEG fourcc is MJPEG",
                vec![d(b"JPEG", 640, 480, &[30])],
                pref(&[M], 640, 480, 30),
                (M, 640, 480, SizeMatch::Exact, true),
            ),
            (
                "RGB3 preferred",
                vec![d(b"YUYV", 640, 480, &[30]), d(b"RGB3", 640, 480, &[30])],
                pref(&[R], 640, 480, 30),
                (R, 640, 480, SizeMatch::Exact, true),
            ),
        ];
        for (name, offered, p, (pixel, w, h, m, preferred)) in cases {
            let c = choose(&offered, &p).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (c.pixel, c.width, c.height, c.size_match, c.preferred),
                (pixel, w, h, m, preferred),
                "{name}"
            );
        }
    }

    #[test]
    fn table_of_rates() {
        let f = |v: &[u32]| Rates::Discrete(v.iter().map(|x| Interval::from_fps(*x)).collect());
        let cases = [
            (
                "exact",
                f(&[30, 15, 5]),
                15,
                Interval::from_fps(15),
                RateMatch::Exact,
            ),
            (
                "slowest faster",
                f(&[60, 30, 5]),
                25,
                Interval::from_fps(30),
                RateMatch::Faster,
            ),
            (
                "fastest slower",
                f(&[15, 10, 5]),
                25,
                Interval::from_fps(15),
                RateMatch::Slower,
            ),
            (
                "none enumerated",
                f(&[]),
                25,
                Interval::from_fps(25),
                RateMatch::Exact,
            ),
            (
                "NTSC 30000/1001 faster than 25",
                Rates::Discrete(vec![
                    Interval {
                        num: 1001,
                        den: 30000,
                    },
                    Interval::from_fps(15),
                ]),
                25,
                Interval {
                    num: 1001,
                    den: 30000,
                },
                RateMatch::Faster,
            ),
            (
                "range contains",
                Rates::Range {
                    min: Interval::from_fps(60),
                    max: Interval::from_fps(1),
                },
                25,
                Interval::from_fps(25),
                RateMatch::Exact,
            ),
            (
                "range too slow for 120",
                Rates::Range {
                    min: Interval::from_fps(60),
                    max: Interval::from_fps(1),
                },
                120,
                Interval::from_fps(60),
                RateMatch::Slower,
            ),
            (
                "range too fast for 1",
                Rates::Range {
                    min: Interval::from_fps(60),
                    max: Interval::from_fps(5),
                },
                1,
                Interval::from_fps(5),
                RateMatch::Faster,
            ),
        ];
        for (name, rates, fps, interval, m) in cases {
            assert_eq!(choose_rate(&rates, fps), (interval, m), "{name}");
        }
        // The rate comes from the chosen size's own list.
        let c = choose(&uvc(), &pref(&[Y], 320, 240, 15)).unwrap();
        assert_eq!(
            (c.interval, c.rate_match),
            (Interval::from_fps(30), RateMatch::Faster)
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            choose(&[], &pref(&[M], 640, 480, 30)),
            Err(NegotiateError::NothingOffered)
        );
        let e = choose(
            &[d(b"NV12", 640, 480, &[30]), d(b"H264", 640, 480, &[30])],
            &pref(&[M], 640, 480, 30),
        )
        .unwrap_err();
        assert_eq!(
            e,
            NegotiateError::NoSupportedFormat {
                offered: "NV12, H264".into()
            }
        );
        assert!(e.to_string().contains("NV12 is not supported yet"));
        assert!(matches!(
            choose(&uvc(), &pref(&[M], 0, 480, 30)),
            Err(NegotiateError::BadRequest { .. })
        ));
        assert_eq!(parse_format("MJPG"), Ok(M));
        assert_eq!(parse_format("JPEG"), Ok(M));
        assert!(parse_format("NV12")
            .unwrap_err()
            .contains("not supported yet"));
        assert!(parse_format("XXXX")
            .unwrap_err()
            .contains("not a pixel format"));
    }
}
