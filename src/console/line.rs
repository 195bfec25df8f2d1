//! Line editing for a plain VT100 terminal: what a technician gets in minicom, picocom, screen
//! or PuTTY at 9600 to 115200 baud.
//!
//! ## Keys
//!
//! | key | does |
//! |-----|------|
//! | printable characters (UTF-8 too) | inserted at the cursor and echoed |
//! | Backspace (DEL or ^H) | deletes the character before the cursor |
//! | Delete (`ESC [ 3 ~`), ^D | deletes the character under the cursor; ^D on an empty line ends the session |
//! | ← → (`ESC [ D` / `ESC [ C`, also `ESC O D/C`), ^B ^F | move the cursor |
//! | Home End (`ESC [ H`/`F`, `ESC [ 1~`/`4~`, `7~`/`8~`, `ESC O H/F`), ^A ^E | start and end of the line |
//! | ↑ ↓ (`ESC [ A` / `ESC [ B`), ^P ^N | earlier and later lines from the history |
//! | ^U | deletes from the start of the line to the cursor (the whole line when at its end) |
//! | ^W | deletes the word before the cursor |
//! | ^K | deletes from the cursor to the end of the line |
//! | ^C | cancels the line (or the running command) |
//! | ^L | draws the line again |
//! | Tab | completes the word: one match is completed, several are listed under the line |
//! | Enter (CR, LF or CRLF) | ends the line |
//!
//! Any other control character and any other escape sequence is swallowed without effect.
//! A control character inside an escape sequence ends it and is then handled, so Enter and ^C
//! always work, even after a lone Esc.
//!
//! ## What is sent to the terminal
//!
//! Only text, CR, LF, BS, BEL and three VT100 sequences every terminal emulator knows: `ESC [ K`
//! (erase to the end of the line), `ESC [ n D` and `ESC [ n C` (cursor left and right). No
//! colours, and never a query (cursor position, device attributes) that a terminal might not
//! answer: the console never waits for the terminal.
//!
//! The terminal's width is not asked either: it is assumed to be 80 columns
//! ([`LineEditor::set_columns`] changes it), and a line is kept short enough to fit on one row
//! after the prompt, because a dumb terminal cannot move the cursor back up across a wrapped row.
//! Characters beyond that ring the bell.
//!
//! ## Hidden lines
//!
//! For a PIN, [`LineEditor::start`] with [`Echo::Stars`] (a `*` per digit) or [`Echo::Nothing`].
//! A hidden line is never kept in the history, cannot be completed and has no cursor movement;
//! it comes back as [`Event::Secret`], whose `Debug` output is `Secret(***)`.
//!
//! ## Events printed while a line is typed
//!
//! [`LineEditor::print_above`] erases the line being typed (CR, `ESC [ K`), prints the event,
//! and draws the prompt and the typed text again with the cursor where it was.
//!
//! ## Between prompts
//!
//! After each [`Event`] the editor stops drawing until the caller calls
//! [`LineEditor::start`] for the next prompt. Keys typed meanwhile are kept (silently) and shown
//! with the next prompt; one whole line may be typed ahead, and [`LineEditor::start`] then
//! returns it at once. ^C is always passed on at once, to interrupt the running command.
//!
//! The editor is pure: bytes in, bytes and events out, no I/O and no clock. It does not panic on
//! any input (a property test feeds it random bytes).

use std::fmt;

use crate::secret::Secret;

/// Completes a word on the command line: commands, config keys, enum values.
pub trait Completer {
    /// The candidates for the word being typed. `words` are the whole words before it (empty
    /// when the first word is being typed), `partial` is what has been typed of it (may be
    /// empty). Candidates not starting with `partial` are ignored.
    fn complete(&self, words: &[&str], partial: &str) -> Vec<String>;
}

/// How the typed characters are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    /// As typed.
    Visible,
    /// One `*` per character (PIN entry the technician can count).
    Stars,
    /// Not at all.
    Nothing,
}

/// What a byte (or [`LineEditor::start`]) produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A visible line, ended with Enter.
    Line(String),
    /// A hidden line (a PIN), ended with Enter.
    Secret(Secret),
    /// ^C: the line was cancelled, or the running command should be.
    Cancelled,
    /// ^D on an empty line: the technician is done.
    EndOfInput,
}

/// Lines kept in the history.
const HISTORY: usize = 100;
/// Candidates listed at most under the line.
const MAX_LISTED: usize = 60;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Input {
    Ground,
    Esc,
    /// `ESC [` and the parameter and intermediate bytes so far (at most 16 kept).
    Csi(Vec<u8>),
    /// `ESC O`.
    Ss3,
}

