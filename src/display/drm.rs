//! A DRM/KMS display through a dumb buffer, for systems without fbdev emulation: open
//! `/dev/dri/cardN`, pick a connected connector, its preferred mode and a CRTC that can drive
//! it, create an XRGB8888 dumb buffer, add it as a framebuffer, map it and set it on the
//! CRTC. Dropping the sink restores the CRTC's previous framebuffer and mode and frees the
//! buffer.
//!
//! Raw ioctls with the uapi structs of `<drm/drm.h>` / `<drm/drm_mode.h>` written out (they
//! are identical on x86_64 and aarch64), so nothing here needs bindgen, libclang or libdrm.
//! No root is needed beyond access to the device, but setting a mode needs DRM master, which
//! fails while a compositor or another dermcam holds it: that is reported as such.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::console::ConsoleGuard;
use super::fbdev::Mapping;
use super::pack::{Layout, LayoutError, PixelFormat};
use super::{DisplayError, FrameSink};
use crate::frame::RgbFrame;
use crate::pipeline::Analysis;

/// `struct drm_mode_card_res`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct CardRes {
    fb_id_ptr: u64,
    crtc_id_ptr: u64,
    connector_id_ptr: u64,
    encoder_id_ptr: u64,
    count_fbs: u32,
    count_crtcs: u32,
    count_connectors: u32,
    count_encoders: u32,
    min_width: u32,
    max_width: u32,
    min_height: u32,
    max_height: u32,
}

/// `struct drm_mode_modeinfo`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModeInfo {
    clock: u32,
    hdisplay: u16,
    hsync_start: u16,
    hsync_end: u16,
    htotal: u16,
    hskew: u16,
    vdisplay: u16,
    vsync_start: u16,
    vsync_end: u16,
    vtotal: u16,
    vscan: u16,
    vrefresh: u32,
    flags: u32,
    type_: u32,
    name: [u8; 32],
}

impl ModeInfo {
    /// The mode's name (`1280x800`).
    pub fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(32);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    /// Visible size.
    pub fn size(&self) -> (u32, u32) {
        (u32::from(self.hdisplay), u32::from(self.vdisplay))
    }

    /// Refresh rate in Hz.
    pub fn refresh(&self) -> u32 {
        self.vrefresh
    }
}

/// `struct drm_mode_crtc`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Crtc {
    set_connectors_ptr: u64,
    count_connectors: u32,
    crtc_id: u32,
    fb_id: u32,
    x: u32,
    y: u32,
    gamma_size: u32,
    mode_valid: u32,
    mode: ModeInfo,
}

/// `struct drm_mode_get_encoder`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Encoder {
    encoder_id: u32,
    encoder_type: u32,
    crtc_id: u32,
    possible_crtcs: u32,
    possible_clones: u32,
}

/// `struct drm_mode_get_connector`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Connector {
    encoders_ptr: u64,
    modes_ptr: u64,
    props_ptr: u64,
    prop_values_ptr: u64,
    count_modes: u32,
    count_props: u32,
    count_encoders: u32,
    encoder_id: u32,
    connector_id: u32,
    connector_type: u32,
    connector_type_id: u32,
    connection: u32,
    mm_width: u32,
    mm_height: u32,
    subpixel: u32,
    pad: u32,
}

/// `struct drm_mode_fb_cmd`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct FbCmd {
    fb_id: u32,
    width: u32,
    height: u32,
    pitch: u32,
    bpp: u32,
    depth: u32,
    handle: u32,
}

/// `struct drm_mode_fb_dirty_cmd`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct FbDirtyCmd {
    fb_id: u32,
    flags: u32,
    color: u32,
    num_clips: u32,
    clips_ptr: u64,
}

/// `struct drm_mode_create_dumb`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct CreateDumb {
    height: u32,
    width: u32,
    bpp: u32,
    flags: u32,
    handle: u32,
    pitch: u32,
    size: u64,
}

/// `struct drm_mode_map_dumb`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct MapDumb {
    handle: u32,
    pad: u32,
    offset: u64,
}

