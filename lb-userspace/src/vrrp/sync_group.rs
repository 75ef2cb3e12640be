//! `vrrp_sync_group`: members change state together. A member that becomes
//! Master or Backup by election pulls the others along (through
//! [`super::state::Event::Group`]); Fault spreads through tracking (a
//! member's fault is the group's, see [`combine_faults`]). The group's own
//! notify scripts run when all members agree on a new state.

use super::{
    notify::{Kind, Notifier},
    state::State,
};
use crate::config::vrrp::SyncGroup;
use std::collections::HashMap;
use tokio::sync::{broadcast, watch};

/// Enough for a burst of changes from every member.
const QUEUE: usize = 64;

/// What a member tells the group: its name, its new state, and whether it
/// was following another member (which the other members then ignore).
pub type Change = (String, State, bool);

/// A member's connection to its group.
pub struct Link {
    pub tx: broadcast::Sender<Change>,
    pub rx: broadcast::Receiver<Change>,
}

/// The running side of one group: links for its members.
pub struct Group {
    tx: broadcast::Sender<Change>,
}

impl Group {
    /// Starts the group's notifier task and returns the group.
    pub fn start(def: SyncGroup, notifier: Notifier) -> (Group, tokio::task::JoinHandle<()>) {
        let (tx, _) = broadcast::channel::<Change>(QUEUE);
        let group = Group { tx };
        let task = group.notify(def, notifier);
        (group, task)
    }

    /// A task running the group's notify scripts for `def`; a reload that
    /// changes only those starts another one on the same members' links.
    pub fn notify(&self, def: SyncGroup, notifier: Notifier) -> tokio::task::JoinHandle<()> {
        let mut rx = self.tx.subscribe();
        tokio::spawn(async move {
            let mut states: HashMap<String, State> = HashMap::new();
            let mut told: Option<State> = None;
            loop {
                let (member, state, _) = match rx.recv().await {
                    Ok(c) => c,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                states.insert(member, state);
                if let Some(s) = agreed(&def.members, &states)
                    && told != Some(s)
                {
                    told = Some(s);
                    notifier.changed(Kind::Group, &def.name, &def.notify, s, 0);
                }
            }
        })
    }

    pub fn link(&self) -> Link {
        Link {
            tx: self.tx.clone(),
            rx: self.tx.subscribe(),
        }
    }
}

/// The state every member is in, if they agree.
pub fn agreed(members: &[String], states: &HashMap<String, State>) -> Option<State> {
    let mut it = members.iter().map(|m| states.get(m).copied());
    let first = it.next()??;
    it.all(|s| s == Some(first)).then_some(first)
}

/// Per member: its own priority with the fault of any member.
pub fn combine_faults(own: &[(u8, bool)]) -> Vec<(u8, bool)> {
    let any = own.iter().any(|(_, f)| *f);
    own.iter().map(|(p, _)| (*p, any)).collect()
}

/// Forwards each member's own tracking to it with the group's fault folded in.
pub async fn run_faults(
    mut own: Vec<watch::Receiver<(u8, bool)>>,
    out: Vec<watch::Sender<(u8, bool)>>,
) {
    while !own.is_empty() {
        let now: Vec<(u8, bool)> = own.iter().map(|r| *r.borrow()).collect();
        for (tx, v) in out.iter().zip(combine_faults(&now)) {
            tx.send_if_modified(|old| std::mem::replace(old, v) != v);
        }
        let any = futures::future::select_all(own.iter_mut().map(|r| Box::pin(r.changed())));
        if any.await.0.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_and_faults() {
        let m = vec!["A".to_string(), "B".to_string()];
        let mut s = HashMap::new();
        s.insert("A".to_string(), State::Master);
        assert_eq!(agreed(&m, &s), None, "B unknown");
        s.insert("B".to_string(), State::Backup);
        assert_eq!(agreed(&m, &s), None);
        s.insert("B".to_string(), State::Master);
        assert_eq!(agreed(&m, &s), Some(State::Master));
        assert_eq!(
            combine_faults(&[(100, false), (90, true)]),
            [(100, true), (90, true)]
        );
        assert_eq!(
            combine_faults(&[(100, false), (90, false)]),
            [(100, false), (90, false)]
        );
    }
}
