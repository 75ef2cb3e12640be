//! VRRP conformance from recorded event streams, without sockets (holo-vrrp's
//! `tests/conformance/` is the model): each directory under
//! `tests/vrrp_conformance/` holds `config.toml` (one `vrrp_instance`) and
//! `steps.jsonl`, one step per line: the time in milliseconds since the
//! start, the input, the effects the instance core must answer with (in
//! order), and optionally its next deadline. Adverts are written as fields
//! and encoded here, so decoding and every validation run as on the wire.
//!
//! Inputs: `"startup"`, `"timer"`, `{"stop": {"release": B}}`,
//! `{"advert": {...}}` (`src`, `priority`, and any of `interval_cs`,
//! `addrs`, `ttl`, `version`, `vrid`, `pass` to differ from the instance's),
//! `{"track": {"priority": P, "fault": B}}`, `{"group": "MASTER"}`,
//! `{"applied": B}`. Effects are the core's, as JSON (`"up"`,
//! `{"send": {"priority": 100}}`, …).

use serde::Deserialize;
use serde_json::Value;
use std::{net::IpAddr, path::Path, sync::Arc, time::Duration};
use tokio::time::Instant;
use xlb::vrrp::{
    core::{Core, Input},
    packet::{self, Advert, Received},
    state::State,
};

/// The source our instance sends from.
const PRIMARY: &str = "10.0.0.5";
/// Where adverts are addressed (VRRP's IPv4 group).
const GROUP: &str = "224.0.0.18";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    at_ms: u64,
    input: StepInput,
    effects: Vec<Value>,
    /// The core's next deadline after the step, in ms since the start (`null`: none).
    #[serde(default, deserialize_with = "some")]
    deadline_ms: Option<Option<u64>>,
}

/// A present field, `null` included, as `Some`.
fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum StepInput {
    Startup,
    Timer,
    Stop { release: bool },
    Advert(AdvertIn),
    Track { priority: u8, fault: bool },
    Group(State),
    Applied(bool),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvertIn {
    src: IpAddr,
    priority: u8,
    interval_cs: Option<u16>,
    addrs: Option<Vec<IpAddr>>,
    ttl: Option<u8>,
    version: Option<u8>,
    vrid: Option<u8>,
    pass: Option<String>,
}

fn input(core: &Core, i: StepInput) -> Input {
    match i {
        StepInput::Startup => Input::Startup,
        StepInput::Timer => Input::Timer,
        StepInput::Stop { release } => Input::Stop { release },
        StepInput::Track { priority, fault } => Input::Track { priority, fault },
        StepInput::Group(s) => Input::Group(s),
        StepInput::Applied(master) => Input::Applied { master },
        StepInput::Advert(a) => {
            // The instance's own advert, with what the step changes.
            let ours = core.advert(a.priority);
            let adv = Advert {
                version: a.version.unwrap_or(ours.version),
                vrid: a.vrid.unwrap_or(ours.vrid),
                priority: a.priority,
                interval_cs: a.interval_cs.unwrap_or(ours.interval_cs),
                addrs: a.addrs.unwrap_or(ours.addrs),
                auth: a.pass.as_deref().map(packet::auth_data).or(ours.auth),
            };
            let dst: IpAddr = GROUP.parse().unwrap();
            Input::Packet {
                rx: Received {
                    src: a.src,
                    dst,
                    ttl: a.ttl.unwrap_or(packet::TTL),
                },
                msg: packet::encode(&adv, a.src, dst),
            }
        }
    }
}

fn run(dir: &Path) {
    let name = dir.file_name().unwrap().to_string_lossy();
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let config = xlb::config::parse(&format!("{name}/config.toml"), &text)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let inst = Arc::new(config.vrrp.instances[0].clone());
    let mut core = Core::new(inst.clone(), PRIMARY.parse().unwrap(), inst.priority);
    let t0 = Instant::now();
    let steps = std::fs::read_to_string(dir.join("steps.jsonl")).unwrap();
    for (n, line) in steps
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = format!("{name}/steps.jsonl:{}", n + 1);
        let step: Step = serde_json::from_str(line).unwrap_or_else(|e| panic!("{at}: {e}"));
        let now = t0 + Duration::from_millis(step.at_ms);
        let got: Vec<Value> = core
            .handle(input(&core, step.input), now)
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(got, step.effects, "{at}: effects");
        if let Some(want) = step.deadline_ms {
            let deadline = core
                .deadline()
                .map(|d| d.duration_since(t0).as_millis() as u64);
            assert_eq!(deadline, want, "{at}: next deadline (ms)");
        }
    }
}

#[test]
fn every_recorded_scenario() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vrrp_conformance");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "scenarios missing from {}", root.display());
    for d in dirs {
        run(&d);
    }
}
