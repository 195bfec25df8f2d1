//! Dirty rectangles: what changed between the frame a panel shows and the next one.
//!
//! A panel on an SPI bus pays for every byte: a full 240×320 RGB565 frame is 153,600 bytes, about
//! 20 ms at 62.5 MHz. A countdown tick changes a few digits, so the SPI and framebuffer backends
//! keep a copy of what the panel shows, ask [`changed`] for the rectangles that differ, and send
//! only those.
//!
//! The rectangles are horizontal bands: each run of consecutive changed rows becomes one
//! rectangle spanning the changed columns of those rows. That is exactly what a panel's address
//! window wants (one window, one stream of pixels), keeps the per-rectangle command overhead
//! (about 11 bytes and six transfers on a MIPI DCS panel) small, and is tight for the changes the
//! screens make: a line of text, a row of dots, a countdown.

use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

use super::frame::Frame;

/// Rectangles covering every pixel that differs between `old` and `new`, top to bottom and not
/// overlapping. Frames of different sizes differ everywhere: the whole of `new` is returned.
pub fn changed(old: &Frame, new: &Frame) -> Vec<Rectangle> {
    if old.size() != new.size() {
        return vec![new.bounding_box()];
    }
    let width = new.width() as usize;
    let mut rects = Vec::new();
    // The band being grown: first row and the union of changed columns so far.
    let mut band: Option<(usize, usize, usize)> = None;
    let rows = old.pixels().chunks(width).zip(new.pixels().chunks(width));
    for (y, (a, b)) in rows.enumerate() {
        let first = a.iter().zip(b).position(|(p, q)| p != q);
        let span = first.map(|first| {
            let last = a.iter().zip(b).rposition(|(p, q)| p != q).unwrap_or(first);
            (first, last)
        });
        match (span, band) {
            (Some((first, last)), Some((top, left, right))) => {
                band = Some((top, left.min(first), right.max(last)));
            }
            (Some((first, last)), None) => band = Some((y, first, last)),
            (None, Some(done)) => {
                rects.push(band_rect(done, y));
                band = None;
            }
            (None, None) => {}
        }
    }
    if let Some(done) = band {
        rects.push(band_rect(done, new.height() as usize));
    }
    rects
}

/// The rectangle of a band from row `top` to just above `end`, columns `left..=right`.
fn band_rect((top, left, right): (usize, usize, usize), end: usize) -> Rectangle {
    Rectangle::new(
        Point::new(left as i32, top as i32),
        Size::new((right - left + 1) as u32, (end - top) as u32),
    )
}

/// Pixels covered by `rects`.
pub fn area(rects: &[Rectangle]) -> u64 {
    rects
        .iter()
        .map(|r| u64::from(r.size.width) * u64::from(r.size.height))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::pixelcolor::Rgb565;

    #[test]
    fn identical_frames_have_nothing_to_send() {
        let a = Frame::new(20, 10);
        assert!(changed(&a, &a.clone()).is_empty());
    }

    #[test]
    fn bands_cover_exactly_the_changed_rows_and_columns() {
        let old = Frame::new(20, 10);
        let mut new = old.clone();
        new.draw_iter([
            Pixel(Point::new(3, 1), Rgb565::RED),
            Pixel(Point::new(7, 2), Rgb565::RED),
            Pixel(Point::new(19, 9), Rgb565::RED),
        ])
        .unwrap();
        let rects = changed(&old, &new);
        assert_eq!(
            rects,
            [
                Rectangle::new(Point::new(3, 1), Size::new(5, 2)),
                Rectangle::new(Point::new(19, 9), Size::new(1, 1)),
            ]
        );
        assert_eq!(area(&rects), 11);
        // Every changed pixel is covered.
        for (i, (a, b)) in old.pixels().iter().zip(new.pixels()).enumerate() {
            if a != b {
                let p = Point::new((i % 20) as i32, (i / 20) as i32);
                assert!(rects.iter().any(|r| r.contains(p)), "{p:?} not covered");
            }
        }
    }

    #[test]
    fn a_new_size_is_sent_whole() {
        let rects = changed(&Frame::new(10, 10), &Frame::new(20, 5));
        assert_eq!(rects, [Rectangle::new(Point::zero(), Size::new(20, 5))]);
    }
}
