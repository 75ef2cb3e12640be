//! The table writer on in-memory maps (no root, no BPF): write order under
//! a failure at every write, Maglev slot updates, the double-buffer flip,
//! drain, adoption of what a previous agent left, and recovery.
//!
//! What a packet can see is read from the maps as the director reads
//! them ([`director_view`]): a service entry, its live real list and
//! table buffer (or Maglev slots), and the real entries these name.

use super::*;
use crate::dataplane::{
    maps::{PortStore, Store, ZeroStore},
    store::{MapStore, MemMap},
};
use lb_common::{Counters, Settings, map_names as names};

/// Slots per service: prime, and half of it holds the 256 sh/dh buckets.
const TABLE: u32 = 521;
const MAX_SERVICES: u32 = 8;
const MAX_REALS: u32 = 64;

/// The director's maps in memory; clones of what the writer holds.
#[derive(Clone)]
struct Fake {
    services: MemMap<ServiceKey, ServiceInfo>,
    reals: MemMap<u32, RealInfo>,
    service_reals: MemMap<u32, u32>,
    maglev: MemMap<u32, u32>,
    sched_cursors: MemMap<u32, u64>,
    real_overload: MemMap<u32, u32>,
    real_conns: MemMap<u32, RealConns>,
    service_stats: MemMap<u32, Counters>,
    real_stats: MemMap<u32, Counters>,
    ifaces: MemMap<u32, IfaceInfo>,
    tx_ports: MemMap<u32, u32>,
    settings: MemMap<u32, Settings>,
}

impl Fake {
    fn new() -> Fake {
        let slots = u64::from(MAX_SERVICES * TABLE);
        let lists = u64::from(sched_layout::reals_base(MAX_SERVICES, false));
        Fake {
            services: MemMap::new(MAX_SERVICES.into()),
            reals: MemMap::new(MAX_REALS.into()),
            service_reals: MemMap::new(lists),
            maglev: MemMap::new(slots),
            sched_cursors: MemMap::new(MAX_SERVICES.into()),
            real_overload: MemMap::new(MAX_REALS.into()),
            real_conns: MemMap::new(MAX_REALS.into()),
            service_stats: MemMap::new(MAX_SERVICES.into()),
            real_stats: MemMap::new(MAX_REALS.into()),
            ifaces: MemMap::new(16),
            tx_ports: MemMap::new(16),
            settings: MemMap::new(1),
        }
    }

    fn maps(&self) -> Maps {
        let f = self.clone();
        Maps {
            services: Store::new(names::SERVICES, Box::new(f.services)),
            reals: Store::new(names::REALS, Box::new(f.reals)),
            service_reals: Store::new(names::SERVICE_REALS, Box::new(f.service_reals)),
            maglev: Store::new(names::MAGLEV, Box::new(f.maglev)),
            maglev_mapped: None,
            sched_cursors: Store::new(names::SCHED_CURSORS, Box::new(f.sched_cursors)),
            real_overload: Store::new(names::REAL_OVERLOAD, Box::new(f.real_overload)),
            real_conns: Store::new(names::REAL_CONNS, Box::new(f.real_conns)),
            service_stats: ZeroStore::new(names::SERVICE_STATS, Box::new(f.service_stats)),
            real_stats: ZeroStore::new(names::REAL_STATS, Box::new(f.real_stats)),
            ifaces: Store::new(names::IFACES, Box::new(f.ifaces)),
            tx_ports: PortStore::new(Box::new(f.tx_ports)),
            settings: Store::new(names::SETTINGS, Box::new(f.settings)),
        }
    }

    fn tables(&self) -> Tables {
        Tables::new(self.maps(), TABLE, MAX_SERVICES, MAX_REALS)
    }

    fn adopt(&self) -> Tables {
        Tables::adopt(self.maps(), TABLE, MAX_SERVICES, MAX_REALS).expect("adopting")
    }