/// `struct drm_mode_destroy_dumb`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct DestroyDumb {
    handle: u32,
}

/// `_IOC(dir, 'd', nr, size)` with the generic encoding (x86_64, aarch64, arm, riscv).
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (0x64 << 8) | nr
}
const fn iowr<T>(nr: u64) -> u64 {
    ioc(3, nr, std::mem::size_of::<T>())
}

const DRM_IOCTL_SET_MASTER: u64 = ioc(0, 0x1e, 0);
const DRM_IOCTL_MODE_GETRESOURCES: u64 = iowr::<CardRes>(0xA0);
const DRM_IOCTL_MODE_GETCRTC: u64 = iowr::<Crtc>(0xA1);
const DRM_IOCTL_MODE_SETCRTC: u64 = iowr::<Crtc>(0xA2);
const DRM_IOCTL_MODE_GETENCODER: u64 = iowr::<Encoder>(0xA6);
const DRM_IOCTL_MODE_GETCONNECTOR: u64 = iowr::<Connector>(0xA7);
const DRM_IOCTL_MODE_ADDFB: u64 = iowr::<FbCmd>(0xAE);
const DRM_IOCTL_MODE_RMFB: u64 = iowr::<u32>(0xAF);
const DRM_IOCTL_MODE_DIRTYFB: u64 = iowr::<FbDirtyCmd>(0xB1);
const DRM_IOCTL_MODE_CREATE_DUMB: u64 = iowr::<CreateDumb>(0xB2);
const DRM_IOCTL_MODE_MAP_DUMB: u64 = iowr::<MapDumb>(0xB3);
const DRM_IOCTL_MODE_DESTROY_DUMB: u64 = iowr::<DestroyDumb>(0xB4);

/// `DRM_MODE_CONNECTED`.
const CONNECTED: u32 = 1;
/// `DRM_MODE_TYPE_PREFERRED`.
const MODE_TYPE_PREFERRED: u32 = 1 << 3;

/// Errors of the DRM display; each names the device.
#[derive(Debug, thiserror::Error)]
pub enum DrmError {
    /// The device could not be opened.
    #[error("{device}: cannot open the DRM device: {source}")]
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
    /// Another process is DRM master.
    #[error("{device}: cannot set a mode: not DRM master ({source}); another program (a compositor, X, another dermcam) holds the display: stop it or use its own display path")]
    NotMaster {
        /// Device.
        device: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Nothing usable is connected.
    #[error("{device}: {problem}")]
    NoOutput {
        /// Device.
        device: PathBuf,
        /// What is missing.
        problem: String,
    },
    /// The dumb buffer does not hold the mode.
    #[error("{device}: {source}")]
    Layout {
        /// Device.
        device: PathBuf,
        /// Cause.
        source: LayoutError,
    },
    /// mmap failed.
    #[error("{device}: cannot map the {len}-byte dumb buffer: {source}")]
    Mmap {
        /// Device.
        device: PathBuf,
        /// Bytes.
        len: usize,
        /// Cause.
        source: std::io::Error,
    },
}

/// The DRM device with its path, for ioctls with named errors.
#[derive(Debug)]
struct Card {
    file: File,
    path: PathBuf,
}

impl Card {
    /// Runs one DRM ioctl on `arg`, retrying on EINTR/EAGAIN as libdrm does.
    fn ioctl<T>(&self, request: u64, arg: &mut T, what: &'static str) -> Result<(), DrmError> {
        loop {
            // SAFETY: every request used here is paired with the repr(C) struct of the uapi
            // header that it reads and writes (its size is encoded in `request`); the
            // pointers inside those structs point to live buffers of the counts given.
            let r = unsafe {
                libc::ioctl(
                    self.file.as_raw_fd(),
                    request as _,
                    arg as *mut T as *mut libc::c_void,
                )
            };
            if r == 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                _ => {
                    return Err(DrmError::Ioctl {
                        device: self.path.clone(),
                        what,
                        source: e,
                    })
                }
            }
        }
    }

