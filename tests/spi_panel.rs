//! SPI panels (ST7789, ILI9341): the real driver path (`SpiPanel` → mipidsi → `PanelBus`)
//! driven by a mock SPI device and mock output pins that record every byte and level change.
//!
//! References are independent of the code under test: MADCTL bits from the controllers'
//! datasheets (MY 0x80, MX 0x40, MV 0x20, BGR 0x08), module windows from TFT_eSPI's
//! `ST7789_Rotation.h` (240x240: row start 80 at rotation 180, column start 80 at 270;
//! 135x240: column/row starts 52/40, 40/53, 53/40, 40/52), and a naive RGB565 conversion.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use dermcam::alloc_count::{self, CountingAlloc};
use dermcam::config::{Config, DisplayKind};
use dermcam::display::spi::{
    self, ColorOrder, Controller, GpioLine, PanelError, SpiPanel, SpiSection, WriteOnlySpi,
};
use dermcam::display::FrameSink;
use dermcam::frame::RgbFrame;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{self, OutputPin};
use embedded_hal::spi::{self as hal_spi, Operation, SpiDevice};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------
// Mocks
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Dc(bool),
    Rst(bool),
    Bl(bool),
    Write { start: usize, len: usize },
}

#[derive(Default)]
struct Log {
    events: Vec<Ev>,
    bytes: Vec<u8>,
    fail_writes: bool,
}

type Shared = Arc<Mutex<Log>>;

