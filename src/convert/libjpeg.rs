//! libjpeg-turbo through its TurboJPEG API, loaded at run time (`libturbojpeg.so.0`).
//!
//! Why a second JPEG decoder: the default model was trained on images decoded by Pillow,
//! which uses libjpeg-turbo (accurate integer IDCT, "fancy" triangle-filter chroma
//! upsampling, 16-bit colour conversion tables). `zune-jpeg` rounds differently in all three
//! places, by one or two grey levels, and that alone changes the top class of about 2 % of
//! the test split with this model (models/train/results). Decoding with the same library the
//! training did makes dermcam's pixels equal to the training pipeline's (tested against a
//! golden decoded by Pillow in `tests/kernels.rs`).
//!
//! The library is opened with `dlopen` rather than linked, so building dermcam needs no C
//! headers and no pkg-config (natively or cross), and a machine without the library still
//! runs (with `zune-jpeg`; see [`super::JpegDecoderChoice`]). Debian and Raspberry Pi OS ship
//! it as `libturbojpeg0`.
//!
//! Allocation: TurboJPEG allocates its working memory with C `malloc`, which dermcam's
//! counting allocator (a Rust global allocator) does not see; dermcam's own side of a decode
//! allocates nothing.

use std::ffi::{c_char, c_int, c_uchar, c_ulong, c_void, CStr};
use std::sync::OnceLock;

/// The shared object this module opens.
pub const LIBRARY: &str = "libturbojpeg.so.0";

/// Errors of the libjpeg-turbo backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LibjpegError {
    /// The library or one of its symbols could not be loaded.
    #[error(
        "cannot load {LIBRARY}: {0} (install libturbojpeg0, or set jpeg_decoder = \"zune-jpeg\")"
    )]
    Unavailable(String),
    /// `tjInitDecompress` failed.
    #[error("libjpeg-turbo: cannot create a decompressor")]
    Init,
    /// The library rejected the data (corrupt, truncated, unsupported).
    #[error("libjpeg-turbo: {0}")]
    Decode(String),
    /// The payload is larger than the C API can address.
    #[error("JPEG payload of {0} bytes is too large")]
    TooLarge(usize),
}

type TjHandle = *mut c_void;
type InitDecompress = unsafe extern "C" fn() -> TjHandle;
type DecompressHeader3 = unsafe extern "C" fn(
    TjHandle,
    *const c_uchar,
    c_ulong,
    *mut c_int,
    *mut c_int,
    *mut c_int,
    *mut c_int,
) -> c_int;
type Decompress2 = unsafe extern "C" fn(
    TjHandle,
    *const c_uchar,
    c_ulong,
    *mut c_uchar,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
) -> c_int;
type Destroy = unsafe extern "C" fn(TjHandle) -> c_int;
type GetErrorStr2 = unsafe extern "C" fn(TjHandle) -> *mut c_char;

/// `TJPF_RGB`: packed 8-bit R, G, B.
const TJPF_RGB: c_int = 0;
/// `TJFLAG_STOPONWARNING`: treat libjpeg warnings (e.g. "premature end of data") as errors,
/// so a truncated frame is rejected instead of shown half grey.
const TJFLAG_STOPONWARNING: c_int = 8192;

/// The library's entry points.
struct Api {
    init_decompress: InitDecompress,
    decompress_header3: DecompressHeader3,
    decompress2: Decompress2,
    destroy: Destroy,
    get_error_str2: GetErrorStr2,
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

fn api() -> Result<&'static Api, LibjpegError> {
    API.get_or_init(load)
        .as_ref()
        .map_err(|e| LibjpegError::Unavailable(e.clone()))
}

/// Whether `libturbojpeg.so.0` can be loaded on this machine.
pub fn available() -> bool {
    api().is_ok()
}

/// Why the library cannot be loaded, if it cannot.
pub fn unavailable_reason() -> Option<LibjpegError> {
    api().err()
}

fn dlerror_string() -> String {
    // SAFETY: dlerror returns NULL or a pointer to a NUL-terminated string owned by libc,
    // valid until the next dl* call on this thread; it is copied at once.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown dlopen error".into()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

fn load() -> Result<Api, String> {
    let name = c"libturbojpeg.so.0";
    // SAFETY: dlopen with a valid NUL-terminated name; the handle is never closed, so the
    // function pointers taken from it stay valid for the life of the process.
    let lib = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if lib.is_null() {
        return Err(dlerror_string());
    }
    let sym = |s: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: `lib` is a live handle from dlopen and `s` is NUL-terminated.
        let p = unsafe { libc::dlsym(lib, s.as_ptr()) };
        if p.is_null() {
            Err(format!("symbol {} missing", s.to_string_lossy()))
        } else {
            Ok(p)
        }
    };
    // SAFETY: each pointer comes from dlsym for the named TurboJPEG 2.x function, whose C
    // signature (turbojpeg.h, stable since libjpeg-turbo 1.4 and kept in 3.x) is the type
    // it is transmuted to.
    unsafe {
        Ok(Api {
            init_decompress: std::mem::transmute::<*mut c_void, InitDecompress>(sym(
                c"tjInitDecompress",
            )?),
            decompress_header3: std::mem::transmute::<*mut c_void, DecompressHeader3>(sym(
                c"tjDecompressHeader3",
            )?),
            decompress2: std::mem::transmute::<*mut c_void, Decompress2>(sym(c"tjDecompress2")?),
            destroy: std::mem::transmute::<*mut c_void, Destroy>(sym(c"tjDestroy")?),
            get_error_str2: std::mem::transmute::<*mut c_void, GetErrorStr2>(sym(
                c"tjGetErrorStr2",
            )?),
        })
    }
}