    fn no_output(&self, problem: String) -> DrmError {
        DrmError::NoOutput {
            device: self.path.clone(),
            problem,
        }
    }
}

/// The chosen output: connector, mode and CRTC.
#[derive(Debug, Clone, Copy)]
struct Output {
    connector: u32,
    mode: ModeInfo,
    crtc: u32,
}

/// Picks the preferred mode, else the first (the kernel lists the best first).
fn preferred_mode(modes: &[ModeInfo]) -> Option<ModeInfo> {
    modes
        .iter()
        .find(|m| m.type_ & MODE_TYPE_PREFERRED != 0)
        .or(modes.first())
        .copied()
}

/// Finds a connected connector with a mode and a CRTC for it.
fn pick_output(card: &Card) -> Result<Output, DrmError> {
    let mut res = CardRes::default();
    card.ioctl(
        DRM_IOCTL_MODE_GETRESOURCES,
        &mut res,
        "DRM_IOCTL_MODE_GETRESOURCES",
    )?;
    let mut crtcs = vec![0u32; res.count_crtcs as usize];
    let mut connectors = vec![0u32; res.count_connectors as usize];
    let mut encoders = vec![0u32; res.count_encoders as usize];
    let mut fbs = vec![0u32; res.count_fbs as usize];
    let mut res2 = CardRes {
        fb_id_ptr: fbs.as_mut_ptr() as u64,
        crtc_id_ptr: crtcs.as_mut_ptr() as u64,
        connector_id_ptr: connectors.as_mut_ptr() as u64,
        encoder_id_ptr: encoders.as_mut_ptr() as u64,
        count_fbs: res.count_fbs,
        count_crtcs: res.count_crtcs,
        count_connectors: res.count_connectors,
        count_encoders: res.count_encoders,
        ..Default::default()
    };
    card.ioctl(
        DRM_IOCTL_MODE_GETRESOURCES,
        &mut res2,
        "DRM_IOCTL_MODE_GETRESOURCES",
    )?;
    // Counts may only have shrunk if hotplug raced us; never read past what was filled.
    crtcs.truncate(res2.count_crtcs.min(res.count_crtcs) as usize);
    connectors.truncate(res2.count_connectors.min(res.count_connectors) as usize);
    if connectors.is_empty() {
        return Err(
            card.no_output("the device has no connectors (is it a render-only node?)".into())
        );
    }
    let mut seen = Vec::new();
    for &id in &connectors {
        let mut c = Connector {
            connector_id: id,
            ..Default::default()
        };
        card.ioctl(
            DRM_IOCTL_MODE_GETCONNECTOR,
            &mut c,
            "DRM_IOCTL_MODE_GETCONNECTOR",
        )?;
        let mut modes = vec![ModeInfo::default(); c.count_modes as usize];
        let mut encs = vec![0u32; c.count_encoders as usize];
        let mut c2 = Connector {
            connector_id: id,
            modes_ptr: modes.as_mut_ptr() as u64,
            count_modes: c.count_modes,
            encoders_ptr: encs.as_mut_ptr() as u64,
            count_encoders: c.count_encoders,
            ..Default::default()
        };
        card.ioctl(
            DRM_IOCTL_MODE_GETCONNECTOR,
            &mut c2,
            "DRM_IOCTL_MODE_GETCONNECTOR",
        )?;
        modes.truncate(c2.count_modes.min(c.count_modes) as usize);
        encs.truncate(c2.count_encoders.min(c.count_encoders) as usize);
        seen.push(format!(
            "connector {id}: {}, {} modes",
            if c2.connection == CONNECTED {
                "connected"
            } else {
                "not connected"
            },
            modes.len()
        ));
        if c2.connection != CONNECTED {
            continue;
        }
        let Some(mode) = preferred_mode(&modes) else {
            continue;
        };
        // The CRTC the current encoder drives, else any CRTC a possible encoder can use.
        let mut candidates: Vec<u32> = Vec::new();
        if c2.encoder_id != 0 {
            candidates.push(c2.encoder_id);
        }
        candidates.extend(encs.iter().copied().filter(|&e| e != c2.encoder_id));
        for enc_id in candidates {
            let mut e = Encoder {
                encoder_id: enc_id,
                ..Default::default()
            };
            if card
                .ioctl(
                    DRM_IOCTL_MODE_GETENCODER,
                    &mut e,
                    "DRM_IOCTL_MODE_GETENCODER",
                )
                .is_err()
            {
                continue;
            }
            if e.crtc_id != 0 && crtcs.contains(&e.crtc_id) {
                return Ok(Output {
                    connector: id,
                    mode,
                    crtc: e.crtc_id,
                });
            }
            if let Some(&crtc) = crtcs
                .iter()
                .enumerate()
                .find(|(i, _)| *i < 32 && e.possible_crtcs & (1 << i) != 0)
                .map(|(_, c)| c)
            {
                return Ok(Output {
                    connector: id,
                    mode,
                    crtc,
                });
            }
        }
    }
    Err(card.no_output(format!(
        "no connected connector with a mode and a usable CRTC ({})",
        seen.join("; ")
    )))
}

