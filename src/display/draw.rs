//! Drawing a [`Screen`] into any embedded-graphics `DrawTarget`.
//!
//! One function, [`draw`], serves every panel and the tests: an SPI panel driver, the in-memory
//! [`super::frame::Frame`] and a test recorder are all just `DrawTarget<Color = Rgb565>`.
//!
//! Design for a customer standing at arm's length in a shop:
//! - **High contrast.** White text on black; the header band carries the tone (blue: info, green:
//!   paid, amber: attention, red: not paid) with white text, or black text on amber. Every
//!   colour pair is at least 5:1.
//! - **Big where it matters.** The amount is set in the largest bold face that fits the width
//!   (up to 42 px); the first instruction is bold; the reference is small print at the bottom.
//! - **Never colour alone.** Each outcome also has its own icon shape and its own title.
//! - **Any size.** Sizes and fonts derive from the target's bounding box (240×320 portrait, 320×240
//!   and 480×320 landscape are tested): a header band with the icon beside the title, the content
//!   centred below it, the reference at the bottom. When content does not fit, smaller faces are
//!   tried, then the least important lines are dropped, and whatever still overflows is clipped,
//!   never drawn outside its region.
//!
//! Fonts are u8g2's FreeUniversal (`fub`/`fur`, DejaVu-like shapes) in their `_tf` variants, which
//! cover Latin-1 (æøå, and the no-break space inside amounts). Characters outside Latin-1 are
//! replaced with look-alikes before drawing ("•" becomes "*").

use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{
    Circle, Line, Polyline, PrimitiveStyle, Rectangle, RoundedRectangle, Triangle,
};
use u8g2_fonts::types::{FontColor, HorizontalAlignment, VerticalPosition};
use u8g2_fonts::{fonts, Font, FontRenderer};

use super::screen::{Icon, Screen, Tone, ACTIVITY_PHASES};

/// Where each part of a screen lands on a target; what [`draw`] paints, exposed so that tests
/// and partial-update drivers can look at regions instead of guessing coordinates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The coloured band at the top carrying the tone, icon and title.
    pub header: Rectangle,
    /// The icon inside the header.
    pub icon: Rectangle,
    /// The title text inside the header.
    pub title: Rectangle,
    /// The region the content (amount, lines, countdown, activity) is clipped to.
    pub content: Rectangle,
    /// The amount, if the screen has one and it fits.
    pub amount: Option<Rectangle>,
    /// The instruction lines, if any fit.
    pub body: Option<Rectangle>,
    /// The countdown row (clock and seconds), if any.
    pub countdown: Option<Rectangle>,
    /// The activity dots, if any.
    pub activity: Option<Rectangle>,
    /// The small print at the bottom, if any.
    pub footer: Option<Rectangle>,
    /// The QR code with its light quiet zone, if the screen has one and it fits with modules
    /// of at least [`MIN_QR_MODULE`] pixels.
    pub qr: Option<Rectangle>,
}

/// The smallest QR module, in pixels, worth drawing: below it a phone camera at arm's length
/// no longer resolves the code on a 2-3 inch panel, and the space is better left to the text.
pub const MIN_QR_MODULE: u32 = 2;

/// Light modules around a QR code. The standard asks for 4; phones read 2 reliably, and on a
/// small panel every module of margin is a pixel less per module.
const QR_QUIET: u32 = 2;

/// A QR code placed on the screen.
struct QrPlan {
    code: qrcodegen::QrCode,
    /// The light square, quiet zone included.
    area: Rectangle,
    /// Pixels per module.
    module: u32,
}