    /// Every map the writer writes, by name, to fail or count writes.
    fn writable(&self) -> Vec<(&'static str, Knob<'_>)> {
        macro_rules! entry {
            ($name:expr, $m:expr) => {
                (
                    $name,
                    Box::new(move |fail: Option<(usize, i32)>| {
                        match fail {
                            Some((n, errno)) => $m.fail_writes_after(n, errno),
                            None => $m.heal(),
                        }
                        $m.write_calls()
                    }) as Knob<'_>,
                )
            };
        }
        vec![
            entry!(names::SERVICES, self.services),
            entry!(names::REALS, self.reals),
            entry!(names::SERVICE_REALS, self.service_reals),
            entry!(names::MAGLEV, self.maglev),
            entry!(names::SCHED_CURSORS, self.sched_cursors),
            entry!(names::REAL_OVERLOAD, self.real_overload),
            entry!(names::REAL_CONNS, self.real_conns),
            entry!(names::SERVICE_STATS, self.service_stats),
            entry!(names::REAL_STATS, self.real_stats),
            entry!(names::IFACES, self.ifaces),
            entry!(names::TX_PORTS, self.tx_ports),
            entry!(names::SETTINGS, self.settings),
        ]
    }

    /// Write calls so far, per map.
    fn writes(&self) -> BTreeMap<&'static str, usize> {
        self.writable()
            .into_iter()
            .map(|(name, m)| {
                let n = m(None);
                (name, n)
            })
            .collect()
    }
}

/// Sets a map's write failures (`Some((after, errno))`) or heals it
/// (`None`); returns its write calls so far.
type Knob<'a> = Box<dyn Fn(Option<(usize, i32)>) -> usize + 'a>;

type Real = (IpAddr, u16);

/// Every `MAGLEV` slot, in slot order (a `MemMap` walks in key-byte order).
fn slots(f: &Fake) -> Vec<u32> {
    let slots: BTreeMap<u32, u32> = f.maglev.entries().into_iter().collect();
    slots.into_values().collect()
}

/// One service as a packet sees it, real ids resolved to addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    flags: u32,
    sched: u8,
    /// The live real list.
    list: Vec<Real>,
    /// The live scheduler table (rr/wrr/sh/dh) or the Maglev slots.
    table: Vec<Option<Real>>,
}

/// What the director reads, checking on the way that everything a service
/// entry leads to is whole: every id in its live list and table names a
/// present real of that service. Panics (with `when`) where it is not.
fn director_view(f: &Fake, when: &str) -> BTreeMap<u16, Seen> {
    let reals: BTreeMap<u32, RealInfo> = f.reals.entries().into_iter().collect();
    let slots: BTreeMap<u32, u32> = f.maglev.entries().into_iter().collect();
    let lists: BTreeMap<u32, u32> = f.service_reals.entries().into_iter().collect();
    let mut view = BTreeMap::new();
    for (key, info) in f.services.entries() {
        // Keyed by port: the tests' services share their VIP and protocol.
        let resolve = |rid: u32| -> Option<Real> {
            if rid == REAL_NONE {
                return None;
            }
            let r = reals.get(&rid).copied().unwrap_or_default();
            assert!(
                r.flags & REAL_F_PRESENT != 0 && r.service_id == info.id,
                "{when}: service id {} reaches real id {rid}, which is {r:?}",
                info.id
            );
            Some((addr_ip(r.addr, r.family), u16::from_be(r.port)))
        };
        let table_b = info.flags & SERVICE_F_TABLE_B != 0;
        let base = sched_layout::reals_base(info.id, table_b);
        let list: Vec<Real> = (base..base + sched_layout::MAX_REALS_PER_SERVICE)
            .map(|i| lists.get(&i).copied().unwrap_or(REAL_NONE))
            .take_while(|&rid| rid != REAL_NONE)
            .map(|rid| resolve(rid).expect("listed"))
            .collect();
        let (first, len) = if info.sched == Scheduler::Mh.code() {
            (info.id * TABLE, TABLE)
        } else {
            (
                sched_layout::table_base(info.id, TABLE, table_b),
                info.table_len,
            )
        };
        let table = (first..first + len)
            .map(|slot| resolve(slots.get(&slot).copied().unwrap_or(REAL_NONE)))
            .collect();
        view.insert(
            u16::from_be(key.port),
            Seen {
                flags: info.flags & !SERVICE_F_TABLE_B,
                sched: info.sched,
                list,
                table,
            },
        );
    }
    view
}