/// A DRM dumb-buffer display.
#[derive(Debug)]
pub struct DrmSink {
    layout: Layout,
    output: Output,
    fb_id: u32,
    handle: u32,
    /// The CRTC as it was before (restored on drop).
    saved: Crtc,
    map: Option<Mapping>,
    dirty: bool,
    console: Option<ConsoleGuard>,
    card: Card,
}

impl DrmSink {
    /// Opens `device` (e.g. `/dev/dri/card0`), sets up a dumb buffer on the first connected
    /// output in its preferred mode, and puts `tty` in graphics mode (a tty that cannot be
    /// opened is a warning; `""` or `"none"` leaves the console alone).
    pub fn open(device: &Path, tty: &str) -> Result<DrmSink, DrmError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(device)
            .map_err(|source| DrmError::Open {
                device: device.to_path_buf(),
                source,
            })?;
        let card = Card {
            file,
            path: device.to_path_buf(),
        };
        // The first opener is master already; otherwise ask (fails while someone else is).
        let _ = card.ioctl(DRM_IOCTL_SET_MASTER, &mut 0u32, "DRM_IOCTL_SET_MASTER");
        let output = pick_output(&card)?;
        let (width, height) = output.mode.size();
        let mut create = CreateDumb {
            width,
            height,
            bpp: 32,
            ..Default::default()
        };
        card.ioctl(
            DRM_IOCTL_MODE_CREATE_DUMB,
            &mut create,
            "DRM_IOCTL_MODE_CREATE_DUMB",
        )?;
        let handle = create.handle;
        let destroy = |card: &Card| {
            let _ = card.ioctl(
                DRM_IOCTL_MODE_DESTROY_DUMB,
                &mut DestroyDumb { handle },
                "DRM_IOCTL_MODE_DESTROY_DUMB",
            );
        };
        let layout = Layout {
            width,
            height,
            stride: create.pitch as usize,
            offset: 0,
            format: PixelFormat::XRGB8888,
        };
        if let Err(source) = layout.validate(create.size as usize) {
            destroy(&card);
            return Err(DrmError::Layout {
                device: device.to_path_buf(),
                source,
            });
        }
        let mut fb = FbCmd {
            width,
            height,
            pitch: create.pitch,
            bpp: 32,
            depth: 24,
            handle,
            ..Default::default()
        };
        if let Err(e) = card.ioctl(DRM_IOCTL_MODE_ADDFB, &mut fb, "DRM_IOCTL_MODE_ADDFB") {
            destroy(&card);
            return Err(e);
        }
        // From here on, Drop cleans up.
        let mut sink = DrmSink {
            layout,
            output,
            fb_id: fb.fb_id,
            handle,
            saved: Crtc {
                crtc_id: output.crtc,
                ..Default::default()
            },
            map: None,
            dirty: true,
            console: None,
            card,
        };
        let mut map = MapDumb {
            handle,
            ..Default::default()
        };
        sink.card
            .ioctl(DRM_IOCTL_MODE_MAP_DUMB, &mut map, "DRM_IOCTL_MODE_MAP_DUMB")?;
        let len = create.size as usize;
        sink.map = Some(
            Mapping::new(sink.card.file.as_raw_fd(), len, map.offset).map_err(|source| {
                DrmError::Mmap {
                    device: device.to_path_buf(),
                    len,
                    source,
                }
            })?,
        );
        sink.card.ioctl(
            DRM_IOCTL_MODE_GETCRTC,
            &mut sink.saved,
            "DRM_IOCTL_MODE_GETCRTC",
        )?;
        if let Some(m) = sink.map.as_mut() {
            m.bytes().fill(0);
        }
        sink.console = ConsoleGuard::acquire(tty);
        let mut connector = output.connector;
        let mut set = Crtc {
            set_connectors_ptr: &mut connector as *mut u32 as u64,
            count_connectors: 1,
            crtc_id: output.crtc,
            fb_id: sink.fb_id,
            mode_valid: 1,
            mode: output.mode,
            ..Default::default()
        };
        if let Err(e) = sink
            .card
            .ioctl(DRM_IOCTL_MODE_SETCRTC, &mut set, "DRM_IOCTL_MODE_SETCRTC")
        {
            // Nothing was changed: do not "restore" a CRTC we never set.
            sink.saved.crtc_id = 0;
            return Err(match e {
                DrmError::Ioctl { device, source, .. }
                    if matches!(
                        source.raw_os_error(),
                        Some(libc::EACCES) | Some(libc::EPERM)
                    ) =>
                {
                    DrmError::NotMaster { device, source }
                }
                e => e,
            });
        }
        sink.flush();
        Ok(sink)
    }

    /// The mode in use.
    pub fn mode(&self) -> ModeInfo {
        self.output.mode
    }

    /// Tells drivers that need it (virtio-gpu, udl) which area changed; others answer
    /// ENOSYS and are not asked again.
    fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        let mut cmd = FbDirtyCmd {
            fb_id: self.fb_id,
            ..Default::default()
        };
        if self
            .card
            .ioctl(DRM_IOCTL_MODE_DIRTYFB, &mut cmd, "DRM_IOCTL_MODE_DIRTYFB")
            .is_err()
        {
            self.dirty = false;
        }
    }
}

