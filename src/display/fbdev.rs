//! The Linux framebuffer (`/dev/fbN`): geometry from `FBIOGET_VSCREENINFO` /
//! `FBIOGET_FSCREENINFO`, the visible area mmapped, composed frames packed into it as RGB565
//! or XRGB8888 (channel order from the bitfields, `line_length` honoured), and the console
//! held in graphics mode ([`super::console::ConsoleGuard`]) while dermcam draws.
//!
//! This file is only the ioctl/mmap layer: geometry checks and pixel packing are
//! [`super::pack`], tested on the host.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::console::ConsoleGuard;
use super::pack::{Channel, Layout, LayoutError, PixelFormat};
use super::{DisplayError, FrameSink};
use crate::frame::RgbFrame;
use crate::pipeline::Analysis;

/// `FBIOGET_VSCREENINFO` from `<linux/fb.h>`.
const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
/// `FBIOGET_FSCREENINFO`.
const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;
/// `FB_TYPE_PACKED_PIXELS`.
const FB_TYPE_PACKED_PIXELS: u32 = 0;
/// `FB_VISUAL_TRUECOLOR`.
const FB_VISUAL_TRUECOLOR: u32 = 2;

/// `struct fb_bitfield`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct FbBitfield {
    offset: u32,
    length: u32,
    msb_right: u32,
}

/// `struct fb_var_screeninfo`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct FbVarScreeninfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: FbBitfield,
    green: FbBitfield,
    blue: FbBitfield,
    transp: FbBitfield,
    nonstd: u32,
    activate: u32,
    height: u32,
    width: u32,
    accel_flags: u32,
    pixclock: u32,
    left_margin: u32,
    right_margin: u32,
    upper_margin: u32,
    lower_margin: u32,
    hsync_len: u32,
    vsync_len: u32,
    sync: u32,
    vmode: u32,
    rotate: u32,
    colorspace: u32,
    reserved: [u32; 4],
}

/// `struct fb_fix_screeninfo`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct FbFixScreeninfo {
    id: [u8; 16],
    smem_start: libc::c_ulong,
    smem_len: u32,
    type_: u32,
    type_aux: u32,
    visual: u32,
    xpanstep: u16,
    ypanstep: u16,
    ywrapstep: u16,
    line_length: u32,
    mmio_start: libc::c_ulong,
    mmio_len: u32,
    accel: u32,
    capabilities: u16,
    reserved: [u16; 2],
}