/// Present reals no service owns (what the sweep must clear).
fn stray_reals(f: &Fake) -> Vec<u32> {
    let owners: BTreeSet<u32> = f.services.entries().iter().map(|(_, i)| i.id).collect();
    f.reals
        .entries()
        .into_iter()
        .filter(|(_, r)| r.flags & REAL_F_PRESENT != 0 && !owners.contains(&r.service_id))
        .map(|(rid, _)| rid)
        .collect()
}

fn real(last: u8, weight: u32) -> DesiredReal {
    DesiredReal {
        address: IpAddr::from([10, 0, 0, last]),
        port: 80,
        effective_weight: weight,
        u_threshold: 0,
        l_threshold: 0,
        next_hop: Some(NextHop {
            ifindex: 7,
            mac: [2, 0, 0, 0, 0, last],
            src_mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            source: None,
        }),
    }
}

fn service(port: u16, scheduler: Scheduler, reals: Vec<DesiredReal>) -> DesiredService {
    DesiredService {
        id: ServiceId::Addr {
            vip: IpAddr::from([192, 0, 2, 1]),
            port,
            protocol: Protocol::Tcp,
        },
        scheduler,
        method: Method::Dr,
        tunnel: None,
        active: true,
        flags: Default::default(),
        persistence: None,
        reals,
    }
}

/// Before: a Maglev, a wrr and an sh service.
fn before() -> Vec<DesiredService> {
    vec![
        service(80, Scheduler::Mh, vec![real(1, 1), real(2, 1), real(3, 1)]),
        service(81, Scheduler::Wrr, vec![real(4, 3), real(5, 1)]),
        service(82, Scheduler::Sh, vec![real(6, 1), real(7, 1)]),
    ]
}

/// After: a Maglev real replaced and a weight changed, a wrr real added,
/// the sh service gone and an rr one new.
fn after() -> Vec<DesiredService> {
    vec![
        service(80, Scheduler::Mh, vec![real(1, 2), real(3, 1), real(8, 1)]),
        service(81, Scheduler::Wrr, vec![real(4, 3), real(5, 1), real(9, 2)]),
        service(83, Scheduler::Rr, vec![real(10, 1), real(11, 1)]),
    ]
}

/// The view and the writes per map of a clean apply of `to` (after `from`).
fn clean_run(
    from: &[DesiredService],
    to: &[DesiredService],
) -> (BTreeMap<u16, Seen>, BTreeMap<&'static str, usize>) {
    let f = Fake::new();
    let mut t = f.tables();
    t.apply(from).unwrap();
    let start = f.writes();
    t.apply(to).unwrap();
    let writes = f
        .writes()
        .into_iter()
        .map(|(name, n)| (name, n - start[name]))
        .collect();
    (director_view(&f, "clean run"), writes)
}

/// Whether `s` is what a packet may see while a service changes from
/// `before` to `want` (either may be absent): one of the two whole, except
/// that Maglev slots change in place, each slot the old or the new owner.
fn old_or_new(s: &Seen, before: Option<&Seen>, want: Option<&Seen>) -> bool {
    if Some(s) == before || Some(s) == want {
        return true;
    }
    let (Some(b), Some(w)) = (before, want) else {
        return false;
    };
    let mh = Scheduler::Mh.code();
    let list_ok = s.list == b.list || s.list == w.list;
    let slots_ok = s
        .table
        .iter()
        .zip(&b.table)
        .zip(&w.table)
        .all(|((x, b), w)| x == b || x == w);
    s.sched == mh
        && b.sched == mh
        && w.sched == mh
        && list_ok
        && slots_ok
        && (s.flags == b.flags || s.flags == w.flags)
}

