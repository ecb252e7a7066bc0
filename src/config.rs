//! Configuration: a board file (`boards/NAME.toml`, what a device has) overridden by an
//! optional config file (what this installation wants). Both use the same keys:
//!
//! ```toml
//! [board]
//! name = "desktop"
//! description = "Development machine: bundled recording, PNG output"
//!
//! [source]
//! kind = "recording"        # "recording" (a .dcrec file) or "stills" (a folder of images)
//! path = "recordings/lesion-mjpeg.dcrec"
//! realtime = true           # replay at the recorded frame rate (false: as fast as possible)
//! loop = false              # start again at the end
//! # kind = "v4l2"           # a camera, with:
//! # device = "/dev/video0"  #   node, or a /dev/v4l/by-id or by-path name
//! # formats = ["MJPG", "YUYV"]  # preference order (RGB3 too; NV12 not yet)
//! # width = 640, height = 480, fps = 15, buffers = 4
//!
//! [model]
//! manifest = "models/efficientnet-lite0-ham10000/model-f32.toml"
//! # target_class = "mel"    # explain this class instead of the top one
//! smoothing_seconds = 0.2   # average the probabilities over frames (time constant; 0 = off;
//!                           # a stills source is never averaged)
//!
//! [preprocess]
//! crop_fraction = 1.0       # centre square side / the frame's short side (0.1..=1)
//!
//! [heatmap]
//! colormap = "jet"          # "jet" (as pytorch-grad-cam) or "inferno"
//! opacity = 0.45            # heatmap weight in the blend (0..=1)
//!
//! [overlay]
//! low_confidence = 0.5      # below this probability the result is marked
//!
//! [display]
//! kind = "png"              # "png" (headless files), "null", "fbdev" (/dev/fbN), "drm" (dumb buffer)
//! dir = "out/run"           # png: output folder
//! every = 15                # png: keep every k-th frame (plus latest.png)
//! # width = 320, height = 240   # png/null: compose at this size (default: the camera's)
//! # device = "/dev/fb0"     # fbdev (default /dev/fb0) or drm (default /dev/dri/card0)
//! # tty = "/dev/tty0"       # fbdev/drm: console put in graphics mode; "none" leaves it alone
//!
//! [pipeline]
//! frame_slots = 5           # frame buffers (4..=8)
//!
//! [controls]
//! stdin = false             # development: f (freeze), s (save), q (quit) on standard input
//! # button_chip = "/dev/gpiochip0"; button_line = 17   # main button: short = freeze, long = save
//! active_low = true         # the buttons pull their lines low when pressed
//! long_press_ms = 1500      # a press held this long saves a record (100..=10000)
//! debounce_ms = 30          # a level must hold this long to count (0..=500)
//! # save_chip = "/dev/gpiochip0"; save_line = 27       # optional second button: save
//! # led_chip = "/dev/gpiochip0"; led_line = 22         # status LED
//!
//! [records]
//! dir = "out/records"       # screening records, one folder each
//! # max_count = 500         # keep at most this many (oldest removed first)
//! # max_bytes = 2000000000  # and at most this many bytes
//! # device_id = "derm-01"   # default: the host name
//! ```
//!
//! Relative paths in a board file are relative to the folder that holds `boards/`; in a
//! config file, relative to the config file. Unknown keys and bad values are errors that
//! name the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::heatmap::ColorMapKind;

/// Errors reading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file is not valid TOML, or has an unknown or mistyped key.
    #[error("{path}: {message}")]
    Parse {
        /// File (or files, for a merged config).
        path: String,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: `{key}` {problem}")]
    Value {
        /// File(s).
        path: String,
        /// Dotted key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// No board file of that name.
    #[error("no board named {name:?}: looked for {tried:?}; available: {available:?}")]
    NoBoard {
        /// Requested name.
        name: String,
        /// Paths tried.
        tried: Vec<PathBuf>,
        /// Boards found.
        available: Vec<String>,
    },
}

/// `[board]`.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardSection {
    /// Board name.
    #[serde(default)]
    pub name: String,
    /// Human description.
    #[serde(default)]
    pub description: String,
}

