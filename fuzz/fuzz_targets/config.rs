//! The TOML config loader on arbitrary text: it must return a config or
//! located errors, never panic, and every error must carry a position
//! inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = xlb::config::parse("fuzz.toml", text) {
        let lines = text.lines().count().max(1);
        for e in &errors.0 {
            assert!(
                e.line >= 1 && e.line <= lines + 1,
                "{e} outside {lines} lines"
            );
            assert!(e.col >= 1, "{e}");
        }
    }
});