/// For every map and every write the clean apply of `to` makes to it,
/// the apply fails at that write: the director never sees a half-made
/// service, the failure is typed retryable, and the next apply repairs
/// everything (stray reals swept).
fn fail_at_every_write(from: &[DesiredService], to: &[DesiredService]) -> usize {
    let (want, writes) = clean_run(from, to);
    let before_view = {
        let f = Fake::new();
        f.tables().apply(from).unwrap();
        director_view(&f, "before")
    };
    let mut cases = 0;
    for (name, &count) in &writes {
        for n in 0..count {
            let when = format!("{name} failing after {n} of its {count} writes");
            let f = Fake::new();
            let mut t = f.tables();
            t.apply(from).unwrap();
            let m = f.writable().into_iter().find(|(m, _)| m == name).unwrap().1;
            m(Some((n, libc::EAGAIN)));
            let e = t.apply(to).expect_err(&when);
            assert_eq!(e.kind(), Kind::Retryable, "{when}: {e}");
            let seen = director_view(&f, &when);
            for (key, s) in &seen {
                assert!(
                    old_or_new(s, before_view.get(key), want.get(key)),
                    "{when}: service {key:?} is neither as before nor as wanted: {s:?}"
                );
            }
            m(None);
            t.apply(to)
                .unwrap_or_else(|e| panic!("{when}: the retry failed: {e}"));
            assert_eq!(director_view(&f, &when), want, "{when}: not repaired");
            assert_eq!(stray_reals(&f), Vec::<u32>::new(), "{when}: strays left");
            cases += 1;
        }
    }
    cases
}

#[test]
fn a_new_service_is_never_visible_half_made() {
    let cases = fail_at_every_write(&[], &before());
    assert!(cases >= 10, "only {cases} failure points");
    // A new service appears only whole: absent, or with its full table.
    let f = Fake::new();
    let mut t = f.tables();
    f.services.fail_writes_after(0, libc::EAGAIN);
    t.apply(&before()).unwrap_err();
    assert!(f.services.is_empty(), "no service entry before its tables");
    assert!(
        !f.reals.is_empty() && !f.maglev.is_empty(),
        "the reals and slots are written first"
    );
}

#[test]
fn changes_and_removals_fail_safe_at_every_write_and_recover() {
    let cases = fail_at_every_write(&before(), &after());
    assert!(cases >= 10, "only {cases} failure points");
}

#[test]
fn a_weight_change_rewrites_exactly_the_slots_that_move() {
    let f = Fake::new();
    let mut t = f.tables();
    let mh = |w2| {
        vec![service(
            80,
            Scheduler::Mh,
            vec![real(1, 1), real(2, w2), real(3, 1)],
        )]
    };
    t.apply(&mh(1)).unwrap();
    let old = slots(&f);
    assert_eq!(old.len(), TABLE as usize);
    // What the table must become, from a writer that never saw the old one.
    let g = Fake::new();
    g.tables().apply(&mh(3)).unwrap();
    let new = slots(&g);
    let moved: Vec<usize> = (0..old.len()).filter(|&i| old[i] != new[i]).collect();
    assert!(
        !moved.is_empty() && moved.len() < old.len() / 2,
        "{} moved",
        moved.len()
    );
    // Mark every slot that must not move: a writer rewriting it would erase the mark.
    const MARK: u32 = 0xdead;
    let mut maglev = f.maglev.clone();
    for i in (0..old.len()).filter(|i| !moved.contains(i)) {
        maglev.put(&(i as u32), &MARK).unwrap();
    }
    let batches = f.maglev.write_calls();
    t.apply(&mh(3)).unwrap();
    assert_eq!(f.maglev.write_calls() - batches, 1, "one batch of slots");
    for (i, rid) in slots(&f).into_iter().enumerate() {
        let want = if moved.contains(&i) { new[i] } else { MARK };
        assert_eq!(rid, want, "slot {i}");
    }
    let churn = t.maglev_churn().values().next().copied().unwrap();
    assert_eq!(churn.last_moved, moved.len() as u64);
    assert_eq!(churn.changes, 1);
}

