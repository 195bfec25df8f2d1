//! `docs/screens/` is the reviewed picture of every customer screen: this test fails when a
//! screen's pixels change and its PNG there was not regenerated, and when a PNG is left for a
//! screen that no longer exists.
//!
//! After an intended change, regenerate and review the PNGs in the diff:
//!
//! ```sh
//! KIOSKPAY_UPDATE_SCREENS=1 cargo test --test screens
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use kioskpay::display::{draw, sample_screens, Frame};
use kioskpay::money::Language;
use tokio::time::Instant;

/// Every screen at the portrait size; these at the landscape sizes too.
const LANDSCAPE: [&str; 7] = [
    "idle",
    "waiting",
    "approved_receipt",
    "declined",
    "checking",
    "out_of_service",
    "technician",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screens")
}

fn rgb(frame: &Frame) -> Vec<u8> {
    frame
        .pixels()
        .iter()
        .flat_map(|p| {
            let c = Rgb888::from(*p);
            [c.r(), c.g(), c.b()]
        })
        .collect()
}

/// The PNG's size and 8-bit RGB pixels, if it exists and decodes.
fn load(path: &Path) -> Option<(u32, u32, Vec<u8>)> {
    let file = std::fs::File::open(path).ok()?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .ok()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).ok()?;
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        return None;
    }
    buf.truncate(info.buffer_size());
    Some((info.width, info.height, buf))
}

#[test]
fn docs_screens_match_what_the_kiosk_draws() {
    let update = std::env::var_os("KIOSKPAY_UPDATE_SCREENS").is_some_and(|v| v == "1");
    let now = Instant::now();
    let mut expected = BTreeSet::new();
    let mut stale = Vec::new();
    for (w, h) in [(240u32, 320u32), (320, 240), (480, 320)] {
        for lang in [Language::Nb, Language::En] {
            for (name, screen) in sample_screens(lang, now) {
                if w != 240 && !LANDSCAPE.contains(&name) {
                    continue;
                }
                let rel = format!("{w}x{h}/{}/{name}.png", lang.code());
                let path = dir().join(&rel);
                expected.insert(rel.clone());
                let mut frame = Frame::new(w, h);
                draw(&screen, &mut frame).unwrap();
                let same = load(&path)
                    .is_some_and(|(pw, ph, pixels)| (pw, ph) == (w, h) && pixels == rgb(&frame));
                if same {
                    continue;
                }
                if update {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, frame.to_png()).unwrap();
                } else {
                    stale.push(rel);
                }
            }
        }
    }
    // PNGs of screens that no longer exist mislead a reviewer as much as outdated ones.
    let mut found = BTreeSet::new();
    collect(&dir(), &dir(), &mut found);
    for extra in found.difference(&expected) {
        if update {
            std::fs::remove_file(dir().join(extra)).unwrap();
        } else {
            stale.push(format!("{extra} (no such screen any more)"));
        }
    }
    assert!(
        stale.is_empty(),
        "docs/screens is out of date for:\n  {}\nregenerate with KIOSKPAY_UPDATE_SCREENS=1 cargo \
         test --test screens and review the new PNGs",
        stale.join("\n  ")
    );
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "png") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel);
        }
    }
}

#[test]
fn the_portrait_set_has_every_screen_in_both_languages() {
    let now = Instant::now();
    let nb: Vec<&str> = sample_screens(Language::Nb, now)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let en: Vec<&str> = sample_screens(Language::En, now)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(nb, en);
    for required in [
        "idle",
        "waiting",
        "processing",
        "approved",
        "approved_receipt",
        "declined",
        "cancelled",
        "timed_out",
        "checking",
        "unavailable",
        "scanner_unavailable",
        "refused",
        "out_of_service",
        "technician",
    ] {
        assert!(nb.contains(&required), "no sample for {required}");
    }
}