impl FrameSink for DrmSink {
    fn show(&mut self, frame: &RgbFrame, _: Option<&Analysis>, _: u64) -> Result<(), DisplayError> {
        let l = self.layout;
        let layout_err = |source| {
            DisplayError::Drm(DrmError::Layout {
                device: self.card.path.clone(),
                source,
            })
        };
        if (frame.width(), frame.height()) != (l.width, l.height) {
            return Err(layout_err(LayoutError::FrameSize {
                frame_w: frame.width(),
                frame_h: frame.height(),
                width: l.width,
                height: l.height,
            }));
        }
        if let Some(m) = self.map.as_mut() {
            l.pack(frame.data(), m.bytes()).map_err(layout_err)?;
        }
        self.flush();
        Ok(())
    }

    fn output_size(&self) -> Option<(u32, u32)> {
        Some((self.layout.width, self.layout.height))
    }

    fn describe(&self) -> String {
        format!(
            "DRM {}: connector {}, CRTC {}, mode {} ({}x{} @ {} Hz), XRGB8888 dumb buffer, pitch {}{}",
            self.card.path.display(),
            self.output.connector,
            self.output.crtc,
            self.output.mode.name(),
            self.layout.width,
            self.layout.height,
            self.output.mode.refresh(),
            self.layout.stride,
            match &self.console {
                Some(c) => format!(", {} in graphics mode", c.path()),
                None => String::new(),
            }
        )
    }
}