#[test]
fn a_wrr_change_fills_the_idle_buffer_then_flips() {
    let f = Fake::new();
    let mut t = f.tables();
    let wrr = |w| vec![service(81, Scheduler::Wrr, vec![real(4, 3), real(5, w)])];
    t.apply(&wrr(1)).unwrap();
    let info = |f: &Fake| f.services.entries()[0].1;
    let live_b = info(&f).flags & SERVICE_F_TABLE_B != 0;
    let buffer = |f: &Fake, b: bool, len: u32| -> Vec<u32> {
        let first = sched_layout::table_base(info(f).id, TABLE, b);
        let slots: BTreeMap<u32, u32> = f.maglev.entries().into_iter().collect();
        (first..first + len).map(|s| slots[&s]).collect()
    };
    let old_len = info(&f).table_len;
    let old = buffer(&f, live_b, old_len);
    // The flip itself fails: packets keep the old buffer, which is whole.
    f.services.fail_writes_after(0, libc::EBUSY);
    t.apply(&wrr(2)).unwrap_err();
    assert_eq!(
        info(&f).flags & SERVICE_F_TABLE_B != 0,
        live_b,
        "not flipped"
    );
    assert_eq!(
        buffer(&f, live_b, old_len),
        old,
        "the live buffer untouched"
    );
    f.services.heal();
    t.apply(&wrr(2)).unwrap();
    let now = info(&f);
    assert_eq!(now.flags & SERVICE_F_TABLE_B != 0, !live_b, "flipped");
    assert_eq!(
        buffer(&f, live_b, old_len),
        old,
        "the old buffer left for packets in flight"
    );
    let new = buffer(&f, !live_b, now.table_len);
    let count = |rid| new.iter().filter(|&&r| r == rid).count();
    let rids: Vec<u32> = f.reals.entries().iter().map(|&(rid, _)| rid).collect();
    assert_eq!(
        (count(rids[0]), count(rids[1])),
        (3, 2),
        "the new wrr sequence"
    );
    assert_eq!(
        f.sched_cursors.entries(),
        vec![(now.id, 0)],
        "sequence restarts"
    );
}

#[test]
fn a_removed_real_drains_until_its_flows_end() {
    let f = Fake::new();
    let mut t = f.tables();
    t.set_keep_draining(true);
    let two = vec![service(80, Scheduler::Mh, vec![real(1, 1), real(2, 1)])];
    let one = vec![service(80, Scheduler::Mh, vec![real(1, 1)])];
    t.apply(&two).unwrap();
    let rid2 = f.reals.entries()[1].0;
    let mut conns = f.real_conns.clone();
    let busy = RealConns {
        live: ConnCounts {
            active: 2,
            inactive: 0,
        },
        ..RealConns::default()
    };
    conns.put(&rid2, &busy).unwrap();
    t.apply(&one).unwrap();
    let r2 = f.reals.get(&rid2).unwrap().unwrap();
    assert_eq!(
        r2.flags & (REAL_F_PRESENT | REAL_F_DRAINING),
        REAL_F_PRESENT | REAL_F_DRAINING
    );
    let seen = director_view(&f, "drained");
    let s = seen.values().next().unwrap();
    assert!(
        s.table
            .iter()
            .all(|r| *r == Some((IpAddr::from([10, 0, 0, 1]), 80))),
        "no new flows to it"
    );
    // Flows left: a walk that started before the drain proves nothing.
    let early = Instant::now() - std::time::Duration::from_secs(1);
    assert_eq!(t.release_drained(&BTreeSet::new(), early).unwrap(), 0);
    // A walk since the drain that saw its flows: kept.
    let walk = Instant::now();
    assert_eq!(t.release_drained(&[rid2].into(), walk).unwrap(), 0);
    assert!(f.reals.get(&rid2).unwrap().unwrap().flags & REAL_F_PRESENT != 0);
    // It comes back: same id, its flows and counts kept.
    t.apply(&two).unwrap();
    let back = f.reals.get(&rid2).unwrap().unwrap();
    assert_eq!(
        back.flags & REAL_F_DRAINING,
        0,
        "back in service under its id"
    );
    assert_eq!(f.real_conns.get(&rid2).unwrap().unwrap().live.active, 2);
    // Leaves again; a walk since saw none of its flows (the LRU evicted
    // them uncounted): freed though the count says 2.
    t.apply(&one).unwrap();
    let walk = Instant::now();
    assert_eq!(t.release_drained(&BTreeSet::new(), walk).unwrap(), 1);
    assert_eq!(
        f.reals.get(&rid2).unwrap(),
        Some(RealInfo::default()),
        "freed"
    );
}

