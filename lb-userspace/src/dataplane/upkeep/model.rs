//! The reclaimer on in-memory maps: a model of the upkeep program (the
//! same claims, counts and deletions as `lb-ebpf/src/upkeep.rs`, whose own
//! behaviour the XDP fixtures check op by op), a director that opens,
//! touches and ends flows between the program's runs, and the tests.

use super::{
    ops::OpRunner,
    reclaim::{Maps, Pass, Reclaimer, Stopped},
};
use crate::dataplane::store::{Counted, MapStore, MemMap};
use anyhow::{Result, bail};
use lb_common::{
    Affinity, ConnCounts, FAMILY_V4, FlowKey, FlowState, PROTO_TCP, RealConns, RealInfo,
    ServiceAddr, Settings, conn, method,
    upkeep::{self, Op, Summary},
};
use std::{
    collections::BTreeMap,
    ops::ControlFlow,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

const SEC: u64 = 1_000_000_000;

/// The maps both sides share, and the clock.
#[derive(Clone)]
struct Plane {
    flows: MemMap<FlowKey, FlowState>,
    replies: MemMap<FlowKey, FlowKey>,
    conns: MemMap<u32, RealConns>,
    settings: MemMap<u32, Settings>,
    summary: MemMap<u32, Summary>,
    reals: Arc<Mutex<BTreeMap<u32, RealInfo>>>,
    now: Arc<AtomicU64>,
}

type Hook = Box<dyn FnMut(&Plane) + Send>;

/// The upkeep program as a model over the shared maps.
struct Program {
    plane: Plane,
    /// Runs before each run of ops: the director acting in between.
    before_run: Option<Hook>,
}

/// The director's and the program's `conntrack::count`.
fn count(conns: &mut MemMap<u32, RealConns>, real: u32, state: u32, up: bool) {
    if !conn::is_counted(state) {
        return;
    }
    let mut c = conns.get(&real).unwrap().unwrap_or_default();
    let (live, left) = if conn::is_active(state) {
        (&mut c.live.active, &mut c.left.active)
    } else {
        (&mut c.live.inactive, &mut c.left.inactive)
    };
    if up {
        *live = live.wrapping_add(1);
    } else {
        *live = live.wrapping_sub(1);
        *left += 1;
    }
    conns.put(&real, &c).unwrap();
}

impl OpRunner for Program {
    fn run(&mut self, ops: &mut [Op]) -> Result<()> {
        if let Some(hook) = &mut self.before_run {
            hook(&self.plane);
        }
        let p = &mut self.plane;
        let now = p.now.load(Ordering::Relaxed);
        let settings = p.settings.get(&0)?.unwrap_or_default();
        for op in ops.iter_mut() {
            match op.kind {
                upkeep::OP_REAP => {
                    let Some(mut v) = p.flows.get(&op.flow)? else {
                        op.outcome = upkeep::GONE;
                        continue;
                    };
                    let state = v.state as u32;
                    (op.state, op.target) = (state, v.real_id);
                    let expired = conn::expired(state, v.seen_ns, now, &settings);
                    op.outcome = if state == conn::RELEASED {
                        if expired {
                            p.flows.delete(&op.flow)?;
                            upkeep::REAPED
                        } else {
                            upkeep::GONE
                        }
                    } else if !expired {
                        upkeep::ALIVE
                    } else {
                        v.state = conn::RELEASED.into();
                        p.flows.put(&op.flow, &v)?;
                        count(&mut p.conns, v.real_id, state, false);
                        let real = p.reals.lock().unwrap().get(&v.real_id).copied();
                        p.flows.delete(&op.flow)?;
                        if let Some(r) = real.filter(|r| r.method == method::NAT) {
                            p.replies.delete(&op.flow.nat_reply(&r))?;
                        }
                        upkeep::REAPED
                    };
                }
                upkeep::OP_UNCOUNT => {
                    let mut c = p.conns.get(&op.target)?.unwrap_or_default();
                    c.live.active = c.live.active.saturating_sub(op.counts.active);
                    c.live.inactive = c.live.inactive.saturating_sub(op.counts.inactive);
                    c.left.active += op.counts.active;
                    c.left.inactive += op.counts.inactive;
                    p.conns.put(&op.target, &c)?;
                    op.outcome = upkeep::DONE;
                }
                other => bail!("op kind {other}"),
            }
        }
        Ok(())
    }
}

impl Plane {
    fn new(conntrack: u64) -> Plane {
        let plane = Plane {
            flows: MemMap::new(conntrack),
            replies: MemMap::new(conntrack),
            conns: MemMap::new(64),
            settings: MemMap::new(1),
            summary: MemMap::new(1),
            reals: Arc::default(),
            now: Arc::new(AtomicU64::new(10_000 * SEC)),
        };
        let settings = Settings {
            tcp_timeout_s: 900,
            tcp_fin_timeout_s: 120,
            udp_timeout_s: 300,
            ..Settings::default()
        };
        plane.settings.clone().put(&0, &settings).unwrap();
        for id in 0..64 {
            plane.conns.clone().put(&id, &RealConns::default()).unwrap();
        }
        plane
    }

    fn real(&self, id: u32, method: u8) {
        let info = RealInfo {
            addr: [0x0b00_000a + id, 0, 0, 0],
            port: 8080u16.to_be(),
            method,
            ..RealInfo::default()
        };
        self.reals.lock().unwrap().insert(id, info);
    }

    /// The director opening flow `n` to `real` in `state`, last seen
    /// `idle_s` seconds ago (a NAT real's flow gets its reply entry).
    fn open(&self, n: u32, real: u32, state: u32, idle_s: u64) -> FlowKey {
        let key = flow(n);
        let now = self.now.load(Ordering::Relaxed);
        let value = FlowState {
            real_id: real,
            service_id: 0,
            created_ns: now - idle_s * SEC,
            seen_ns: now - idle_s * SEC,
            state: state.into(),
        };
        self.flows.clone().put(&key, &value).unwrap();
        count(&mut self.conns.clone(), real, state, true);
        if let Some(r) = self.reals.lock().unwrap().get(&real)
            && r.method == method::NAT
        {
            self.replies.clone().put(&key.nat_reply(r), &key).unwrap();
        }
        key
    }

    /// The reclaimer's view of the maps: the flows, counts, settings and
    /// summary, and for fill the NAT replies and a persistence map holding
    /// three templates.
    fn maps(&self) -> Maps {
        let persist: MemMap<ServiceAddr, Affinity> = MemMap::new(100);
        for n in 0..3 {
            let key = ServiceAddr {
                service_id: 0,
                addr: [n, 0, 0, 0],
            };
            persist.clone().put(&key, &Affinity::default()).unwrap();
        }
        Maps {
            flows: Box::new(self.flows.clone()),
            conns: Box::new(self.conns.clone()),
            settings: Box::new(self.settings.clone()),
            summary: Box::new(self.summary.clone()),
            fills: vec![
                (
                    upkeep::FILL_NAT_REPLIES,
                    Box::new(Counted::new(Box::new(self.replies.clone()))),
                ),
                (
                    upkeep::FILL_PERSIST,
                    Box::new(Counted::new(Box::new(persist))),
                ),
            ],
        }
    }

    fn conns(&self, real: u32) -> ConnCounts {
        self.conns.get(&real).unwrap().unwrap_or_default().live
    }

    fn reclaimer(&self, batch: usize, before_run: Option<Hook>) -> Reclaimer {
        let maps = self.maps();
        let program = Program {
            plane: self.clone(),
            before_run,
        };
        let now = self.now.clone();
        Reclaimer::new(
            maps,
            Box::new(program),
            Box::new(move || now.load(Ordering::Relaxed)),
            batch,
        )
        .unwrap()
    }
}

fn flow(n: u32) -> FlowKey {
    FlowKey {
        src: [0x0a00_0000 + (n >> 16), 0, 0, 0],
        dst: [0x0a00_0064, 0, 0, 0],
        sport: (n as u16).to_be(),
        dport: 80u16.to_be(),
        proto: PROTO_TCP,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

fn go(pace: ControlFlow<()>) -> impl FnMut(std::time::Duration) -> ControlFlow<()> {
    move |_| pace
}

fn pass(r: &mut Reclaimer) -> Pass {
    r.pass(&mut go(ControlFlow::Continue(()))).unwrap()
}

fn counts(active: u64, inactive: u64) -> ConnCounts {
    ConnCounts { active, inactive }
}

#[test]
fn each_state_expires_after_its_own_timeout_and_is_uncounted_once() {
    let p = Plane::new(1000);
    p.real(1, method::DR);
    // Live: established 100 s, SYN_RECV 59 s, a pickup 59 s, UDP 299 s.
    let live = [
        p.open(1, 1, conn::ESTABLISHED, 100),
        p.open(2, 1, conn::SYN_RECV, 59),
        p.open(3, 1, conn::PICKUP, 59),
        p.open(4, 1, conn::UDP, 299),
    ];
    // Expired: established 901 s, FIN_WAIT 121 s, CLOSE 11 s, TIME_WAIT
    // 121 s, a pickup 61 s, UDP 301 s.
    let dead = [
        p.open(5, 1, conn::ESTABLISHED, 901),
        p.open(6, 1, conn::FIN_WAIT, 121),
        p.open(7, 1, conn::CLOSE, 11),
        p.open(8, 1, conn::TIME_WAIT, 121),
        p.open(9, 1, conn::PICKUP, 61),
        p.open(10, 1, conn::UDP, 301),
    ];
    // Counted: 3 active (ES ×2, SYN_RECV), 5 inactive (UDP ×2, FW, CL, TW).
    assert_eq!(p.conns(1), counts(3, 5));
    // Entries someone claimed (uncounted) and left: one idle 121 s, one 5 s.
    let now = p.now.load(Ordering::Relaxed);
    let left = |n: u32, idle_s: u64| {
        let v = FlowState {
            real_id: 1,
            state: conn::RELEASED.into(),
            seen_ns: now - idle_s * SEC,
            ..FlowState::default()
        };
        p.flows.clone().put(&flow(n), &v).unwrap();
        flow(n)
    };
    let (old_left, new_left) = (left(20, 121), left(21, 5));
    let mut r = p.reclaimer(3, None);
    let done = pass(&mut r);
    assert_eq!(p.flows.get(&old_left).unwrap(), None);
    assert!(p.flows.get(&new_left).unwrap().is_some());
    assert_eq!(done.expired, 7);
    assert_eq!(done.evicted, 0);
    for k in dead {
        assert_eq!(p.flows.get(&k).unwrap(), None);
    }
    for k in live {
        assert!(p.flows.get(&k).unwrap().is_some());
    }
    assert_eq!(p.conns(1), counts(2, 1), "the pickup was never counted");
    let s = p.summary.get(&0).unwrap().unwrap();
    assert_eq!(s, done.summary);
    assert_eq!((s.passes, s.expired, s.flows()), (1, 7, 4));
    assert_eq!(s.states[conn::ESTABLISHED as usize], 1);
    assert_eq!(s.states[conn::PICKUP as usize], 1);
    assert_eq!(s.entries[upkeep::FILL_CONNTRACK as usize], 5);
    assert_eq!(s.entries[upkeep::FILL_PERSIST as usize], 3);
    assert_eq!(done.reals_with_flows.into_iter().collect::<Vec<_>>(), [1]);
    // Nothing more to do: a second pass changes nothing and counts on.
    let again = pass(&mut r);
    assert_eq!((again.expired, again.evicted), (0, 0));
    assert_eq!(again.summary.passes, 2);
    assert_eq!(p.conns(1), counts(2, 1));
}

#[test]
fn an_expired_nat_flow_takes_its_reply_entry_with_it() {
    let p = Plane::new(100);
    p.real(1, method::NAT);
    p.real(2, method::DR);
    let dead = p.open(1, 1, conn::TIME_WAIT, 200);
    let live = p.open(2, 1, conn::ESTABLISHED, 10);
    p.open(3, 2, conn::CLOSE, 60);
    let reals = p.reals.lock().unwrap().clone();
    assert_eq!(p.replies.len(), 2);
    let mut r = p.reclaimer(64, None);
    let done = pass(&mut r);
    assert_eq!(done.expired, 2);
    assert_eq!(p.replies.get(&dead.nat_reply(&reals[&1])).unwrap(), None);
    assert_eq!(
        p.replies.get(&live.nat_reply(&reals[&1])).unwrap(),
        Some(live)
    );
    assert_eq!(done.summary.entries[upkeep::FILL_NAT_REPLIES as usize], 1);
}

#[test]
fn flows_counted_but_gone_from_the_table_are_evicted_once() {
    let p = Plane::new(100);
    p.real(1, method::DR);
    p.real(2, method::DR);
    let mut flows = Vec::new();
    for n in 0..10 {
        flows.push(p.open(n, 1, conn::SYN_RECV, 1));
    }
    p.open(100, 2, conn::FIN_WAIT, 1);
    // The LRU takes seven of real 1's flows without anyone uncounting them.
    for k in &flows[..7] {
        p.flows.clone().delete(k).unwrap();
    }
    let mut r = p.reclaimer(4, None);
    let done = pass(&mut r);
    assert_eq!((done.expired, done.evicted), (0, 7));
    assert_eq!(p.conns(1), counts(3, 0));
    assert_eq!(
        p.conns(2),
        counts(0, 1),
        "a real with all its flows loses nothing"
    );
    let again = pass(&mut r);
    assert_eq!(again.evicted, 0, "evictions are corrected once");
    assert_eq!(again.summary.evicted, 7);
    assert_eq!(p.conns(1), counts(3, 0));
}

#[test]
fn what_the_director_does_during_a_pass_is_not_taken_for_an_eviction() {
    for batch in [1, 100] {
        director_during_a_pass(batch);
    }
}

/// With `batch` 1 the director acts before the walk reaches the flows
/// after the first; with 100, after the walk saw them all.
fn director_during_a_pass(batch: usize) {
    let p = Plane::new(100);
    p.real(1, method::DR);
    let touched = p.open(1, 1, conn::ESTABLISHED, 901);
    let ended = p.open(2, 1, conn::ESTABLISHED, 10);
    let moved = p.open(3, 1, conn::ESTABLISHED, 10);
    p.open(4, 1, conn::ESTABLISHED, 10);
    let mut hooked = false;
    let hook: Hook = Box::new(move |plane: &Plane| {
        if hooked {
            return;
        }
        hooked = true;
        // Between the walk and the reap: a packet refreshes the expired
        // flow, another ends a live one (the director uncounts it), a
        // third moves one to FIN_WAIT, and a new flow opens (on a port
        // the walk has passed, so it is not seen).
        let mut flows = plane.flows.clone();
        let mut v = flows.get(&touched).unwrap().unwrap();
        v.seen_ns = plane.now.load(Ordering::Relaxed);
        flows.put(&touched, &v).unwrap();
        let v = flows.get(&ended).unwrap().unwrap();
        flows.delete(&ended).unwrap();
        count(&mut plane.conns.clone(), 1, v.state as u32, false);
        let mut v = flows.get(&moved).unwrap().unwrap();
        v.state = conn::FIN_WAIT.into();
        flows.put(&moved, &v).unwrap();
        count(&mut plane.conns.clone(), 1, conn::ESTABLISHED, false);
        count(&mut plane.conns.clone(), 1, conn::FIN_WAIT, true);
        plane.open(0, 1, conn::SYN_RECV, 0);
    });
    let mut r = p.reclaimer(batch, Some(hook));
    let done = pass(&mut r);
    assert_eq!(done.expired, 0, "a flow used again is not reaped");
    assert_eq!(done.evicted, 0, "batch {batch}");
    assert!(p.flows.get(&touched).unwrap().is_some());
    assert_eq!(p.conns(1), counts(3, 1), "batch {batch}");
}

#[test]
fn a_batch_failing_half_way_corrects_nothing_and_the_next_pass_finishes() {
    let p = Plane::new(10_000);
    p.real(1, method::DR);
    for n in 0..1000 {
        // Every other flow expired.
        let idle = if n % 2 == 0 { 1000 } else { 1 };
        p.open(n, 1, conn::ESTABLISHED, idle);
    }
    assert_eq!(p.conns(1), counts(1000, 0));
    // The walk's fourth batch of 100 fails.
    p.flows.fail_batches_after(3);
    let mut r = p.reclaimer(100, None);
    let err = r.pass(&mut go(ControlFlow::Continue(()))).unwrap_err();
    assert!(format!("{err:#}").contains("walking CONNTRACK"), "{err:#}");
    // The first three batches' expired flows are gone and uncounted, once;
    // the unwalked flows were not taken for evicted ones; nothing published.
    assert_eq!(p.flows.len(), 1000 - 150);
    assert_eq!(p.conns(1), counts(850, 0));
    assert_eq!(p.summary.get(&0).unwrap(), None);
    p.flows.heal();
    let done = pass(&mut r);
    assert_eq!((done.expired, done.evicted), (350, 0));
    assert_eq!(
        done.summary.expired, 500,
        "the failed pass's expiries are reported"
    );
    assert_eq!(done.summary.passes, 1);
    assert_eq!(p.conns(1), counts(500, 0));
    assert_eq!(done.summary.flows(), 500);
}

#[test]
fn a_failing_program_run_publishes_nothing() {
    struct Broken;
    impl OpRunner for Broken {
        fn run(&mut self, _: &mut [Op]) -> Result<()> {
            bail!("EPERM")
        }
    }
    let p = Plane::new(100);
    p.real(1, method::DR);
    p.open(1, 1, conn::CLOSE, 100);
    let maps = p.maps();
    let mut r = Reclaimer::new(maps, Box::new(Broken), Box::new(|| 20_000 * SEC), 10).unwrap();
    let err = r.pass(&mut go(ControlFlow::Continue(()))).unwrap_err();
    assert!(format!("{err:#}").contains("expiring flows"), "{err:#}");
    assert_eq!(p.flows.len(), 1);
    assert_eq!(p.summary.get(&0).unwrap(), None);
}

#[test]
fn a_pass_stops_between_batches_and_totals_carry_over_a_restart() {
    let p = Plane::new(1000);
    p.real(1, method::DR);
    for n in 0..50 {
        p.open(n, 1, conn::CLOSE, 100);
    }
    let mut r = p.reclaimer(10, None);
    let mut batches = 0;
    let mut stop_after_two = |_| {
        batches += 1;
        if batches == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let err = r.pass(&mut stop_after_two).unwrap_err();
    assert!(err.is::<Stopped>());
    assert_eq!(p.flows.len(), 30);
    // A new reclaimer (an agent that adopted the maps) continues the totals.
    pass(&mut r);
    let mut r2 = p.reclaimer(10, None);
    let done = pass(&mut r2);
    assert_eq!((done.summary.passes, done.summary.expired), (2, 50));
}