/// Errors of the framebuffer display; each names the device.
#[derive(Debug, thiserror::Error)]
pub enum FbdevError {
    /// The device could not be opened.
    #[error("{device}: cannot open the framebuffer: {source}")]
    Open {
        /// Device.
        device: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An ioctl failed.
    #[error("{device}: {what} failed: {source}")]
    Ioctl {
        /// Device.
        device: PathBuf,
        /// The ioctl.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The mode cannot be drawn (bpp, visual, channels, geometry).
    #[error("{device}: {problem}")]
    Unsupported {
        /// Device.
        device: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The geometry does not fit the mapped memory.
    #[error("{device}: {source}")]
    Layout {
        /// Device.
        device: PathBuf,
        /// Cause.
        source: LayoutError,
    },
    /// mmap failed.
    #[error("{device}: cannot map {len} bytes of framebuffer memory: {source}")]
    Mmap {
        /// Device.
        device: PathBuf,
        /// Bytes.
        len: usize,
        /// Cause.
        source: std::io::Error,
    },
}

/// What `FBIOGET_*SCREENINFO` said, reduced to what dermcam needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FbInfo {
    /// Driver id (`bochs-drmdrmfb`, `virtio_gpudrmfb`, …).
    pub id: String,
    /// Where the visible area is in the mapped memory and how its pixels are laid out.
    pub layout: Layout,
    /// Bytes of framebuffer memory.
    pub smem_len: usize,
}

fn channel(device: &Path, name: &str, b: FbBitfield) -> Result<Channel, FbdevError> {
    if b.msb_right != 0 {
        return Err(FbdevError::Unsupported {
            device: device.to_path_buf(),
            problem: format!(
                "the {name} channel is stored most significant bit right, which is not supported"
            ),
        });
    }
    Ok(Channel {
        offset: b.offset,
        length: b.length,
    })
}

/// Turns the two screeninfo structs into a checked [`FbInfo`].
fn info_from(
    device: &Path,
    var: &FbVarScreeninfo,
    fix: &FbFixScreeninfo,
) -> Result<FbInfo, FbdevError> {
    let unsupported = |problem: String| FbdevError::Unsupported {
        device: device.to_path_buf(),
        problem,
    };
    if fix.type_ != FB_TYPE_PACKED_PIXELS {
        return Err(unsupported(format!(
            "framebuffer type {} is not packed pixels",
            fix.type_
        )));
    }
    if fix.visual != FB_VISUAL_TRUECOLOR {
        return Err(unsupported(format!(
            "visual {} is not truecolor (palette modes are not supported)",
            fix.visual
        )));
    }
    if var.grayscale != 0 || var.nonstd != 0 {
        return Err(unsupported(
            "greyscale and non-standard pixel formats are not supported".into(),
        ));
    }
    let format = PixelFormat {
        bits_per_pixel: var.bits_per_pixel,
        red: channel(device, "red", var.red)?,
        green: channel(device, "green", var.green)?,
        blue: channel(device, "blue", var.blue)?,
    };
    format.validate().map_err(|e| unsupported(e.to_string()))?;
    let bpp = format.bytes_per_pixel();
    let layout = Layout {
        width: var.xres,
        height: var.yres,
        stride: fix.line_length as usize,
        offset: var.yoffset as usize * fix.line_length as usize + var.xoffset as usize * bpp,
        format,
    };
    let smem_len = fix.smem_len as usize;
    layout
        .validate(smem_len)
        .map_err(|source| FbdevError::Layout {
            device: device.to_path_buf(),
            source,
        })?;
    let end = fix.id.iter().position(|&b| b == 0).unwrap_or(fix.id.len());
    Ok(FbInfo {
        id: String::from_utf8_lossy(&fix.id[..end]).into_owned(),
        layout,
        smem_len,
    })
}

/// Reads the framebuffer's geometry and format.
fn query(device: &Path, file: &File) -> Result<FbInfo, FbdevError> {
    let mut var = FbVarScreeninfo::default();
    let mut fix = FbFixScreeninfo::default();
    let ioctl_err = |what| FbdevError::Ioctl {
        device: device.to_path_buf(),
        what,
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: FBIOGET_VSCREENINFO writes one `struct fb_var_screeninfo`, which `var` is
    // (repr(C), same field order and types as <linux/fb.h>), into memory we own.
    if unsafe { libc::ioctl(file.as_raw_fd(), FBIOGET_VSCREENINFO as _, &mut var) } != 0 {
        return Err(ioctl_err("FBIOGET_VSCREENINFO"));
    }
    // SAFETY: as above for `struct fb_fix_screeninfo` (unsigned long fields are c_ulong).
    if unsafe { libc::ioctl(file.as_raw_fd(), FBIOGET_FSCREENINFO as _, &mut fix) } != 0 {
        return Err(ioctl_err("FBIOGET_FSCREENINFO"));
    }
    info_from(device, &var, &fix)
}

/// A shared read/write mapping of device memory, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value alone; moving it to another thread
// is sound (only `&mut self` gives access to the bytes).
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset`.
    pub(crate) fn new(fd: libc::c_int, len: usize, offset: u64) -> std::io::Result<Mapping> {
        // SAFETY: a fresh shared mapping chosen by the kernel (null hint) of a file we hold
        // open; the result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable and writable bytes until drop, and
        // `&mut self` makes this the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Flushes the mapping (deferred-I/O framebuffers such as virtio-gpu's fbdev emulation
    /// update the screen on msync). Returns false if the device does not support it.
    pub(crate) fn sync(&mut self) -> bool {
        // SAFETY: msync on exactly the range we mapped.
        unsafe { libc::msync(self.ptr.cast(), self.len, libc::MS_SYNC) == 0 }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the range mmap returned; no reference to it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// A framebuffer display.
#[derive(Debug)]
pub struct FbdevSink {
    device: PathBuf,
    info: FbInfo,
    // Field order is drop order: unmap, close, then give the console back.
    map: Mapping,
    _file: File,
    console: Option<ConsoleGuard>,
    sync: bool,
}

impl FbdevSink {
    /// Opens `device` (e.g. `/dev/fb0`), maps it and puts `tty` in graphics mode (a tty
    /// that cannot be opened is a warning; `""` or `"none"` leaves the console alone).
    pub fn open(device: &Path, tty: &str) -> Result<FbdevSink, FbdevError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(device)
            .map_err(|source| FbdevError::Open {
                device: device.to_path_buf(),
                source,
            })?;
        let info = query(device, &file)?;
        let map = Mapping::new(file.as_raw_fd(), info.smem_len, 0).map_err(|source| {
            FbdevError::Mmap {
                device: device.to_path_buf(),
                len: info.smem_len,
                source,
            }
        })?;
        let console = ConsoleGuard::acquire(tty);
        let mut sink = FbdevSink {
            device: device.to_path_buf(),
            info,
            map,
            _file: file,
            console,
            sync: true,
        };
        sink.clear();
        Ok(sink)
    }

    /// The framebuffer's geometry and format.
    pub fn info(&self) -> &FbInfo {
        &self.info
    }

    /// Paints the visible area black.
    fn clear(&mut self) {
        let l = self.info.layout;
        let row = l.width as usize * l.format.bytes_per_pixel();
        let bytes = self.map.bytes();
        for y in 0..l.height as usize {
            let s = l.offset + y * l.stride;
            bytes[s..s + row].fill(0);
        }
        self.flush();
    }

    fn flush(&mut self) {
        if self.sync && !self.map.sync() {
            self.sync = false;
        }
    }
}

impl FrameSink for FbdevSink {
    fn show(&mut self, frame: &RgbFrame, _: Option<&Analysis>, _: u64) -> Result<(), DisplayError> {
        let l = self.info.layout;
        if (frame.width(), frame.height()) != (l.width, l.height) {
            return Err(DisplayError::Fbdev(FbdevError::Layout {
                device: self.device.clone(),
                source: LayoutError::FrameSize {
                    frame_w: frame.width(),
                    frame_h: frame.height(),
                    width: l.width,
                    height: l.height,
                },
            }));
        }
        l.pack(frame.data(), self.map.bytes()).map_err(|source| {
            DisplayError::Fbdev(FbdevError::Layout {
                device: self.device.clone(),
                source,
            })
        })?;
        self.flush();
        Ok(())
    }

    fn output_size(&self) -> Option<(u32, u32)> {
        Some((self.info.layout.width, self.info.layout.height))
    }

    fn describe(&self) -> String {
        let l = self.info.layout;
        format!(
            "framebuffer {} ({}): {}x{} {}, line length {} bytes{}",
            self.device.display(),
            self.info.id,
            l.width,
            l.height,
            l.format.name(),
            l.stride,
            match &self.console {
                Some(c) => format!(", {} in graphics mode", c.path()),
                None => String::new(),
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(bpp: u32, r: u32, g: u32, b: u32, len: [u32; 3]) -> FbVarScreeninfo {
        let bf = |offset, length| FbBitfield {
            offset,
            length,
            msb_right: 0,
        };
        FbVarScreeninfo {
            xres: 1280,
            yres: 800,
            xres_virtual: 1280,
            yres_virtual: 800,
            bits_per_pixel: bpp,
            red: bf(r, len[0]),
            green: bf(g, len[1]),
            blue: bf(b, len[2]),
            ..Default::default()
        }
    }

    fn fix(line_length: u32, smem_len: u32) -> FbFixScreeninfo {
        let mut id = [0u8; 16];
        id[..14].copy_from_slice(b"bochs-drmdrmfb");
        FbFixScreeninfo {
            id,
            smem_len,
            visual: FB_VISUAL_TRUECOLOR,
            line_length,
            ..Default::default()
        }
    }

    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(std::mem::size_of::<FbVarScreeninfo>(), 160);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<FbFixScreeninfo>(), 80);
        #[cfg(target_pointer_width = "32")]
        assert_eq!(std::mem::size_of::<FbFixScreeninfo>(), 68);
    }

    #[test]
    fn formats_come_from_the_bitfields() {
        let d = Path::new("/dev/fb0");
        let i = info_from(d, &var(32, 16, 8, 0, [8; 3]), &fix(5120, 5120 * 800)).expect("xrgb");
        assert_eq!(i.layout.format, PixelFormat::XRGB8888);
        assert_eq!(
            (i.layout.width, i.layout.height, i.layout.stride),
            (1280, 800, 5120)
        );
        assert_eq!(i.id, "bochs-drmdrmfb");
        let i = info_from(d, &var(32, 0, 8, 16, [8; 3]), &fix(5120, 5120 * 800)).expect("xbgr");
        assert_eq!(i.layout.format, PixelFormat::XBGR8888);
        let i = info_from(d, &var(16, 11, 5, 0, [5, 6, 5]), &fix(2560, 2560 * 800)).expect("565");
        assert_eq!(i.layout.format, PixelFormat::RGB565);
        // Padded stride and a panned visible area.
        let mut v = var(16, 11, 5, 0, [5, 6, 5]);
        v.yoffset = 800;
        v.yres_virtual = 1600;
        let i = info_from(d, &v, &fix(2624, 2624 * 1600)).expect("panned");
        assert_eq!((i.layout.stride, i.layout.offset), (2624, 2624 * 800));
    }

    #[test]
    fn unsupported_modes_are_named() {
        let d = Path::new("/dev/fb0");
        let e =
            info_from(d, &var(24, 16, 8, 0, [8; 3]), &fix(3840, 3840 * 800)).expect_err("24 bpp");
        assert_eq!(
            e.to_string(),
            "/dev/fb0: 24 bpp is not supported (RGB565 and XRGB8888 are)"
        );
        let mut f = fix(5120, 5120 * 800);
        f.visual = 3; // pseudocolor
        let e = info_from(d, &var(32, 16, 8, 0, [8; 3]), &f).expect_err("palette");
        assert!(e.to_string().contains("not truecolor"), "{e}");
        let e =
            info_from(d, &var(32, 16, 8, 0, [8; 3]), &fix(5120, 5120 * 799)).expect_err("small");
        assert!(
            e.to_string().starts_with("/dev/fb0: a 1280x800 area"),
            "{e}"
        );
        let e =
            info_from(d, &var(32, 16, 8, 0, [8; 3]), &fix(4000, 4000 * 800)).expect_err("stride");
        assert!(e.to_string().contains("line length 4000"), "{e}");
    }

    #[test]
    fn a_missing_device_is_named() {
        let e = FbdevSink::open(Path::new("/nonexistent/fb7"), "none").expect_err("missing");
        assert!(
            e.to_string()
                .starts_with("/nonexistent/fb7: cannot open the framebuffer"),
            "{e}"
        );
    }
}