/// Kinds of frame source.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A `.dcrec` recording.
    Recording,
    /// A folder of JPEG/PNG stills.
    Stills,
    /// A V4L2 camera (`device`, `formats`, `width`, `height`, `fps`, `buffers`).
    V4l2,
}

/// `[source]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// Kind of source.
    #[serde(default = "default_source_kind")]
    pub kind: SourceKind,
    /// Recording file or stills folder.
    #[serde(default = "default_source_path")]
    pub path: PathBuf,
    /// Replay at recorded speed.
    #[serde(default = "yes")]
    pub realtime: bool,
    /// Loop at the end.
    #[serde(default, rename = "loop")]
    pub looped: bool,
    /// V4L2: device node or stable name (`/dev/video0`, `video0`, a `/dev/v4l/by-id` name).
    #[serde(default = "default_device")]
    pub device: String,
    /// V4L2: pixel formats in order of preference (`"MJPG"`, `"YUYV"`, `"RGB3"`).
    #[serde(default = "default_formats")]
    pub formats: Vec<String>,
    /// V4L2: desired width.
    #[serde(default = "default_width")]
    pub width: u32,
    /// V4L2: desired height.
    #[serde(default = "default_height")]
    pub height: u32,
    /// V4L2: desired frame rate.
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// V4L2: mmap buffers.
    #[serde(default = "default_buffers")]
    pub buffers: u32,
    /// JPEG decoder for MJPEG frames and JPEG stills: `"auto"` (libjpeg-turbo, the training
    /// pipeline's decoder, when `libturbojpeg.so.0` is installed; `zune-jpeg` otherwise),
    /// `"libjpeg-turbo"` or `"zune-jpeg"`.
    #[serde(default)]
    pub jpeg_decoder: crate::convert::JpegDecoderChoice,
}

impl SourceSection {
    /// The V4L2 settings of this section (meaningful for `kind = "v4l2"`).
    pub fn v4l2_config(&self) -> Result<crate::capture::v4l2::V4l2Config, (&'static str, String)> {
        let mut formats = Vec::new();
        for f in &self.formats {
            formats.push(
                crate::capture::negotiate::parse_format(f).map_err(|e| ("source.formats", e))?,
            );
        }
        if formats.is_empty() {
            return Err((
                "source.formats",
                "is empty; list at least one of \"MJPG\", \"YUYV\", \"RGB3\"".into(),
            ));
        }
        for (key, v) in [("source.width", self.width), ("source.height", self.height)] {
            if !(16..=8192).contains(&v) {
                return Err((key, format!("is {v}; must be within 16..=8192")));
            }
        }
        if !(1..=240).contains(&self.fps) {
            return Err((
                "source.fps",
                format!("is {}; must be within 1..=240", self.fps),
            ));
        }
        if !(2..=32).contains(&self.buffers) {
            return Err((
                "source.buffers",
                format!("is {}; must be within 2..=32", self.buffers),
            ));
        }
        Ok(crate::capture::v4l2::V4l2Config {
            device: self.device.clone(),
            formats,
            width: self.width,
            height: self.height,
            fps: self.fps,
            buffers: self.buffers,
            ..Default::default()
        })
    }
}

/// `[model]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model manifest.
    #[serde(default = "default_manifest")]
    pub manifest: PathBuf,
    /// Label id to explain instead of the top class.
    #[serde(default)]
    pub target_class: Option<String>,
    /// Time constant, in seconds, of the moving average of the probabilities over frames
    /// (`pipeline::smooth`); 0 shows every frame's own result.
    #[serde(default = "default_smoothing_seconds")]
    pub smoothing_seconds: f64,
}

