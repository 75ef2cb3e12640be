//! docs/CONFIG.md states the defaults the model takes: each row of
//! `defaults::documented()` (read from the one defaults table) must appear
//! as `default VALUE` in the comment of its key's example line, under its
//! section. A default changed in the table and not in the docs fails here.

use lb_config::defaults;

const CONFIG_MD: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIG.md"));

/// The lines of the section whose heading names `` `section` ``.
fn section(name: &str) -> Vec<&'static str> {
    let heading = format!("## `{name}`");
    CONFIG_MD
        .lines()
        .skip_while(|l| !l.starts_with(&heading))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect()
}

#[test]
fn config_md_states_every_documented_default() {
    let rows = defaults::documented();
    assert!(rows.len() >= 15);
    for (name, key, value) in rows {
        let lines = section(name);
        assert!(!lines.is_empty(), "docs/CONFIG.md has no section `{name}`");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("`{name}` shows no `{key} = …` line"));
        let comment = line.split_once('#').map_or("", |(_, c)| c);
        assert!(
            comment.contains(&format!("default {value}")),
            "`{name}` `{key}`: docs/CONFIG.md does not say `default {value}`:\n{line}"
        );
    }
}
