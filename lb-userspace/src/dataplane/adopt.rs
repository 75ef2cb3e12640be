//! Whether the maps a previous agent left pinned can be adopted by this one:
//! same map types, key and value sizes, capacities and layout version. A
//! restarted agent that adopts them keeps every flow, persistence template,
//! connection count and scheduler cursor; one that cannot starts afresh.

use super::loader;
use crate::config;
use anyhow::{Context, Result};
use aya::maps::{Array, Map, MapData};
use lb_common::{MAP_LAYOUT_VERSION, Settings, map_names};
use std::path::Path;

/// What the pin directory holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Previous {
    /// No pinned maps: a first start.
    Nothing,
    /// Every map is pinned and matches what this agent would create.
    Adoptable,
    /// Pinned maps this agent cannot use, and why.
    Incompatible(String),
}

/// One map's shape, as the kernel reports it or as the object defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "type {}, key {} B, value {} B, {} entries",
            self.map_type, self.key_size, self.value_size, self.max_entries
        )
    }
}

/// Compares the maps pinned in `pin_dir` with those `object` would create for `dp`.
pub fn examine(pin_dir: &Path, object: &[u8], dp: &config::Dataplane) -> Result<Previous> {
    let pinned: Vec<&str> = map_names::ALL
        .iter()
        .copied()
        .filter(|m| pin_dir.join(m).exists())
        .collect();
    if pinned.is_empty() {
        return Ok(Previous::Nothing);
    }
    if let Some(missing) = map_names::ALL.iter().find(|m| !pinned.contains(m)) {
        return Ok(Previous::Incompatible(format!(
            "map {missing} is not pinned"
        )));
    }
    let expected = expected_shapes(object, dp)?;
    for (name, want) in &expected {
        let data = MapData::from_pin(pin_dir.join(name))
            .with_context(|| format!("opening pinned map {name}"))?;
        let info = data.info()?;
        let have = Shape {
            map_type: info.map_type()? as u32,
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
        };
        if have != *want {
            return Ok(Previous::Incompatible(format!(
                "pinned map {name} is {have}, this agent needs {want}"
            )));
        }
    }
    let settings = MapData::from_pin(pin_dir.join(map_names::SETTINGS))?;
    let settings: Array<MapData, Settings> = Map::from_map_data(settings)?.try_into()?;
    let version = settings.get(&0, 0)?.layout_version;
    if version != MAP_LAYOUT_VERSION {
        return Ok(Previous::Incompatible(format!(
            "pinned maps have layout version {version}, this agent uses {MAP_LAYOUT_VERSION}"
        )));
    }
    Ok(Previous::Adoptable)
}

/// Every xlb map's shape as loading `object` for `dp` would create it.
fn expected_shapes(object: &[u8], dp: &config::Dataplane) -> Result<Vec<(&'static str, Shape)>> {
    let obj = aya_obj::Object::parse(object).context("parsing the XDP object")?;
    let sizes = loader::map_sizes(dp)?;
    map_names::ALL
        .iter()
        .map(|&name| {
            let def = obj
                .maps
                .get(name)
                .with_context(|| format!("map {name} missing from the object"))?;
            let map_type = def.map_type();
            let value_size =
                if map_type == aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_DEVMAP_HASH as u32 {
                    // aya sizes device-map values at load time (with or without a program id).
                    if aya::features().devmap_prog_id() {
                        8
                    } else {
                        4
                    }
                } else {
                    def.value_size()
                };
            let max_entries = sizes
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(def.max_entries(), |&(_, s)| s);
            Ok((
                name,
                Shape {
                    map_type,
                    key_size: def.key_size(),
                    value_size,
                    max_entries,
                },
            ))
        })
        .collect()
}