fn lock(log: &Shared) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
struct MockError(&'static str);

impl fmt::Display for MockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl hal_spi::Error for MockError {
    fn kind(&self) -> hal_spi::ErrorKind {
        hal_spi::ErrorKind::Other
    }
}

impl digital::Error for MockError {
    fn kind(&self) -> digital::ErrorKind {
        digital::ErrorKind::Other
    }
}

struct MockSpi(Shared);

impl hal_spi::ErrorType for MockSpi {
    type Error = MockError;
}

impl SpiDevice for MockSpi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), MockError> {
        let mut log = lock(&self.0);
        for op in operations.iter() {
            match op {
                Operation::Write(words) => {
                    if log.fail_writes {
                        return Err(MockError("bus fault"));
                    }
                    let start = log.bytes.len();
                    log.bytes.extend_from_slice(words);
                    log.events.push(Ev::Write {
                        start,
                        len: words.len(),
                    });
                }
                _ => panic!("the panel path must only write"),
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Role {
    Dc,
    Rst,
    Bl,
}

struct MockPin(Shared, Role);

impl MockPin {
    fn set(&mut self, level: bool) {
        let ev = match self.1 {
            Role::Dc => Ev::Dc(level),
            Role::Rst => Ev::Rst(level),
            Role::Bl => Ev::Bl(level),
        };
        lock(&self.0).events.push(ev);
    }
}

impl digital::ErrorType for MockPin {
    type Error = MockError;
}

impl OutputPin for MockPin {
    fn set_low(&mut self) -> Result<(), MockError> {
        self.set(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), MockError> {
        self.set(true);
        Ok(())
    }
}

struct NoDelay;

impl DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

type MockPanel = SpiPanel<MockSpi, MockPin, MockPin, MockPin>;

/// One DCS command and the data bytes sent after it (DC high).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cmd {
    op: u8,
    data: Vec<u8>,
}

/// Replays the log: a byte written with DC low is a command, bytes with DC high its data.
fn decode(log: &Log) -> Vec<Cmd> {
    let mut dc = None;
    let mut cmds: Vec<Cmd> = Vec::new();
    for ev in &log.events {
        match *ev {
            Ev::Dc(level) => dc = Some(level),
            Ev::Write { start, len } => {
                let bytes = &log.bytes[start..start + len];
                match dc {
                    Some(false) => cmds.extend(bytes.iter().map(|&op| Cmd {
                        op,
                        data: Vec::new(),
                    })),
                    Some(true) => cmds
                        .last_mut()
                        .expect("data before any command")
                        .data
                        .extend_from_slice(bytes),
                    None => panic!("SPI write before DC was driven"),
                }
            }
            _ => {}
        }
    }
    cmds
}

/// Every SPI write is 1..=4096 bytes.
fn assert_write_sizes(log: &Log) {
    for ev in &log.events {
        if let Ev::Write { len, .. } = *ev {
            assert!(len >= 1, "empty SPI write");
            assert!(
                len <= 4096,
                "SPI write of {len} bytes exceeds spidev's bufsiz"
            );
        }
    }
}

fn line(n: u32) -> GpioLine {
    GpioLine {
        chip: "gpiochip0".into(),
        line: n,
    }
}

fn section(controller: Controller, w: u16, h: u16, off: (u16, u16), rotation: u16) -> SpiSection {
    SpiSection {
        controller,
        device: "/dev/spidev0.0".into(),
        speed_hz: 40_000_000,
        mode: 0,
        dc: line(25),
        rst: Some(line(27)),
        backlight: Some(line(18)),
        width: w,
        height: h,
        rotation,
        offset_x: off.0,
        offset_y: off.1,
        mirror: false,
        invert_colors: None,
        color_order: None,
    }
}

fn open_mock(s: &SpiSection) -> (MockPanel, Shared) {
    let log: Shared = Arc::new(Mutex::new(Log::default()));
    let rst = s.rst.as_ref().map(|_| MockPin(log.clone(), Role::Rst));
    let bl = s.backlight.as_ref().map(|_| MockPin(log.clone(), Role::Bl));
    let panel = SpiPanel::new(
        s,
        MockSpi(log.clone()),
        MockPin(log.clone(), Role::Dc),
        rst,
        bl,
        &mut NoDelay,
        spi::MAX_TRANSFER,
    )
    .expect("panel init");
    (panel, log)
}

/// A deterministic frame with every bit pattern in every channel over its pixels.
fn test_frame(w: u32, h: u32, seed: u32) -> RgbFrame {
    let mut f = RgbFrame::new(w, h);
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    for b in f.data_mut() {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (x >> 24) as u8;
    }
    f
}

/// Naive RGB565, big-endian on the wire.
fn naive_rgb565_be(frame: &RgbFrame) -> Vec<u8> {
    let mut out = Vec::new();
    for p in frame.data().chunks(3) {
        let (r, g, b) = (p[0] as u16, p[1] as u16, p[2] as u16);
        let v = ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3);
        out.push((v >> 8) as u8);
        out.push((v & 0xFF) as u8);
    }
    out
}

fn be16_pair(a: u16, b: u16) -> Vec<u8> {
    vec![(a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8]
}

fn find(cmds: &[Cmd], op: u8) -> Option<usize> {
    cmds.iter().position(|c| c.op == op)
}

const MY: u8 = 0x80;
const MX: u8 = 0x40;
const MV: u8 = 0x20;
const BGR: u8 = 0x08;

fn madctl_rotation(rotation: u16) -> u8 {
    match rotation {
        0 => 0,
        90 => MX | MV,
        180 => MX | MY,
        270 => MY | MV,
        _ => unreachable!(),
    }
}

// ---------------------------------------------------------------------------------------
// Init sequences
// ---------------------------------------------------------------------------------------

#[test]
fn st7789_init_sequence() {
    for rotation in [0, 90, 180, 270] {
        let s = section(Controller::St7789, 240, 240, (0, 0), rotation);
        let (_panel, log) = open_mock(&s);
        let log = lock(&log);
        assert_write_sizes(&log);
        let first_write = log
            .events
            .iter()
            .position(|e| matches!(e, Ev::Write { .. }))
            .expect("writes");
        // Hardware reset: RST low, then high, before the first command.
        let rst: Vec<(usize, bool)> = log
            .events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Ev::Rst(l) => Some((i, *l)),
                _ => None,
            })
            .collect();
        assert_eq!(rst.len(), 2, "{rst:?}");
        assert!(!rst[0].1 && rst[1].1, "RST must go low then high: {rst:?}");
        assert!(
            rst[1].0 < first_write,
            "reset must end before the first command"
        );

        let cmds = decode(&log);
        assert!(find(&cmds, 0x01).is_none(), "no SWRESET with a reset line");
        let slpout = find(&cmds, 0x11).expect("SLPOUT");
        assert!(cmds[slpout].data.is_empty());
        let colmod = find(&cmds, 0x3A).expect("COLMOD");
        assert_eq!(cmds[colmod].data, [0x55], "16-bit colour");
        let madctl = find(&cmds, 0x36).expect("MADCTL");
        assert_eq!(
            cmds[madctl].data,
            [madctl_rotation(rotation)],
            "rotation {rotation}"
        );
        assert!(find(&cmds, 0x21).is_some(), "ST7789 inverts by default");
        assert!(find(&cmds, 0x20).is_none());
        let dispon = find(&cmds, 0x29).expect("DISPON");
        assert_eq!(dispon, cmds.len() - 1, "DISPON ends the init: {cmds:?}");
        assert!(slpout < dispon && colmod < dispon && madctl < dispon);

        // Backlight: off during init, on after DISPON.
        let bl: Vec<(usize, bool)> = log
            .events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Ev::Bl(l) => Some((i, *l)),
                _ => None,
            })
            .collect();
        let last_write = log
            .events
            .iter()
            .rposition(|e| matches!(e, Ev::Write { .. }))
            .expect("writes");
        assert_eq!(bl.len(), 2, "{bl:?}");
        assert!(!bl[0].1 && bl[0].0 < first_write);
        assert!(bl[1].1 && bl[1].0 > last_write);
    }
}