fn default_smoothing_seconds() -> f64 {
    0.2
}

impl ModelSection {
    /// The smoothing time constant (`None`: off). Valid after [`Config::validate`].
    pub fn smoothing(&self) -> Option<std::time::Duration> {
        (self.smoothing_seconds > 0.0)
            .then(|| std::time::Duration::from_secs_f64(self.smoothing_seconds))
    }
}

/// `[preprocess]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSection {
    /// Centre square side relative to the frame's short side.
    #[serde(default = "one")]
    pub crop_fraction: f32,
}

/// `[heatmap]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeatmapSection {
    /// Colour map name.
    #[serde(default = "default_colormap")]
    pub colormap: String,
    /// Heatmap weight in the blend.
    #[serde(default = "default_opacity")]
    pub opacity: f32,
}

/// `[overlay]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OverlaySection {
    /// Low-confidence threshold.
    #[serde(default = "default_low_confidence")]
    pub low_confidence: f32,
}

/// Kinds of display.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DisplayKind {
    /// PNG files.
    Png,
    /// Nothing (benchmarks).
    Null,
    /// An ST7789 / ILI9341 SPI panel, configured in `[display.spi]`.
    Spi,
    /// A Linux framebuffer (`device`, default `/dev/fb0`; size and format from the device).
    Fbdev,
    /// A DRM/KMS dumb buffer (`device`, default `/dev/dri/card0`; the connector's preferred
    /// mode).
    Drm,
}

/// `[display]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DisplaySection {
    /// Kind of display.
    #[serde(default = "default_display_kind")]
    pub kind: DisplayKind,
    /// Output folder for PNG files.
    #[serde(default = "default_out_dir")]
    pub dir: PathBuf,
    /// Keep every k-th frame.
    #[serde(default = "default_every")]
    pub every: u64,
    /// `[display.spi]`: the SPI panel (required by `kind = "spi"`).
    #[serde(default)]
    pub spi: Option<crate::display::spi::SpiSection>,
    /// fbdev/drm: the device node (default `/dev/fb0` / `/dev/dri/card0`).
    #[serde(default)]
    pub device: Option<PathBuf>,
    /// fbdev/drm: the tty put in graphics mode while dermcam draws (`"none"`: leave the
    /// console alone).
    #[serde(default = "default_tty")]
    pub tty: String,
    /// png/null: output width (default: the camera frame's; fbdev/drm take the device's).
    #[serde(default)]
    pub width: Option<u32>,
    /// png/null: output height.
    #[serde(default)]
    pub height: Option<u32>,
}

impl DisplaySection {
    /// The device node of an fbdev or DRM display.
    pub fn device_path(&self) -> PathBuf {
        match (&self.device, self.kind) {
            (Some(d), _) => d.clone(),
            (None, DisplayKind::Drm) => PathBuf::from("/dev/dri/card0"),
            (None, _) => PathBuf::from("/dev/fb0"),
        }
    }

    /// Checks the keys that depend on the kind: `(key, problem)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let kind = match self.kind {
            DisplayKind::Png => "png",
            DisplayKind::Null => "null",
            DisplayKind::Spi => "spi",
            DisplayKind::Fbdev => "fbdev",
            DisplayKind::Drm => "drm",
        };
        let sized = matches!(self.kind, DisplayKind::Png | DisplayKind::Null);
        for (key, v) in [
            ("display.width", self.width),
            ("display.height", self.height),
        ] {
            match v {
                Some(_) if !sized => {
                    return Err((
                        key,
                        format!("is set, but a {kind} display has its own size; width/height are for \"png\" and \"null\""),
                    ))
                }
                Some(v) if !(16..=8192).contains(&v) => {
                    return Err((key, format!("is {v}; must be within 16..=8192")))
                }
                _ => {}
            }
        }
        if self.width.is_some() != self.height.is_some() {
            return Err((
                if self.width.is_some() {
                    "display.height"
                } else {
                    "display.width"
                },
                "is missing; set both width and height, or neither".into(),
            ));
        }
        if self.device.is_some() && !matches!(self.kind, DisplayKind::Fbdev | DisplayKind::Drm) {
            return Err((
                "display.device",
                format!(
                    "is set, but kind = \"{kind}\" has no device (it is for \"fbdev\" and \"drm\")"
                ),
            ));
        }
        if self
            .device
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(("display.device", "is empty".into()));
        }
        Ok(())
    }
}