/// Encodes `text` and places it inside `content`: to the right on landscape panels, below the
/// text on portrait ones. Returns the code and the part of `content` left for the text.
fn place_qr(
    text: &str,
    content: Rectangle,
    margin: u32,
    landscape: bool,
) -> Option<(QrPlan, Rectangle)> {
    let code = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Low).ok()?;
    let modules = code.size() as u32 + 2 * QR_QUIET;
    let (cw, ch) = (content.size.width, content.size.height);
    let max_side = if landscape {
        ch.min(cw * 2 / 5)
    } else {
        cw.saturating_sub(2 * margin).min(ch * 3 / 5)
    };
    let module = max_side / modules;
    if module < MIN_QR_MODULE {
        return None;
    }
    let side = module * modules;
    let (area, rest) = if landscape {
        let left = content.top_left.x + (cw - margin - side) as i32;
        let top = content.top_left.y + ((ch - side) / 2) as i32;
        let rest = Rectangle::new(
            content.top_left,
            Size::new((left - content.top_left.x) as u32, ch),
        );
        (
            Rectangle::new(Point::new(left, top), Size::new(side, side)),
            rest,
        )
    } else {
        let left = content.top_left.x + ((cw - side) / 2) as i32;
        let top = content.top_left.y + (ch - side) as i32;
        let rest = Rectangle::new(
            content.top_left,
            Size::new(cw, ch - side - margin.min(ch - side)),
        );
        (
            Rectangle::new(Point::new(left, top), Size::new(side, side)),
            rest,
        )
    };
    Some((QrPlan { code, area, module }, rest))
}