#[test]
fn ili9341_init_sequence() {
    for (rotation, mirror, invert, order) in [
        (0, false, None, None),
        (90, true, Some(true), Some(ColorOrder::Rgb)),
        (270, false, Some(false), Some(ColorOrder::Bgr)),
    ] {
        let mut s = section(Controller::Ili9341, 240, 320, (0, 0), rotation);
        s.rst = None;
        s.backlight = None;
        s.mirror = mirror;
        s.invert_colors = invert;
        s.color_order = order;
        let (_panel, log) = open_mock(&s);
        let log = lock(&log);
        assert_write_sizes(&log);
        assert!(!log
            .events
            .iter()
            .any(|e| matches!(e, Ev::Rst(_) | Ev::Bl(_))));
        let cmds = decode(&log);
        assert_eq!(cmds[0].op, 0x01, "software reset without a reset line");
        let colmod = find(&cmds, 0x3A).expect("COLMOD");
        assert_eq!(cmds[colmod].data, [0x55]);
        let mut expected = madctl_rotation(rotation);
        if mirror {
            expected ^= MX;
        }
        if order.unwrap_or(ColorOrder::Bgr) == ColorOrder::Bgr {
            expected |= BGR; // ILI9341 modules default to BGR
        }
        let madctl = find(&cmds, 0x36).expect("MADCTL");
        assert_eq!(cmds[madctl].data, [expected], "rotation {rotation}");
        let inverted = invert.unwrap_or(false);
        assert_eq!(find(&cmds, 0x21).is_some(), inverted);
        assert_eq!(find(&cmds, 0x20).is_some(), !inverted);
        let slpout = find(&cmds, 0x11).expect("SLPOUT");
        let dispon = find(&cmds, 0x29).expect("DISPON");
        assert!(slpout < dispon && colmod < dispon && madctl < dispon);
        assert_eq!(dispon, cmds.len() - 1);
    }
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// (controller, native w, h, offset, rotation, expected CASET x0..x1, RASET y0..y1)
#[allow(clippy::type_complexity)]
const WINDOWS: &[(
    Controller,
    u16,
    u16,
    (u16, u16),
    u16,
    (u16, u16),
    (u16, u16),
)] = &[
    (Controller::St7789, 240, 240, (0, 0), 0, (0, 239), (0, 239)),
    (Controller::St7789, 240, 240, (0, 0), 90, (0, 239), (0, 239)),
    (
        Controller::St7789,
        240,
        240,
        (0, 0),
        180,
        (0, 239),
        (80, 319),
    ),
    (
        Controller::St7789,
        240,
        240,
        (0, 0),
        270,
        (80, 319),
        (0, 239),
    ),
    (
        Controller::St7789,
        135,
        240,
        (52, 40),
        0,
        (52, 186),
        (40, 279),
    ),
    (
        Controller::St7789,
        135,
        240,
        (52, 40),
        90,
        (40, 279),
        (53, 187),
    ),
    (
        Controller::St7789,
        135,
        240,
        (52, 40),
        180,
        (53, 187),
        (40, 279),
    ),
    (
        Controller::St7789,
        135,
        240,
        (52, 40),
        270,
        (40, 279),
        (52, 186),
    ),
    (Controller::Ili9341, 240, 320, (0, 0), 0, (0, 239), (0, 319)),
    (
        Controller::Ili9341,
        240,
        320,
        (0, 0),
        90,
        (0, 319),
        (0, 239),
    ),
];

#[test]
fn frame_write_window_and_pixels() {
    for (i, &(c, w, h, off, rot, xs, ys)) in WINDOWS.iter().enumerate() {
        let s = section(c, w, h, off, rot);
        let (mut panel, log) = open_mock(&s);
        let (fw, fh) = if rot % 180 == 90 { (h, w) } else { (w, h) };
        assert_eq!(panel.frame_size(), (u32::from(fw), u32::from(fh)));
        assert_eq!(
            panel.output_size(),
            Some((u32::from(fw), u32::from(fh))),
            "the composer composes at the panel's size"
        );
        let frame = test_frame(u32::from(fw), u32::from(fh), i as u32);
        {
            let mut l = lock(&log);
            l.events.clear();
            l.bytes.clear();
        }
        panel.show(&frame, None, 0).expect("show");
        let log = lock(&log);
        assert_write_sizes(&log);
        let cmds = decode(&log);
        let ops: Vec<u8> = cmds.iter().map(|c| c.op).collect();
        assert_eq!(ops, [0x2A, 0x2B, 0x2C], "case {i}");
        assert_eq!(cmds[0].data, be16_pair(xs.0, xs.1), "CASET, case {i}");
        assert_eq!(cmds[1].data, be16_pair(ys.0, ys.1), "RASET, case {i}");
        assert_eq!(
            cmds[2].data.len(),
            usize::from(fw) * usize::from(fh) * 2,
            "case {i}"
        );
        assert!(
            cmds[2].data == naive_rgb565_be(&frame),
            "pixel data differs from the naive RGB565 conversion, case {i}"
        );
    }
}

#[test]
fn rgb565_extremes() {
    assert_eq!(spi::rgb565(255, 255, 255), 0xFFFF);
    assert_eq!(spi::rgb565(0, 0, 0), 0);
    assert_eq!(spi::rgb565(255, 0, 0), 0xF800);
    assert_eq!(spi::rgb565(0, 255, 0), 0x07E0);
    assert_eq!(spi::rgb565(0, 0, 255), 0x001F);
    assert_eq!(spi::rgb565(7, 3, 7), 0, "low bits dropped");
}

#[test]
fn wrong_frame_size_is_refused_by_name() {
    let s = section(Controller::St7789, 240, 240, (0, 0), 0);
    let (mut panel, log) = open_mock(&s);
    lock(&log).events.clear();
    let err = panel
        .show(&RgbFrame::new(320, 240), None, 0)
        .expect_err("size mismatch");
    let msg = err.to_string();
    assert!(
        msg.contains("/dev/spidev0.0") && msg.contains("320x240") && msg.contains("240x240"),
        "{msg}"
    );
    assert!(
        lock(&log).events.is_empty(),
        "nothing sent for a refused frame"
    );
}

#[test]
fn write_failure_names_the_device() {
    let s = section(Controller::Ili9341, 240, 320, (0, 0), 90);
    let (mut panel, log) = open_mock(&s);
    lock(&log).fail_writes = true;
    let msg = panel
        .show(&RgbFrame::new(320, 240), None, 0)
        .expect_err("bus fault")
        .to_string();
    assert!(
        msg.contains("/dev/spidev0.0") && msg.contains("bus fault"),
        "{msg}"
    );
}

#[test]
fn finish_turns_the_backlight_off() {
    let s = section(Controller::St7789, 240, 240, (0, 0), 0);
    let (mut panel, log) = open_mock(&s);
    lock(&log).events.clear();
    panel.finish().expect("finish");
    assert_eq!(lock(&log).events, [Ev::Bl(false)]);
    assert!(panel.describe().contains("ST7789 240x240"));
}

#[test]
fn zero_allocations_per_frame() {
    let s = section(Controller::St7789, 240, 240, (0, 80), 90);
    let (mut panel, log) = open_mock(&s);
    {
        let mut l = lock(&log);
        l.events.reserve(4096);
        l.bytes.reserve(240 * 240 * 2 + 4096);
    }
    let mut frame = test_frame(240, 240, 7);
    panel.show(&frame, None, 0).expect("first frame");
    for n in 1..=20u64 {
        // Change the picture in place (no allocation) so every frame is converted anew.
        for (j, b) in frame.data_mut().iter_mut().enumerate() {
            *b = b.wrapping_add((n as u8).wrapping_mul(31) ^ (j as u8));
        }
        {
            let mut l = lock(&log);
            l.events.clear();
            l.bytes.clear();
        }
        let before = alloc_count::thread_dermcam_allocations();
        panel.show(&frame, None, n).expect("show");
        let allocated = alloc_count::thread_dermcam_allocations() - before;
        assert_eq!(allocated, 0, "frame {n} allocated {allocated} times");
        let l = lock(&log);
        assert_eq!(decode(&l)[2].data, naive_rgb565_be(&frame), "frame {n}");
    }
    assert!(
        alloc_count::is_installed(),
        "the counting allocator is active"
    );
}

// ---------------------------------------------------------------------------------------
// The spidev link
// ---------------------------------------------------------------------------------------

/// An io::Write that records the size of every write(2).
struct Recorder {
    sizes: Vec<usize>,
    bytes: Vec<u8>,
    fail: Option<i32>,
}

impl std::io::Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(code) = self.fail {
            return Err(std::io::Error::from_raw_os_error(code));
        }
        self.sizes.push(buf.len());
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn recorder() -> Recorder {
    Recorder {
        sizes: Vec::new(),
        bytes: Vec::new(),
        fail: None,
    }
}

#[test]
fn write_only_spi_chunks_and_refuses_reads() {
    let mut spi = WriteOnlySpi::new(recorder(), 100_000);
    assert_eq!(spi.max_transfer(), 4096, "clamped to spidev's bufsiz");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    spi.write(&data).expect("write");
    spi.write(&[]).expect("empty write");
    let mut buf = [1u8, 2, 3];
    assert!(spi.transfer_in_place(&mut buf).is_err());
    assert!(spi.read(&mut buf).is_err());
    // A transaction with a refused operation sends nothing at all.
    let err = spi
        .transaction(&mut [
            Operation::Write(&[9, 9]),
            Operation::TransferInPlace(&mut buf),
        ])
        .expect_err("refused");
    assert!(err.to_string().contains("transfer-in-place"), "{err}");
    let rec = spi.into_inner();
    assert_eq!(rec.sizes, [4096, 4096, 1808]);
    assert_eq!(rec.bytes, data);

    let mut small = WriteOnlySpi::new(recorder(), 1000);
    small.write(&data[..2500]).expect("write");
    assert_eq!(small.into_inner().sizes, [1000, 1000, 500]);

    let mut failing = WriteOnlySpi::new(
        Recorder {
            fail: Some(90), // EMSGSIZE on Linux
            ..recorder()
        },
        4096,
    );
    let msg = failing.write(&[0]).expect_err("fails").to_string();
    assert_eq!(msg, "Message too long");
}

#[test]
fn open_names_the_device() {
    let mut s = section(Controller::St7789, 240, 240, (0, 0), 0);
    s.device = "/nonexistent/spidev9.9".into();
    let msg = spi::open(&s).err().expect("no such device").to_string();
    assert_eq!(
        msg,
        "/nonexistent/spidev9.9: cannot open: No such file or directory"
    );
    // A node that is not spidev: opened, but the SPI ioctls fail.
    s.device = "/dev/null".into();
    let msg = spi::open(&s).err().expect("not spidev").to_string();
    assert!(
        msg.starts_with("/dev/null: cannot set SPI mode 0 at 40000000 Hz:"),
        "{msg}"
    );
    let bad = SpiSection {
        rotation: 45,
        ..s.clone()
    };
    assert!(matches!(
        spi::open(&bad),
        Err(PanelError::Config {
            key: "display.spi.rotation",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

const GOOD: &str = r#"
[display]
kind = "spi"

[display.spi]
controller = "st7789"
device = "/dev/spidev0.0"
speed_hz = 40000000
mode = 3
dc = { chip = "gpiochip0", line = 25 }
rst = { chip = "/dev/gpiochip0", line = 27 }
backlight = { chip = "gpiochip0", line = 18 }
width = 135
height = 240
offset_x = 52
offset_y = 40
rotation = 90
"#;

fn parse_err(text: &str) -> String {
    Config::parse(text, "test.toml")
        .expect_err("must fail")
        .to_string()
}

#[test]
fn config_spi_section() {
    let cfg = Config::parse(GOOD, "test.toml").expect("parses");
    assert_eq!(cfg.display.kind, DisplayKind::Spi);
    let s = cfg.display.spi.expect("section");
    assert_eq!(s.controller, Controller::St7789);
    assert_eq!(s.device, std::path::Path::new("/dev/spidev0.0"));
    assert_eq!((s.speed_hz, s.mode), (40_000_000, 3));
    assert_eq!(s.dc, line(25));
    assert_eq!(
        s.rst.as_ref().map(|l| l.chip_path()),
        Some("/dev/gpiochip0".into())
    );
    assert_eq!(s.backlight.as_ref().map(|l| l.line), Some(18));
    assert_eq!((s.offset_x, s.offset_y, s.rotation), (52, 40, 90));
    assert_eq!(s.frame_size(), (240, 135));
    assert!(s.inverted() && s.order() == ColorOrder::Rgb && !s.mirror);

    // Defaults: 32 MHz, mode 0, no RST/backlight; ILI9341: BGR, not inverted.
    let minimal = r#"
[display]
kind = "spi"
[display.spi]
controller = "ili9341"
device = "/dev/spidev0.0"
dc = { chip = "gpiochip0", line = 24 }
width = 240
height = 320
"#;
    let s = Config::parse(minimal, "t")
        .expect("parses")
        .display
        .spi
        .expect("spi");
    assert_eq!((s.speed_hz, s.mode, s.rotation), (32_000_000, 0, 0));
    assert!(s.rst.is_none() && s.backlight.is_none());
    assert!(!s.inverted() && s.order() == ColorOrder::Bgr);

    // A PNG display may carry an unused spi section; kind = "spi" needs one.
    let msg = parse_err("[display]\nkind = \"spi\"\n");
    assert!(msg.contains("display.spi"), "{msg}");
}

#[test]
fn config_errors_name_the_key() {
    let missing_dc = GOOD.replace("dc = { chip = \"gpiochip0\", line = 25 }\n", "");
    let msg = parse_err(&missing_dc);
    assert!(msg.contains("missing field `dc`"), "{msg}");

    let unknown = GOOD.replace("speed_hz", "speed");
    let msg = parse_err(&unknown);
    assert!(msg.contains("unknown field `speed`"), "{msg}");

    let unknown_pin_key = GOOD.replace("line = 25", "pin = 25");
    let msg = parse_err(&unknown_pin_key);
    assert!(msg.contains("`pin`"), "{msg}");

    let bad_controller = GOOD.replace("st7789", "ssd1306");
    let msg = parse_err(&bad_controller);
    assert!(msg.contains("ssd1306"), "{msg}");

    for (from, to, key) in [
        ("rotation = 90", "rotation = 45", "display.spi.rotation"),
        ("mode = 3", "mode = 4", "display.spi.mode"),
        ("offset_y = 40", "offset_y = 81", "display.spi.offset_y"),
        ("width = 135", "width = 241", "display.spi.width"),
        ("line = 27", "line = 25", "display.spi.rst"),
        (
            "speed_hz = 40000000",
            "speed_hz = 10",
            "display.spi.speed_hz",
        ),
    ] {
        let msg = parse_err(&GOOD.replace(from, to));
        assert!(msg.contains(key), "{to}: {msg}");
    }
}
