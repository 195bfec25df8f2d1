//! An in-memory RGB565 framebuffer: what a panel will show, pixel for pixel.
//!
//! Every backend gets the same [`Frame`]: the SPI panel sends it (RGB565 is what ST7789 and
//! ILI9341 controllers take natively, so no conversion happens on the hot path), the PNG backend
//! encodes it, tests read its pixels. Drawing into memory first also means a slow bus never shows
//! a half-drawn screen.

use std::convert::Infallible;
use std::io::Write;

use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

/// The longest side a frame may have. Real kiosk panels are at most a few hundred pixels; the cap
/// keeps a typo in a `--size` argument from asking for gigabytes.
pub const MAX_SIDE: u32 = 4096;

/// A width × height grid of RGB565 pixels, row by row from the top left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    size: Size,
    pixels: Vec<Rgb565>,
}

impl Frame {
    /// A black frame of `width` × `height` pixels.
    ///
    /// Each side is clamped to `1..=MAX_SIDE`: a frame always has a pixel, so it always encodes.
    pub fn new(width: u32, height: u32) -> Frame {
        let size = Size::new(width.clamp(1, MAX_SIDE), height.clamp(1, MAX_SIDE));
        let len = size.width as usize * size.height as usize;
        Frame {
            size,
            pixels: vec![Rgb565::BLACK; len],
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.size.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.size.height
    }

    /// The colour at `point`, or `None` outside the frame.
    pub fn pixel(&self, point: Point) -> Option<Rgb565> {
        self.index(point).map(|i| self.pixels[i])
    }

    /// All pixels, row by row from the top left; what a panel driver streams out.
    pub fn pixels(&self) -> &[Rgb565] {
        &self.pixels
    }

    /// The pixels inside `area` (clipped to the frame), row by row: the order a panel's address
    /// window takes them in.
    pub fn area_pixels(&self, area: &Rectangle) -> impl Iterator<Item = Rgb565> + '_ {
        let area = area.intersection(&self.bounding_box());
        let width = self.size.width as usize;
        let (left, columns) = (area.top_left.x as usize, area.size.width as usize);
        let top = area.top_left.y as usize;
        (top..top + area.size.height as usize).flat_map(move |y| {
            let start = y * width + left;
            self.pixels[start..start + columns].iter().copied()
        })
    }

    /// Writes the frame as an 8-bit RGB PNG to `out`.
    pub fn write_png<W: Write>(&self, out: W) -> Result<(), png::EncodingError> {
        let mut encoder = png::Encoder::new(out, self.size.width, self.size.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        let rgb: Vec<u8> = self
            .pixels
            .iter()
            .flat_map(|p| {
                let c = Rgb888::from(*p);
                [c.r(), c.g(), c.b()]
            })
            .collect();
        writer.write_image_data(&rgb)?;
        writer.finish()
    }

    /// The frame as PNG file bytes.
    ///
    /// Encoding into memory cannot fail for a frame (its sides are never zero); should the PNG
    /// encoder still refuse, the error is logged and the result is empty rather than a panic.
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.write_png(&mut out) {
            Ok(()) => out,
            Err(error) => {
                tracing::error!(%error, "PNG encoding of a frame failed");
                Vec::new()
            }
        }
    }

    fn index(&self, point: Point) -> Option<usize> {
        let x = u32::try_from(point.x).ok()?;
        let y = u32::try_from(point.y).ok()?;
        (x < self.size.width && y < self.size.height)
            .then(|| y as usize * self.size.width as usize + x as usize)
    }
}

impl OriginDimensions for Frame {
    fn size(&self) -> Size {
        self.size
    }
}

impl DrawTarget for Frame {
    type Color = Rgb565;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(point, color) in pixels {
            if let Some(i) = self.index(point) {
                self.pixels[i] = color;
            }
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        let area = area.intersection(&self.bounding_box());
        let Some(bottom_right) = area.bottom_right() else {
            return Ok(());
        };
        let width = self.size.width as usize;
        for y in area.top_left.y..=bottom_right.y {
            let row = y as usize * width;
            let start = row + area.top_left.x as usize;
            let end = row + bottom_right.x as usize;
            self.pixels[start..=end].fill(color);
        }
        Ok(())
    }

    fn clear(&mut self, color: Self::Color) -> Result<(), Self::Error> {
        self.pixels.fill(color);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_inside_and_ignores_outside() {
        let mut frame = Frame::new(4, 3);
        frame
            .draw_iter([
                Pixel(Point::new(3, 2), Rgb565::RED),
                Pixel(Point::new(4, 0), Rgb565::GREEN),
                Pixel(Point::new(-1, 0), Rgb565::GREEN),
            ])
            .unwrap();
        assert_eq!(frame.pixel(Point::new(3, 2)), Some(Rgb565::RED));
        assert_eq!(frame.pixel(Point::new(4, 0)), None);
        assert_eq!(
            frame
                .pixels()
                .iter()
                .filter(|p| **p != Rgb565::BLACK)
                .count(),
            1
        );
        frame
            .fill_solid(
                &Rectangle::new(Point::new(2, 1), Size::new(10, 10)),
                Rgb565::BLUE,
            )
            .unwrap();
        assert_eq!(
            frame
                .pixels()
                .iter()
                .filter(|p| **p == Rgb565::BLUE)
                .count(),
            4
        );
    }

    #[test]
    fn sides_are_clamped() {
        let frame = Frame::new(0, 100_000);
        assert_eq!((frame.width(), frame.height()), (1, MAX_SIDE));
        assert!(!frame.to_png().is_empty());
    }
}
