//! The keepalived.conf front end (lexer, parameters, `~SEQ`, `@id` lines,
//! tree and mapping onto the model; `include` refused as text has no
//! directory) on arbitrary bytes: it returns a model or errors, never
//! panics, and every error and warning names the text and a line and
//! column inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xlb::{
    config::ConfigError,
    keepalived::{self, Options},
};

const NAME: &str = "fuzz.conf";

fuzz_target!(|data: &[u8]| {
    // Bytes as a file holds them (keepalived.conf need not be UTF-8); the
    // positions are checked against the text as xlb decodes it.
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    // The first line's length picks the options, so one corpus covers both.
    let opts = Options {
        config_id: data.starts_with(b"@").then(|| "a".to_string()),
        lenient: data.len() % 2 == 1,
    };
    match keepalived::parse_bytes(NAME, data, &opts) {
        Ok(loaded) => loaded.warnings.iter().for_each(|w| located(w, text)),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error list with no error");
            errors.0.iter().for_each(|e| located(e, text));
        }
    }
});

/// `e` points into `text`: its file, an existing line (or the one after the
/// last, for what is missing at the end) and a column within that line.
fn located(e: &ConfigError, text: &str) {
    assert_eq!(e.file, NAME, "{e}");
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        e.line >= 1 && e.line <= lines.len() + 1,
        "{e}: line outside the text"
    );
    let width = lines.get(e.line - 1).map_or(0, |l| l.chars().count());
    assert!(
        e.col >= 1 && e.col <= width + 1,
        "{e}: column outside line {}",
        e.line
    );
}
