//! The terminal backend: a readable text rendering of each screen.

use std::io::Write;

use super::{Panel, PanelError};
use crate::display::frame::Frame;
use crate::display::screen::Screen;

/// Inner width of the box, in characters: fits an 80-column terminal with room for log prefixes.
const WIDTH: usize = 46;

/// Prints each new screen as a text box (title with its symbol, amount, lines, countdown,
/// reference) to any writer, typically stdout.
///
/// A box is printed when what the screen *says* changes; a countdown ticking or the activity
/// indicator moving does not print a new box, so a demo's output stays one box per step.
pub struct TerminalPanel<W> {
    out: W,
    last: Option<Screen>,
}

impl<W: Write + Send> TerminalPanel<W> {
    /// A panel printing to `out`.
    pub fn new(out: W) -> TerminalPanel<W> {
        TerminalPanel { out, last: None }
    }

    /// The writer back, e.g. a buffer a test wants to read.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Panel for TerminalPanel<W> {
    fn show(&mut self, screen: &Screen, _frame: &Frame) -> Result<(), PanelError> {
        let mut still = screen.clone();
        still.activity = still.activity.map(|_| 0);
        if let Some(countdown) = &mut still.countdown {
            countdown.seconds = 0;
            countdown.text.clear();
        }
        if self.last.as_ref() == Some(&still) {
            return Ok(());
        }
        self.out
            .write_all(render_text(screen).as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(PanelError::Terminal)?;
        self.last = Some(still);
        Ok(())
    }
}

/// The screen as a box of text, one line per row, ending in a newline.
///
/// Amounts keep their no-break spaces while lines are wrapped, then print them as plain spaces
/// so that the output can be searched for `kr 399,00`.
pub fn render_text(screen: &Screen) -> String {
    let rule = "─".repeat(WIDTH + 2);
    let mut out = format!("┌{rule}┐\n");
    for line in wrap(&format!("{} {}", screen.icon.symbol(), screen.title), WIDTH) {
        row(&mut out, &line);
    }
    out.push_str(&format!("├{rule}┤\n"));
    if let Some(amount) = &screen.amount {
        let pad = WIDTH.saturating_sub(amount.chars().count()) / 2;
        row(&mut out, &format!("{}{amount}", " ".repeat(pad)));
        row(&mut out, "");
    }
    for line in &screen.lines {
        for part in wrap(line, WIDTH) {
            row(&mut out, &part);
        }
    }
    if let Some(countdown) = &screen.countdown {
        row(&mut out, "");
        row(&mut out, &format!("◷ {}", countdown.text));
    }
    if screen.activity.is_some() {
        row(&mut out, "");
        row(&mut out, "...");
    }
    if let Some(footer) = &screen.footer {
        row(&mut out, "");
        for part in wrap(footer, WIDTH) {
            row(&mut out, &part);
        }
    }
    out.push_str(&format!("└{rule}┘\n"));
    out
}

/// One row of the box, padded to its width.
fn row(out: &mut String, text: &str) {
    let text = text.replace('\u{a0}', " ");
    let pad = WIDTH.saturating_sub(text.chars().count());
    out.push_str(&format!("│ {text}{} │\n", " ".repeat(pad)));
}

/// Greedy wrap at plain spaces by character count; over-long words are cut.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let head: String = line.chars().take(width).collect();
            line = line.chars().skip(width).collect();
            lines.push(head);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_to_the_box() {
        let lines = wrap("one two three four five", 9);
        assert_eq!(lines, ["one two", "three", "four five"]);
        let long = wrap(&"x".repeat(20), 8);
        assert_eq!(long, ["xxxxxxxx", "xxxxxxxx", "xxxx"]);
    }
}