impl Drop for DrmSink {
    fn drop(&mut self) {
        if self.saved.crtc_id != 0 {
            // Put back what was on the CRTC (fbcon's framebuffer, usually); with no previous
            // framebuffer, switch the CRTC off rather than leave it scanning freed memory.
            let mut connector = self.output.connector;
            let mut restore = Crtc {
                set_connectors_ptr: &mut connector as *mut u32 as u64,
                count_connectors: u32::from(self.saved.fb_id != 0),
                crtc_id: self.saved.crtc_id,
                fb_id: self.saved.fb_id,
                x: self.saved.x,
                y: self.saved.y,
                mode_valid: self.saved.mode_valid & u32::from(self.saved.fb_id != 0),
                mode: self.saved.mode,
                ..Default::default()
            };
            if let Err(e) = self.card.ioctl(
                DRM_IOCTL_MODE_SETCRTC,
                &mut restore,
                "DRM_IOCTL_MODE_SETCRTC",
            ) {
                log::warn!("cannot restore the previous CRTC: {e}");
            }
        }
        self.map = None;
        let _ = self
            .card
            .ioctl(DRM_IOCTL_MODE_RMFB, &mut self.fb_id, "DRM_IOCTL_MODE_RMFB");
        let _ = self.card.ioctl(
            DRM_IOCTL_MODE_DESTROY_DUMB,
            &mut DestroyDumb {
                handle: self.handle,
            },
            "DRM_IOCTL_MODE_DESTROY_DUMB",
        );
        // The console guard drops after this, giving the tty back to fbcon last.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes and ioctl numbers from the kernel headers (`drm.h`, `drm_mode.h`), as printed by
    /// a C program on x86_64 and aarch64.
    #[test]
    fn uapi_layouts_and_numbers_match_the_kernel() {
        use std::mem::size_of;
        assert_eq!(size_of::<CardRes>(), 64);
        assert_eq!(size_of::<ModeInfo>(), 68);
        assert_eq!(size_of::<Crtc>(), 104);
        assert_eq!(size_of::<Encoder>(), 20);
        assert_eq!(size_of::<Connector>(), 80);
        assert_eq!(size_of::<FbCmd>(), 28);
        assert_eq!(size_of::<FbDirtyCmd>(), 24);
        assert_eq!(size_of::<CreateDumb>(), 32);
        assert_eq!(size_of::<MapDumb>(), 16);
        assert_eq!(DRM_IOCTL_SET_MASTER, 0x641e);
        assert_eq!(DRM_IOCTL_MODE_GETRESOURCES, 0xC04064A0);
        assert_eq!(DRM_IOCTL_MODE_GETCRTC, 0xC06864A1);
        assert_eq!(DRM_IOCTL_MODE_SETCRTC, 0xC06864A2);
        assert_eq!(DRM_IOCTL_MODE_GETENCODER, 0xC01464A6);
        assert_eq!(DRM_IOCTL_MODE_GETCONNECTOR, 0xC05064A7);
        assert_eq!(DRM_IOCTL_MODE_ADDFB, 0xC01C64AE);
        assert_eq!(DRM_IOCTL_MODE_RMFB, 0xC00464AF);
        assert_eq!(DRM_IOCTL_MODE_DIRTYFB, 0xC01864B1);
        assert_eq!(DRM_IOCTL_MODE_CREATE_DUMB, 0xC02064B2);
        assert_eq!(DRM_IOCTL_MODE_MAP_DUMB, 0xC01064B3);
        assert_eq!(DRM_IOCTL_MODE_DESTROY_DUMB, 0xC00464B4);
    }

    #[test]
    fn the_preferred_mode_wins() {
        let mode = |w: u16, t: u32| ModeInfo {
            hdisplay: w,
            type_: t,
            ..Default::default()
        };
        assert_eq!(preferred_mode(&[]), None);
        let modes = [mode(1024, 0x40), mode(1280, 0x48), mode(800, 0)];
        assert_eq!(preferred_mode(&modes).map(|m| m.hdisplay), Some(1280));
        assert_eq!(preferred_mode(&modes[..1]).map(|m| m.hdisplay), Some(1024));
    }

    #[test]
    fn a_missing_device_is_named() {
        let e = DrmSink::open(Path::new("/nonexistent/card9"), "none").expect_err("missing");
        assert!(
            e.to_string()
                .starts_with("/nonexistent/card9: cannot open the DRM device"),
            "{e}"
        );
    }
}