/// Draws `screen` to fill `target`'s bounding box.
///
/// The only errors are the target's own; nothing is ever drawn outside its bounding box.
pub fn draw<D>(screen: &Screen, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb565>,
{
    let area = target.bounding_box();
    let plan = plan(screen, area);
    let mut target = target.clipped(&area);
    paint(screen, &plan, &mut target)
}

/// Where `screen` would be drawn on a target of `size` (origin at the top left).
pub fn layout(screen: &Screen, size: Size) -> Layout {
    plan(screen, Rectangle::new(Point::zero(), size)).layout
}

const BACKGROUND: Rgb565 = Rgb565::BLACK;
const TEXT: Rgb565 = Rgb565::WHITE;

/// Rgb888 → Rgb565 at compile time (embedded-graphics' conversion is not `const`).
const fn rgb(r: u8, g: u8, b: u8) -> Rgb565 {
    Rgb565::new(r >> 3, g >> 2, b >> 3)
}

const SECONDARY: Rgb565 = rgb(200, 200, 200);
const DIM: Rgb565 = rgb(90, 90, 90);

/// Header band colour and the colour of text on it.
fn tone_colors(tone: Tone) -> (Rgb565, Rgb565) {
    match tone {
        Tone::Info => (rgb(0, 72, 160), Rgb565::WHITE),
        Tone::Success => (rgb(0, 105, 50), Rgb565::WHITE),
        Tone::Warning => (rgb(255, 184, 0), Rgb565::BLACK),
        Tone::Error => (rgb(190, 20, 30), Rgb565::WHITE),
    }
}

const fn face<F: Font>() -> FontRenderer {
    FontRenderer::new::<F>().with_ignore_unknown_chars(true)
}

/// Bold faces, largest first.
static BOLD: [FontRenderer; 8] = [
    face::<fonts::u8g2_font_fub42_tf>(),
    face::<fonts::u8g2_font_fub35_tf>(),
    face::<fonts::u8g2_font_fub30_tf>(),
    face::<fonts::u8g2_font_fub25_tf>(),
    face::<fonts::u8g2_font_fub20_tf>(),
    face::<fonts::u8g2_font_fub17_tf>(),
    face::<fonts::u8g2_font_fub14_tf>(),
    face::<fonts::u8g2_font_fub11_tf>(),
];

/// Regular faces, in the same sizes as [`BOLD`].
static REGULAR: [FontRenderer; 8] = [
    face::<fonts::u8g2_font_fur42_tf>(),
    face::<fonts::u8g2_font_fur35_tf>(),
    face::<fonts::u8g2_font_fur30_tf>(),
    face::<fonts::u8g2_font_fur25_tf>(),
    face::<fonts::u8g2_font_fur20_tf>(),
    face::<fonts::u8g2_font_fur17_tf>(),
    face::<fonts::u8g2_font_fur14_tf>(),
    face::<fonts::u8g2_font_fur11_tf>(),
];

const SMALLEST: usize = 7;

/// Preferred size (index into [`BOLD`]/[`REGULAR`]) of each role for a panel whose short side is
/// `short` pixels.
struct Sizes {
    amount: usize,
    title: usize,
    body: usize,
    footer: usize,
}

fn sizes(short: u32) -> Sizes {
    if short >= 300 {
        Sizes {
            amount: 0,
            title: 3,
            body: 5,
            footer: 6,
        }
    } else if short >= 200 {
        Sizes {
            amount: 1,
            title: 4,
            body: 6,
            footer: 7,
        }
    } else {
        Sizes {
            amount: 4,
            title: 6,
            body: 7,
            footer: 7,
        }
    }
}

/// Lines of text in one face, placed by their top edge.
struct Block {
    font: &'static FontRenderer,
    lines: Vec<String>,
    color: Rgb565,
    /// Top edge of the first line.
    top: i32,
    /// Horizontal anchor: the centre, or the left edge for left-aligned blocks.
    x: i32,
    align: HorizontalAlignment,
    /// Width the lines were wrapped to.
    width: u32,
    /// Pixels above the baseline the lines reach.
    ascent: u32,
    /// Pixels below the baseline the lines reach.
    descent: u32,
}

impl Block {
    fn new(
        font: &'static FontRenderer,
        text: &str,
        width: u32,
        color: Rgb565,
        max_lines: usize,
    ) -> Block {
        let mut lines = wrap(font, &latin1(text), width);
        lines.truncate(max_lines);
        let (ascent, descent) = extent(font, &lines.concat());
        Block {
            font,
            lines,
            color,
            top: 0,
            x: 0,
            align: HorizontalAlignment::Center,
            width,
            ascent,
            descent,
        }
    }

    /// Distance between baselines: the lines' extent plus a quarter of it as leading.
    fn pitch(&self) -> u32 {
        let extent = self.ascent + self.descent;
        extent + (extent / 4).max(2)
    }

    /// From the top of the first line to the lowest pixel of the last.
    fn height(&self) -> u32 {
        match self.lines.len() as u32 {
            0 => 0,
            n => self.pitch() * (n - 1) + self.ascent + self.descent,
        }
    }

    fn rect(&self) -> Rectangle {
        let left = match self.align {
            HorizontalAlignment::Center => self.x - (self.width / 2) as i32,
            HorizontalAlignment::Left | HorizontalAlignment::Right => self.x,
        };
        Rectangle::new(
            Point::new(left, self.top),
            Size::new(self.width, self.height()),
        )
    }
}

/// Everything [`paint`] needs: regions and the wrapped, sized text.
struct Plan {
    layout: Layout,
    title: Block,
    amount: Option<Block>,
    body: Vec<Block>,
    countdown: Option<(Rectangle, Block)>,
    footer: Option<Block>,
    qr: Option<QrPlan>,
}

fn plan(screen: &Screen, area: Rectangle) -> Plan {
    let (w, h) = (area.size.width, area.size.height);
    let short = w.min(h);
    let sizes = sizes(short);
    let margin = (short / 30).max(4);
    let (_, header_fg) = tone_colors(screen.tone);
    let origin = area.top_left;
    let cx = origin.x + (w / 2) as i32;

    // Header: the icon beside the title, both vertically centred in the band.
    let icon_side = short / 5;
    let title_width = w.saturating_sub(3 * margin + icon_side);
    let mut title = fitted_block(&BOLD, sizes.title, &screen.title, title_width, header_fg, 2);
    let header_height = icon_side.max(title.height()) + 2 * margin;
    let header = Rectangle::new(origin, Size::new(w, header_height));
    let icon = Rectangle::new(
        origin + Point::new(margin as i32, ((header_height - icon_side) / 2) as i32),
        Size::new(icon_side, icon_side),
    );
    title.top = origin.y + ((header_height - title.height()) / 2) as i32;
    title.x = origin.x + (2 * margin + icon_side) as i32;
    title.align = HorizontalAlignment::Left;

    // Footer: small print pinned to the bottom.
    let text_width = w.saturating_sub(2 * margin);
    let bottom = origin.y + h as i32;
    let footer = screen.footer.as_ref().map(|text| {
        let mut block = Block::new(&REGULAR[sizes.footer], text, text_width, SECONDARY, 2);
        block.top = bottom - (margin + block.height()) as i32;
        block.x = cx;
        block
    });
    let content_bottom = footer
        .as_ref()
        .map_or(bottom - margin as i32, |f| f.top - margin as i32);
    let content_top = header.top_left.y + (header.size.height + margin) as i32;
    let content = Rectangle::with_corners(
        Point::new(origin.x, content_top),
        Point::new(origin.x + w as i32 - 1, content_bottom.max(content_top)),
    );

    // A QR code takes its square first; the text gets what is left.
    let (qr, text_area) = match screen
        .qr
        .as_deref()
        .and_then(|text| place_qr(text, content, margin, w > h))
    {
        Some((qr, rest)) => (Some(qr), rest),
        None => (None, content),
    };
    let cx = text_area.top_left.x + (text_area.size.width / 2) as i32;
    let text_width = text_area.size.width.saturating_sub(2 * margin);

    // Content: try the preferred faces, then one size smaller, then fewer lines (the last ones
    // are the least important), then smaller faces still.
    let avail = text_area.size.height;
    let mut shrink = 0;
    let mut keep = screen.lines.len();
    let mut stack = content_stack(screen, &sizes, shrink, keep, text_width, margin);
    while stack.height > avail {
        let can_shrink = sizes.body + shrink < SMALLEST;
        if can_shrink && shrink == 0 {
            shrink += 1;
        } else if keep > 1 {
            keep -= 1;
        } else if can_shrink {
            shrink += 1;
        } else {
            break;
        }
        stack = content_stack(screen, &sizes, shrink, keep, text_width, margin);
    }

    // Centre the stack in its region when it fits; otherwise start at the top and clip.
    let mut y = text_area.top_left.y + (avail.saturating_sub(stack.height) / 2) as i32;
    let mut layout = Layout {
        header,
        icon,
        title: title.rect(),
        content,
        amount: None,
        body: None,
        countdown: None,
        activity: None,
        footer: footer.as_ref().map(Block::rect),
        qr: qr.as_ref().map(|q| q.area),
    };
    let (item_gap, line_gap) = gaps(margin);
    let (item_gap, line_gap) = (item_gap as i32, line_gap as i32);
    let mut amount = stack.amount;
    if let Some(block) = amount.as_mut() {
        block.top = y;
        block.x = cx;
        layout.amount = Some(block.rect());
        y += block.height() as i32 + item_gap;
    }
    let mut body = stack.body;
    if !body.is_empty() {
        let top = y;
        for (i, block) in body.iter_mut().enumerate() {
            if i > 0 {
                y += line_gap;
            }
            block.top = y;
            block.x = cx;
            y += block.height() as i32;
        }
        layout.body = Some(Rectangle::new(
            Point::new(cx - (text_width / 2) as i32, top),
            Size::new(text_width, (y - top) as u32),
        ));
        y += item_gap;
    }
    let mut countdown = stack.countdown;
    if let Some((clock, block)) = countdown.as_mut() {
        let row_width = clock.size.width + margin + block.width;
        let left = cx - (row_width / 2) as i32;
        clock.top_left = Point::new(left, y);
        block.top = y;
        block.x = left + (clock.size.width + margin) as i32;
        block.align = HorizontalAlignment::Left;
        layout.countdown = Some(Rectangle::new(
            Point::new(left, y),
            Size::new(row_width, block.height()),
        ));
        y += block.height() as i32 + item_gap;
    }
    if screen.activity.is_some() {
        let dot = margin.max(6);
        let width = dot * (2 * u32::from(ACTIVITY_PHASES) - 1);
        layout.activity = Some(Rectangle::new(
            Point::new(cx - (width / 2) as i32, y),
            Size::new(width, dot),
        ));
    }

    Plan {
        layout,
        title,
        amount,
        body,
        countdown,
        footer,
        qr,
    }
}

/// The content blocks with their total height, before they are placed.
struct Stack {
    amount: Option<Block>,
    body: Vec<Block>,
    countdown: Option<(Rectangle, Block)>,
    height: u32,
}

fn content_stack(
    screen: &Screen,
    sizes: &Sizes,
    shrink: usize,
    keep: usize,
    width: u32,
    margin: u32,
) -> Stack {
    let amount = screen.amount.as_ref().map(|text| {
        let start = (sizes.amount + shrink).min(SMALLEST);
        fitted_block(&BOLD, start, text, width, TEXT, 1)
    });
    // Without an amount the instructions are the main content: one size larger.
    let body_size = (sizes.body + shrink)
        .saturating_sub(usize::from(screen.amount.is_none()))
        .min(SMALLEST);
    let body: Vec<Block> = screen
        .lines
        .iter()
        .take(keep)
        .enumerate()
        .map(|(i, line)| {
            // The first line is the instruction that matters most: bold.
            let faces = if i == 0 { &BOLD } else { &REGULAR };
            Block::new(&faces[body_size], line, width, TEXT, 4)
        })
        .collect();
    let countdown = screen.countdown.as_ref().map(|countdown| {
        let font = &BOLD[body_size];
        let (ascent, descent) = extent(font, &countdown.text);
        let side = ascent + descent;
        let text_width = text_width(font, &countdown.text).min(width.saturating_sub(side + margin));
        let block = Block::new(font, &countdown.text, text_width.max(1), TEXT, 1);
        (Rectangle::new(Point::zero(), Size::new(side, side)), block)
    });

    let (item_gap, line_gap) = gaps(margin);
    let mut height = 0;
    let mut items: u32 = 0;
    if let Some(block) = &amount {
        height += block.height();
        items += 1;
    }
    if !body.is_empty() {
        height += body.iter().map(Block::height).sum::<u32>() + line_gap * (body.len() as u32 - 1);
        items += 1;
    }
    if let Some((_, block)) = &countdown {
        height += block.height();
        items += 1;
    }
    if screen.activity.is_some() {
        height += margin.max(6);
        items += 1;
    }
    height += item_gap * items.saturating_sub(1);
    Stack {
        amount,
        body,
        countdown,
        height,
    }
}

/// Space between content items (amount, lines, countdown, dots) and between two lines of
/// instructions: enough that each sentence reads as its own instruction.
fn gaps(margin: u32) -> (u32, u32) {
    (margin * 3 / 2, margin * 3 / 4)
}

/// The largest face from `faces[start..]` in which `text` wraps to at most `max_lines` lines.
fn fitted_block(
    faces: &'static [FontRenderer],
    start: usize,
    text: &str,
    width: u32,
    color: Rgb565,
    max_lines: usize,
) -> Block {
    let start = start.min(faces.len() - 1);
    for font in &faces[start..] {
        let lines = wrap(font, &latin1(text), width);
        if lines.len() <= max_lines && lines.iter().all(|l| text_width(font, l) <= width) {
            return Block::new(font, text, width, color, max_lines);
        }
    }
    Block::new(&faces[faces.len() - 1], text, width, color, max_lines)
}

fn paint<D>(screen: &Screen, plan: &Plan, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb565>,
{
    let layout = &plan.layout;
    let (band, band_text) = tone_colors(screen.tone);
    target.clear(BACKGROUND)?;
    target.fill_solid(&layout.header, band)?;
    draw_icon(screen.icon, layout.icon, band_text, band, target)?;
    draw_block(&plan.title, target)?;

    let mut content = target.clipped(&layout.content);
    if let Some(block) = &plan.amount {
        draw_block(block, &mut content)?;
    }
    for block in &plan.body {
        draw_block(block, &mut content)?;
    }
    if let Some((clock, block)) = &plan.countdown {
        draw_icon(Icon::Clock, *clock, TEXT, BACKGROUND, &mut content)?;
        draw_block(block, &mut content)?;
    }
    if let (Some(area), Some(phase)) = (layout.activity, screen.activity) {
        let dot = area.size.height;
        for i in 0..ACTIVITY_PHASES {
            let color = if i == phase % ACTIVITY_PHASES {
                TEXT
            } else {
                DIM
            };
            let left = area.top_left + Point::new((2 * dot * u32::from(i)) as i32, 0);
            Circle::new(left, dot)
                .into_styled(PrimitiveStyle::with_fill(color))
                .draw(&mut content)?;
        }
    }
    if let Some(qr) = &plan.qr {
        draw_qr(qr, &mut content)?;
    }
    if let Some(block) = &plan.footer {
        draw_block(block, target)?;
    }
    Ok(())
}

/// Dark modules on a white square: QR readers expect dark on light, whatever the screen's theme.
fn draw_qr<D>(qr: &QrPlan, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb565>,
{
    target.fill_solid(&qr.area, Rgb565::WHITE)?;
    let size = qr.code.size();
    let offset = (QR_QUIET * qr.module) as i32;
    for y in 0..size {
        for x in 0..size {
            if qr.code.get_module(x, y) {
                let at = qr.area.top_left
                    + Point::new(offset + x * qr.module as i32, offset + y * qr.module as i32);
                target.fill_solid(
                    &Rectangle::new(at, Size::new(qr.module, qr.module)),
                    Rgb565::BLACK,
                )?;
            }
        }
    }
    Ok(())
}

fn draw_block<D>(block: &Block, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb565>,
{
    let ascent = block.ascent as i32;
    let pitch = block.pitch() as i32;
    for (i, line) in block.lines.iter().enumerate() {
        let baseline = Point::new(block.x, block.top + ascent + i as i32 * pitch);
        let drawn = block.font.render_aligned(
            line.as_str(),
            baseline,
            VerticalPosition::Baseline,
            block.align,
            FontColor::Transparent(block.color),
            target,
        );
        match drawn {
            Ok(_) => {}
            Err(u8g2_fonts::Error::DisplayError(e)) => return Err(e),
            // Neither can happen: unknown glyphs are ignored (the faces are built with
            // `with_ignore_unknown_chars`) and text is drawn without a background.
            Err(u8g2_fonts::Error::GlyphNotFound(_))
            | Err(u8g2_fonts::Error::BackgroundColorNotSupported) => {}
        }
    }
    Ok(())
}

/// Pixels above and below the baseline that `text` reaches in `font`. Measured on the text itself
/// rather than taken from the font's bounding box, which also covers rare oversized glyphs and
/// would space an amount of digits a third taller than it is.
fn extent(font: &FontRenderer, text: &str) -> (u32, u32) {
    font.get_rendered_dimensions(text, Point::zero(), VerticalPosition::Baseline)
        .ok()
        .and_then(|d| d.bounding_box)
        .map_or((0, 0), |b| {
            let top = (-b.top_left.y).max(0) as u32;
            let bottom = (b.top_left.y + b.size.height as i32).max(0) as u32;
            (top, bottom)
        })
}

fn text_width(font: &FontRenderer, text: &str) -> u32 {
    font.get_rendered_dimensions(text, Point::zero(), VerticalPosition::Baseline)
        .map_or(0, |d| d.advance.x.max(0) as u32)
}

/// Greedy word wrap at spaces. No-break spaces (inside amounts) never break; a word wider than
/// the line is broken between characters as a last resort.
fn wrap(font: &FontRenderer, text: &str, width: u32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if text_width(font, &candidate) <= width {
            line = candidate;
            continue;
        }
        if text_width(font, word) <= width {
            lines.push(std::mem::replace(&mut line, word.to_string()));
            continue;
        }
        // A word wider than a line is a merchant reference or an id, read out to support: it
        // breaks after a hyphen, as much of it as fits on the line it starts on, and by character
        // only where no hyphen helps.
        let mut rest = word;
        while !rest.is_empty() {
            let join = |part: &str| match line.is_empty() {
                true => part.to_string(),
                false => format!("{line} {part}"),
            };
            if text_width(font, &join(rest)) <= width {
                line = join(rest);
                break;
            }
            let after_hyphen = rest
                .char_indices()
                .filter(|&(i, c)| c == '-' && i + 1 < rest.len())
                .map(|(i, _)| i + 1)
                .rev()
                .find(|&i| text_width(font, &join(&rest[..i])) <= width);
            if let Some(i) = after_hyphen {
                lines.push(join(&rest[..i]));
                line.clear();
                rest = &rest[i..];
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            let mut end = 0;
            for (i, c) in rest.char_indices() {
                if end > 0 && text_width(font, &rest[..i + c.len_utf8()]) > width {
                    break;
                }
                end = i + c.len_utf8();
            }
            lines.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Maps text into the Latin-1 repertoire of the fonts, keeping the meaning where a look-alike
/// exists (masked card numbers often come with bullets).
fn latin1(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if (c as u32) < 0x100 => out.push(c),
            '•' | '●' | '∙' | '⁎' => out.push('*'),
            '‐' | '‑' | '‒' | '–' | '—' | '−' => out.push('-'),
            '‘' | '’' => out.push('\''),
            '“' | '”' => out.push('"'),
            '…' => out.push_str("..."),
            '\u{2007}' | '\u{202f}' => out.push('\u{a0}'),
            _ => out.push('?'),
        }
    }
    out
}

/// Draws `icon` in `area`: a disc in `disc` colour with the symbol cut out in `mark` colour.
fn draw_icon<D>(
    icon: Icon,
    area: Rectangle,
    disc: Rgb565,
    mark: Rgb565,
    target: &mut D,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb565>,
{
    let d = area.size.width.min(area.size.height);
    if d < 4 {
        return Ok(());
    }
    let origin = area.top_left;
    // A point at (fx, fy) percent of the icon's side.
    let p = |fx: u32, fy: u32| origin + Point::new((d * fx / 100) as i32, (d * fy / 100) as i32);
    let pct = |f: u32| (d * f / 100).max(1);
    let stroke = PrimitiveStyle::with_stroke(mark, pct(11));
    let thin = PrimitiveStyle::with_stroke(mark, pct(8));
    let fill = PrimitiveStyle::with_fill(mark);

    Circle::new(origin, d)
        .into_styled(PrimitiveStyle::with_fill(disc))
        .draw(target)?;
    match icon {
        Icon::Check => Polyline::new(&[p(27, 52), p(43, 68), p(74, 34)])
            .into_styled(stroke)
            .draw(target),
        Icon::Cross => {
            Line::new(p(32, 32), p(68, 68))
                .into_styled(stroke)
                .draw(target)?;
            Line::new(p(68, 32), p(32, 68))
                .into_styled(stroke)
                .draw(target)
        }
        Icon::Exclamation => {
            let bar = pct(12);
            RoundedRectangle::with_equal_corners(
                Rectangle::new(
                    p(50, 20) - Point::new((bar / 2) as i32, 0),
                    Size::new(bar, pct(42)),
                ),
                Size::new(bar / 2, bar / 2),
            )
            .into_styled(fill)
            .draw(target)?;
            Circle::with_center(p(50, 75), pct(15))
                .into_styled(fill)
                .draw(target)
        }
        Icon::Clock => {
            Circle::with_center(p(50, 50), pct(66))
                .into_styled(thin)
                .draw(target)?;
            Line::new(p(50, 50), p(50, 28))
                .into_styled(thin)
                .draw(target)?;
            Line::new(p(50, 50), p(66, 50))
                .into_styled(thin)
                .draw(target)
        }
        Icon::Ban => {
            Circle::with_center(p(50, 50), pct(62))
                .into_styled(stroke)
                .draw(target)?;
            Line::new(p(30, 30), p(70, 70))
                .into_styled(stroke)
                .draw(target)
        }
        Icon::Card => {
            let card = Rectangle::new(p(20, 30), Size::new(pct(60), pct(40)));
            RoundedRectangle::with_equal_corners(card, Size::new(pct(6), pct(6)))
                .into_styled(fill)
                .draw(target)?;
            Rectangle::new(p(20, 38), Size::new(pct(60), pct(8)))
                .into_styled(PrimitiveStyle::with_fill(disc))
                .draw(target)?;
            Rectangle::new(p(28, 53), Size::new(pct(12), pct(9)))
                .into_styled(PrimitiveStyle::with_fill(disc))
                .draw(target)
        }
        Icon::Scan => {
            // A barcode: bar and gap widths in units, bars on even positions.
            const PATTERN: [u32; 11] = [2, 1, 1, 1, 3, 1, 1, 2, 2, 1, 1];
            let total: u32 = PATTERN.iter().sum();
            let unit = (pct(56) / total).max(1);
            let mut x = p(50, 30).x - (unit * total / 2) as i32;
            for (i, units) in PATTERN.iter().enumerate() {
                if i % 2 == 0 {
                    Rectangle::new(Point::new(x, p(0, 30).y), Size::new(unit * units, pct(40)))
                        .into_styled(fill)
                        .draw(target)?;
                }
                x += (unit * units) as i32;
            }
            Ok(())
        }
        Icon::Wrench => {
            // A spanner: a handle from the lower left to an open jaw at the upper right.
            Line::new(p(28, 72), p(56, 44))
                .into_styled(PrimitiveStyle::with_stroke(mark, pct(14)))
                .draw(target)?;
            Circle::with_center(p(62, 38), pct(34))
                .into_styled(fill)
                .draw(target)?;
            Circle::with_center(p(71, 29), pct(18))
                .into_styled(PrimitiveStyle::with_fill(disc))
                .draw(target)
        }
        Icon::Hourglass => {
            Triangle::new(p(30, 24), p(70, 24), p(50, 50))
                .into_styled(fill)
                .draw(target)?;
            Triangle::new(p(50, 50), p(30, 76), p(70, 76))
                .into_styled(fill)
                .draw(target)?;
            Line::new(p(28, 22), p(72, 22))
                .into_styled(thin)
                .draw(target)?;
            Line::new(p(28, 78), p(72, 78))
                .into_styled(thin)
                .draw(target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_spaces_but_never_inside_an_amount() {
        let font = &REGULAR[6];
        let lines = wrap(font, "Betal kr\u{a0}1\u{a0}399,00 nå takk", 110);
        assert!(lines.len() >= 2);
        assert!(lines.iter().any(|l| l.contains("kr\u{a0}1\u{a0}399,00")));
        for line in &lines {
            assert!(text_width(font, line) <= 110, "{line:?} is too wide");
        }
    }

    #[test]
    fn breaks_words_wider_than_a_line() {
        let font = &REGULAR[6];
        let lines = wrap(font, &"x".repeat(80), 60);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| text_width(font, l) <= 60));
        assert_eq!(lines.concat().len(), 80);
    }

    #[test]
    fn a_reference_breaks_after_a_hyphen_and_keeps_every_character() {
        let font = &REGULAR[SMALLEST];
        let reference = "kiosk-1-7KQ2FX-20261204-000042";
        let text = format!("Referanse: {reference}");
        let width = text_width(font, &text) * 2 / 3;
        let lines = wrap(font, &text, width);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("Referanse: kiosk-") && lines[0].ends_with('-'));
        assert!(lines.iter().all(|l| text_width(font, l) <= width));
        assert_eq!(lines.concat(), text, "nothing lost, no hyphen added");
    }

    /// WCAG contrast ratio of two colours.
    fn contrast(a: Rgb565, b: Rgb565) -> f64 {
        let luminance = |c: Rgb565| {
            let c = embedded_graphics::pixelcolor::Rgb888::from(c);
            let lin = |v: u8| {
                let v = f64::from(v) / 255.0;
                if v <= 0.04045 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * lin(c.r()) + 0.7152 * lin(c.g()) + 0.0722 * lin(c.b())
        };
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn every_colour_pair_is_high_contrast() {
        for tone in [Tone::Info, Tone::Success, Tone::Warning, Tone::Error] {
            let (band, text) = tone_colors(tone);
            assert!(contrast(band, text) >= 5.0, "{tone:?}");
        }
        assert!(contrast(TEXT, BACKGROUND) >= 15.0);
        assert!(contrast(SECONDARY, BACKGROUND) >= 10.0);
    }

    #[test]
    fn maps_to_latin1() {
        assert_eq!(latin1("Visa •••• 4242 – ok…"), "Visa **** 4242 - ok...");
        assert_eq!(latin1("æøå ÆØÅ"), "æøå ÆØÅ");
        assert_eq!(latin1("🙂"), "?");
    }
}
