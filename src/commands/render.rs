//! `kioskpay render`: one customer screen as a PNG, to review a translation or a layout without a
//! panel, or the test pattern `test display` starts with (`--screen test-pattern`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::config::EXIT_CONFIG;
use crate::money::Language;

/// Writes the sample screen `screen` at `size` as a PNG (to `out`, or `<screen>.png`), or lists
/// the screen names.
pub fn render(
    screen: Option<String>,
    size: (u32, u32),
    lang: Language,
    out: Option<PathBuf>,
    list: bool,
) -> Result<ExitCode> {
    let now = tokio::time::Instant::now();
    let samples = crate::display::sample_screens(lang, now);
    if list {
        for (name, _) in &samples {
            println!("{name}");
        }
        println!("{}", crate::display::pattern::NAME);
        return Ok(ExitCode::SUCCESS);
    }
    let name = screen.unwrap_or_default();
    let size = crate::display::Size::new(size.0, size.1);
    let png = match samples.iter().find(|(n, _)| *n == name) {
        Some((_, screen)) => crate::display::render_screen_png(screen, size),
        None if name == crate::display::pattern::NAME => crate::display::render_pattern_png(size),
        None => {
            eprintln!("kioskpay: no screen named {name:?}; `kioskpay render --list` names them");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.png")));
    std::fs::write(&out, png).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}