/// One TurboJPEG decompressor (not shared between threads; one per decoder).
pub struct TurboDecoder {
    api: &'static Api,
    handle: TjHandle,
}

// SAFETY: a TurboJPEG handle may be used from any thread as long as it is used by one thread
// at a time; `TurboDecoder` is not `Sync` and every use takes `&mut self`.
unsafe impl Send for TurboDecoder {}

impl std::fmt::Debug for TurboDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurboDecoder")
    }
}

impl TurboDecoder {
    /// Opens the library (once per process) and creates a decompressor.
    pub fn new() -> Result<Self, LibjpegError> {
        let api = api()?;
        // SAFETY: tjInitDecompress takes no arguments and returns NULL or a handle.
        let handle = unsafe { (api.init_decompress)() };
        if handle.is_null() {
            return Err(LibjpegError::Init);
        }
        Ok(TurboDecoder { api, handle })
    }

    fn last_error(&self) -> String {
        // SAFETY: the handle is live; tjGetErrorStr2 returns a NUL-terminated string owned
        // by the handle (or a static one), copied at once.
        unsafe {
            let p = (self.api.get_error_str2)(self.handle);
            if p.is_null() {
                "unknown error".into()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        }
    }

    /// Width and height of the JPEG in `data`.
    pub fn dimensions(&mut self, data: &[u8]) -> Result<(usize, usize), LibjpegError> {
        let len = c_ulong::try_from(data.len()).map_err(|_| LibjpegError::TooLarge(data.len()))?;
        let (mut w, mut h, mut sub, mut cs) = (0, 0, 0, 0);
        // SAFETY: `data` is valid for `len` bytes and the four out-pointers point at locals.
        let rc = unsafe {
            (self.api.decompress_header3)(
                self.handle,
                data.as_ptr(),
                len,
                &mut w,
                &mut h,
                &mut sub,
                &mut cs,
            )
        };
        if rc != 0 || w <= 0 || h <= 0 {
            return Err(LibjpegError::Decode(self.last_error()));
        }
        Ok((w as usize, h as usize))
    }

    /// Decodes `data` (a JPEG of exactly `width x height`, checked by the caller with
    /// [`TurboDecoder::dimensions`]) into `dst`, packed RGB of `width * height * 3` bytes,
    /// with libjpeg's accurate integer IDCT and fancy upsampling (TurboJPEG's defaults, the
    /// same as Pillow's). Warnings such as truncated data are errors.
    pub fn decode_into(
        &mut self,
        data: &[u8],
        dst: &mut [u8],
        width: usize,
        height: usize,
    ) -> Result<(), LibjpegError> {
        let len = c_ulong::try_from(data.len()).map_err(|_| LibjpegError::TooLarge(data.len()))?;
        let (Ok(w), Ok(h), Ok(pitch)) = (
            c_int::try_from(width),
            c_int::try_from(height),
            c_int::try_from(width * 3),
        ) else {
            return Err(LibjpegError::TooLarge(width * height * 3));
        };
        if dst.len() != width * height * 3 {
            return Err(LibjpegError::Decode(format!(
                "destination holds {} bytes, {width}x{height} RGB needs {}",
                dst.len(),
                width * height * 3
            )));
        }
        // SAFETY: `data` is valid for `len` bytes; `dst` holds exactly pitch * height bytes,
        // which is all tjDecompress2 writes for a width x height image (the caller checked
        // the JPEG's dimensions, and TurboJPEG itself refuses a JPEG larger than width/height).
        let rc = unsafe {
            (self.api.decompress2)(
                self.handle,
                data.as_ptr(),
                len,
                dst.as_mut_ptr(),
                w,
                pitch,
                h,
                TJPF_RGB,
                TJFLAG_STOPONWARNING,
            )
        };
        if rc != 0 {
            return Err(LibjpegError::Decode(self.last_error()));
        }
        Ok(())
    }
}

impl Drop for TurboDecoder {
    fn drop(&mut self) {
        // SAFETY: the handle came from tjInitDecompress and is destroyed exactly once.
        unsafe {
            (self.api.destroy)(self.handle);
        }
    }
}
