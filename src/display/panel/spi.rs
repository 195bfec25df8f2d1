//! SPI TFT panels (ST7789, ILI9341, ILI9486) through `mipidsi`, sending only what changed.
//!
//! # On a Raspberry Pi
//!
//! - `/boot/firmware/config.txt`: `dtparam=spi=on` (gives `/dev/spidev0.0` and `/dev/spidev0.1`).
//! - `/boot/firmware/cmdline.txt`: append `spidev.bufsiz=65536`. kioskpay never sends more than
//!   [`MAX_TRANSFER`] bytes at once, so it works without it, but other tools on the same bus
//!   (fbcp, Python drivers) fail with `EMSGSIZE` on the default 4096.
//! - The `kioskpay` user needs the `spi` and `gpio` groups (`/dev/spidev*`, `/dev/gpiochip*`).
//! - DC, reset and backlight are GPIO character-device lines (`gpiochip`, offsets = BCM numbers on
//!   a Pi; on a Pi 5 with a kernel older than 6.6.45 the header is `/dev/gpiochip4`).
//!
//! # How it sends
//!
//! The panel keeps a copy of what the glass shows. Each `show` compares the new frame with it
//! ([`crate::display::diff`]) and sends only the changed rectangles: for each one an address
//! window (CASET, RASET, RAMWR) and its pixels in transfers of at most [`MAX_TRANSFER`] bytes,
//! Linux spidev's default `bufsiz`. An unchanged frame sends nothing at all.
//!
//! # Failures
//!
//! The device and lines are opened, and the controller initialised, on the first `show`, so a
//! kiosk whose panel is missing still starts (and reports itself out of service). Any error
//! drops the device: the next `show` opens and initialises it again and sends a full frame, so a
//! panel that lost power or a loose ribbon cable comes back by itself.

use std::fmt::Debug;

use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use mipidsi::interface::{Interface, InterfaceKind, InterfacePixelFormat};
use mipidsi::models::{ILI9341Rgb565, ILI9486Rgb666, Model, ST7789};
use mipidsi::options::{ColorInversion, Orientation, Rotation};

use super::{Panel, PanelError};
use crate::board::display::{ColorOrder, Controller, SpiConfig};
use crate::display::diff;
use crate::display::frame::Frame;
use crate::display::screen::Screen;

/// The largest single SPI transfer: Linux spidev's default `bufsiz`.
pub const MAX_TRANSFER: usize = 4096;

/// A panel controller, initialised, that can take a rectangle of the frame.
pub trait Link: Send {
    /// Sends `area` of `frame` to the same place on the glass.
    fn write(&mut self, area: Rectangle, frame: &Frame) -> Result<(), String>;
}

/// Opens the bus and lines and initialises the controller, giving a ready [`Link`].
pub type Opener = Box<dyn FnMut() -> Result<Box<dyn Link>, PanelError> + Send>;

/// An SPI panel driven through `mipidsi`, sending only changed rectangles.
pub struct SpiPanel {
    open: Opener,
    link: Option<Box<dyn Link>>,
    /// What the glass shows, as far as we know; `None` after (re)initialising.
    shown: Option<Frame>,
}

impl SpiPanel {
    /// A panel on the spidev device and GPIO lines named in `config`. Nothing is opened until
    /// the first `show`.
    pub fn new(config: SpiConfig) -> SpiPanel {
        SpiPanel::with_opener(Box::new(move || open_linux(&config)))
    }

    /// A panel whose bus comes from `open`, called on the first `show` and after every error:
    /// tests and benches plug a `CountingSpi` (`display::panel::counting`) in here.
    pub fn with_opener(open: Opener) -> SpiPanel {
        SpiPanel {
            open,
            link: None,
            shown: None,
        }
    }
}

impl Panel for SpiPanel {
    fn show(&mut self, _screen: &Screen, frame: &Frame) -> Result<(), PanelError> {
        let link = match &mut self.link {
            Some(link) => link,
            None => {
                self.shown = None;
                self.link.insert((self.open)()?)
            }
        };
        let rects = match &self.shown {
            Some(shown) => diff::changed(shown, frame),
            None => vec![frame.bounding_box()],
        };
        for rect in rects {
            if let Err(detail) = link.write(rect, frame) {
                self.link = None;
                self.shown = None;
                return Err(PanelError::Send { detail });
            }
        }
        match &mut self.shown {
            Some(shown) => shown.clone_from(frame),
            None => self.shown = Some(frame.clone()),
        }
        Ok(())
    }
}