/// `[pipeline]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Frame buffers in the pool.
    #[serde(default = "default_slots")]
    pub frame_slots: usize,
}

/// `[controls]`: the clinician's buttons, the status LED, and standard input in development.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlsSection {
    /// Read `f`/`s`/`q` commands from standard input.
    #[serde(default)]
    pub stdin: bool,
    /// GPIO chip of the main button.
    #[serde(default = "default_gpio_chip")]
    pub button_chip: PathBuf,
    /// Line of the main button (none: no button).
    #[serde(default)]
    pub button_line: Option<u32>,
    /// Buttons read low when pressed.
    #[serde(default = "yes")]
    pub active_low: bool,
    /// A press held this long is a long press (save).
    #[serde(default = "default_long_press_ms")]
    pub long_press_ms: u64,
    /// Debounce time.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// GPIO chip of the optional save button.
    #[serde(default = "default_gpio_chip")]
    pub save_chip: PathBuf,
    /// Line of the optional save button.
    #[serde(default)]
    pub save_line: Option<u32>,
    /// GPIO chip of the status LED.
    #[serde(default = "default_gpio_chip")]
    pub led_chip: PathBuf,
    /// Line of the status LED (none: no LED).
    #[serde(default)]
    pub led_line: Option<u32>,
}

impl ControlsSection {
    /// Whether any GPIO line is configured.
    pub fn uses_gpio(&self) -> bool {
        self.button_line.is_some() || self.save_line.is_some() || self.led_line.is_some()
    }

    /// The buttons' timing.
    pub fn timing(&self) -> crate::controls::ButtonTiming {
        crate::controls::ButtonTiming {
            debounce: std::time::Duration::from_millis(self.debounce_ms),
            long_press: std::time::Duration::from_millis(self.long_press_ms),
        }
    }
}

/// `[records]`: where screening records go and how many are kept.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordsSection {
    /// Records directory.
    #[serde(default = "default_records_dir")]
    pub dir: PathBuf,
    /// Most records kept (oldest removed first); none: unlimited.
    #[serde(default)]
    pub max_count: Option<usize>,
    /// Most bytes kept; none: unlimited.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Device id written into every record; default: the host name.
    #[serde(default)]
    pub device_id: Option<String>,
}