/// The line editor of one console session.
pub struct LineEditor {
    prompt: String,
    buf: Vec<char>,
    cursor: usize,
    echo: Echo,
    prompting: bool,
    /// Enter was typed while no prompt was shown: the line waits for [`LineEditor::start`].
    line_ready: bool,
    history: Vec<String>,
    /// Which history line is shown, and the line that was being typed before browsing.
    browsing: Option<usize>,
    draft: Vec<char>,
    input: Input,
    after_cr: bool,
    utf8: Vec<u8>,
    columns: usize,
}

impl fmt::Debug for LineEditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The buffer may hold a PIN, the history a secret typed by mistake: neither is shown.
        f.debug_struct("LineEditor")
            .field("prompt", &self.prompt)
            .field("len", &self.buf.len())
            .field("cursor", &self.cursor)
            .field("echo", &self.echo)
            .field("prompting", &self.prompting)
            .field("history", &self.history.len())
            .finish_non_exhaustive()
    }
}

impl Default for LineEditor {
    fn default() -> Self {
        LineEditor::new()
    }
}

fn move_left(out: &mut Vec<u8>, n: usize) {
    match n {
        0 => {}
        1 => out.push(0x08),
        n => out.extend_from_slice(format!("\x1b[{n}D").as_bytes()),
    }
}

fn move_right(out: &mut Vec<u8>, n: usize) {
    if n > 0 {
        out.extend_from_slice(format!("\x1b[{n}C").as_bytes());
    }
}

/// Text that cannot move the cursor or change the terminal's state.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

impl LineEditor {
    /// An editor for an 80-column terminal, with no prompt shown yet.
    pub fn new() -> LineEditor {
        LineEditor {
            prompt: String::new(),
            buf: Vec::new(),
            cursor: 0,
            echo: Echo::Visible,
            prompting: false,
            line_ready: false,
            history: Vec::new(),
            browsing: None,
            draft: Vec::new(),
            input: Input::Ground,
            after_cr: false,
            utf8: Vec::new(),
            columns: 80,
        }
    }

    /// A new editor for a terminal `columns` wide (see [`LineEditor::set_columns`]).
    pub fn with_columns(columns: usize) -> LineEditor {
        let mut editor = LineEditor::new();
        editor.set_columns(columns);
        editor
    }

    /// Sets the terminal's width (20 to 500 columns; default 80).
    pub fn set_columns(&mut self, columns: usize) {
        self.columns = columns.clamp(20, 500);
    }

    /// Forgets the history (at logout: the next technician must not see the last one's lines).
    pub fn clear_history(&mut self) {
        self.history.clear();
        self.browsing = None;
        self.draft.clear();
    }

    /// Shows `prompt` and starts a line echoed as `echo`. Keys typed ahead are shown after the
    /// prompt; when a whole line was typed ahead it ends at once and its event is returned.
    pub fn start(&mut self, prompt: &str, echo: Echo, out: &mut Vec<u8>) -> Option<Event> {
        self.prompt = printable(prompt);
        self.echo = echo;
        self.prompting = true;
        self.browsing = None;
        let max = self.max_len();
        self.buf.truncate(max);
        self.cursor = self.cursor.min(self.buf.len());
        out.extend_from_slice(self.prompt.as_bytes());
        out.extend_from_slice(self.shown(&self.buf).as_bytes());
        move_left(out, self.shown_len(self.buf.len() - self.cursor));
        if std::mem::take(&mut self.line_ready) {
            return Some(self.finish_line(out));
        }
        None
    }