/// Builds a [`Link`] for `config`'s controller over any embedded-hal SPI device and pins.
///
/// `delay` times the reset pulse and the controller's init sequence (about 150 ms in all on a
/// real panel; tests pass a delay that returns at once).
pub fn init<SPI, DC, RST>(
    config: &SpiConfig,
    spi: SPI,
    dc: DC,
    reset: Option<RST>,
    delay: &mut impl DelayNs,
) -> Result<Box<dyn Link>, PanelError>
where
    SPI: SpiDevice + Send + 'static,
    SPI::Error: Debug,
    DC: OutputPin + Send + 'static,
    RST: OutputPin + Send + 'static,
{
    let bus = Bus::new(spi, dc);
    match config.controller {
        Controller::St7789 => build(ST7789, bus, config, reset, delay),
        Controller::Ili9341 => build(ILI9341Rgb565, bus, config, reset, delay),
        Controller::Ili9486 => build(ILI9486Rgb666, bus, config, reset, delay),
    }
}

fn build<M, SPI, DC, RST>(
    model: M,
    bus: Bus<SPI, DC>,
    config: &SpiConfig,
    reset: Option<RST>,
    delay: &mut impl DelayNs,
) -> Result<Box<dyn Link>, PanelError>
where
    M: Model + Send + 'static,
    M::ColorFormat: InterfacePixelFormat<u8> + From<Rgb565>,
    SPI: SpiDevice + Send + 'static,
    SPI::Error: Debug,
    DC: OutputPin + Send + 'static,
    RST: OutputPin + Send + 'static,
{
    let rotation = match config.rotation {
        90 => Rotation::Deg90,
        180 => Rotation::Deg180,
        270 => Rotation::Deg270,
        _ => Rotation::Deg0,
    };
    let builder = mipidsi::Builder::new(model, bus)
        .display_size(config.width, config.height)
        .display_offset(config.offset_x, config.offset_y)
        .orientation(Orientation::new().rotate(rotation))
        .invert_colors(if config.invert {
            ColorInversion::Inverted
        } else {
            ColorInversion::Normal
        })
        .color_order(match config.color_order {
            ColorOrder::Rgb => mipidsi::options::ColorOrder::Rgb,
            ColorOrder::Bgr => mipidsi::options::ColorOrder::Bgr,
        });
    match reset {
        Some(reset) => boxed(builder.reset_pin(reset).init(delay)),
        None => boxed(builder.init(delay)),
    }
}

/// The initialised display as a [`Link`], whichever reset pin type it has.
fn boxed<M, SPI, DC, RST, E: Debug>(
    display: Result<mipidsi::Display<Bus<SPI, DC>, M, RST>, E>,
) -> Result<Box<dyn Link>, PanelError>
where
    M: Model + Send + 'static,
    M::ColorFormat: InterfacePixelFormat<u8> + From<Rgb565>,
    SPI: SpiDevice + Send + 'static,
    SPI::Error: Debug,
    DC: OutputPin + Send + 'static,
    RST: OutputPin + Send + 'static,
{
    let display = display.map_err(|e| PanelError::Init {
        detail: format!("{e:?}"),
    })?;
    Ok(Box::new(Driver { display }))
}

/// An initialised `mipidsi` display as a [`Link`].
struct Driver<M, SPI, DC, RST>
where
    M: Model,
    M::ColorFormat: InterfacePixelFormat<u8>,
    SPI: SpiDevice,
    DC: OutputPin,
    RST: OutputPin,
{
    display: mipidsi::Display<Bus<SPI, DC>, M, RST>,
}

impl<M, SPI, DC, RST> Link for Driver<M, SPI, DC, RST>
where
    M: Model + Send,
    M::ColorFormat: InterfacePixelFormat<u8> + From<Rgb565>,
    SPI: SpiDevice + Send,
    SPI::Error: Debug,
    DC: OutputPin + Send,
    RST: OutputPin + Send,
{
    fn write(&mut self, area: Rectangle, frame: &Frame) -> Result<(), String> {
        let area = area.intersection(&frame.bounding_box());
        let Some(end) = area.bottom_right() else {
            return Ok(());
        };
        let coord = |v: i32| u16::try_from(v).map_err(|_| format!("coordinate {v} out of range"));
        let (sx, sy) = (coord(area.top_left.x)?, coord(area.top_left.y)?);
        let (ex, ey) = (coord(end.x)?, coord(end.y)?);
        self.display
            .set_pixels(sx, sy, ex, ey, frame.area_pixels(&area).map(Into::into))
            .map_err(|e| format!("{e:?}"))
    }
}

/// `mipidsi`'s 4-wire SPI interface with an owned buffer of [`MAX_TRANSFER`] bytes.
///
/// `mipidsi::interface::SpiInterface` borrows its buffer for the display's lifetime, which a
/// panel that is re-initialised after every error cannot give without leaking one buffer per
/// retry; this is the same protocol (DC low for the command byte, high for its arguments and
/// for pixels) with the buffer inside.
pub struct Bus<SPI, DC> {
    spi: SPI,
    dc: DC,
    buffer: Vec<u8>,
}