impl RecordsSection {
    /// The retention limits.
    pub fn limits(&self) -> crate::record::RecordLimits {
        crate::record::RecordLimits {
            max_records: self.max_count,
            max_bytes: self.max_bytes,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[board]`.
    #[serde(default)]
    pub board: BoardSection,
    /// `[source]`.
    #[serde(default = "default_source")]
    pub source: SourceSection,
    /// `[model]`.
    #[serde(default = "default_model")]
    pub model: ModelSection,
    /// `[preprocess]`.
    #[serde(default = "default_preprocess")]
    pub preprocess: PreprocessSection,
    /// `[heatmap]`.
    #[serde(default = "default_heatmap")]
    pub heatmap: HeatmapSection,
    /// `[overlay]`.
    #[serde(default = "default_overlay")]
    pub overlay: OverlaySection,
    /// `[display]`.
    #[serde(default = "default_display")]
    pub display: DisplaySection,
    /// `[pipeline]`.
    #[serde(default = "default_pipeline")]
    pub pipeline: PipelineSection,
    /// `[controls]`.
    #[serde(default = "default_controls")]
    pub controls: ControlsSection,
    /// `[records]`.
    #[serde(default = "default_records")]
    pub records: RecordsSection,
}

fn yes() -> bool {
    true
}
fn one() -> f32 {
    1.0
}
fn default_source_kind() -> SourceKind {
    SourceKind::Recording
}
fn default_source_path() -> PathBuf {
    PathBuf::from("recordings/lesion-mjpeg.dcrec")
}
fn default_manifest() -> PathBuf {
    PathBuf::from(DEFAULT_MANIFEST)
}
fn default_colormap() -> String {
    "jet".into()
}
fn default_opacity() -> f32 {
    0.45
}
fn default_low_confidence() -> f32 {
    0.5
}
fn default_display_kind() -> DisplayKind {
    DisplayKind::Png
}
fn default_out_dir() -> PathBuf {
    PathBuf::from("out/run")
}
fn default_every() -> u64 {
    15
}
fn default_slots() -> usize {
    5
}
fn default_device() -> String {
    "/dev/video0".into()
}
fn default_formats() -> Vec<String> {
    vec!["MJPG".into(), "YUYV".into()]
}
fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    480
}
fn default_fps() -> u32 {
    15
}
fn default_buffers() -> u32 {
    4
}
fn default_source() -> SourceSection {
    SourceSection {
        kind: default_source_kind(),
        path: default_source_path(),
        realtime: true,
        looped: false,
        device: default_device(),
        formats: default_formats(),
        width: default_width(),
        height: default_height(),
        fps: default_fps(),
        buffers: default_buffers(),
        jpeg_decoder: crate::convert::JpegDecoderChoice::Auto,
    }
}
fn default_model() -> ModelSection {
    ModelSection {
        manifest: default_manifest(),
        target_class: None,
        smoothing_seconds: default_smoothing_seconds(),
    }
}
fn default_preprocess() -> PreprocessSection {
    PreprocessSection { crop_fraction: 1.0 }
}
fn default_heatmap() -> HeatmapSection {
    HeatmapSection {
        colormap: default_colormap(),
        opacity: default_opacity(),
    }
}
fn default_overlay() -> OverlaySection {
    OverlaySection {
        low_confidence: default_low_confidence(),
    }
}
fn default_display() -> DisplaySection {
    DisplaySection {
        kind: default_display_kind(),
        dir: default_out_dir(),
        every: default_every(),
        spi: None,
        device: None,
        tty: default_tty(),
        width: None,
        height: None,
    }
}
fn default_tty() -> String {
    "/dev/tty0".into()
}
fn default_gpio_chip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}
fn default_long_press_ms() -> u64 {
    1500
}
fn default_debounce_ms() -> u64 {
    30
}
fn default_records_dir() -> PathBuf {
    PathBuf::from("out/records")
}
fn default_controls() -> ControlsSection {
    ControlsSection {
        stdin: false,
        button_chip: default_gpio_chip(),
        button_line: None,
        active_low: true,
        long_press_ms: default_long_press_ms(),
        debounce_ms: default_debounce_ms(),
        save_chip: default_gpio_chip(),
        save_line: None,
        led_chip: default_gpio_chip(),
        led_line: None,
    }
}
fn default_records() -> RecordsSection {
    RecordsSection {
        dir: default_records_dir(),
        max_count: None,
        max_bytes: None,
        device_id: None,
    }
}
fn default_pipeline() -> PipelineSection {
    PipelineSection {
        frame_slots: default_slots(),
    }
}

/// The model manifest used when nothing else is configured.
pub const DEFAULT_MANIFEST: &str = "models/efficientnet-lite0-ham10000/model-f32.toml";

/// Keys holding paths, resolved against the file they appear in.
const PATH_KEYS: [(&str, &str); 4] = [
    ("source", "path"),
    ("model", "manifest"),
    ("display", "dir"),
    ("records", "dir"),
];

impl Default for Config {
    fn default() -> Self {
        Config {
            board: BoardSection::default(),
            source: default_source(),
            model: default_model(),
            preprocess: default_preprocess(),
            heatmap: default_heatmap(),
            overlay: default_overlay(),
            display: default_display(),
            pipeline: default_pipeline(),
            controls: default_controls(),
            records: default_records(),
        }
    }
}

/// Folders searched for `boards/NAME.toml`, in order: `$DERMCAM_DATA_DIR`, the current
/// folder, `../share/dermcam` beside the executable, `/usr/share/dermcam`.
pub fn data_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("DERMCAM_DATA_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("."));
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("../share/dermcam"));
        // A development build (`target/release/dermcam`): the checkout it was built from.
        let checkout = exe_dir.join("../..");
        if checkout.join("boards").is_dir() && checkout.join("Cargo.toml").is_file() {
            dirs.push(checkout);
        }
    }
    dirs.push(PathBuf::from("/usr/share/dermcam"));
    dirs
}

/// Finds a board file by name (or takes a path to one).
pub fn find_board(name: &str) -> Result<PathBuf, ConfigError> {
    let as_path = Path::new(name);
    if name.ends_with(".toml") || name.contains('/') {
        return if as_path.is_file() {
            Ok(as_path.to_path_buf())
        } else {
            Err(ConfigError::NoBoard {
                name: name.into(),
                tried: vec![as_path.to_path_buf()],
                available: Vec::new(),
            })
        };
    }
    let mut tried = Vec::new();
    let mut available = Vec::new();
    for dir in data_dirs() {
        let p = dir.join("boards").join(format!("{name}.toml"));
        if p.is_file() {
            return Ok(p);
        }
        tried.push(p);
        if let Ok(entries) = std::fs::read_dir(dir.join("boards")) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml") {
                    if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                        if !available.iter().any(|a| a == stem) {
                            available.push(stem.to_string());
                        }
                    }
                }
            }
        }
    }
    available.sort();
    Err(ConfigError::NoBoard {
        name: name.into(),
        tried,
        available,
    })
}

fn read_table(path: &Path, base: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
    for (section, key) in PATH_KEYS {
        if let Some(toml::Value::Table(t)) = table.get_mut(section) {
            if let Some(toml::Value::String(s)) = t.get_mut(key) {
                let p = Path::new(s.as_str());
                if p.is_relative() {
                    *s = base.join(p).to_string_lossy().into_owned();
                }
            }
        }
    }
    Ok(table)
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl Config {
    /// Loads a board file and an optional config file over it.
    pub fn load(board: Option<&Path>, config: Option<&Path>) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        let mut names = Vec::new();
        if let Some(b) = board {
            // Board paths are relative to the folder holding `boards/`.
            let root = b
                .parent()
                .and_then(|p| p.parent())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            let root = if root.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                root
            };
            merge(&mut table, read_table(b, &root)?);
            names.push(b.display().to_string());
        }
        if let Some(c) = config {
            let base = c.parent().map(Path::to_path_buf).unwrap_or_default();
            merge(&mut table, read_table(c, &base)?);
            names.push(c.display().to_string());
        }
        let origin = if names.is_empty() {
            "defaults".to_string()
        } else {
            names.join(" + ")
        };
        let cfg: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: origin.clone(),
                message: e.to_string().trim_end().to_string(),
            })?;
        cfg.validate(&origin)?;
        Ok(cfg)
    }

    /// Parses one TOML text (paths relative to the current folder).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.into(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Checks value ranges.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, problem: String| ConfigError::Value {
            path: origin.into(),
            key,
            problem,
        };
        if self.source.kind == SourceKind::V4l2 {
            self.source
                .v4l2_config()
                .map_err(|(key, problem)| bad(key, problem))?;
        }
        let t = self.model.smoothing_seconds;
        if !(0.0..=10.0).contains(&t) {
            return Err(bad(
                "model.smoothing_seconds",
                format!("is {t}; must be within 0..=10 (seconds; 0 turns smoothing off)"),
            ));
        }
        let f = self.preprocess.crop_fraction;
        if !(0.1..=1.0).contains(&f) {
            return Err(bad(
                "preprocess.crop_fraction",
                format!("is {f}; must be within 0.1..=1"),
            ));
        }
        let o = self.heatmap.opacity;
        if !(0.0..=1.0).contains(&o) {
            return Err(bad(
                "heatmap.opacity",
                format!("is {o}; must be within 0..=1"),
            ));
        }
        if self.colormap().is_none() {
            return Err(bad(
                "heatmap.colormap",
                format!(
                    "is {:?}; expected \"jet\" or \"inferno\"",
                    self.heatmap.colormap
                ),
            ));
        }
        let l = self.overlay.low_confidence;
        if !(0.0..=1.0).contains(&l) {
            return Err(bad(
                "overlay.low_confidence",
                format!("is {l}; must be within 0..=1"),
            ));
        }
        if self.display.every == 0 {
            return Err(bad("display.every", "is 0; must be at least 1".into()));
        }
        self.display
            .validate()
            .map_err(|(key, problem)| bad(key, problem))?;
        if self.display.kind == DisplayKind::Spi {
            let Some(spi) = &self.display.spi else {
                return Err(bad(
                    "display.spi",
                    "is missing; kind = \"spi\" needs a [display.spi] section".into(),
                ));
            };
            spi.validate().map_err(|(key, problem)| bad(key, problem))?;
        }
        let s = self.pipeline.frame_slots;
        if !(4..=crate::pipeline::pool::MAX_SLOTS).contains(&s) {
            return Err(bad(
                "pipeline.frame_slots",
                format!(
                    "is {s}; must be within 4..={}",
                    crate::pipeline::pool::MAX_SLOTS
                ),
            ));
        }
        let c = &self.controls;
        if !(100..=10_000).contains(&c.long_press_ms) {
            return Err(bad(
                "controls.long_press_ms",
                format!("is {}; must be within 100..=10000", c.long_press_ms),
            ));
        }
        if c.debounce_ms > 500 || c.debounce_ms >= c.long_press_ms {
            return Err(bad(
                "controls.debounce_ms",
                format!(
                    "is {}; must be within 0..=500 and below controls.long_press_ms ({})",
                    c.debounce_ms, c.long_press_ms
                ),
            ));
        }
        let lines = [
            ("controls.button_line", &c.button_chip, c.button_line),
            ("controls.save_line", &c.save_chip, c.save_line),
            ("controls.led_line", &c.led_chip, c.led_line),
        ];
        for (i, (key, chip, line)) in lines.iter().enumerate() {
            let Some(line) = line else { continue };
            for (other, other_chip, other_line) in &lines[..i] {
                if *other_line == Some(*line) && chip == other_chip {
                    return Err(bad(
                        key,
                        format!("is {line} on {}, the same line as {other}", chip.display()),
                    ));
                }
            }
        }
        if self.records.max_count == Some(0) {
            return Err(bad(
                "records.max_count",
                "is 0; must be at least 1 (leave it out for no limit)".into(),
            ));
        }
        if self.records.max_bytes == Some(0) {
            return Err(bad(
                "records.max_bytes",
                "is 0; must be at least 1 (leave it out for no limit)".into(),
            ));
        }
        if self
            .records
            .device_id
            .as_deref()
            .is_some_and(|d| d.trim().is_empty())
        {
            return Err(bad(
                "records.device_id",
                "is empty; leave it out to use the host name".into(),
            ));
        }
        Ok(())
    }

    /// The colour map.
    pub fn colormap(&self) -> Option<ColorMapKind> {
        self.heatmap.colormap.parse().ok()
    }
}