    /// Prints `text` (one or more lines) above the line being typed, which is then drawn again
    /// with the cursor where it was. Control characters in `text` are shown as `?`.
    pub fn print_above(&mut self, text: &str, out: &mut Vec<u8>) {
        if self.prompting {
            out.extend_from_slice(b"\r\x1b[K");
        }
        for line in text.trim_end_matches('\n').split('\n') {
            out.extend_from_slice(printable(line).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.prompting {
            out.extend_from_slice(self.prompt.as_bytes());
            out.extend_from_slice(self.shown(&self.buf).as_bytes());
            move_left(out, self.shown_len(self.buf.len() - self.cursor));
        }
    }

    /// Feeds one byte from the terminal; what to send back is appended to `out`.
    pub fn feed(
        &mut self,
        byte: u8,
        completer: &dyn Completer,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        let drawing = self.prompting;
        let mut o = Vec::new();
        let event = self.input_byte(byte, completer, &mut o);
        if drawing {
            out.extend_from_slice(&o);
        }
        event
    }

    fn input_byte(
        &mut self,
        byte: u8,
        completer: &dyn Completer,
        o: &mut Vec<u8>,
    ) -> Option<Event> {
        let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
        match std::mem::replace(&mut self.input, Input::Ground) {
            Input::Ground => {}
            Input::Esc => match byte {
                b'[' => {
                    self.input = Input::Csi(Vec::new());
                    return None;
                }
                b'O' => {
                    self.input = Input::Ss3;
                    return None;
                }
                0x1b => {
                    self.input = Input::Esc;
                    return None;
                }
                // A control character ends the sequence and is handled below.
                0x00..=0x1f => {}
                _ => return None,
            },
            Input::Csi(mut params) => match byte {
                0x20..=0x3f => {
                    if params.len() < 16 {
                        params.push(byte);
                    }
                    self.input = Input::Csi(params);
                    return None;
                }
                0x40..=0x7e => {
                    self.csi(&params, byte, o);
                    return None;
                }
                0x1b => {
                    self.input = Input::Esc;
                    return None;
                }
                0x00..=0x1f => {}
                _ => return None,
            },
            Input::Ss3 => match byte {
                0x1b => {
                    self.input = Input::Esc;
                    return None;
                }
                0x00..=0x1f => {}
                b'A' | b'B' | b'C' | b'D' | b'H' | b'F' => {
                    self.csi(b"", byte, o);
                    return None;
                }
                _ => return None,
            },
        }
        if byte >= 0x80 {
            return self.utf8_byte(byte, o);
        }
        // A multi-byte character cut short by a plain byte is dropped.
        self.utf8.clear();
        if self.line_ready && byte != 0x03 {
            // One line typed ahead is kept; more is dropped until the next prompt.
            return None;
        }
        match byte {
            0x1b => self.input = Input::Esc,
            b'\r' => return self.enter(o),
            b'\n' if !after_cr => return self.enter(o),
            0x20..=0x7e => self.insert(&[char::from(byte)], o),
            0x7f | 0x08 => self.backspace(o),
            0x03 => {
                if self.prompting {
                    o.extend_from_slice(b"^C\r\n");
                }
                self.reset_line();
                return Some(Event::Cancelled);
            }
            0x04 if self.buf.is_empty() => {
                if self.prompting {
                    o.extend_from_slice(b"\r\n");
                }
                self.reset_line();
                return Some(Event::EndOfInput);
            }
            0x04 => self.delete(o),
            0x15 => {
                self.buf.drain(..self.cursor);
                self.cursor = 0;
                self.redraw(o);
            }
            0x17 if self.echo == Echo::Visible => self.kill_word(o),
            0x0b if self.echo == Echo::Visible => {
                self.buf.truncate(self.cursor);
                o.extend_from_slice(b"\x1b[K");
            }
            0x0c => self.redraw(o),
            0x01 => self.csi(b"", b'H', o),
            0x05 => self.csi(b"", b'F', o),
            0x02 => self.csi(b"", b'D', o),
            0x06 => self.csi(b"", b'C', o),
            0x10 => self.csi(b"", b'A', o),
            0x0e => self.csi(b"", b'B', o),
            b'\t' if self.echo == Echo::Visible && self.prompting => self.complete(completer, o),
            _ => {}
        }
        None
    }

    fn utf8_byte(&mut self, byte: u8, o: &mut Vec<u8>) -> Option<Event> {
        if self.line_ready {
            return None;
        }
        self.utf8.push(byte);
        match std::str::from_utf8(&self.utf8) {
            Ok(text) => {
                let chars: Vec<char> = text.chars().filter(|c| !c.is_control()).collect();
                self.utf8.clear();
                self.insert(&chars, o);
            }
            Err(e) if e.error_len().is_some() || self.utf8.len() >= 4 => self.utf8.clear(),
            Err(_) => {}
        }
        None
    }

    /// A cursor key, by its final byte (and `~` with a number).
    fn csi(&mut self, params: &[u8], last: u8, o: &mut Vec<u8>) {
        let key = match (params, last) {
            (b"" | b"1", k @ (b'A' | b'B' | b'C' | b'D' | b'H' | b'F')) => k,
            (b"1" | b"7", b'~') => b'H',
            (b"4" | b"8", b'~') => b'F',
            (b"3", b'~') => b'~',
            _ => return,
        };
        if key == b'~' {
            return self.delete(o);
        }
        if self.echo != Echo::Visible {
            // A hidden line has no cursor to move and no history.
            return;
        }
        match key {
            b'D' if self.cursor > 0 => {
                self.cursor -= 1;
                move_left(o, 1);
            }
            b'C' if self.cursor < self.buf.len() => {
                self.cursor += 1;
                move_right(o, 1);
            }
            b'H' => {
                move_left(o, self.cursor);
                self.cursor = 0;
            }
            b'F' => {
                move_right(o, self.buf.len() - self.cursor);
                self.cursor = self.buf.len();
            }
            b'A' => self.history_up(o),
            b'B' => self.history_down(o),
            _ => {}
        }
    }

    fn max_len(&self) -> usize {
        self.columns
            .saturating_sub(self.prompt.chars().count() + 1)
            .max(1)
    }

    fn shown(&self, chars: &[char]) -> String {
        match self.echo {
            Echo::Visible => chars.iter().collect(),
            Echo::Stars => "*".repeat(chars.len()),
            Echo::Nothing => String::new(),
        }
    }

    fn shown_len(&self, n: usize) -> usize {
        match self.echo {
            Echo::Visible | Echo::Stars => n,
            Echo::Nothing => 0,
        }
    }

    /// Draws prompt and line again, the cursor where it is.
    fn redraw(&self, o: &mut Vec<u8>) {
        o.push(b'\r');
        o.extend_from_slice(self.prompt.as_bytes());
        o.extend_from_slice(self.shown(&self.buf).as_bytes());
        o.extend_from_slice(b"\x1b[K");
        move_left(o, self.shown_len(self.buf.len() - self.cursor));
    }

    fn insert(&mut self, chars: &[char], o: &mut Vec<u8>) {
        if chars.is_empty() {
            return;
        }
        if self.buf.len() + chars.len() > self.max_len() {
            o.push(0x07);
            return;
        }
        self.buf
            .splice(self.cursor..self.cursor, chars.iter().copied());
        self.cursor += chars.len();
        let tail = &self.buf[self.cursor - chars.len()..];
        o.extend_from_slice(self.shown(tail).as_bytes());
        move_left(o, self.shown_len(self.buf.len() - self.cursor));
    }

    fn backspace(&mut self, o: &mut Vec<u8>) {
        if self.cursor == 0 {
            return;
        }
        self.cursor -= 1;
        self.buf.remove(self.cursor);
        if self.echo == Echo::Nothing {
            return;
        }
        move_left(o, 1);
        self.draw_tail(o);
    }

    fn delete(&mut self, o: &mut Vec<u8>) {
        if self.cursor >= self.buf.len() {
            return;
        }
        self.buf.remove(self.cursor);
        if self.echo != Echo::Nothing {
            self.draw_tail(o);
        }
    }

    /// After a deletion at the cursor: the rest of the line, a blank over its old last column,
    /// and back to the cursor.
    fn draw_tail(&self, o: &mut Vec<u8>) {
        let tail = &self.buf[self.cursor..];
        o.extend_from_slice(self.shown(tail).as_bytes());
        o.push(b' ');
        move_left(o, tail.len() + 1);
    }

    fn kill_word(&mut self, o: &mut Vec<u8>) {
        let mut start = self.cursor;
        while start > 0 && self.buf[start - 1].is_whitespace() {
            start -= 1;
        }
        while start > 0 && !self.buf[start - 1].is_whitespace() {
            start -= 1;
        }
        if start == self.cursor {
            return;
        }
        self.buf.drain(start..self.cursor);
        self.cursor = start;
        self.redraw(o);
    }

    fn show_history_line(&mut self, chars: Vec<char>, o: &mut Vec<u8>) {
        self.buf = chars;
        self.buf.truncate(self.max_len());
        self.cursor = self.buf.len();
        self.redraw(o);
    }

    fn history_up(&mut self, o: &mut Vec<u8>) {
        let index = match self.browsing {
            None if !self.history.is_empty() => {
                self.draft = self.buf.clone();
                self.history.len() - 1
            }
            Some(i) if i > 0 => i - 1,
            _ => return,
        };
        self.browsing = Some(index);
        let line = self.history[index].chars().collect();
        self.show_history_line(line, o);
    }

    fn history_down(&mut self, o: &mut Vec<u8>) {
        let Some(index) = self.browsing else {
            return;
        };
        if index + 1 < self.history.len() {
            self.browsing = Some(index + 1);
            let line = self.history[index + 1].chars().collect();
            self.show_history_line(line, o);
        } else {
            self.browsing = None;
            let draft = std::mem::take(&mut self.draft);
            self.show_history_line(draft, o);
        }
    }

    fn complete(&mut self, completer: &dyn Completer, o: &mut Vec<u8>) {
        let before: String = self.buf[..self.cursor].iter().collect();
        let split = before.rfind(char::is_whitespace).map_or(0, |i| {
            i + before[i..].chars().next().map_or(1, char::len_utf8)
        });
        let (head, partial) = before.split_at(split);
        let words: Vec<&str> = head.split_whitespace().collect();
        let mut candidates: Vec<String> = completer
            .complete(&words, partial)
            .into_iter()
            .filter(|c| {
                c.len() > partial.len()
                    && c.starts_with(partial)
                    && !c.chars().any(|ch| ch.is_control() || ch.is_whitespace())
            })
            .collect();
        candidates.sort();
        candidates.dedup();
        let addition: String = match candidates.as_slice() {
            [] => {
                o.push(0x07);
                return;
            }
            [only] => format!("{} ", &only[partial.len()..]),
            [first, rest @ ..] => {
                let common = rest.iter().fold(first.len(), |n, c| {
                    first
                        .char_indices()
                        .zip(c.chars())
                        .take_while(|((i, a), b)| *i < n && a == b)
                        .last()
                        .map_or(0, |((i, a), _)| i + a.len_utf8())
                });
                if common > partial.len() {
                    first[partial.len()..common].to_owned()
                } else {
                    self.list(&candidates, o);
                    return;
                }
            }
        };
        let chars: Vec<char> = addition.chars().collect();
        if self.buf.len() + chars.len() > self.max_len() {
            o.push(0x07);
            return;
        }
        self.buf
            .splice(self.cursor..self.cursor, chars.iter().copied());
        self.cursor += chars.len();
        self.redraw(o);
    }

    /// Lists completion candidates under the line, then draws the line again.
    fn list(&self, candidates: &[String], o: &mut Vec<u8>) {
        o.extend_from_slice(b"\r\n");
        let shown: Vec<&str> = candidates
            .iter()
            .take(MAX_LISTED)
            .map(String::as_str)
            .collect();
        let mut row = 0;
        for word in shown {
            let width = word.chars().count();
            if row > 0 && row + 2 + width > self.columns {
                o.extend_from_slice(b"\r\n");
                row = 0;
            }
            if row > 0 {
                o.extend_from_slice(b"  ");
                row += 2;
            }
            o.extend_from_slice(word.as_bytes());
            row += width;
        }
        if candidates.len() > MAX_LISTED {
            o.extend_from_slice(
                format!("\r\n… and {} more", candidates.len() - MAX_LISTED).as_bytes(),
            );
        }
        o.extend_from_slice(b"\r\n");
        o.extend_from_slice(self.prompt.as_bytes());
        o.extend_from_slice(self.shown(&self.buf).as_bytes());
        move_left(o, self.shown_len(self.buf.len() - self.cursor));
    }

    fn enter(&mut self, o: &mut Vec<u8>) -> Option<Event> {
        if !self.prompting {
            self.line_ready = true;
            return None;
        }
        Some(self.finish_line(o))
    }

    fn finish_line(&mut self, o: &mut Vec<u8>) -> Event {
        o.extend_from_slice(b"\r\n");
        let line: String = self.buf.iter().collect();
        let event = if self.echo == Echo::Visible {
            if !line.trim().is_empty() && self.history.last() != Some(&line) {
                if self.history.len() == HISTORY {
                    self.history.remove(0);
                }
                self.history.push(line.clone());
            }
            Event::Line(line)
        } else {
            Event::Secret(Secret::new(line))
        };
        self.reset_line();
        event
    }

    fn reset_line(&mut self) {
        self.buf.clear();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        self.prompting = false;
        self.line_ready = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Completes commands, config keys and enum values, as the console will.
    struct Commands;

    impl Completer for Commands {
        fn complete(&self, words: &[&str], partial: &str) -> Vec<String> {
            let all: &[&str] = match words {
                [] => &["config", "credentials", "help", "logout", "status", "test"],
                ["config"] => &["apply", "diff", "get", "revert", "set", "show"],
                ["config", "set"] => &["display.kind", "kiosk.language", "kiosk.max_amount"],
                ["config", "set", "kiosk.language"] => &["en", "nb"],
                ["config", "set", "display.kind"] => &["fbdev", "png", "spi", "terminal"],
                _ => &[],
            };
            all.iter()
                .filter(|c| c.starts_with(partial))
                .map(|c| c.to_string())
                .collect()
        }
    }

    /// Starts a prompt, feeds `input`, returns what was sent back (after the prompt) and the
    /// events.
    fn type_in(editor: &mut LineEditor, echo: Echo, input: &[u8]) -> (String, Vec<Event>) {
        let mut out = Vec::new();
        assert_eq!(editor.start("> ", echo, &mut out), None);
        assert_eq!(out, b"> ");
        out.clear();
        let events = input
            .iter()
            .filter_map(|&b| editor.feed(b, &Commands, &mut out))
            .collect();
        (String::from_utf8(out).unwrap(), events)
    }

    fn line(text: &str) -> Vec<Event> {
        vec![Event::Line(text.into())]
    }

    #[test]
    fn typing_echoes_and_enter_ends_the_line_with_cr_lf_or_crlf() {
        for ending in [&b"\r"[..], b"\n", b"\r\n"] {
            let mut editor = LineEditor::new();
            let input = [&b"status"[..], ending].concat();
            let (out, events) = type_in(&mut editor, Echo::Visible, &input);
            assert_eq!(out, "status\r\n");
            assert_eq!(events, line("status"));
        }
        // The LF of a CRLF does not end a second, empty line.
        let mut editor = LineEditor::new();
        let (_, events) = type_in(&mut editor, Echo::Visible, b"a\r\n");
        assert_eq!(events.len(), 1);
        let mut out = Vec::new();
        editor.start("> ", Echo::Visible, &mut out);
        assert_eq!(
            editor.feed(b'\n', &Commands, &mut out),
            Some(Event::Line(String::new()))
        );
    }

    #[test]
    fn backspace_and_del_erase_before_the_cursor() {
        let mut editor = LineEditor::new();
        let (out, events) = type_in(&mut editor, Echo::Visible, b"stat\x7f\x7fatus\x08s\r");
        assert_eq!(out, "stat\x08 \x08\x08 \x08atus\x08 \x08s\r\n");
        assert_eq!(events, line("status"));
        // At the start of the line it does nothing.
        let (out, _) = type_in(&mut editor, Echo::Visible, b"\x7f");
        assert_eq!(out, "");
    }

    #[test]
    fn arrows_home_and_end_move_and_insert_in_the_middle() {
        let mut editor = LineEditor::new();
        let (out, events) = type_in(
            &mut editor,
            Echo::Visible,
            b"sttus\x1b[D\x1b[D\x1b[Da\x1b[F!\x1b[H#\x1bOF\r",
        );
        assert_eq!(
            out,
            "sttus\x08\x08\x08atus\x1b[3D\x1b[3C!\x1b[7D#status!\x1b[7D\x1b[7C\r\n"
        );
        assert_eq!(events, line("#status!"));
        // Right at the end and left at the start do nothing; ESC [ 1 ~ / 4 ~ are Home / End.
        let (out, events) = type_in(
            &mut editor,
            Echo::Visible,
            b"ab\x1b[C\x1b[1~\x1b[D\x1b[4~c\r",
        );
        assert_eq!(out, "ab\x1b[2D\x1b[2Cc\r\n");
        assert_eq!(events, line("abc"));
    }

    #[test]
    fn delete_removes_the_character_under_the_cursor() {
        let mut editor = LineEditor::new();
        let (out, events) = type_in(&mut editor, Echo::Visible, b"helpp\x1b[D\x1b[3~\r");
        assert_eq!(out, "helpp\x08 \x08\r\n");
        assert_eq!(events, line("help"));
    }

    #[test]
    fn ctrl_u_ctrl_w_and_ctrl_k_kill() {
        let mut editor = LineEditor::new();
        let (out, events) = type_in(&mut editor, Echo::Visible, b"config set x\x15help\r");
        assert_eq!(out, "config set x\r> \x1b[Khelp\r\n");
        assert_eq!(events, line("help"));
        let (out, events) = type_in(&mut editor, Echo::Visible, b"config set  \x17get\r");
        assert_eq!(out, "config set  \r> config \x1b[Kget\r\n");
        assert_eq!(events, line("config get"));
        let (out, events) = type_in(
            &mut editor,
            Echo::Visible,
            b"status now\x1b[D\x1b[D\x1b[D\x0b\r",
        );
        assert_eq!(out, "status now\x08\x08\x08\x1b[K\r\n");
        assert_eq!(events, line("status "));
    }

    #[test]
    fn ctrl_c_cancels_and_ctrl_d_ends_only_an_empty_line() {
        let mut editor = LineEditor::new();
        let (out, events) = type_in(&mut editor, Echo::Visible, b"refund X\x03");
        assert_eq!(out, "refund X^C\r\n");
        assert_eq!(events, [Event::Cancelled]);
        let (out, events) = type_in(&mut editor, Echo::Visible, b"ab\x1b[D\x04\x04\x7f\x7f\x04");
        assert_eq!(out, "ab\x08 \x08\x08 \x08\r\n");
        assert_eq!(events, [Event::EndOfInput]);
    }

    #[test]
    fn history_goes_back_and_forth_and_is_cleared_at_logout() {
        let mut editor = LineEditor::new();
        type_in(&mut editor, Echo::Visible, b"status\r");
        type_in(&mut editor, Echo::Visible, b"logs 20\r");
        type_in(&mut editor, Echo::Visible, b"logs 20\r");
        type_in(&mut editor, Echo::Visible, b"   \r");
        let (out, events) = type_in(
            &mut editor,
            Echo::Visible,
            b"te\x1b[A\x1b[A\x1b[A\x1b[B\x1b[B\r",
        );
        assert_eq!(
            out,
            "te\r> logs 20\x1b[K\r> status\x1b[K\r> logs 20\x1b[K\r> te\x1b[K\r\n"
        );
        assert_eq!(events, line("te"));
        let (_, events) = type_in(&mut editor, Echo::Visible, b"\x10\r");
        assert_eq!(events, line("te"));
        editor.clear_history();
        let (out, events) = type_in(&mut editor, Echo::Visible, b"\x1b[A\r");
        assert_eq!(out, "\r\n");
        assert_eq!(events, line(""));
    }

    #[test]
    fn tab_completes_one_match_and_lists_several() {
        let mut editor = LineEditor::new();
        let (out, events) = type_in(&mut editor, Echo::Visible, b"sta\t\r");
        assert_eq!(out, "sta\r> status \x1b[K\r\n");
        assert_eq!(events, line("status "));
        // Several with nothing in common beyond what is typed: listed under the line.
        let (out, _) = type_in(&mut editor, Echo::Visible, b"c\t\x03");
        assert_eq!(out, "c\r\nconfig  credentials\r\n> c^C\r\n");
        // Several with more in common: that much is completed.
        let (out, events) = type_in(
            &mut editor,
            Echo::Visible,
            b"config set display.kind \tf\t\r",
        );
        assert_eq!(
            out,
            "config set display.kind \r\nfbdev  png  spi  terminal\r\n> config set display.kind \
             f\r> config set display.kind fbdev \x1b[K\r\n"
        );
        assert_eq!(events, line("config set display.kind fbdev "));
        let (out, events) = type_in(&mut editor, Echo::Visible, b"config set kiosk.\tl\tn\t\r");
        assert_eq!(
            out,
            "config set kiosk.\r\nkiosk.language  kiosk.max_amount\r\n\
             > config set kiosk.l\r> config set kiosk.language \x1b[Kn\r> config set kiosk.language nb \x1b[K\r\n"
        );
        assert_eq!(events, line("config set kiosk.language nb "));
        // No match rings the bell; a word in the middle of the line completes at the cursor.
        let (out, events) = type_in(&mut editor, Echo::Visible, b"xyz\t\x15st 1\x1b[D\x1b[D\t\r");
        assert_eq!(
            out,
            "xyz\x07\r> \x1b[Kst 1\x08\x08\r> status  1\x1b[K\x1b[2D\r\n"
        );
        assert_eq!(events, line("status  1"));
    }

    #[test]
    fn hidden_lines_show_stars_or_nothing_and_stay_out_of_the_history() {
        let mut editor = LineEditor::new();
        let (out, events) = type_in(&mut editor, Echo::Stars, b"4829\x7f15\x1b[D\t\r");
        assert_eq!(out, "****\x08 \x08**\r\n");
        assert_eq!(events, [Event::Secret(Secret::new("48215"))]);
        assert_eq!(format!("{events:?}"), "[Secret(Secret(***))]");
        let (out, events) = type_in(&mut editor, Echo::Nothing, b"482915\x7f5\x15902114\r");
        assert_eq!(out, "\r> \x1b[K\r\n");
        assert_eq!(events, [Event::Secret(Secret::new("902114"))]);
        let (out, _) = type_in(&mut editor, Echo::Visible, b"\x1b[A");
        assert_eq!(out, "", "no history to recall");
        let debug = format!("{editor:?}");
        assert!(!debug.contains("9021"), "{debug}");
    }

    #[test]
    fn an_event_is_printed_above_the_line_being_typed() {
        let mut editor = LineEditor::new();
        let (_, _) = type_in(&mut editor, Echo::Visible, b"config sho\x1b[D\x1b[D");
        let mut out = Vec::new();
        editor.print_above("payment approved 399.00 NOK\n", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\r\x1b[Kpayment approved 399.00 NOK\r\n> config sho\x1b[2D"
        );
        // Control characters in the event cannot touch the terminal.
        let mut out = Vec::new();
        editor.print_above("bad\x1b[2Jtext\ttab\nsecond", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\r\x1b[Kbad?[2Jtext tab\r\nsecond\r\n> config sho\x1b[2D"
        );
        // Typing goes on where it was.
        let mut out = Vec::new();
        let events: Vec<_> = b"\x1b[Fw\r"
            .iter()
            .filter_map(|&b| editor.feed(b, &Commands, &mut out))
            .collect();
        assert_eq!(events, line("config show"));
        // Hidden: the stars are drawn again, not the digits.
        type_in(&mut editor, Echo::Stars, b"4829");
        let mut out = Vec::new();
        editor.print_above("scanner connected", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\r\x1b[Kscanner connected\r\n> ****"
        );
    }

    #[test]
    fn keys_typed_between_prompts_are_kept_and_one_line_may_be_typed_ahead() {
        let mut editor = LineEditor::new();
        type_in(&mut editor, Echo::Visible, b"status\r");
        // The command runs; nothing is drawn, but the keys are kept.
        let mut out = Vec::new();
        for &b in b"logs\x7fs 5\rhelp\r" {
            assert_eq!(editor.feed(b, &Commands, &mut out), None);
        }
        assert!(out.is_empty());
        assert_eq!(
            editor.start("> ", Echo::Visible, &mut out),
            Some(Event::Line("logs 5".into()))
        );
        assert_eq!(out, b"> logs 5\r\n");
        // ^C between prompts is passed on at once.
        let mut out = Vec::new();
        assert_eq!(
            editor.feed(0x03, &Commands, &mut out),
            Some(Event::Cancelled)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_escape_sequences_are_swallowed() {
        let mut editor = LineEditor::new();
        let input =
            b"a\x1b[1;5C\x1b[?25l\x1b[200~\x1bxb\x1b[99;99;99;99;99;99;99;99;99;99Zc\x1bOPd\r";
        let (out, events) = type_in(&mut editor, Echo::Visible, input);
        assert_eq!(out, "abcd\r\n");
        assert_eq!(events, line("abcd"));
        // A lone Esc, then Enter: the Enter still ends the line.
        let (out, events) = type_in(&mut editor, Echo::Visible, b"ok\x1b\r");
        assert_eq!(out, "ok\r\n");
        assert_eq!(events, line("ok"));
    }

    #[test]
    fn utf8_is_typed_and_invalid_bytes_are_dropped() {
        let mut editor = LineEditor::new();
        let input = "blåbær"
            .as_bytes()
            .iter()
            .chain(b"\xff\xc3(\r")
            .copied()
            .collect::<Vec<_>>();
        let (out, events) = type_in(&mut editor, Echo::Visible, &input);
        assert_eq!(out, "blåbær(\r\n");
        assert_eq!(events, line("blåbær("));
    }

    #[test]
    fn a_line_fits_on_one_row_and_the_rest_rings_the_bell() {
        let mut editor = LineEditor::new();
        editor.set_columns(20);
        let (out, events) = type_in(&mut editor, Echo::Visible, &[b'x'; 20]);
        assert_eq!(out, format!("{}\x07\x07\x07", "x".repeat(17)));
        assert!(events.is_empty());
    }

    /// The only escape sequences the editor sends.
    fn only_safe_sequences(out: &[u8]) -> bool {
        let text = String::from_utf8_lossy(out);
        text.split('\x1b').skip(1).all(|seq| {
            let Some(rest) = seq.strip_prefix('[') else {
                return false;
            };
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            matches!(rest[end..].chars().next(), Some('K' | 'C' | 'D'))
        })
    }

    proptest! {
        #[test]
        fn no_byte_sequence_panics_or_sends_a_query(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            echo in prop_oneof![Just(Echo::Visible), Just(Echo::Stars), Just(Echo::Nothing)],
            columns in 0usize..200,
        ) {
            let mut editor = LineEditor::new();
            editor.set_columns(columns);
            let mut out = Vec::new();
            editor.start("kioskpay> ", echo, &mut out);
            for (i, &b) in bytes.iter().enumerate() {
                if editor.feed(b, &Commands, &mut out).is_some() {
                    editor.start("kioskpay> ", echo, &mut out);
                }
                if i % 50 == 0 {
                    editor.print_above("event", &mut out);
                }
                prop_assert!(editor.cursor <= editor.buf.len());
                prop_assert!(editor.buf.len() <= editor.max_len());
            }
            prop_assert!(only_safe_sequences(&out), "{:?}", String::from_utf8_lossy(&out));
        }
    }
}
