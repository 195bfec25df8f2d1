//! The Linux framebuffer (`/dev/fb0`): HDMI and DSI screens.
//!
//! # Setting up
//!
//! - The screen must be in a mode whose size is `display.width` × `display.height`; kioskpay
//!   checks this when it opens the device and reports the real size if they differ. With the
//!   KMS driver (Raspberry Pi OS bookworm) pick the mode on the kernel command line, e.g.
//!   `video=HDMI-A-1:800x480@60`; the official 7" DSI panel is 800×480 with
//!   `dtoverlay=vc4-kms-dsi-7inch`.
//! - Keep the text console off the screen: `vt.global_cursor_default=0 consoleblank=0` in
//!   `cmdline.txt` and `systemctl disable getty@tty1`, or the login prompt draws over the kiosk.
//! - The `kioskpay` user needs the `video` group.
//! - 16-bit (RGB565) and 32-bit (XRGB8888 or XBGR8888) framebuffers are supported; a 24-bit
//!   one is refused with a hint (`framebuffer_depth=32` in `config.txt` for the legacy driver).
//!
//! # How it writes
//!
//! Like the SPI panel it keeps a copy of what the screen shows and writes only changed rows
//! (with `pwrite` at the row's offset, honouring the line length and the panning offset), so an
//! unchanged frame costs nothing. The device is opened on the first `show` and reopened after
//! any error, with a full frame.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::raw::RawU16;
use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;

use super::{Panel, PanelError};
use crate::display::diff;
use crate::display::frame::Frame;
use crate::display::screen::Screen;

/// How pixels are laid out in framebuffer memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// 16 bits, little-endian RGB565.
    Rgb565,
    /// 32 bits, bytes B, G, R, unused.
    Xrgb8888,
    /// 32 bits, bytes R, G, B, unused.
    Xbgr8888,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes(self) -> usize {
        match self {
            PixelFormat::Rgb565 => 2,
            PixelFormat::Xrgb8888 | PixelFormat::Xbgr8888 => 4,
        }
    }

    fn put(self, color: Rgb565, out: &mut Vec<u8>) {
        match self {
            PixelFormat::Rgb565 => {
                out.extend_from_slice(&RawU16::from(color).into_inner().to_le_bytes())
            }
            PixelFormat::Xrgb8888 => {
                let c = Rgb888::from(color);
                out.extend_from_slice(&[c.b(), c.g(), c.r(), 0]);
            }
            PixelFormat::Xbgr8888 => {
                let c = Rgb888::from(color);
                out.extend_from_slice(&[c.r(), c.g(), c.b(), 0]);
            }
        }
    }
}

/// The shape of a framebuffer's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Visible width in pixels.
    pub width: u32,
    /// Visible height in pixels.
    pub height: u32,
    /// Bytes from one row to the next (may exceed width × bytes per pixel).
    pub stride: u32,
    /// The first visible row (panning, double buffering).
    pub y_offset: u32,
    /// Pixel layout.
    pub format: PixelFormat,
}

/// Writes frames into a Linux framebuffer device.
pub struct FramebufferPanel {
    device: PathBuf,
    /// Known geometry instead of asking the device (tests use a plain file).
    fixed: Option<Geometry>,
    open: Option<(File, Geometry)>,
    shown: Option<Frame>,
    written: u64,
}

impl FramebufferPanel {
    /// A panel on `device` (e.g. `/dev/fb0`); opened on the first `show`.
    pub fn new(device: impl Into<PathBuf>) -> FramebufferPanel {
        FramebufferPanel {
            device: device.into(),
            fixed: None,
            open: None,
            shown: None,
            written: 0,
        }
    }

    /// A panel on any file laid out as `geometry`, without asking the kernel: for tests (a
    /// regular file stands in for the device) and for drivers whose ioctls misreport.
    pub fn with_geometry(device: impl Into<PathBuf>, geometry: Geometry) -> FramebufferPanel {
        FramebufferPanel {
            fixed: Some(geometry),
            ..FramebufferPanel::new(device)
        }
    }

    /// Pixel bytes written so far: what the changed-rows logic saves is visible here.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    fn ensure_open(&mut self, frame: &Frame) -> Result<(&File, Geometry), PanelError> {
        if self.open.is_none() {
            self.shown = None;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.device)
                .map_err(|e| PanelError::Open {
                    device: self.device.clone(),
                    detail: e.to_string(),
                })?;
            let geometry = match self.fixed {
                Some(geometry) => geometry,
                None => query(&file, &self.device)?,
            };
            if (geometry.width, geometry.height) != (frame.width(), frame.height()) {
                return Err(PanelError::Init {
                    detail: format!(
                        "{} is {}x{} but display.width and display.height say {}x{}; set them \
                         to the screen's mode",
                        self.device.display(),
                        geometry.width,
                        geometry.height,
                        frame.width(),
                        frame.height()
                    ),
                });
            }
            self.open = Some((file, geometry));
        }
        match &self.open {
            Some((file, geometry)) => Ok((file, *geometry)),
            None => Err(PanelError::Init {
                detail: "the framebuffer closed while opening".into(),
            }),
        }
    }
}

