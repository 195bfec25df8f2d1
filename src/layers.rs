//! The house is one-way: each top-level module has a layer, and a module imports only from
//! layers below its own. Data flows from the inputs through the payment flow to the gateway, and
//! the display, the metrics and the wiring observe it; the imports follow the same direction, so
//! a change low in the house cannot reach up into what uses it, and there are no cycles.
//!
//! [`LAYERS`] is the table; the test below reads every `crate::` path in the sources (outside
//! comments and `#[cfg(test)]` code) and fails on an import that goes sideways or up, and on a
//! module the table does not place. A new module gets its layer here, with the reason. The
//! whole file is compiled for tests only.

/// Top-level modules by layer, lowest first. A module may import from lower layers only.
const LAYERS: &[&[&str]] = &[
    // The C allocator's knobs: a leaf the wiring and the flow's compaction call.
    &["allocator"],
    // Values with no behaviour of their own: money, secrets, the journal's file format.
    &["money", "secret", "setting", "journal"],
    &["cart"],
    // Board files: how a kiosk build is wired (pin maps, display boards), read by the
    // subsystems that drive the hardware.
    &["board"],
    // What the tasks say to each other, and what the flow publishes.
    &["messages"],
    &["state"],
    // Services the flow uses: the watchdog heartbeat, the Dintero API.
    &["systemd", "dintero"],
    // Where carts come from and where the customer looks; the test tooling's emulator. The
    // callback listener is an input too: it tells the flow to read a payment again, through a
    // nudge defined in `messages`, so the flow and the listener share only that.
    &["input", "gpio", "display", "emulator", "callback"],
    // The one task that owns payments, and the refund desk beside it: it takes the terminal
    // from the flow only through a `Command` and the published state, so neither imports the
    // other.
    &["payment", "refund"],
    // Observers of the flow, and the config file that composes every section. The control
    // socket observes the flow like the metrics and only asks it through a `Command`; the daemon
    // serves it and the console is its client, both above it.
    &["metrics", "config", "control"],
    // Wiring: starts the tasks. The technician console's pieces (technicians, lockout, audit,
    // line discipline) read the config file's state directory like the wiring does.
    &["daemon", "console", "logging", "commands"],
    // What runs the wiring: the demo, the soak, the bench.
    &["demo", "soak", "bench"],
    &["cli"],
];

mod tests {
    use super::LAYERS;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn layer(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    /// Every `crate::<module>` a top-level module's sources name, outside comments and tests.
    fn imports() -> BTreeMap<String, BTreeMap<String, String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let relative = path.strip_prefix(&src).unwrap();
                let top = relative
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string();
                if top == "lib" || top == "main" || top == "layers" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (number, line) in code.lines().enumerate() {
                    if line.trim_start().starts_with("//") {
                        continue;
                    }
                    for (at, _) in line.match_indices("crate::") {
                        let name: String = line[at + 7..]
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()
                            })
                            .collect();
                        if !name.is_empty() && name != top {
                            found
                                .entry(top.clone())
                                .or_default()
                                .entry(name)
                                .or_insert_with(|| {
                                    format!("{}:{}", relative.display(), number + 1)
                                });
                        }
                    }
                }
            }
        }
        found
    }

    /// What is wrong with `uses`: imports sideways or up, and modules without a layer.
    fn violations(uses: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
        let mut wrong = Vec::new();
        for (module, uses) in uses {
            let Some(own) = layer(module) else {
                wrong.push(format!(
                    "src/{module}: not in LAYERS; give it a layer in src/layers.rs"
                ));
                continue;
            };
            for (used, at) in uses {
                match layer(used) {
                    Some(theirs) if theirs < own => {}
                    Some(_) => wrong.push(format!(
                        "{at}: {module} imports crate::{used}, which is not in a layer below it"
                    )),
                    None => wrong.push(format!("{at}: crate::{used} is not in LAYERS")),
                }
            }
        }
        wrong
    }

    #[test]
    fn every_module_imports_only_from_layers_below_its_own() {
        let uses = imports();
        assert!(
            uses["payment"].contains_key("dintero"),
            "the scan reads the sources"
        );
        let wrong = violations(&uses);
        assert!(
            wrong.is_empty(),
            "the house is no longer one-way:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn an_import_sideways_or_up_and_a_module_without_a_layer_are_reported() {
        let uses: BTreeMap<String, BTreeMap<String, String>> = [
            ("dintero", "payment"),
            ("input", "display"),
            ("refunds", "payment"),
        ]
        .into_iter()
        .map(|(module, used)| {
            let at = format!("src/{module}.rs:1");
            (module.to_string(), BTreeMap::from([(used.to_string(), at)]))
        })
        .collect();
        let wrong = violations(&uses);
        assert_eq!(wrong.len(), 3, "{wrong:?}");
        assert!(
            wrong[0].contains("dintero imports crate::payment"),
            "{wrong:?}"
        );
        assert!(
            wrong[1].contains("input imports crate::display"),
            "{wrong:?}"
        );
        assert!(wrong[2].contains("refunds: not in LAYERS"), "{wrong:?}");
    }
}
