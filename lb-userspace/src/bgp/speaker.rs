//! The speaker: a task on the agent's runtime that keeps bird announcing
//! exactly what [`decide`] says. Each round (an input change, or every
//! second) it polls the data-plane interfaces, decides, writes the include
//! when its text changes, runs `configure` only when the set of VIPs or
//! their attributes changed (or bird lacks our protocols), then `enable` /
//! `disable` for each VIP whose state in bird differs. The agent loop never
//! waits for bird: it replaces the inputs (a watch channel) and goes on;
//! only a drain and a withdrawing stop wait for a round that confirmed.

use super::{
    Board, Status, VipStatus,
    bird::{Bird, Protocol},
    decide::{self, Facts, ServiceFacts},
    include,
    links::Links,
};
use crate::config::Config;
use std::{collections::HashSet, sync::Arc, time::Duration};
use tokio::sync::watch;
use tracing::{info, warn};

/// How often a round runs without an input change (interfaces, XDP, bird's state).
const ROUND: Duration = Duration::from_secs(1);

/// What the agent tells the speaker.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub config: Arc<Config>,
    pub services: Vec<ServiceFacts>,
    pub masters: HashSet<String>,
    pub draining: bool,
    pub stopping: bool,
}

/// The agent's handle on the speaker task.
pub struct Speaker {
    inputs: watch::Sender<(u64, Inputs)>,
    /// The last input generation a round carried out in full.
    done: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Speaker {
    /// Starts the task; `xdp`: the plane is XDP, so a detached program withdraws.
    pub fn start(inputs: Inputs, xdp: bool, board: Board) -> Speaker {
        let (tx, rx) = watch::channel((1, inputs));
        let (done_tx, done) = watch::channel(0);
        let task = tokio::spawn(run(rx, done_tx, xdp, board));
        Speaker {
            inputs: tx,
            done,
            task,
        }
    }

    /// Changes the inputs when `change` says it changed something.
    pub fn update_if(&self, change: impl FnOnce(&mut Inputs) -> bool) {
        self.inputs.send_if_modified(|(g, i)| {
            let changed = change(i);
            if changed {
                *g += 1;
            }
            changed
        });
    }

    /// Changes the inputs; returns their generation (for [`Speaker::settled`]).
    pub fn update(&self, change: impl FnOnce(&mut Inputs)) -> u64 {
        let mut generation = 0;
        self.inputs.send_modify(|(g, i)| {
            change(i);
            *g += 1;
            generation = *g;
        });
        generation
    }

    /// Waits (at most `within`) for a round that carried out generation
    /// `generation` in full; false when bird did not confirm in time.
    pub async fn settled(&mut self, generation: u64, within: Duration) -> bool {
        tokio::time::timeout(within, self.done.wait_for(|d| *d >= generation))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Ends the task; bird keeps what it was last told.
    pub async fn stop(self) {
        drop(self.inputs);
        let _ = self.task.await;
    }
}

/// The speaker's own state between rounds.
struct State {
    xdp: bool,
    bird: Option<Bird>,
    links: Option<Links>,
    /// The include's shape bird was last configured with (at start: the
    /// file as found, which bird read when it started or last reconfigured).
    configured: Option<String>,
    /// The text last written.
    written: Option<String>,
    facts: Facts,
    /// The last problem with bird, for the status; empty when fine.
    problem: String,
}

async fn run(
    mut rx: watch::Receiver<(u64, Inputs)>,
    done: watch::Sender<u64>,
    xdp: bool,
    board: Board,
) {
    let found = {
        let i = &rx.borrow().1;
        i.config.bgp.as_ref().map(|b| b.include.clone())
    };
    let mut st = State {
        xdp,
        bird: None,
        links: None,
        configured: found
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| include::shape(&t)),
        written: None,
        facts: Facts::default(),
        problem: String::new(),
    };
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
        }
        let (generation, inputs) = rx.borrow_and_update().clone();
        let (ok, status) = st.round(&inputs).await;
        board.set(status);
        if ok {
            done.send_replace(generation);
        }
    }
}