#[test]
fn a_drained_real_without_connections_is_freed_at_the_next_pass() {
    let f = Fake::new();
    let mut t = f.tables();
    t.set_keep_draining(true);
    t.apply(&[service(80, Scheduler::Mh, vec![real(1, 1), real(2, 1)])])
        .unwrap();
    t.apply(&[service(80, Scheduler::Mh, vec![real(1, 1)])])
        .unwrap();
    let early = Instant::now() - std::time::Duration::from_secs(1);
    assert_eq!(
        t.release_drained(&BTreeSet::new(), early).unwrap(),
        1,
        "no live count"
    );
    assert_eq!(stray_reals(&f), Vec::<u32>::new());
    let present = f
        .reals
        .entries()
        .iter()
        .filter(|(_, r)| r.flags & REAL_F_PRESENT != 0)
        .count();
    assert_eq!(present, 1);
}

#[test]
fn adoption_keeps_ids_and_slots_and_rewrites_nothing_that_is_right() {
    let f = Fake::new();
    let mut first = f.tables();
    first.set_keep_draining(true);
    first.apply(&before()).unwrap();
    // A real left draining, and a real no service owns (a failed apply's).
    let mut second = before();
    second[1].reals.pop();
    first.apply(&second).unwrap();
    let mut reals = f.reals.clone();
    let stray = RealInfo {
        flags: REAL_F_PRESENT,
        service_id: MAX_SERVICES - 1,
        ..RealInfo::default()
    };
    reals.put(&(MAX_REALS - 1), &stray).unwrap();
    drop(first);
    let services = f.services.entries();
    let maglev = f.maglev.entries();
    let lists = f.service_reals.entries();
    let view = director_view(&f, "left by the previous agent");

    let mut t = f.adopt();
    t.set_keep_draining(true);
    assert_eq!(t.service_count(), 3);
    let writes = f.writes();
    t.apply(&second).unwrap();
    let after = f.writes();
    for name in [
        names::SERVICES,
        names::SERVICE_REALS,
        names::MAGLEV,
        names::SCHED_CURSORS,
        names::REAL_OVERLOAD,
        names::REAL_CONNS,
        names::SERVICE_STATS,
        names::REAL_STATS,
    ] {
        assert_eq!(after[name], writes[name], "{name} rewritten");
    }
    assert_eq!(
        after[names::REALS] - writes[names::REALS],
        1,
        "only the stray cleared"
    );
    assert_eq!(
        f.reals.get(&(MAX_REALS - 1)).unwrap(),
        Some(RealInfo::default())
    );
    assert_eq!(
        f.services.entries(),
        services,
        "service ids and entries kept"
    );
    assert_eq!(f.maglev.entries(), maglev);
    assert_eq!(f.service_reals.entries(), lists);
    assert_eq!(director_view(&f, "adopted"), view);
    // The drained real is still draining, and coming back takes its id again.
    let draining: Vec<u32> = f
        .reals
        .entries()
        .into_iter()
        .filter(|(_, r)| r.flags & REAL_F_DRAINING != 0)
        .map(|(rid, _)| rid)
        .collect();
    assert_eq!(draining.len(), 1);
    t.apply(&before()).unwrap();
    assert_eq!(
        f.reals.get(&draining[0]).unwrap().unwrap().flags & REAL_F_DRAINING,
        0
    );
    // And a change after adoption moves only what it must.
    let mut g = before();
    g[0].reals[0].effective_weight = 2;
    t.apply(&g).unwrap();
    let (want, _) = clean_run(&[], &g);
    assert_eq!(
        director_view(&f, "changed after adoption").get(&80),
        want.get(&80)
    );
}

#[test]
fn a_refused_write_is_fatal_and_a_full_map_says_what_to_raise() {
    let f = Fake::new();
    let mut t = f.tables();
    f.reals.fail_writes_after(0, libc::EPERM);
    let e = t.apply(&before()).unwrap_err();
    assert_eq!(e.kind(), Kind::Fatal, "{e}");
    assert!(e.to_string().contains(names::REALS), "{e}");
    f.reals.heal();
    let many: Vec<DesiredService> = (0..=MAX_SERVICES as u16)
        .map(|i| service(1000 + i, Scheduler::Rr, vec![real(1, 1)]))
        .collect();
    let e = t.apply(&many).unwrap_err();
    assert!(
        matches!(
            e,
            TableError::Full {
                setting: "max_services",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.kind(), Kind::Fatal);
    // Back to what fits: applied, nothing left of the refused one.
    t.apply(&before()).unwrap();
    assert_eq!(f.services.len(), 3);
    assert_eq!(stray_reals(&f), Vec::<u32>::new());
}