impl<SPI, DC> Bus<SPI, DC> {
    /// An interface on `spi` with `dc` as the data/command line.
    pub fn new(spi: SPI, dc: DC) -> Bus<SPI, DC> {
        Bus {
            spi,
            dc,
            buffer: vec![0; MAX_TRANSFER],
        }
    }
}

/// A failed transfer or DC line change.
#[derive(Debug)]
pub enum BusError<S, D> {
    /// The SPI device failed.
    Spi(S),
    /// The DC line failed.
    Dc(D),
}

impl<SPI, DC> Interface for Bus<SPI, DC>
where
    SPI: SpiDevice,
    DC: OutputPin,
{
    type Word = u8;
    type Error = BusError<SPI::Error, DC::Error>;
    const KIND: InterfaceKind = InterfaceKind::Serial4Line;

    fn send_command(&mut self, command: u8, args: &[u8]) -> Result<(), Self::Error> {
        self.dc.set_low().map_err(BusError::Dc)?;
        self.spi.write(&[command]).map_err(BusError::Spi)?;
        self.dc.set_high().map_err(BusError::Dc)?;
        if !args.is_empty() {
            self.spi.write(args).map_err(BusError::Spi)?;
        }
        Ok(())
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u8; N]>,
    ) -> Result<(), Self::Error> {
        let mut pixels = pixels.into_iter().peekable();
        while pixels.peek().is_some() {
            let mut filled = 0;
            for (slot, pixel) in self.buffer.chunks_exact_mut(N).zip(&mut pixels) {
                slot.copy_from_slice(&pixel);
                filled += N;
            }
            self.spi
                .write(&self.buffer[..filled])
                .map_err(BusError::Spi)?;
        }
        Ok(())
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u8; N],
        count: u32,
    ) -> Result<(), Self::Error> {
        self.send_pixels((0..count).map(|_| pixel))
    }
}

/// Opens the real spidev device and GPIO lines named in `config` and initialises the panel.
fn open_linux(config: &SpiConfig) -> Result<Box<dyn Link>, PanelError> {
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
    use linux_embedded_hal::{CdevPin, Delay, SpidevDevice};

    let open_error = |device: &std::path::Path, detail: String| PanelError::Open {
        device: device.to_path_buf(),
        detail,
    };
    let mut spi = SpidevDevice::open(&config.device)
        .map_err(|e| open_error(&config.device, e.to_string()))?;
    let mode = match config.mode {
        1 => SpiModeFlags::SPI_MODE_1,
        2 => SpiModeFlags::SPI_MODE_2,
        3 => SpiModeFlags::SPI_MODE_3,
        _ => SpiModeFlags::SPI_MODE_0,
    };
    spi.configure(
        &SpidevOptions::new()
            .bits_per_word(8)
            .max_speed_hz(config.clock_hz)
            .mode(mode)
            .build(),
    )
    .map_err(|e| {
        open_error(
            &config.device,
            format!("configuring the SPI clock and mode: {e}"),
        )
    })?;

    let chip_error =
        |e: linux_embedded_hal::gpio_cdev::Error| open_error(&config.gpiochip, e.to_string());
    let mut chip = Chip::new(&config.gpiochip).map_err(chip_error)?;
    let mut output = |offset: u32, level: u8| -> Result<CdevPin, PanelError> {
        let handle = chip
            .get_line(offset)
            .and_then(|line| line.request(LineRequestFlags::OUTPUT, level, "kioskpay-display"))
            .map_err(|e| open_error(&config.gpiochip, format!("GPIO line {offset}: {e}")))?;
        CdevPin::new(handle)
            .map_err(|e| open_error(&config.gpiochip, format!("GPIO line {offset}: {e}")))
    };
    let dc = output(config.dc, 1)?;
    let reset = config.reset.map(|line| output(line, 1)).transpose()?;
    let backlight = config.backlight.map(|line| output(line, 0)).transpose()?;
    let link = init(config, spi, dc, reset, &mut Delay)?;
    if let Some(mut backlight) = backlight {
        backlight.set_high().map_err(|e| PanelError::Init {
            detail: format!("switching the backlight on: {e}"),
        })?;
        return Ok(Box::new(WithBacklight {
            link,
            _backlight: backlight,
        }));
    }
    Ok(link)
}

/// Keeps the backlight line requested (and so lit) for as long as the panel is in use.
struct WithBacklight<P> {
    link: Box<dyn Link>,
    _backlight: P,
}

impl<P: Send> Link for WithBacklight<P> {
    fn write(&mut self, area: Rectangle, frame: &Frame) -> Result<(), String> {
        self.link.write(area, frame)
    }
}
