//! An instance's effective priority and fault: its configured priority and
//! what it tracks (its own interface, `track_interface`, `track_script`,
//! `track_file`, its sync group's tracking too), combined by
//! [`track::effective`] in one task that publishes on a watch channel.

use super::{sources::Sources, track};
use crate::config::vrrp::{Instance, TrackInterface, TrackRef, Vrrp};
use anyhow::{Result, bail};
use std::collections::BTreeSet;
use tokio::{sync::watch, task::JoinHandle};

/// One input as configured: which source, and its weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Link {
        name: String,
        weight: i32,
        reverse: bool,
    },
    Script {
        name: String,
        weight: i32,
        reverse: bool,
    },
    File {
        name: String,
        weight: i32,
    },
}

/// Everything the combiner of one instance reads: a reload rebuilds it only
/// when this changes (or a source it reads was restarted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub base: u8,
    pub inputs: Vec<Input>,
}

impl Spec {
    pub fn of(vrrp: &Vrrp, inst: &Instance) -> Result<Spec> {
        // A group's tracking applies to each of its members.
        let group = vrrp
            .sync_groups
            .iter()
            .find(|g| g.members.contains(&inst.name));
        // As keepalived: the instance's own interface down is Fault.
        let own = TrackInterface {
            name: inst.interface.clone(),
            weight: 0,
            reverse: false,
        };
        let mut inputs: Vec<Input> = std::iter::once(&own)
            .chain(&inst.track_interfaces)
            .chain(group.into_iter().flat_map(|g| &g.track_interfaces))
            .map(|t| Input::Link {
                name: t.name.clone(),
                weight: t.weight,
                reverse: t.reverse,
            })
            .collect();
        for TrackRef {
            name,
            weight,
            reverse,
        } in inst
            .track_scripts
            .iter()
            .chain(group.into_iter().flat_map(|g| &g.track_scripts))
        {
            let Some(def) = vrrp.scripts.iter().find(|d| &d.name == name) else {
                bail!("instance {}: no vrrp_script `{name}`", inst.name);
            };
            inputs.push(Input::Script {
                name: name.clone(),
                weight: weight.unwrap_or(def.weight),
                // A line's own weight carries its own direction.
                reverse: if weight.is_some() {
                    *reverse
                } else {
                    def.weight_reverse
                },
            });
        }
        for TrackRef {
            name,
            weight,
            reverse,
        } in inst
            .track_files
            .iter()
            .chain(group.into_iter().flat_map(|g| &g.track_files))
        {
            let Some(def) = vrrp.track_files.iter().find(|d| &d.name == name) else {
                bail!("instance {}: no vrrp_track_file `{name}`", inst.name);
            };
            // keepalived multiplies a reversed file's number by −weight.
            let weight = match weight {
                Some(w) if *reverse => -*w,
                Some(w) => *w,
                None => def.weight,
            };
            inputs.push(Input::File {
                name: name.clone(),
                weight,
            });
        }
        Ok(Spec {
            base: inst.priority,
            inputs,
        })
    }

    /// Whether a script or file it reads is in `renewed`.
    pub fn reads_any(&self, renewed: &BTreeSet<String>) -> bool {
        self.inputs.iter().any(|i| match i {
            Input::Script { name, .. } | Input::File { name, .. } => renewed.contains(name),
            Input::Link { .. } => false,
        })
    }

    /// The interfaces it watches.
    pub fn links(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().filter_map(|i| match i {
            Input::Link { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }
}

/// A source's receiver with the weight this instance gives it.
enum Tracked {
    Check {
        rx: watch::Receiver<bool>,
        weight: i32,
        reverse: bool,
    },
    File {
        rx: watch::Receiver<i64>,
        weight: i32,
    },
}

impl Tracked {
    fn input(&self) -> track::Input {
        match self {
            Tracked::Check {
                rx,
                weight,
                reverse,
            } => track::Input::Check {
                up: *rx.borrow(),
                weight: *weight,
                reverse: *reverse,
            },
            Tracked::File { rx, weight } => track::Input::File {
                value: *rx.borrow(),
                weight: *weight,
            },
        }
    }

    async fn changed(&mut self) -> bool {
        match self {
            Tracked::Check { rx, .. } => rx.changed().await.is_ok(),
            Tracked::File { rx, .. } => rx.changed().await.is_ok(),
        }
    }
}

/// A running combiner; ends when dropped.
pub struct Combiner {
    pub spec: Spec,
    pub rx: watch::Receiver<(u8, bool)>,
    task: JoinHandle<()>,
}

impl Drop for Combiner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Combiner {
    /// Starts combining `spec`'s inputs from `sources` (which must hold its
    /// scripts and files: [`Spec::of`] checked the names against the same config).
    pub fn start(spec: Spec, sources: &mut Sources) -> Combiner {
        let mut tracked: Vec<Tracked> = spec
            .inputs
            .iter()
            .filter_map(|i| match i {
                Input::Link {
                    name,
                    weight,
                    reverse,
                } => Some(Tracked::Check {
                    rx: sources.link(name),
                    weight: *weight,
                    reverse: *reverse,
                }),
                Input::Script {
                    name,
                    weight,
                    reverse,
                } => sources.scripts.get(name).map(|s| Tracked::Check {
                    rx: s.rx.clone(),
                    weight: *weight,
                    reverse: *reverse,
                }),
                Input::File { name, weight } => sources.files.get(name).map(|s| Tracked::File {
                    rx: s.rx.clone(),
                    weight: *weight,
                }),
            })
            .collect();
        let base = spec.base;
        let now = move |t: &[Tracked]| {
            track::effective(base, &t.iter().map(Tracked::input).collect::<Vec<_>>())
        };
        let (tx, rx) = watch::channel(now(&tracked));
        let task = tokio::spawn(async move {
            while !tracked.is_empty() {
                let any =
                    futures::future::select_all(tracked.iter_mut().map(|t| Box::pin(t.changed())));
                if !any.await.0 {
                    break;
                }
                tx.send_if_modified(|old| {
                    let fresh = now(&tracked);
                    std::mem::replace(old, fresh) != fresh
                });
            }
            // Nothing (more) to track: the value stands until the combiner ends.
            std::future::pending::<()>().await;
            drop(tx);
        });
        Combiner { spec, rx, task }
    }
}
