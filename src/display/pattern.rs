//! The test pattern `test display` shows first: what a technician checks a panel with at a
//! glance.
//!
//! - **Colour order**: three bars labelled RED, GREEN and BLUE. A panel set up for the wrong
//!   order (RGB against BGR) shows a blue bar under the word RED.
//! - **Dead or stuck pixels**: a white and a black bar, and a black field under a one-pixel
//!   grid every [`GRID`] pixels; a stuck pixel stands out on both.
//! - **Orientation and offsets**: "TOP" with an arrow at the top edge, "LEFT" on the left, a
//!   one-pixel frame on the outermost pixels (a wrong rotation or offset cuts it off or shifts
//!   it), and the size the kiosk draws at in the middle, to compare with the panel's.

use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle, Triangle};
use u8g2_fonts::types::{FontColor, HorizontalAlignment, VerticalPosition};
use u8g2_fonts::{fonts, FontRenderer};

use super::screen::{Icon, Screen, Tone};

/// The grid's pitch in pixels.
pub const GRID: u32 = 20;

/// Its name for `kioskpay render` and the console.
pub const NAME: &str = "test-pattern";

/// The pattern as a [`Screen`], for text panels (terminal, logs) and to tell it apart from the
/// customer's screens.
pub fn screen(size: Size) -> Screen {
    Screen {
        tone: Tone::Info,
        icon: Icon::Wrench,
        title: "Test pattern".into(),
        amount: None,
        lines: vec![
            format!("{}×{} pixels", size.width, size.height),
            "Bars: RED GREEN BLUE WHITE BLACK".into(),
        ],
        footer: None,
        countdown: None,
        activity: None,
        qr: None,
    }
}

/// Draws the pattern over the whole target.
pub fn draw<D>(target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb565>,
{
    let area = target.bounding_box();
    let Size { width, height } = area.size;
    // Dark grey, so the black bar shows where it ends.
    target.clear(Rgb565::new(5, 10, 5))?;
    let small = FontRenderer::new::<fonts::u8g2_font_fub11_tf>().with_ignore_unknown_chars(true);
    let large = FontRenderer::new::<fonts::u8g2_font_fub20_tf>().with_ignore_unknown_chars(true);

    // Bars across the top third, each labelled in a colour that reads on it.
    let bars: [(Rgb565, &str, Rgb565); 5] = [
        (Rgb565::RED, "RED", Rgb565::WHITE),
        (Rgb565::GREEN, "GREEN", Rgb565::BLACK),
        (Rgb565::BLUE, "BLUE", Rgb565::WHITE),
        (Rgb565::WHITE, "WHITE", Rgb565::BLACK),
        (Rgb565::BLACK, "BLACK", Rgb565::WHITE),
    ];
    let landscape = width > height;
    let band = Rectangle::new(Point::new(0, GRID as i32 * 2), Size::new(width, height / 3));
    for (i, (colour, label, ink)) in bars.iter().enumerate() {
        let n = bars.len() as u32;
        let (bar, text_at) = if landscape {
            let w = width / n;
            let x = (i as u32 * w) as i32;
            let bar = Rectangle::new(
                Point::new(x, band.top_left.y),
                Size::new(w, band.size.height),
            );
            (bar, bar.center())
        } else {
            let h = band.size.height / n;
            let y = band.top_left.y + (i as u32 * h) as i32;
            let bar = Rectangle::new(Point::new(0, y), Size::new(width, h));
            (bar, bar.center())
        };
        bar.into_styled(PrimitiveStyle::with_fill(*colour))
            .draw(target)?;
        text(&small, label, text_at, *ink, target)?;
    }

    // The grid below the bars, on black.
    let grid = PrimitiveStyle::with_stroke(Rgb565::new(16, 32, 16), 1);
    let grid_top = band.top_left.y + band.size.height as i32 + GRID as i32;
    Rectangle::new(
        Point::new(0, grid_top),
        Size::new(width, (height as i32 - grid_top).max(0) as u32),
    )
    .into_styled(PrimitiveStyle::with_fill(Rgb565::BLACK))
    .draw(target)?;
    let mut x = 0;
    while x < width as i32 {
        Line::new(Point::new(x, grid_top), Point::new(x, height as i32 - 1))
            .into_styled(grid)
            .draw(target)?;
        x += GRID as i32;
    }
    let mut y = grid_top;
    while y < height as i32 {
        Line::new(Point::new(0, y), Point::new(width as i32 - 1, y))
            .into_styled(grid)
            .draw(target)?;
        y += GRID as i32;
    }

    // Which way is up and left, and the size drawn at.
    let middle = width as i32 / 2;
    Triangle::new(
        Point::new(middle, 2),
        Point::new(middle - 8, 14),
        Point::new(middle + 8, 14),
    )
    .into_styled(PrimitiveStyle::with_fill(Rgb565::YELLOW))
    .draw(target)?;
    text(
        &small,
        "TOP",
        Point::new(middle, 30),
        Rgb565::YELLOW,
        target,
    )?;
    let lower = grid_top + (height as i32 - grid_top) / 2;
    let left = lower - GRID as i32;
    Triangle::new(
        Point::new(2, left),
        Point::new(14, left - 8),
        Point::new(14, left + 8),
    )
    .into_styled(PrimitiveStyle::with_fill(Rgb565::YELLOW))
    .draw(target)?;
    text(&small, "LEFT", Point::new(36, left), Rgb565::YELLOW, target)?;
    let size = format!("{width}x{height}");
    let label = Rectangle::with_center(Point::new(middle, lower), Size::new(width.min(150), 34));
    label
        .into_styled(PrimitiveStyle::with_fill(Rgb565::BLACK))
        .draw(target)?;
    text(&large, &size, label.center(), Rgb565::WHITE, target)?;

    // The outermost pixels: a frame a wrong offset or rotation cuts off.
    Rectangle::new(Point::zero(), area.size)
        .into_styled(PrimitiveStyle::with_stroke(Rgb565::WHITE, 1))
        .draw(target)
}

/// Draws `line` centred on `at`.
fn text<D>(
    font: &FontRenderer,
    line: &str,
    at: Point,
    ink: Rgb565,
    target: &mut D,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb565>,
{
    match font.render_aligned(
        line,
        at,
        VerticalPosition::Center,
        HorizontalAlignment::Center,
        FontColor::Transparent(ink),
        target,
    ) {
        Ok(_) => Ok(()),
        Err(u8g2_fonts::Error::DisplayError(e)) => Err(e),
        // Glyphs the font lacks are skipped (`with_ignore_unknown_chars`), and the pattern's
        // words are ASCII: nothing else can go wrong.
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::Frame;

    #[test]
    fn the_pattern_has_its_bars_in_order_its_frame_and_fits_every_tested_size() {
        for (w, h) in [(240, 320), (320, 240), (480, 320)] {
            let mut frame = Frame::new(w, h);
            let Ok(()) = draw(&mut frame);
            for corner in [
                Point::new(0, 0),
                Point::new(w as i32 - 1, 0),
                Point::new(0, h as i32 - 1),
                Point::new(w as i32 - 1, h as i32 - 1),
            ] {
                assert_eq!(
                    frame.pixel(corner),
                    Some(Rgb565::WHITE),
                    "{w}x{h} {corner:?}"
                );
            }
            // The first bar is red where RGB order is right; its label is drawn on it.
            let first = if w > h {
                Point::new(4, GRID as i32 * 2 + 4)
            } else {
                Point::new(4, GRID as i32 * 2 + 2)
            };
            assert_eq!(frame.pixel(first), Some(Rgb565::RED), "{w}x{h}");
        }
    }
}