impl Panel for FramebufferPanel {
    fn show(&mut self, _screen: &Screen, frame: &Frame) -> Result<(), PanelError> {
        let rects = match &self.shown {
            Some(shown) if self.open.is_some() => diff::changed(shown, frame),
            _ => vec![frame.bounding_box()],
        };
        let (file, geometry) = self.ensure_open(frame)?;
        let bpp = geometry.format.bytes();
        let mut row = Vec::with_capacity(frame.width() as usize * bpp);
        let mut written = 0u64;
        for rect in &rects {
            for y in rect.rows() {
                row.clear();
                let line = embedded_graphics::primitives::Rectangle::new(
                    Point::new(rect.top_left.x, y),
                    Size::new(rect.size.width, 1),
                );
                for color in frame.area_pixels(&line) {
                    geometry.format.put(color, &mut row);
                }
                let offset = (u64::from(geometry.y_offset) + y as u64) * u64::from(geometry.stride)
                    + rect.top_left.x as u64 * bpp as u64;
                if let Err(e) = file.write_all_at(&row, offset) {
                    self.open = None;
                    self.shown = None;
                    return Err(PanelError::Send {
                        detail: format!("writing {}: {e}", self.device.display()),
                    });
                }
                written += row.len() as u64;
            }
        }
        self.written += written;
        match &mut self.shown {
            Some(shown) => shown.clone_from(frame),
            None => self.shown = Some(frame.clone()),
        }
        Ok(())
    }
}

/// `struct fb_bitfield` from `<linux/fb.h>`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Bitfield {
    offset: u32,
    length: u32,
    msb_right: u32,
}

/// `struct fb_var_screeninfo` from `<linux/fb.h>`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct VarScreenInfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: Bitfield,
    green: Bitfield,
    blue: Bitfield,
    transp: Bitfield,
    rest: [u32; 20],
}

/// `struct fb_fix_screeninfo` from `<linux/fb.h>`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FixScreenInfo {
    id: [u8; 16],
    smem_start: libc::c_ulong,
    smem_len: u32,
    kind: u32,
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

const FBIOGET_VSCREENINFO: u32 = 0x4600;
const FBIOGET_FSCREENINFO: u32 = 0x4602;

/// Asks the framebuffer driver for its geometry.
fn query(file: &File, device: &Path) -> Result<Geometry, PanelError> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut var = VarScreenInfo::default();
    let mut fix = FixScreenInfo::default();
    // SAFETY: both structs are `repr(C)` copies of the kernel's, fully initialised, and live for
    // the duration of the calls; the kernel writes at most their size.
    let ok = unsafe {
        libc::ioctl(fd, FBIOGET_VSCREENINFO as _, &mut var as *mut VarScreenInfo) == 0
            && libc::ioctl(fd, FBIOGET_FSCREENINFO as _, &mut fix as *mut FixScreenInfo) == 0
    };
    if !ok {
        return Err(PanelError::Open {
            device: device.to_path_buf(),
            detail: format!("not a framebuffer ({})", std::io::Error::last_os_error()),
        });
    }
    let format = match (var.bits_per_pixel, var.red.offset) {
        (16, _) => PixelFormat::Rgb565,
        (32, 16) => PixelFormat::Xrgb8888,
        (32, 0) => PixelFormat::Xbgr8888,
        (bits, red) => {
            return Err(PanelError::Init {
                detail: format!(
                    "{} has {bits} bits per pixel (red at bit {red}); kioskpay writes 16-bit \
                     RGB565 or 32-bit XRGB; set framebuffer_depth=32 (or 16) in config.txt",
                    device.display()
                ),
            })
        }
    };
    Ok(Geometry {
        width: var.xres,
        height: var.yres,
        stride: fix.line_length,
        y_offset: var.yoffset,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_struct_sizes_match_linux_fb_h() {
        assert_eq!(std::mem::size_of::<VarScreenInfo>(), 160);
        let expected_fix = if cfg!(target_pointer_width = "64") {
            80
        } else {
            68
        };
        assert_eq!(std::mem::size_of::<FixScreenInfo>(), expected_fix);
    }
}