impl State {
    /// One round; true when bird confirmed every decision.
    async fn round(&mut self, inputs: &Inputs) -> (bool, Status) {
        let Some(bgp) = &inputs.config.bgp else {
            return (true, Status::default());
        };
        self.poll_links(&inputs.config).await;
        self.facts.masters = inputs.masters.clone();
        self.facts.services = inputs.services.clone();
        self.facts.draining = inputs.draining;
        self.facts.stopping = inputs.stopping;
        let decisions = decide::decide(&inputs.config, &self.facts);
        let text = include::render(bgp, &decisions);
        let mut rows = Vec::new();
        let ok = match self.sync(bgp, &text, &decisions).await {
            Ok(r) => {
                rows = r;
                if !self.problem.is_empty() {
                    info!("bgp: bird answers again");
                }
                self.problem.clear();
                true
            }
            Err(e) => {
                let text = crate::logging::chain(&e).to_string();
                if text != self.problem {
                    warn!(error = %text, "bgp: bird is not following; retrying every second");
                }
                self.problem = text;
                self.bird = None;
                false
            }
        };
        let vips = decisions
            .iter()
            .map(|d| {
                let protocol = include::protocol_name(d.vip);
                let announced = rows
                    .iter()
                    .any(|p: &Protocol| p.name == protocol && p.state == "up");
                VipStatus {
                    vip: d.vip,
                    protocol,
                    announced,
                    wanted: d.announce,
                    why: d.why.clone(),
                }
            })
            .collect();
        let status = Status {
            pid: std::process::id(),
            control_socket: bgp.control_socket.display().to_string(),
            bird: if ok {
                "connected".into()
            } else {
                self.problem.clone()
            },
            vips,
            sessions: rows.into_iter().filter(|p| p.proto == "BGP").collect(),
        };
        (ok, status)
    }

    /// The interfaces' state into `self.facts` (kept as last seen when the poll fails).
    async fn poll_links(&mut self, config: &Config) {
        if self.links.is_none() {
            match Links::new() {
                Ok(l) => self.links = Some(l),
                Err(e) => {
                    warn!(error = %crate::logging::chain(&e), "bgp: cannot watch the interfaces");
                    return;
                }
            }
        }
        let Some(links) = &self.links else { return };
        match links.poll(&config.dataplane.interfaces).await {
            Ok(l) => {
                self.facts.attached = !self.xdp || l.without_xdp.is_empty();
                self.facts.links_down = l.down;
            }
            Err(e) => {
                warn!(error = %crate::logging::chain(&e), "bgp: polling the interfaces failed");
                self.links = None;
            }
        }
    }

    /// Writes the include and brings bird in line; bird's protocol rows after it.
    async fn sync(
        &mut self,
        bgp: &crate::config::bgp::Bgp,
        text: &str,
        decisions: &[decide::Decision],
    ) -> anyhow::Result<Vec<Protocol>> {
        use anyhow::Context;
        if self.written.as_deref() != Some(text) {
            crate::runfiles::write_atomic(&bgp.include, text.as_bytes())
                .with_context(|| format!("writing {}", bgp.include.display()))?;
            self.written = Some(text.to_string());
        }
        let bird = match &mut self.bird {
            Some(b) => b,
            None => self.bird.insert(Bird::connect(&bgp.control_socket).await?),
        };
        let mut rows = bird.protocols().await?;
        let expected: HashSet<String> = decisions
            .iter()
            .map(|d| include::protocol_name(d.vip))
            .collect();
        let present: HashSet<String> = rows
            .iter()
            .filter(|p| p.name.starts_with(include::PREFIX))
            .map(|p| p.name.clone())
            .collect();
        let shape = include::shape(text);
        if present != expected || self.configured.as_deref() != Some(shape.as_str()) {
            bird.configure()
                .await
                .with_context(|| format!("reconfiguring bird with {}", bgp.include.display()))?;
            info!(
                vips = expected.len(),
                "bgp: bird reconfigured with the VIPs' protocols"
            );
            self.configured = Some(shape);
            rows = bird.protocols().await?;
        }
        let mut changed = false;
        for d in decisions {
            let name = include::protocol_name(d.vip);
            let up = rows.iter().any(|p| p.name == name && p.state != "down");
            if up != d.announce {
                bird.set_enabled(&name, d.announce).await?;
                info!(vip = %d.vip, why = %d.why, "bgp: {}", if d.announce { "announced" } else { "withdrawn" });
                changed = true;
            }
        }
        if changed {
            rows = bird.protocols().await?;
        }
        Ok(rows)
    }
}
